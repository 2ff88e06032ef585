// Cluster: the process's librados connection.
//
// One connection per (ceph.conf, cephx user, timeouts), shared by every user
// the process serves and kept until the process exits: a connection costs
// ~12 threads, ~25 MB RSS and 12-19 ms (doc/design.md). It connects lazily on first use, and a failed
// connect is retried by the next use, so a process that started while the
// cluster was away serves again once it returns.
#ifndef STORAGE_RBD_CLUSTER_H_
#define STORAGE_RBD_CLUSTER_H_

#include <memory>
#include <mutex>
#include <rados/librados.hpp>
#include <set>
#include <string>
#include <vector>

#include "aio.h"
#include "config.h"
#include "name_hints.h"
#include "status.h"

namespace rbd {

class Cluster {
 public:
  // Returns the shared connection for `config`'s conf file, cephx user and
  // op timeout (Config::ConnectionKey), creating it unconnected. Only those
  // settings belong to the connection; callers keep their own Config for
  // the rest (see Account).
  static std::shared_ptr<Cluster> Get(const Config& config);

  // Drops the process's references to every connection, so each shuts
  // down once its last handle is closed. For process exit: librados
  // threads still running when exit() destroys libceph-common's globals
  // crash the process.
  static void ShutdownAll();

  explicit Cluster(const Config& config);
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  // Connects if not connected. Thread-safe.
  Status Connect();

  // Opens an I/O context on `pool` (connecting first). `setting` names the
  // dovecot.conf setting the pool came from, for the error message.
  Status OpenIoCtx(const std::string& pool, const char* setting, librados::IoCtx* io);

  const Config& config() const { return config_; }

  // A pool an account uses: its I/O context (namespace set) and the
  // dovecot.conf setting it came from, for messages.
  struct PoolUse {
    librados::IoCtx* io;
    const char* setting;
  };
  // Checks that the key may read and write each pool in its namespace: a
  // stat and a create+remove (one op, so the object never exists) of one
  // object, all in flight at once. Once per pool and namespace for the
  // process: without it a key lacking caps on the body pool fails only at
  // the first message too large to inline, with a bare "Operation not
  // permitted" naming neither pool nor setting. Permission names the
  // setting, pool, namespace and cephx user. A probe still unanswered at
  // `until` is cancelled: Unavailable, and checked again at the next open.
  Status CheckAccess(const std::vector<PoolUse>& pools, Deadline until);

  // Invalid, naming rbd_namespace, if RADOS cannot hold `ns` (longer than
  // osd_max_object_namespace_len); every op in it would fail with
  // ENAMETOOLONG ("File name too long").
  Status CheckNamespace(const std::string& ns);

  // How long a notify waits for watchers' acks. Nobody waits on it.
  static constexpr uint64_t kNotifyTimeoutMs = 5000;
  // Sends a notify on `oid` without waiting for the watchers' acks. Each
  // in-flight notify holds its own reference to the I/O context: librados
  // uses it until the notify completes, which can be after the caller has
  // closed the user. Completed notifies are reaped by later calls on the
  // caller's thread (no callback runs our code on a librados thread); the
  // destructor waits for the rest, bounded by the notify timeout.
  void Notify(const librados::IoCtx& io, const std::string& oid, const std::string& payload);

  // Names looked up through this connection (NameHints).
  NameHints& name_hints() { return name_hints_; }

 private:
  Status ConnectLocked();
  // Waits until librados has run every callback it queued for this
  // connection's in-flight notifies and watches; for the destructor, which
  // shuts librados down next.
  void Drain();
  Status DescribeConnectError(int r);

  const Config config_;
  std::mutex mu_;
  std::unique_ptr<librados::Rados> rados_;
  bool connected_ = false;

  // Pool name and namespace pairs CheckAccess() found usable.
  std::set<std::pair<std::string, std::string>> accessible_;

  struct InFlightNotify;
  std::mutex notify_mu_;
  std::vector<std::unique_ptr<InFlightNotify>> notifies_;

  NameHints name_hints_;
};

}  // namespace rbd

#endif  // STORAGE_RBD_CLUSTER_H_
