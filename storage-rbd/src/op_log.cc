#include "op_log.h"

#include <utility>

namespace rbd {

void OpLog::Add(OpType type, std::string_view oid, uint64_t bytes, int result, Clock::time_point issued) {
  if (records_.size() >= kCapacity) {
    dropped_++;
    return;
  }
  records_.push_back(OpRecord{type, keys::ParseObject(oid).kind, bytes, result,
                              std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - issued)});
}

std::vector<OpRecord> OpLog::Drain(uint64_t* dropped) {
  *dropped = std::exchange(dropped_, 0);
  return std::exchange(records_, {});
}

}  // namespace rbd
