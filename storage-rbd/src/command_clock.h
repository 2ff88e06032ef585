// CommandClock: when the RADOS waits of a caller's current command must
// end. Every command has ONE deadline, not one per RADOS op
// (doc/design.md, "Unknown outcomes and command deadlines"): the clock
// points at the wall-clock time the caller's current command began, kept
// by the caller and read before every op on the caller's thread, and the
// waits end at that time plus rbd_op_timeout. Without a clock
// (nullptr: doveadm, whose commands may legitimately run long) every op
// gets rbd_op_timeout of its own.
#ifndef STORAGE_RBD_COMMAND_CLOCK_H_
#define STORAGE_RBD_COMMAND_CLOCK_H_

#include <sys/time.h>

#include <chrono>

#include "aio.h"

namespace rbd {

class CommandClock {
 public:
  CommandClock(const struct timeval* command_started, std::chrono::milliseconds timeout)
      : command_started_(command_started), timeout_(timeout) {}

  Deadline deadline() const;
  // What the clock reads, for another object of the same command.
  const struct timeval* command_started() const { return command_started_; }
  // Which command runs now: the time it began, or {0, 0} without a clock.
  struct timeval began() const {
    return command_started_ != nullptr ? *command_started_ : timeval{};
  }

 private:
  const struct timeval* command_started_;
  std::chrono::milliseconds timeout_;
};

}  // namespace rbd

#endif  // STORAGE_RBD_COMMAND_CLOCK_H_
