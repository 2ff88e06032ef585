// Wire: how the C ABI of rbd-storage.h travels over a unix socket between
// a mail process (the client library) and the node's rbd service, which
// runs the core (doc/service.md).
//
// One connection serves one rbd_user or one rbd_dict_store and everything
// opened under it, and carries one call at a time: the caller blocks, as
// it would on the core itself. A frame is a 32-bit length and that many
// bytes; file descriptors (a watch's eventfd) ride beside a frame as
// SCM_RIGHTS. Integers are little-endian, fixed width; strings carry their
// length and a flag for NULL.
#ifndef REMOTE_WIRE_H_
#define REMOTE_WIRE_H_

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "rbd-storage.h"

namespace rbd::remote {

// Bump with any change to a request or reply: a client and a service of
// different versions refuse each other at the first call.
constexpr uint32_t kProtocolVersion = 4;

// Larger frames are refused: a bug or a stranger on the socket, not a call.
constexpr uint32_t kMaxFrame = 1u << 31;

// Every remote call of the ABI, in the order of rbd-storage.h.
enum class Op : uint16_t {
  kHello = 1,
  kClusterConnect,
  kUserOpen,
  kListMailboxes,
  kLookupMailbox,
  kCreateMailbox,
  kDeleteMailbox,
  kRenameMailbox,
  kSetSubscribed,
  kSetSpecialUse,
  kIndexOpen,
  kIndexOpenName,
  kIndexClose,
  kIndexGetStatus,
  kIndexCountKeys,
  kIndexLastStatus,
  kIndexNamed,
  kIndexGuardName,
  kIndexClaimRecent,
  kIndexKeepWatched,
  kIndexAppend,
  kIndexCopy,
  kIndexUpdateFlags,
  kIndexExpunge,
  kIndexTouch,
  kUserSettle,
  kUserTakeUnsettled,
  kUserAddUnsettled,
  kIndexListRecords,
  kIndexLookupRecords,
  kIndexListAll,
  kIndexChanges,
  kIndexTrimLog,
  kIndexUpdateState,
  kChangeMailboxGuid,
  kIndexReadBody,
  kIndexReadBodies,
  kBodyReaderOpen,
  kBodyReaderRead,
  kBodyReaderFree,
  kBodyWrite,
  kBodyWriterOpen,
  kBodyWriterWrite,
  kBodyWriterFinish,
  kBodyWriterFree,
  kBodyStat,
  kBodyUnref,
  kWatchOpen,
  kWatchOpenList,
  kWatchConsume,
  kWatchClose,
  kWatchCloseLingering,
  kLeaseAcquire,
  kLeaseRenew,
  kLeaseRelease,
  kUserGc,
  kUserCheck,
  kUserListObjects,
  kUserRebuild,
  kDictStoreOpen,
  kDictLookup,
  kDictList,
  kDictCommit,
  kDictAdopt,
  kEnd,
};

// Appends encoded values to a frame body.
class Writer {
 public:
  void U8(uint8_t v) { Raw(&v, 1); }
  void U16(uint16_t v);
  void U32(uint32_t v);
  void U64(uint64_t v);
  void I64(int64_t v) { U64(static_cast<uint64_t>(v)); }
  void Guid(const uint8_t guid[RBD_GUID_SIZE]) { Raw(guid, RBD_GUID_SIZE); }
  void Bytes(const void* data, size_t size);
  // A C string that may be NULL.
  void String(const char* s);
  void Strings(const char* const* s, size_t count);
  void Uids(const uint32_t* uids, size_t count);

  const std::string& data() const { return data_; }
  std::string& data() { return data_; }

 private:
  void Raw(const void* p, size_t n) { data_.append(static_cast<const char*>(p), n); }
  std::string data_;
};

// Reads values back. A short or malformed frame sets failed() and yields
// zeroes and empty strings from then on, so a decoder checks once at the
// end instead of after every field.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}

  uint8_t U8();
  uint16_t U16();
  uint32_t U32();
  uint64_t U64();
  int64_t I64() { return static_cast<int64_t>(U64()); }
  void Guid(uint8_t guid_r[RBD_GUID_SIZE]);
  std::string_view Bytes();
  // A string written by Writer::String: nullptr for NULL. Points into the
  // frame, which outlives it; `keep` stores NUL-terminated copies.
  const char* String(std::vector<std::string>* keep);
  std::vector<std::string> Strings();
  std::vector<uint32_t> Uids();

  bool failed() const { return failed_; }
  size_t remaining() const { return data_.size(); }
  void Fail() { failed_ = true; }
  bool AtEnd() const { return !failed_ && data_.empty(); }

 private:
  bool Take(void* out, size_t n);
  std::string_view data_;
  bool failed_ = false;
};

// Sends one frame of `parts` one after the other (and `fd` beside it when
// >= 0), without joining them first: a part may be a whole message.
// Returns 0 or -errno.
int SendFrame(int sock, std::initializer_list<std::string_view> parts, int fd = -1);
// Receives one frame; *fd_r (when not NULL) gets a descriptor sent beside
// it or -1. Returns 0, -ECONNRESET at a clean end of stream, or -errno.
// `timeout_ms` < 0 waits for ever.
int ReceiveFrame(int sock, std::string* body, int* fd_r, int timeout_ms);

// A reply: what the user's calls left to report (the core's op records,
// with the count of those it dropped, and settlements: the service drains
// them after every call, so that reporting them costs no call of its own),
// the call's rbd_code, its message when not RBD_OK, then the outputs.
void PutStatus(Writer& w, rbd_code code, const rbd_error& err);
rbd_code GetStatus(Reader& r, rbd_error* err);

}  // namespace rbd::remote

#endif  // REMOTE_WIRE_H_
