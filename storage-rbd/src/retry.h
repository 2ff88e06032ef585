// RetryPolicy: backoff for the optimistic guarded ops (doc/design.md, Consistency).
//
// A guarded op that loses the race (-ECANCELED) re-reads and tries again.
// Writers to one mailbox must not retry in lock step, so the delay is
// exponential with full jitter, capped; the whole loop is bounded by the
// command's deadline (Account::deadline) so a hot mailbox degrades to a
// temporary failure, never a hang, and never a late answer.
#ifndef STORAGE_RBD_RETRY_H_
#define STORAGE_RBD_RETRY_H_

#include <chrono>
#include <cstdint>
#include <random>

namespace rbd {

class RetryPolicy {
 public:
  using Clock = std::chrono::steady_clock;

  RetryPolicy(Clock::time_point deadline, std::chrono::microseconds base_delay,
              std::chrono::microseconds max_delay, uint64_t seed);
  explicit RetryPolicy(Clock::time_point deadline);

  // The delay before attempt `attempt` (1 = the first retry): a uniform
  // draw from [0, min(max_delay, base_delay * 2^(attempt-1))].
  std::chrono::microseconds Delay(unsigned attempt);
  // The upper bound Delay() draws from, for tests and logs.
  std::chrono::microseconds Ceiling(unsigned attempt) const;
  // True while another attempt can start before the deadline.
  bool HasTime(Clock::time_point now) const;
  // Sleeps Delay(attempt) unless that would cross the deadline; returns
  // false when the time is spent.
  bool Backoff(unsigned attempt);

 private:
  Clock::time_point deadline_;
  std::chrono::microseconds base_delay_;
  std::chrono::microseconds max_delay_;
  std::mt19937_64 rng_;
};

}  // namespace rbd

#endif  // STORAGE_RBD_RETRY_H_
