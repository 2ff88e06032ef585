#include "rebuilder.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "keys.h"
#include "lease.h"
#include "mailbox_index.h"
#include "mailbox_list.h"
#include "message_store.h"

namespace rbd {

namespace {

constexpr std::chrono::seconds kLeaseDuration(60);
constexpr size_t kBatch = 256;

// Dovecot's virtual size counts every line end as CRLF.
uint64_t VirtualSize(const std::string& body) {
  uint64_t bare_lf = 0;
  for (size_t i = 0; i < body.size(); i++)
    if (body[i] == '\n' && (i == 0 || body[i - 1] != '\r')) bare_lf++;
  return body.size() + bare_lf;
}

struct LostBody {
  Guid guid;
  BodyMeta meta;
};

}  // namespace

Status Rebuilder::Run(RebuildStats* stats) { return Rebuild(std::nullopt, stats); }

Status Rebuilder::RunFor(const Guid& mailbox, RebuildStats* stats) { return Rebuild(mailbox, stats); }

Status Rebuilder::Rebuild(const std::optional<Guid>& only, RebuildStats* stats) {
  *stats = RebuildStats();
  std::unique_ptr<Lease> lease;
  Status s = Lease::Acquire(account_->index_io(), keys::LeaseObject("gc"), "gc", kLeaseDuration, &lease);
  if (!s.ok()) return s;

  // Listed first: a mailbox created later has its index before its name.
  std::vector<MailboxInfo> listed;
  s = MailboxList(account_).List(&listed);
  if (!s.ok()) return s;
  std::vector<std::string> index_objects;
  s = Account::ListObjects(account_->index_io(), &index_objects);
  if (!s.ok()) return s;
  std::set<Guid> indexes, referenced;
  for (const std::string& oid : index_objects) {
    keys::ParsedObject parsed = keys::ParseObject(oid);
    if (parsed.kind != keys::ObjectKind::kIndex) continue;
    indexes.insert(parsed.guid);
    // A body a record still references (copied or moved on before the
    // mailbox it was first saved to went) is not lost.
    std::vector<MessageRecord> records;
    MailboxState state;
    s = MailboxIndex(account_, parsed.guid).ListAll(&records, &state);
    if (s.IsNotFound()) continue;
    if (!s.ok()) return s;
    for (const MessageRecord& r : records)
      if (!r.inline_body) referenced.insert(r.guid);
  }

  std::map<Guid, std::string> names;
  std::map<Guid, std::vector<LostBody>> lost;
  for (const MailboxInfo& info : listed) {
    if (!info.exists) continue;
    names[info.entry.guid] = info.name;
    // Listed without an index: lost, even with no body to recover.
    if (!indexes.count(info.entry.guid) && (!only || *only == info.entry.guid)) lost[info.entry.guid];
  }
  std::vector<std::string> mail_objects;
  s = Account::ListObjects(account_->mail_io(), &mail_objects);
  if (!s.ok()) return s;
  MessageStore store(account_);
  for (const std::string& oid : mail_objects) {
    keys::ParsedObject parsed = keys::ParseObject(oid);
    if (parsed.kind != keys::ObjectKind::kBody || referenced.count(parsed.guid)) continue;
    LostBody body{parsed.guid, {}};
    BodyRef ref;
    s = store.Stat(body.guid, &body.meta, &ref);
    if (s.IsNotFound()) continue;
    if (!s.ok()) return s;
    // Released bodies belong to expunged messages and deleted mailboxes,
    // kept only until gc: bringing them back would undo the expunge. A
    // count is never too low, so a body still referenced is never skipped.
    if (ref.count == 0) continue;
    const Guid& first = body.meta.first_mailbox;
    if (first.IsZero() || indexes.count(first) || (only && *only != first)) continue;
    lost[first].push_back(std::move(body));
  }

  for (auto& [mailbox, bodies] : lost) {
    auto name = names.find(mailbox);
    if (only && name == names.end()) return Status::NotFound("mailbox " + mailbox.Hex() + " was deleted");
    // A listed mailbox is recreated only while it is still listed: one
    // deleted meanwhile stays deleted.
    s = name != names.end() ? MailboxList(account_).Recreate(name->second, mailbox, true)
                            : MailboxList(account_).Recreate("Recovered/" + mailbox.Hex(), mailbox, false);
    if (s.IsNotFound() && !only) continue;
    if (!s.ok()) return s;
    stats->mailboxes_recreated++;
    std::sort(bodies.begin(), bodies.end(), [](const LostBody& a, const LostBody& b) {
      return std::tie(a.meta.save_date, a.guid) < std::tie(b.meta.save_date, b.guid);
    });
    MailboxIndex index(account_, mailbox);
    for (size_t first = 0; first < bodies.size(); first += kBatch) {
      const size_t end = std::min(bodies.size(), first + kBatch);
      std::vector<Guid> guids;
      for (size_t i = first; i < end; i++) guids.push_back(bodies[i].guid);
      std::vector<std::string> data;
      std::vector<Status> statuses;
      store.ReadMany(guids, &data, &statuses);
      std::vector<NewMessage> messages;
      for (size_t i = first; i < end; i++) {
        if (!statuses[i - first].ok()) return statuses[i - first];
        NewMessage m;
        m.guid = bodies[i].guid;
        m.stored = true;
        m.received_date = bodies[i].meta.received_date;
        m.save_date = bodies[i].meta.save_date;
        m.physical_size = bodies[i].meta.size;
        m.virtual_size = VirtualSize(data[i - first]);
        messages.push_back(std::move(m));
      }
      std::vector<uint32_t> uids;
      s = index.Append(messages, &uids);
      if (!s.ok()) return s;
      stats->messages_recovered += messages.size();
      s = lease->Renew();
      if (!s.ok()) return s;
    }
  }
  return Status::OK();
}

}  // namespace rbd
