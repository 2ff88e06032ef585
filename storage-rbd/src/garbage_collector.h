// GarbageCollector: the only remover of message bodies.
//
// Expunges and mailbox deletes release bodies, never remove them
// (MessageStore's reference rule), and reference counts can only be too
// high after a crash, so the truth is found by scanning: a body is
// reclaimable when no record of any listed mailbox points at it AND its
// reference count has not changed for the grace period. The grace period
// protects a COPY or APPEND in flight (both touch the reference, AddRef or
// the initial write, before they publish the record) and every session
// that still shows an expunged message and may FETCH it. The removal itself
// is guarded by the reference bytes gc read, so a reference taken after the
// scan wins. Inline bodies of expunged messages go the same way
// (MailboxIndex::ReclaimReleasedBodies), counted with the others.
#ifndef STORAGE_RBD_GARBAGE_COLLECTOR_H_
#define STORAGE_RBD_GARBAGE_COLLECTOR_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "account.h"
#include "guid.h"
#include "status.h"

namespace rbd {

struct GcStats {
  uint64_t bodies_scanned = 0;
  uint64_t bodies_reclaimed = 0;
  uint64_t bodies_in_grace = 0;
  uint64_t indexes_reclaimed = 0;
};

// The chunk objects (`m.<guid>.<n>`, by body GUID) among `objects` whose
// head `m.<guid>` is not among them and none of which changed after
// `cutoff`: what a striped or streamed write that never reached its commit
// point (the head, MessageStore) leaves. A younger chunk is a write in
// flight. gc removes them and check reports them, by this one rule.
std::map<Guid, std::vector<std::string>> HeadlessChunks(librados::IoCtx& io,
                                                        const std::vector<std::string>& objects,
                                                        int64_t cutoff);

class GarbageCollector {
 public:
  explicit GarbageCollector(Account* account) : account_(account) {}

  // Runs one pass under the user's "gc" lease; Busy if another runs.
  Status Run(uint32_t grace_seconds, GcStats* stats);

 private:
  Account* account_;
};

}  // namespace rbd

#endif  // STORAGE_RBD_GARBAGE_COLLECTOR_H_
