// What each RADOS op of a user's commands cost, kept until the caller
// drains it: the plugin turns the records into Dovecot events
// (rbd_request_finished), so that metrics and `doveadm stats dump` show
// RADOS latency and errors per operation. The core only records; it never
// calls back.
#ifndef STORAGE_RBD_OP_LOG_H_
#define STORAGE_RBD_OP_LOG_H_

#include <chrono>
#include <cstdint>
#include <string_view>
#include <vector>

#include "keys.h"

namespace rbd {

enum class OpType { kRead, kWrite };

struct OpRecord {
  OpType type;
  keys::ObjectKind object;
  uint64_t bytes;  // body bytes written or read; 0 for index ops
  int result;      // the RADOS result: 0, or -errno (-ETIMEDOUT at the deadline)
  std::chrono::microseconds latency;
};

// Not thread-safe, like the Account that owns it: ops are recorded on the
// calling thread once they are waited for.
class OpLog {
 public:
  using Clock = std::chrono::steady_clock;

  void Add(OpType type, std::string_view oid, uint64_t bytes, int result, Clock::time_point issued);
  // The records since the last call, oldest first; *dropped: how many
  // more there were that nobody drained in time (see kCapacity).
  std::vector<OpRecord> Drain(uint64_t* dropped);

 private:
  // A caller that never drains (doveadm's long jobs) keeps at most this
  // many; the rest are only counted.
  static constexpr size_t kCapacity = 4096;

  std::vector<OpRecord> records_;
  uint64_t dropped_ = 0;
};

}  // namespace rbd

#endif  // STORAGE_RBD_OP_LOG_H_
