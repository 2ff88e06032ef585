#include "known_records.h"

#include <algorithm>
#include <unordered_set>
#include <vector>

namespace rbd {
namespace {

bool InRanges(const std::vector<UidRange>& ranges, uint32_t uid) {
  return std::any_of(ranges.begin(), ranges.end(),
                     [uid](const UidRange& r) { return uid >= r.first && uid <= r.last; });
}

}  // namespace

bool KnownRecords::CurrentAt(const MailboxState& state) const {
  return valid_ && uidvalidity_ == state.uidvalidity && modseq_ == state.highest_modseq;
}

void KnownRecords::Reset(const MailboxState& state) {
  records_.clear();
  valid_ = true;
  uidvalidity_ = state.uidvalidity;
  modseq_ = state.highest_modseq;
}

void KnownRecords::Forget() {
  records_.clear();
  valid_ = false;
}

void KnownRecords::Put(const MessageRecord& record) {
  if (records_.size() >= kMaxRecords && records_.count(record.uid) == 0) records_.clear();
  records_[record.uid] = record;
}

void KnownRecords::Drop(uint32_t uid) { records_.erase(uid); }

const MessageRecord* KnownRecords::Find(uint32_t uid) const {
  auto it = records_.find(uid);
  return it == records_.end() ? nullptr : &it->second;
}

void KnownRecords::MoveTo(const MailboxState& state) {
  if (!valid_ || state.uidvalidity != uidvalidity_) {
    Reset(state);
    return;
  }
  modseq_ = state.highest_modseq;
}

bool KnownRecords::CanFollow(uint64_t since, const MailboxState& state) const {
  return valid_ && uidvalidity_ == state.uidvalidity && since <= modseq_ && modseq_ <= state.highest_modseq;
}

void KnownRecords::Apply(uint64_t modseq, const ChangeEntry& entry) {
  if (!valid_ || modseq <= modseq_) return;
  std::unordered_set<uint32_t> updated;
  for (const FlagState& u : entry.updated) {
    updated.insert(u.uid);
    auto it = records_.find(u.uid);
    if (it == records_.end()) continue;
    it->second.flags = u.flags;
    it->second.keywords = u.keywords;
    it->second.legacy_keyword_ids.clear();
    it->second.modseq = modseq;
  }
  // An append's entry names no range to drop.
  const bool drops = !entry.expunged.empty() || !entry.changed.empty();
  for (auto it = records_.begin(); drops && it != records_.end();) {
    const uint32_t uid = it->first;
    const bool gone =
        InRanges(entry.expunged, uid) || (InRanges(entry.changed, uid) && updated.count(uid) == 0);
    it = gone ? records_.erase(it) : std::next(it);
  }
  for (const MessageRecord& rec : entry.appended) {
    MessageRecord copy = rec;
    copy.modseq = modseq;
    Put(copy);
  }
  modseq_ = modseq;
}

}  // namespace rbd
