// GarbageCollector: reclaims what crashes leave behind (DESIGN.md 4).
//
// The reference counts on bodies can only be too high after a crash, so
// the truth is found by scanning: a body is reclaimable when no record of
// any listed mailbox points at it AND its reference count has not changed
// for the grace period. The grace period protects a COPY or APPEND in
// flight: both touch the reference (AddRef, or the initial write) before
// they publish the record, and the removal itself is guarded by the
// reference bytes gc read, so a reference taken after the scan wins.
#ifndef STORAGE_RBD_GARBAGE_COLLECTOR_H_
#define STORAGE_RBD_GARBAGE_COLLECTOR_H_

#include <cstdint>

#include "account.h"
#include "status.h"

namespace rbd {

struct GcStats {
  uint64_t bodies_scanned = 0;
  uint64_t bodies_reclaimed = 0;
  uint64_t bodies_in_grace = 0;
  uint64_t indexes_reclaimed = 0;
};

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
