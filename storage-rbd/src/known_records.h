// KnownRecords: the records of one mailbox that a MailboxIndex handle has
// read or written, kept current at one state of the mailbox (its
// UIDVALIDITY and HIGHESTMODSEQ) by the handle's own ops and by the change
// log its syncs read.
//
// A STORE or EXPUNGE must plan from the records it changes. When they are
// known at the very state the handle last saw, the op plans from them and
// reads nothing: its guard (the whole state, compared) then holds only if
// no op changed the mailbox since, so the records are the cluster's when
// it applies. Every op that changes a record advances HIGHESTMODSEQ and
// writes a change-log entry; ops that do not (\Recent claims, shard seals,
// counters) leave the records as they are.
//
// Only records named by a handle's ops and their reads are kept, never a
// whole listing, and at most kMaxRecords of them.
#ifndef STORAGE_RBD_KNOWN_RECORDS_H_
#define STORAGE_RBD_KNOWN_RECORDS_H_

#include <cstddef>
#include <cstdint>
#include <unordered_map>

#include "record_codec.h"

namespace rbd {

class KnownRecords {
 public:
  // Whether the records known are those of `state`.
  bool CurrentAt(const MailboxState& state) const;
  // Knows nothing, current at `state`.
  void Reset(const MailboxState& state);
  // Knows nothing, current at no state.
  void Forget();

  // A record as it is at the state the records are current at.
  void Put(const MessageRecord& record);
  // A UID removed, or changed in a way not known.
  void Drop(uint32_t uid);
  // The record of `uid`, or nullptr.
  const MessageRecord* Find(uint32_t uid) const;

  // Now current at `state`: the caller has Put or Dropped every record the
  // ops since changed (its own op), or there were none (a state of the
  // same HIGHESTMODSEQ: a claim, a seal). Another UIDVALIDITY starts over.
  void MoveTo(const MailboxState& state);
  // Moves the records on through the change-log entry of the op at
  // `modseq`. The caller passes every op above the state they are current
  // at, in order (a change log read from at most that MODSEQ); an op at or
  // below it is in them already.
  void Apply(uint64_t modseq, const ChangeEntry& entry);
  // Whether a change log read from `since` up to `state` brings the
  // records to `state` (Apply each op, then MoveTo).
  bool CanFollow(uint64_t since, const MailboxState& state) const;

 private:
  // A handle that touches more forgets all and starts again: a lost record
  // costs one read.
  static constexpr size_t kMaxRecords = 4096;

  bool valid_ = false;
  uint32_t uidvalidity_ = 0;
  uint64_t modseq_ = 0;
  std::unordered_map<uint32_t, MessageRecord> records_;
};

}  // namespace rbd

#endif  // STORAGE_RBD_KNOWN_RECORDS_H_
