#include "garbage_collector.h"

#include <algorithm>
#include <ctime>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "keys.h"
#include "lease.h"
#include "mailbox_index.h"
#include "mailbox_list.h"
#include "message_store.h"

namespace rbd {

namespace {

constexpr std::chrono::seconds kLeaseDuration(60);
constexpr size_t kRecordPage = 16384;

bool OlderThan(librados::IoCtx& io, const std::string& oid, int64_t cutoff) {
  uint64_t size;
  time_t mtime;
  return io.stat(oid, &size, &mtime) == 0 && mtime <= cutoff;
}

}  // namespace

std::map<Guid, std::vector<std::string>> HeadlessChunks(librados::IoCtx& io,
                                                        const std::vector<std::string>& objects,
                                                        int64_t cutoff) {
  std::set<Guid> heads;
  std::map<Guid, std::vector<std::string>> chunks;
  for (const std::string& oid : objects) {
    keys::ParsedObject parsed = keys::ParseObject(oid);
    if (parsed.kind == keys::ObjectKind::kBody) heads.insert(parsed.guid);
    if (parsed.kind == keys::ObjectKind::kChunk) chunks[parsed.guid].push_back(oid);
  }
  for (auto it = chunks.begin(); it != chunks.end();) {
    const bool old = std::all_of(it->second.begin(), it->second.end(),
                                 [&](const std::string& oid) { return OlderThan(io, oid, cutoff); });
    it = heads.count(it->first) || !old ? chunks.erase(it) : std::next(it);
  }
  return chunks;
}

Status GarbageCollector::Run(uint32_t grace_seconds, GcStats* stats) {
  *stats = GcStats();
  librados::IoCtx& index_io = account_->index_io();
  librados::IoCtx& mail_io = account_->mail_io();
  std::unique_ptr<Lease> lease;
  Status s = Lease::Acquire(index_io, keys::LeaseObject("gc"), "gc", kLeaseDuration, &lease);
  if (!s.ok()) return s;
  const int64_t cutoff = static_cast<int64_t>(std::time(nullptr)) - grace_seconds;

  std::vector<MailboxInfo> mailboxes;
  s = MailboxList(account_).List(&mailboxes);
  if (!s.ok()) return s;
  std::set<Guid> listed;
  for (const MailboxInfo& m : mailboxes)
    if (m.exists) listed.insert(m.entry.guid);

  std::vector<std::string> index_objects;
  s = Account::ListObjects(index_io, &index_objects);
  if (!s.ok()) return s;
  std::set<Guid> referenced, indexes;
  for (const std::string& oid : index_objects) {
    keys::ParsedObject parsed = keys::ParseObject(oid);
    if (parsed.kind == keys::ObjectKind::kIndex) indexes.insert(parsed.guid);
  }
  for (const std::string& oid : index_objects) {
    keys::ParsedObject parsed = keys::ParseObject(oid);
    if (parsed.kind == keys::ObjectKind::kIndexShard && !indexes.count(parsed.guid) &&
        OlderThan(index_io, oid, cutoff)) {
      // Left behind by a removal that failed after its index object went.
      index_io.remove(oid);
      stats->indexes_reclaimed++;
      continue;
    }
    if (parsed.kind != keys::ObjectKind::kIndex) continue;
    MailboxIndex index(account_, parsed.guid);
    if (!listed.count(parsed.guid) && OlderThan(index_io, oid, cutoff)) {
      // Unlisted for the whole grace period: a crashed create or delete.
      s = index.Remove();
      if (!s.ok()) return s;
      stats->indexes_reclaimed++;
      continue;
    }
    // Listed, or unlisted but young (a create in flight): its records count.
    for (uint32_t after = 0;;) {
      std::vector<MessageRecord> page;
      s = index.ListRecords(after, kRecordPage, &page);
      if (s.IsNotFound()) break;
      if (!s.ok()) return s;
      for (const MessageRecord& r : page)
        if (!r.inline_body) referenced.insert(r.guid);
      if (page.size() < kRecordPage) break;
      after = page.back().uid;
    }
    uint64_t reclaimed = 0, in_grace = 0;
    s = index.ReclaimReleasedBodies(cutoff, &reclaimed, &in_grace);
    if (!s.ok() && !s.IsNotFound()) return s;
    stats->bodies_scanned += reclaimed + in_grace;
    stats->bodies_reclaimed += reclaimed;
    stats->bodies_in_grace += in_grace;
    s = lease->Renew();
    if (!s.ok()) return s;
  }

  std::vector<std::string> mail_objects;
  s = Account::ListObjects(mail_io, &mail_objects);
  if (!s.ok()) return s;
  for (const auto& [guid, chunks] : HeadlessChunks(mail_io, mail_objects, cutoff)) {
    for (const std::string& oid : chunks) mail_io.remove(oid);
    stats->bodies_reclaimed++;
  }
  MessageStore store(account_);
  for (const std::string& oid : mail_objects) {
    keys::ParsedObject parsed = keys::ParseObject(oid);
    if (parsed.kind != keys::ObjectKind::kBody) continue;
    stats->bodies_scanned++;
    if (referenced.count(parsed.guid)) continue;
    BodyMeta meta;
    BodyRef ref;
    s = store.Stat(parsed.guid, &meta, &ref);
    if (s.IsNotFound()) continue;
    if (!s.ok()) return s;
    if (ref.changed > cutoff) {
      stats->bodies_in_grace++;
      continue;
    }
    s = store.RemoveIfUnchanged(parsed.guid, ref);
    if (s.code() == Code::kConflict) continue;  // referenced meanwhile
    if (!s.ok()) return s;
    store.RemoveChunks(parsed.guid, meta.chunks);
    stats->bodies_reclaimed++;
  }
  return Status::OK();
}

}  // namespace rbd
