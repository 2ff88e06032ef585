// Rebuilder: `doveadm rbd rebuild` (and `doveadm force-resync`), for lost
// index objects.
//
// Every stored body keeps, in its "meta" xattr, the GUID of the mailbox it
// was first saved to and its dates (doc/design.md). A body that no record
// of any index references, that still counts references, and whose first
// mailbox has no index object any more belongs to a lost index: the
// Rebuilder recreates that index (a new UIDVALIDITY, as the old UIDs are
// gone) under the mailbox's listed name, or under "Recovered/<guid>" when
// the mailbox list lost it too, and appends one record per body in save
// order (to the second: the metadata keeps no finer time). A listed
// mailbox without an index is recreated even when no body is left for it.
// What only the index held is lost with it: flags, keywords, and the
// bodies carried inline (rbd_inline_max; set it to 0 where that matters
// more than append speed). Never adopted: a body some record references
// (copied or moved on before its first mailbox was deleted), a released
// body (an expunge or a delete dropped its last reference), and a body
// whose first mailbox still has its index: an expunged message or a
// deleted mailbox must not come back. The one case it cannot tell apart
// from a lost index is a delete that crashed between removing the index
// and dropping the references (doc/design.md, "Maintenance under live
// traffic").
#ifndef STORAGE_RBD_REBUILDER_H_
#define STORAGE_RBD_REBUILDER_H_

#include <cstdint>
#include <optional>

#include "account.h"
#include "guid.h"
#include "status.h"

namespace rbd {

struct RebuildStats {
  uint64_t mailboxes_recreated = 0;
  uint64_t messages_recovered = 0;
};

class Rebuilder {
 public:
  explicit Rebuilder(Account* account) : account_(account) {}

  // Every lost index of the user. Runs under the user's "gc" lease, so gc
  // cannot reclaim the bodies being adopted; Busy while gc runs.
  Status Run(RebuildStats* stats);
  // Only the index of `mailbox`, and only while a name still lists it
  // (NotFound otherwise: it was deleted, not lost), for a command that
  // found it missing on open.
  Status RunFor(const Guid& mailbox, RebuildStats* stats);

 private:
  Status Rebuild(const std::optional<Guid>& only, RebuildStats* stats);

  Account* account_;
};

}  // namespace rbd

#endif  // STORAGE_RBD_REBUILDER_H_
