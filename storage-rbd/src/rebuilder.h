// Rebuilder: `doveadm rbd rebuild` (and `doveadm force-resync`), for lost
// index objects.
//
// Every stored body keeps, in its "meta" xattr, the GUID of the mailbox it
// was first saved to and its dates (doc/design.md). A body no record
// references whose first mailbox has no index object any more belongs to a
// lost index: the Rebuilder recreates that index (a new UIDVALIDITY, as the
// old UIDs are gone) under the mailbox's listed name, or under
// "Recovered/<guid>" when the mailbox list lost it too, and appends one
// record per body in save order (to the second: the metadata keeps no
// finer time). What only the index held is lost with it:
// flags, keywords, and the bodies carried inline (rbd_inline_max; set it to
// 0 where that matters more than append speed). Bodies whose mailbox index
// still exists are never adopted: they are leftovers for gc, and an
// expunged message must not come back.
#ifndef STORAGE_RBD_REBUILDER_H_
#define STORAGE_RBD_REBUILDER_H_

#include <cstdint>

#include "account.h"
#include "status.h"

namespace rbd {

struct RebuildStats {
  uint64_t mailboxes_recreated = 0;
  uint64_t messages_recovered = 0;
};

class Rebuilder {
 public:
  explicit Rebuilder(Account* account) : account_(account) {}

  // Runs under the user's "gc" lease, so gc cannot reclaim the bodies
  // being adopted; Busy while gc runs.
  Status Run(RebuildStats* stats);

 private:
  Account* account_;
};

}  // namespace rbd

#endif  // STORAGE_RBD_REBUILDER_H_
