#include "wire.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace rbd::remote {

void Writer::U16(uint16_t v) {
  uint8_t b[2] = {static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8)};
  Raw(b, 2);
}

void Writer::U32(uint32_t v) {
  uint8_t b[4];
  for (int i = 0; i < 4; i++) b[i] = static_cast<uint8_t>(v >> (8 * i));
  Raw(b, 4);
}

void Writer::U64(uint64_t v) {
  uint8_t b[8];
  for (int i = 0; i < 8; i++) b[i] = static_cast<uint8_t>(v >> (8 * i));
  Raw(b, 8);
}

void Writer::Bytes(const void* data, size_t size) {
  U64(size);
  Raw(data, size);
}

void Writer::String(const char* s) {
  U8(s != nullptr);
  if (s != nullptr) Bytes(s, std::strlen(s));
}

void Writer::Strings(const char* const* s, size_t count) {
  U32(static_cast<uint32_t>(count));
  for (size_t i = 0; i < count; i++) Bytes(s[i], std::strlen(s[i]));
}

void Writer::Uids(const uint32_t* uids, size_t count) {
  U32(static_cast<uint32_t>(count));
  for (size_t i = 0; i < count; i++) U32(uids[i]);
}

bool Reader::Take(void* out, size_t n) {
  if (failed_ || data_.size() < n) {
    failed_ = true;
    std::memset(out, 0, n);
    return false;
  }
  std::memcpy(out, data_.data(), n);
  data_.remove_prefix(n);
  return true;
}

uint8_t Reader::U8() {
  uint8_t v;
  Take(&v, 1);
  return v;
}

uint16_t Reader::U16() {
  uint8_t b[2];
  Take(b, 2);
  return static_cast<uint16_t>(b[0] | b[1] << 8);
}

uint32_t Reader::U32() {
  uint8_t b[4];
  Take(b, 4);
  uint32_t v = 0;
  for (int i = 3; i >= 0; i--) v = v << 8 | b[i];
  return v;
}

uint64_t Reader::U64() {
  uint8_t b[8];
  Take(b, 8);
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | b[i];
  return v;
}

void Reader::Guid(uint8_t guid_r[RBD_GUID_SIZE]) { Take(guid_r, RBD_GUID_SIZE); }

std::string_view Reader::Bytes() {
  uint64_t n = U64();
  if (failed_ || data_.size() < n) {
    failed_ = true;
    return {};
  }
  std::string_view out = data_.substr(0, n);
  data_.remove_prefix(n);
  return out;
}

const char* Reader::String(std::vector<std::string>* keep) {
  if (U8() == 0) return nullptr;
  keep->emplace_back(Bytes());
  return keep->back().c_str();
}

std::vector<std::string> Reader::Strings() {
  uint32_t n = U32();
  std::vector<std::string> out;
  if (n > data_.size()) failed_ = true;
  for (uint32_t i = 0; i < n && !failed_; i++) out.emplace_back(Bytes());
  return out;
}

std::vector<uint32_t> Reader::Uids() {
  uint32_t n = U32();
  std::vector<uint32_t> out;
  if (n > data_.size() / 4) {
    failed_ = true;
    return out;
  }
  out.reserve(n);
  for (uint32_t i = 0; i < n; i++) out.push_back(U32());
  return out;
}

namespace {

// Writes all of `iov` (the first sendmsg carrying `fd`), retrying on
// short writes and EINTR.
int SendAll(int sock, struct iovec* iov, int iovcnt, int fd) {
  while (iovcnt > 0) {
    struct msghdr msg {};
    msg.msg_iov = iov;
    msg.msg_iovlen = iovcnt;
    char control[CMSG_SPACE(sizeof(int))];
    if (fd >= 0) {
      std::memset(control, 0, sizeof(control));
      msg.msg_control = control;
      msg.msg_controllen = sizeof(control);
      struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    fd = -1;
    while (iovcnt > 0 && static_cast<size_t>(n) >= iov->iov_len) {
      n -= static_cast<ssize_t>(iov->iov_len);
      iov++;
      iovcnt--;
    }
    if (iovcnt > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + n;
      iov->iov_len -= static_cast<size_t>(n);
    }
  }
  return 0;
}

// Reads exactly `size` bytes; keeps the first descriptor that arrives.
int ReceiveAll(int sock, char* out, size_t size, int* fd_r, int timeout_ms) {
  while (size > 0) {
    if (timeout_ms >= 0) {
      struct pollfd p {
        sock, POLLIN, 0
      };
      int r = poll(&p, 1, timeout_ms);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return -errno;
      if (r == 0) return -ETIMEDOUT;
    }
    struct iovec iov {
      out, size
    };
    struct msghdr msg {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    char control[CMSG_SPACE(sizeof(int))];
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) return -ECONNRESET;
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      int fd;
      std::memcpy(&fd, CMSG_DATA(c), sizeof(int));
      if (fd_r != nullptr && *fd_r < 0)
        *fd_r = fd;
      else
        close(fd);
    }
    out += n;
    size -= static_cast<size_t>(n);
  }
  return 0;
}

}  // namespace

int SendFrame(int sock, std::initializer_list<std::string_view> parts, int fd) {
  size_t size = 0;
  for (std::string_view part : parts) size += part.size();
  if (size > kMaxFrame) return -EMSGSIZE;
  uint8_t len[4];
  for (int i = 0; i < 4; i++) len[i] = static_cast<uint8_t>(size >> (8 * i));
  std::vector<struct iovec> iov{{len, 4}};
  for (std::string_view part : parts) iov.push_back({const_cast<char*>(part.data()), part.size()});
  return SendAll(sock, iov.data(), static_cast<int>(iov.size()), fd);
}

int ReceiveFrame(int sock, std::string* body, int* fd_r, int timeout_ms) {
  if (fd_r != nullptr) *fd_r = -1;
  uint8_t len[4];
  int r = ReceiveAll(sock, reinterpret_cast<char*>(len), 4, fd_r, timeout_ms);
  if (r < 0) return r;
  uint32_t size = static_cast<uint32_t>(len[0] | len[1] << 8 | len[2] << 16) | static_cast<uint32_t>(len[3])
                                                                                   << 24;
  if (size > kMaxFrame) return -EMSGSIZE;
  body->resize(size);
  return ReceiveAll(sock, body->data(), size, fd_r, timeout_ms);
}

void PutStatus(Writer& w, rbd_code code, const rbd_error& err) {
  w.U32(code);
  if (code != RBD_OK) w.String(err.message);
}

rbd_code GetStatus(Reader& r, rbd_error* err) {
  auto code = static_cast<rbd_code>(r.U32());
  if (code == RBD_OK) return code;
  std::vector<std::string> keep;
  const char* message = r.String(&keep);
  if (err != nullptr) {
    err->code = code;
    std::snprintf(err->message, sizeof(err->message), "%s", message != nullptr ? message : "");
  }
  return code;
}

}  // namespace rbd::remote
