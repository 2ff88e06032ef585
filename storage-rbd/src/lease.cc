#include "lease.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>

namespace rbd {

namespace {

std::string MakeCookie() {
  static std::atomic<unsigned> sequence{0};
  char host[256] = "unknown";
  gethostname(host, sizeof(host) - 1);
  return std::string(host) + ":" + std::to_string(getpid()) + ":" + std::to_string(++sequence);
}

}  // namespace

Lease::Lease(librados::IoCtx& io, std::string oid, std::string name, std::chrono::milliseconds duration)
    : oid_(std::move(oid)), name_(std::move(name)), cookie_(MakeCookie()), duration_(duration) {
  io_.dup(io);
}

Status Lease::Acquire(librados::IoCtx& io, const std::string& oid, const std::string& name,
                      std::chrono::milliseconds duration, std::unique_ptr<Lease>* lease) {
  std::unique_ptr<Lease> l(new Lease(io, oid, name, duration));
  int r = l->Lock(0);
  if (r == -EBUSY || r == -EEXIST)
    return Status::Busy("lease " + name + " on " + oid + " is held by another process");
  if (r < 0) return Status::FromRados(r, "lease " + name + " on " + oid);
  l->held_ = true;
  *lease = std::move(l);
  return Status::OK();
}

int Lease::Lock(uint8_t flags) {
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(duration_);
  auto usecs = std::chrono::duration_cast<std::chrono::microseconds>(duration_ - secs);
  struct timeval tv;
  tv.tv_sec = secs.count();
  tv.tv_usec = usecs.count();
  return io_.lock_exclusive(oid_, name_, cookie_, "dovecot-rbd maintenance", &tv, flags);
}

Status Lease::Renew() {
  int r = Lock(LIBRADOS_LOCK_FLAG_MUST_RENEW);
  if (r == -ENOENT || r == -EBUSY) {
    held_ = false;
    return Status::Busy("lease " + name_ + " on " + oid_ + " expired and was lost");
  }
  return r < 0 ? Status::FromRados(r, "renew lease " + name_ + " on " + oid_) : Status::OK();
}

Lease::~Lease() {
  if (held_) io_.unlock(oid_, name_, cookie_);
}

}  // namespace rbd
