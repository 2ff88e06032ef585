// UnsettledChanges: the changes a user's commands were answered "failed"
// for while the cluster could not say whether they took effect.
//
// A write whose outcome is still unknown at the command's deadline (an OSD
// stalled, or the cluster stopped, right after it may have applied the op)
// is answered NO [UNAVAILABLE], yet the cluster may apply it afterwards: a
// stalled replica holds the commit back until peering, a cluster stopped
// after the op was journalled replays it when it comes back. No RADOS guard
// can take that back once the primary has executed the op. So the account
// keeps what each such change did, and the next op on that mailbox (or the
// account's close) reads whether it took effect; if it did, the change is
// undone with a new guarded op, so that the NO becomes true
// (MailboxIndex::Settle, doc/design.md "Unknown outcomes"). What the
// cluster still cannot tell when the account closes is handed to the
// caller (encoded, record_codec.h), whose next process adds it back.
#ifndef STORAGE_RBD_UNSETTLED_H_
#define STORAGE_RBD_UNSETTLED_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "guid.h"

namespace rbd {

// Plain bytes, not bufferlists, so that record_codec.h can encode it
// without librados.
struct UnsettledChange {
  Guid mailbox;
  uint64_t modseq = 0;             // the MODSEQ the change would have taken
  std::string state;               // the state xattr it wrote
  std::string entry;               // its change-log entry, `c.<modseq>`
  std::vector<uint32_t> appended;  // undone by expunging them
  // Records as they were before the change rewrote them (`u.<uid>` keys):
  // undone by restoring their flags and keywords where the change is still
  // the last one to have touched them.
  std::map<std::string, std::string> before;
};

// What became of an unsettled change.
struct Settlement {
  enum class Outcome {
    kNotApplied,  // it never took effect: the NO was true
    kUndone,      // it took effect after the NO and was undone
    kUnchecked,   // the account closed before the cluster could tell
    kKept,        // handed to the caller to keep for a later process
  };
  Guid mailbox;
  uint64_t modseq = 0;
  Outcome outcome = Outcome::kUnchecked;
};

// Not thread-safe, like the Account that owns it.
class UnsettledChanges {
 public:
  void Add(UnsettledChange change) { changes_.push_back(std::move(change)); }
  bool empty() const { return changes_.empty(); }
  bool Has(const Guid& mailbox) const;
  // Removes and returns those of `mailbox`, oldest first.
  std::vector<UnsettledChange> Take(const Guid& mailbox);
  // Removes and returns all, oldest first.
  std::vector<UnsettledChange> TakeAll();
  // The mailboxes with changes still unsettled.
  std::vector<Guid> Mailboxes() const;

  void Report(const UnsettledChange& change, Settlement::Outcome outcome) {
    settled_.push_back({change.mailbox, change.modseq, outcome});
  }
  // The settlements since the last call, oldest first, for the caller's log.
  std::vector<Settlement> Drain();

 private:
  std::vector<UnsettledChange> changes_;
  std::vector<Settlement> settled_;
};

}  // namespace rbd

#endif  // STORAGE_RBD_UNSETTLED_H_
