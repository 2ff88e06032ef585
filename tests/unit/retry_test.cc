#include "retry.h"

#include <gtest/gtest.h>

#include <set>

namespace rbd {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

TEST(RetryPolicy, CeilingDoublesUpToTheCap) {
  RetryPolicy p(RetryPolicy::Clock::now() + milliseconds(1000), microseconds(500), microseconds(8000), 1);
  EXPECT_EQ(p.Ceiling(1), microseconds(500));
  EXPECT_EQ(p.Ceiling(2), microseconds(1000));
  EXPECT_EQ(p.Ceiling(4), microseconds(4000));
  EXPECT_EQ(p.Ceiling(5), microseconds(8000));
  EXPECT_EQ(p.Ceiling(60), microseconds(8000));  // no overflow at large attempts
}

TEST(RetryPolicy, DelaysAreJitteredWithinTheCeiling) {
  RetryPolicy p(RetryPolicy::Clock::now() + milliseconds(1000), microseconds(500), microseconds(8000), 42);
  std::set<int64_t> seen;
  for (int i = 0; i < 200; i++) {
    auto d = p.Delay(3);
    EXPECT_GE(d.count(), 0);
    EXPECT_LE(d, p.Ceiling(3));
    seen.insert(d.count());
  }
  // Full jitter: writers that lost the same race do not retry in step.
  EXPECT_GT(seen.size(), 50u);
}

TEST(RetryPolicy, DeadlineBoundsTheLoop) {
  auto start = RetryPolicy::Clock::now();
  RetryPolicy p(start + milliseconds(50), microseconds(1000), microseconds(20000), 7);
  unsigned attempts = 0;
  while (p.Backoff(++attempts)) {
  }
  auto elapsed = RetryPolicy::Clock::now() - start;
  EXPECT_LT(elapsed, milliseconds(50));
  EXPECT_GT(attempts, 1u);
  EXPECT_FALSE(p.HasTime(start + milliseconds(50)));
  EXPECT_TRUE(p.HasTime(start + milliseconds(49)));
}

}  // namespace
}  // namespace rbd
