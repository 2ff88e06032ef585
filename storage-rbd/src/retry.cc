#include "retry.h"

#include <algorithm>
#include <random>
#include <thread>

namespace rbd {

RetryPolicy::RetryPolicy(Clock::time_point deadline, std::chrono::microseconds base_delay,
                         std::chrono::microseconds max_delay, uint64_t seed)
    : deadline_(deadline), base_delay_(base_delay), max_delay_(max_delay), rng_(seed) {}

namespace {

// Opening std::random_device per policy showed up in profiles: seed once
// per thread and draw per policy.
uint64_t Seed() {
  static thread_local std::mt19937_64 seeds{std::random_device{}()};
  return seeds();
}

}  // namespace

RetryPolicy::RetryPolicy(Clock::time_point deadline)
    : RetryPolicy(deadline, std::chrono::microseconds(500), std::chrono::milliseconds(50), Seed()) {}

std::chrono::microseconds RetryPolicy::Ceiling(unsigned attempt) const {
  if (attempt == 0) return std::chrono::microseconds(0);
  unsigned shift = std::min(attempt - 1, 30u);
  int64_t base = base_delay_.count();
  int64_t ceiling = base << shift;
  if (ceiling / (int64_t{1} << shift) != base) ceiling = max_delay_.count();
  return std::chrono::microseconds(std::min(ceiling, int64_t{max_delay_.count()}));
}

std::chrono::microseconds RetryPolicy::Delay(unsigned attempt) {
  std::uniform_int_distribution<int64_t> dist(0, Ceiling(attempt).count());
  return std::chrono::microseconds(dist(rng_));
}

bool RetryPolicy::HasTime(Clock::time_point now) const { return now < deadline_; }

bool RetryPolicy::Backoff(unsigned attempt) {
  auto delay = Delay(attempt);
  if (!HasTime(Clock::now() + delay)) return false;
  std::this_thread::sleep_for(delay);
  return true;
}

}  // namespace rbd
