#include "index_shards.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "aio.h"
#include "keys.h"
#include "retry.h"

namespace rbd {

namespace {

// Shards a full listing reads at once: a cold listing of a big mailbox
// reads every shard page by page, and shards live in different PGs.
constexpr size_t kShardReadsInFlight = 8;
// Keys per write op of a fold: small enough that one op stays well below
// the OSD's message limits at rbd_inline_max bodies.
constexpr size_t kFoldBatch = 1024;

}  // namespace

Status ReadUidRange(Account* account, const std::string& oid, const char* prefix, uint64_t lo, uint64_t hi,
                    size_t max, std::map<std::string, librados::bufferlist>* values) {
  values->clear();
  const std::string prefix_str = prefix;
  auto key_of = [&](uint64_t uid) {
    // "u.0000000041" with this prefix: the record key's digits.
    return prefix_str + keys::RecordKey(static_cast<uint32_t>(uid)).substr(std::strlen(keys::kRecordPrefix));
  };
  std::string after = lo == 0 ? prefix_str : key_of(lo - 1);
  const std::string end = hi > UINT32_MAX ? std::string() : key_of(hi);
  for (bool more = true; more && values->size() < max;) {
    std::map<std::string, librados::bufferlist> page;
    librados::ObjectReadOperation op;
    int omap_r = 0;
    op.omap_get_vals2(after, prefix, std::min(kOmapPage, max - values->size()), &page, &more, &omap_r);
    int r = account->Operate(account->index_io(), oid, &op);
    if (r == -ENOENT) return Status::OK();
    if (r < 0) return Status::FromRados(r, "list " + oid);
    if (page.empty()) break;
    after = page.rbegin()->first;
    for (auto& [key, bl] : page) {
      if (!end.empty() && key >= end) return Status::OK();
      values->emplace(key, std::move(bl));
    }
  }
  return Status::OK();
}

Status CountOmapKeys(Account* account, const std::string& oid, uint64_t* total, uint64_t* changes) {
  std::string after;
  for (bool more = true; more;) {
    std::set<std::string> page;
    int r = account->index_io().omap_get_keys2(oid, after, kOmapPage, &page, &more);
    if (r == -ENOENT) return Status::OK();
    if (r < 0) return Status::FromRados(r, "list keys of " + oid);
    if (page.empty()) break;
    after = *page.rbegin();
    *total += page.size();
    for (const std::string& key : page)
      if (changes != nullptr && key.rfind(keys::kChangePrefix, 0) == 0) (*changes)++;
  }
  return Status::OK();
}

IndexShards::IndexShards(Account* account, const Guid& mailbox)
    : account_(account), mailbox_(mailbox), index_oid_(keys::IndexObject(mailbox)) {}

std::string IndexShards::Oid(uint32_t n) const { return keys::IndexShardObject(mailbox_, n); }

Status IndexShards::Read(uint32_t n, const std::set<std::string>& keys,
                         std::map<std::string, librados::bufferlist>* values) {
  int r = account_->ReadKeys(Oid(n), keys, values);
  if (r < 0 && r != -ENOENT) return Status::FromRados(r, "read " + Oid(n));
  return Status::OK();
}

Status IndexShards::ListRecords(
    uint32_t count,
    const std::function<Status(uint32_t, const std::map<std::string, librados::bufferlist>&)>& done) {
  // One slot per shard being read; the slots stay put while their ops are
  // in flight (librados writes the results into them).
  struct Slot {
    uint32_t n = 0;
    bool active = false;
    std::string after;
    std::map<std::string, librados::bufferlist> values, page;
    bool more = false;
    int omap_r = 0;
    AioCompletionPtr completion;
    std::chrono::steady_clock::time_point issued;
  };
  librados::IoCtx& io = account_->index_io();
  const Deadline deadline = account_->deadline();
  AioWaiter waiter;
  std::vector<Slot> slots(std::min<size_t>(kShardReadsInFlight, count));
  uint32_t next = 0;
  Status result;
  auto issue = [&](Slot* slot) {
    librados::ObjectReadOperation op;
    slot->page.clear();
    op.omap_get_vals2(slot->after, keys::kRecordPrefix, kOmapPage, &slot->page, &slot->more, &slot->omap_r);
    slot->completion = waiter.NewCompletion();
    slot->issued = std::chrono::steady_clock::now();
    slot->active = io.aio_operate(Oid(slot->n), slot->completion.get(), &op, nullptr) >= 0;
    if (!slot->active && result.ok()) result = Status::Unavailable("list " + Oid(slot->n));
  };
  auto start = [&](Slot* slot) {
    slot->n = next++;
    slot->after = keys::kRecordPrefix;
    slot->values.clear();
    issue(slot);
  };
  for (Slot& slot : slots) start(&slot);
  for (bool busy = true; busy;) {
    busy = false;
    for (Slot& slot : slots) {
      if (!slot.active) continue;
      const std::string oid = Oid(slot.n);
      int r = waiter.Wait(io, slot.completion, deadline);
      account_->op_log().Add(OpType::kRead, oid, 0, r, slot.issued);
      slot.active = false;
      // A shard sealed but never folded does not exist yet.
      if (r < 0 && r != -ENOENT && result.ok()) result = Status::FromRados(r, "list " + oid);
      if (!result.ok()) continue;  // the other slots' ops are waited for all the same
      const bool more = r >= 0 && slot.more && !slot.page.empty();
      if (more) slot.after = slot.page.rbegin()->first;
      slot.values.merge(slot.page);
      if (more) {
        issue(&slot);
      } else {
        result = done(slot.n, slot.values);
        if (result.ok() && next < count) start(&slot);
      }
      busy |= slot.active;
    }
  }
  return result;
}

Status IndexShards::Fold(const MailboxState& state, uint32_t n) {
  const uint64_t lo = uint64_t{n} * state.shard_uids, hi = lo + state.shard_uids;
  const std::string shard = Oid(n);
  const Deadline until = account_->write_deadline();
  RetryPolicy retry(until);
  std::mt19937_64 rng(std::random_device{}());
  for (unsigned attempt = 1;; attempt++) {
    // The shard's version before the index object's keys: a fold that
    // writes the shard after this read changes it, so this one's older
    // values can never overwrite that one's newer ones.
    librados::ObjectReadOperation read;
    librados::bufferlist version;
    int version_r = 0;
    read.getxattr(keys::kShardVersionAttr, &version, &version_r);
    int r = account_->Operate(account_->index_io(), shard, &read, until);
    const bool exists = r >= 0;
    if (r < 0 && r != -ENOENT) return Status::FromRados(r, "read " + shard);
    std::map<std::string, librados::bufferlist> records, bodies, tombstones, released;
    Status s = ReadUidRange(account_, index_oid_, keys::kRecordPrefix, lo, hi, SIZE_MAX, &records);
    if (s.ok()) s = ReadUidRange(account_, index_oid_, keys::kInlineBodyPrefix, lo, hi, SIZE_MAX, &bodies);
    if (s.ok()) s = ReadUidRange(account_, index_oid_, keys::kTombstonePrefix, lo, hi, SIZE_MAX, &tombstones);
    if (s.ok())
      s = ReadUidRange(account_, index_oid_, keys::kReleasedBodyPrefix, lo, hi, SIZE_MAX, &released);
    if (!s.ok()) return s;
    // Released bodies stay with their release marks until gc reclaims both.
    for (const auto& [key, bl] : released)
      bodies.erase(keys::InlineBodyKey(*keys::ParseReleasedBodyKey(key)));
    if (records.empty() && bodies.empty() && tombstones.empty()) return Status::OK();

    // Into the shard, in ops of kFoldBatch keys, each comparing the version.
    std::vector<std::pair<std::string, const librados::bufferlist*>> writes;
    for (const auto* values : {&records, &bodies})
      for (const auto& [key, bl] : *values) writes.emplace_back(key, &bl);
    for (const auto& [key, bl] : tombstones)
      writes.emplace_back(keys::RecordKey(*keys::ParseTombstoneKey(key)), nullptr);
    librados::bufferlist token;
    token.append(std::to_string(rng()));
    bool lost = false;
    for (size_t at = 0; at < writes.size() && !lost; at += kFoldBatch) {
      librados::ObjectWriteOperation op;
      if (at != 0) {
        op.cmpxattr(keys::kShardVersionAttr, LIBRADOS_CMPXATTR_OP_EQ, token);
      } else if (exists) {
        op.cmpxattr(keys::kShardVersionAttr, LIBRADOS_CMPXATTR_OP_EQ, version);
      } else {
        op.create(true);
      }
      op.setxattr(keys::kShardVersionAttr, token);
      std::map<std::string, librados::bufferlist> set;
      std::set<std::string> remove;
      for (size_t i = at; i < std::min(writes.size(), at + kFoldBatch); i++) {
        if (writes[i].second != nullptr) {
          set.emplace(writes[i].first, *writes[i].second);
        } else {
          remove.insert(writes[i].first);
        }
      }
      if (!set.empty()) op.omap_set(set);
      if (!remove.empty()) op.omap_rm_keys(remove);
      r = account_->Operate(account_->index_io(), shard, &op, until);
      lost = r == -ECANCELED || r == -EEXIST;
      if (r < 0 && !lost) return Status::FromRados(r, "fold into " + shard);
    }

    // Out of the index object: a record only while it is still the value
    // folded (a writer may have overridden it since); bodies and
    // tombstones never change.
    std::vector<std::string> folded;
    for (const auto* values : {&records, &bodies, &tombstones})
      for (const auto& [key, bl] : *values) folded.push_back(key);
    for (size_t at = 0; at < folded.size() && !lost; at += kFoldBatch) {
      librados::ObjectWriteOperation op;
      std::map<std::string, std::pair<librados::bufferlist, int>> unchanged;
      std::set<std::string> remove;
      for (size_t i = at; i < std::min(folded.size(), at + kFoldBatch); i++) {
        auto rec = records.find(folded[i]);
        if (rec != records.end()) unchanged[folded[i]] = {rec->second, LIBRADOS_CMPXATTR_OP_EQ};
        remove.insert(folded[i]);
      }
      int cmp_r = 0;
      if (!unchanged.empty()) op.omap_cmp(unchanged, &cmp_r);
      op.omap_rm_keys(remove);
      r = account_->Operate(account_->index_io(), index_oid_, &op, until);
      lost = r == -ECANCELED;
      if (r < 0 && !lost) return Status::FromRados(r, "fold " + index_oid_);
    }
    if (!lost) return Status::OK();
    if (!retry.Backoff(attempt))
      return Status::Conflict("fold into " + shard + ": lost " + std::to_string(attempt) + " races");
  }
}

Status IndexShards::RemoveKeys(uint32_t n, const std::set<std::string>& keys) {
  librados::ObjectWriteOperation op;
  op.omap_rm_keys(keys);
  int r = account_->Operate(account_->index_io(), Oid(n), &op);
  if (r < 0 && r != -ENOENT) return Status::FromRados(r, "remove keys of " + Oid(n));
  return Status::OK();
}

void IndexShards::RemoveAll(uint32_t count) {
  for (uint32_t n = 0; n < count; n++) {
    librados::ObjectWriteOperation op;
    op.remove();
    (void)account_->Operate(account_->index_io(), Oid(n), &op);
  }
}

}  // namespace rbd
