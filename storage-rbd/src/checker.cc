#include "checker.h"

#include <algorithm>
#include <ctime>
#include <set>

#include "garbage_collector.h"
#include "keys.h"
#include "mailbox_index.h"
#include "mailbox_list.h"
#include "message_store.h"

namespace rbd {

namespace {

constexpr size_t kRecordPage = 16384;

// What a mailbox's records add up to.
struct Totals {
  uint32_t messages = 0;
  uint64_t virtual_size = 0;
  uint64_t physical_size = 0;
  uint32_t max_uid = 0;

  void Add(const MessageRecord& r) {
    messages++;
    virtual_size += r.virtual_size;
    physical_size += r.physical_size;
    max_uid = std::max(max_uid, r.uid);
  }
  // UIDs stay used: max_uid is kept.
  void Remove(const Totals& o) {
    messages -= o.messages;
    virtual_size -= o.virtual_size;
    physical_size -= o.physical_size;
  }
};

std::string Describe(const MailboxState& s) {
  return "messages " + std::to_string(s.messages) + ", vsize " + std::to_string(s.virtual_size) + ", psize " +
         std::to_string(s.physical_size) + ", uidnext " + std::to_string(s.uidnext);
}

}  // namespace

Status Checker::Run(bool repair, uint32_t grace_seconds, std::vector<Problem>* problems) {
  problems->clear();
  std::vector<std::string> mail_objects;
  Status s = Account::ListObjects(account_->mail_io(), &mail_objects);
  if (!s.ok()) return s;
  std::set<Guid> bodies;
  for (const std::string& oid : mail_objects) {
    keys::ParsedObject parsed = keys::ParseObject(oid);
    if (parsed.kind == keys::ObjectKind::kBody) bodies.insert(parsed.guid);
  }

  std::vector<MailboxInfo> mailboxes;
  s = MailboxList(account_).List(&mailboxes);
  if (!s.ok()) return s;
  std::set<Guid> referenced;
  for (const MailboxInfo& info : mailboxes) {
    if (!info.exists) continue;
    MailboxIndex index(account_, info.entry.guid);
    MailboxState state;
    s = index.ReadState(&state);
    if (s.IsNotFound()) continue;  // deleted meanwhile
    if (!s.ok()) return s;
    Totals totals, gone;
    std::vector<uint32_t> bodiless;
    for (uint32_t after = 0;;) {
      std::vector<MessageRecord> page;
      s = index.ListRecords(after, kRecordPage, &page);
      if (!s.ok()) return s;
      for (const MessageRecord& r : page) {
        totals.Add(r);
        if (r.inline_body) continue;
        referenced.insert(r.guid);
        if (bodies.count(r.guid)) continue;
        bodiless.push_back(r.uid);
        gone.Add(r);
        problems->push_back(
            {Problem::Kind::kMissingBody, info.entry.guid, r.uid, r.guid,
             info.name + " UID " + std::to_string(r.uid) + ": body m." + r.guid.Hex() + " does not exist"});
      }
      if (page.size() < kRecordPage) break;
      after = page.back().uid;
    }
    if (repair && !bodiless.empty()) {
      std::vector<uint32_t> expunged;
      s = index.Expunge(bodiless, &expunged);
      if (!s.ok()) return s;
      for (Problem& p : *problems)
        if (p.kind == Problem::Kind::kMissingBody && p.mailbox == info.entry.guid) p.repaired = true;
      totals.Remove(gone);
      s = index.ReadState(&state);
      if (!s.ok()) return s;
    }
    if (state.messages != totals.messages || state.virtual_size != totals.virtual_size ||
        state.physical_size != totals.physical_size || state.uidnext <= totals.max_uid) {
      MailboxState expected = state;
      expected.messages = totals.messages;
      expected.virtual_size = totals.virtual_size;
      expected.physical_size = totals.physical_size;
      expected.uidnext = std::max(state.uidnext, totals.max_uid + 1);
      Problem p{
          Problem::Kind::kWrongCounters, info.entry.guid, 0, Guid(),
          info.name + ": counters say " + Describe(state) + "; records add up to " + Describe(expected)};
      if (repair) {
        s = index.SetCounters(expected.messages, expected.virtual_size, expected.physical_size,
                              expected.uidnext);
        if (!s.ok()) return s;
        p.repaired = true;
      }
      problems->push_back(std::move(p));
    }
  }

  const int64_t cutoff = static_cast<int64_t>(std::time(nullptr)) - grace_seconds;
  MessageStore store(account_);
  bool unreferenced = false;
  for (const Guid& body : bodies) {
    if (referenced.count(body)) continue;
    BodyMeta meta;
    BodyRef ref;
    s = store.Stat(body, &meta, &ref);
    if (s.IsNotFound()) continue;
    if (!s.ok()) return s;
    if (ref.changed > cutoff) continue;  // in flight
    // Released by an expunge or delete: gc's ordinary work, not a fault.
    if (ref.count == 0) continue;
    unreferenced = true;
    problems->push_back(
        {Problem::Kind::kUnreferencedBody, Guid(), 0, body,
         "body m." + body.Hex() + " (" + std::to_string(meta.size) + " bytes) is referenced by no record"});
  }
  if (repair && unreferenced) {
    // gc's own scan, under its lease: it re-checks every body against the
    // records, so a reference taken since this scan wins.
    GcStats stats;
    s = GarbageCollector(account_).Run(grace_seconds, &stats);
    if (!s.ok()) return s;
    for (Problem& p : *problems) {
      if (p.kind != Problem::Kind::kUnreferencedBody) continue;
      BodyMeta meta;
      BodyRef ref;
      p.repaired = store.Stat(p.body, &meta, &ref).IsNotFound();
    }
  }
  return Status::OK();
}

}  // namespace rbd
