#include "command_clock.h"

#include <algorithm>

namespace rbd {

Deadline CommandClock::deadline() const {
  const auto now = std::chrono::steady_clock::now();
  if (command_started_ == nullptr) return now + timeout_;
  struct timeval wall;
  gettimeofday(&wall, nullptr);
  const auto elapsed = std::chrono::seconds(wall.tv_sec - command_started_->tv_sec) +
                       std::chrono::microseconds(wall.tv_usec - command_started_->tv_usec);
  // A clock step must not turn into no time at all or into more than the
  // op timeout.
  return now + std::clamp<std::chrono::steady_clock::duration>(timeout_ - elapsed, {}, timeout_);
}

}  // namespace rbd
