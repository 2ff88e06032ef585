// Lease: an exclusive, expiring cls_lock on one object (doc/design.md).
//
// Leases serialise only maintenance (gc, rebuild). A
// holder that crashes simply stops renewing and its lease expires: no
// fencing. The cookie names host and pid so `rados lock info` shows who
// holds it. The destructor releases the lease if it is still held.
#ifndef STORAGE_RBD_LEASE_H_
#define STORAGE_RBD_LEASE_H_

#include <chrono>
#include <memory>
#include <rados/librados.hpp>
#include <string>

#include "status.h"

namespace rbd {

class Lease {
 public:
  // Busy while another holder's lease has not expired.
  static Status Acquire(librados::IoCtx& io, const std::string& oid, const std::string& name,
                        std::chrono::milliseconds duration, std::unique_ptr<Lease>* lease);
  ~Lease();
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  // Extends the lease by its duration; Busy when it was lost meanwhile.
  Status Renew();
  const std::string& cookie() const { return cookie_; }

 private:
  Lease(librados::IoCtx& io, std::string oid, std::string name, std::chrono::milliseconds duration);
  int Lock(uint8_t flags);

  librados::IoCtx io_;
  std::string oid_;
  std::string name_;
  std::string cookie_;
  std::chrono::milliseconds duration_;
  bool held_ = false;
};

}  // namespace rbd

#endif  // STORAGE_RBD_LEASE_H_
