// Status: the result of every fallible call in the core.
//
// The codes mirror rbd_code in rbd-storage.h one to one, so the C ABI
// converts a Status without a table. Exceptions never leave the core: the
// ABI layer turns any that escape into Code::kIo (see abi.cc).
#ifndef STORAGE_RBD_STATUS_H_
#define STORAGE_RBD_STATUS_H_

#include <string>
#include <string_view>

namespace rbd {

enum class Code {
  kOk = 0,
  kNotFound,
  kExists,
  kUnavailable,
  kConflict,
  kCorrupt,
  kInvalid,
  kPermission,
  kResync,
  kBusy,
  kIo,
  kUnknown,
};

class Status {
 public:
  Status() = default;

  static Status OK() { return Status(); }
  static Status NotFound(std::string msg) { return {Code::kNotFound, std::move(msg)}; }
  static Status Exists(std::string msg) { return {Code::kExists, std::move(msg)}; }
  static Status Unavailable(std::string msg) { return {Code::kUnavailable, std::move(msg)}; }
  static Status Conflict(std::string msg) { return {Code::kConflict, std::move(msg)}; }
  static Status Corrupt(std::string msg) { return {Code::kCorrupt, std::move(msg)}; }
  static Status Invalid(std::string msg) { return {Code::kInvalid, std::move(msg)}; }
  static Status Permission(std::string msg) { return {Code::kPermission, std::move(msg)}; }
  static Status Resync(std::string msg) { return {Code::kResync, std::move(msg)}; }
  static Status Busy(std::string msg) { return {Code::kBusy, std::move(msg)}; }
  static Status Io(std::string msg) { return {Code::kIo, std::move(msg)}; }
  static Status Unknown(std::string msg) { return {Code::kUnknown, std::move(msg)}; }

  // Maps a negative librados/errno result to a Status. `what` names the
  // operation and object ("append to i.0a1b..."). Timeouts, a lost
  // connection and a full cluster are kUnavailable: the caller must report
  // a temporary failure, never "does not exist".
  static Status FromRados(int r, std::string_view what);
  // The same for the result of a write: a timeout or a lost connection is
  // kUnknown, since the write may still be applied (doc/design.md,
  // "Unknown outcomes and command deadlines").
  static Status FromRadosWrite(int r, std::string_view what);

  bool ok() const { return code_ == Code::kOk; }
  bool IsNotFound() const { return code_ == Code::kNotFound; }
  bool IsUnknown() const { return code_ == Code::kUnknown; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  Status(Code code, std::string msg) : code_(code), message_(std::move(msg)) {}

  Code code_ = Code::kOk;
  std::string message_;
};

}  // namespace rbd

#endif  // STORAGE_RBD_STATUS_H_
