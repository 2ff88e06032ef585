#include "cluster.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <map>
#include <sstream>

#include "aio.h"

namespace rbd {

namespace {

std::mutex registry_mu;
// Strong references: a process keeps its connections for its whole life, so
// the next user it serves (imap with service_count > 1, LMTP, doveadm -A)
// does not pay ~20 ms and ~12 threads to reconnect. Released only by
// ShutdownAll(); never by a static destructor, which would run after
// libceph-common's own and crash its messenger threads.
std::map<std::string, std::shared_ptr<Cluster>>& Registry() {
  static auto* registry = new std::map<std::string, std::shared_ptr<Cluster>>;
  return *registry;
}

std::string Seconds(uint32_t ms) {
  std::ostringstream s;
  s << ms / 1000.0;
  return s.str();
}

}  // namespace

std::shared_ptr<Cluster> Cluster::Get(const Config& config) {
  std::lock_guard<std::mutex> lock(registry_mu);
  std::shared_ptr<Cluster>& slot = Registry()[config.ConnectionKey()];
  if (!slot) slot = std::make_shared<Cluster>(config);
  return slot;
}

void Cluster::ShutdownAll() {
  std::map<std::string, std::shared_ptr<Cluster>> released;
  {
    std::lock_guard<std::mutex> lock(registry_mu);
    released.swap(Registry());
  }
}

Cluster::Cluster(const Config& config) : config_(config) {}

struct Cluster::InFlightNotify {
  librados::IoCtx io;
  librados::bufferlist payload;
  librados::bufferlist reply;
  AioCompletionPtr completion;
};

Cluster::~Cluster() {
  if (!rados_) return;
  Drain();
  rados_->shutdown();
}

void Cluster::Drain() {
  // A notify completes once every watcher acked or timed out.
  for (auto& n : notifies_) n->completion->wait_for_complete();
  notifies_.clear();
  if (!connected_) return;
  // A notify's completion is signalled BEFORE librados has run the
  // handler it queued to cancel the notify's linger op (IoCtxImpl.cc,
  // C_aio_linger_Complete defers it on the client's finish strand). Run
  // by a librados thread while shutdown() tears the objecter down, that
  // handler crashed imap processes at exit. The strand runs handlers in
  // order, so a completion callback queued on it now (aio_watch_flush,
  // which first flushes the watch callbacks too) runs after every such
  // handler: once it has run, librados has nothing of ours left to call.
  struct Flushed {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
  } flushed;
  auto callback = [](librados::completion_t, void* arg) {
    auto* f = static_cast<Flushed*>(arg);
    // Notified under the lock: the waiter cannot return (and free `f`)
    // before this thread is done with it.
    std::lock_guard<std::mutex> lock(f->mu);
    f->done = true;
    f->cv.notify_all();
  };
  AioCompletionPtr completion(librados::Rados::aio_create_completion(&flushed, callback));
  if (rados_->aio_watch_flush(completion.get()) < 0) return;
  std::unique_lock<std::mutex> lock(flushed.mu);
  flushed.cv.wait(lock, [&] { return flushed.done; });
}

void Cluster::Notify(const librados::IoCtx& io, const std::string& oid, const std::string& payload) {
  std::lock_guard<std::mutex> lock(notify_mu_);
  notifies_.erase(std::remove_if(notifies_.begin(), notifies_.end(),
                                 [](const auto& n) { return n->completion->is_complete(); }),
                  notifies_.end());
  auto n = std::make_unique<InFlightNotify>();
  n->io = io;
  n->payload.append(payload);
  n->completion = NewAioCompletion();
  // A notify that cannot be queued is dropped: watchers fall back to polling.
  if (n->io.aio_notify(oid, n->completion.get(), n->payload, kNotifyTimeoutMs, &n->reply) == 0)
    notifies_.push_back(std::move(n));
}

Status Cluster::Connect() {
  std::lock_guard<std::mutex> lock(mu_);
  return ConnectLocked();
}

Status Cluster::ConnectLocked() {
  if (connected_) return Status::OK();
  if (access(config_.ceph_conf.c_str(), R_OK) != 0) {
    return Status::Invalid("rbd_ceph_conf: cannot read " + config_.ceph_conf + ": " + std::strerror(errno));
  }
  // A failed librados instance cannot connect again: start each attempt
  // from a fresh one.
  if (rados_) rados_->shutdown();
  rados_ = std::make_unique<librados::Rados>();
  std::string name = "client." + config_.ceph_user;
  // Ceph's logger makes stderr non-blocking when it is a pipe, and with it
  // stdout when both are one pipe (`doveadm ... 2>&1 | less`): Dovecot
  // then loses the output a slow reader did not take in time. Keep the
  // caller's mode; a client logs to stderr only on errors.
  const int stderr_flags = fcntl(STDERR_FILENO, F_GETFL);
  int r = rados_->init2(name.c_str(), "ceph", 0);
  if (stderr_flags >= 0) fcntl(STDERR_FILENO, F_SETFL, stderr_flags);
  if (r < 0) return Status::FromRados(r, "rbd_ceph_user: cannot initialise " + name);
  r = rados_->conf_read_file(config_.ceph_conf.c_str());
  if (r < 0) return Status::FromRados(r, "rbd_ceph_conf: cannot parse " + config_.ceph_conf);
  // librados waits forever by default; every wait is bounded so an
  // unreachable cluster is a temporary failure, not a hang. An OSD op gets
  // the op timeout (and the command deadline, Account::Operate). The MON
  // waits of a first use come one after the other before any op and
  // outside the deadline's reach: the connect, then the first osdmap (at
  // the first pool lookup). Each gets half, so that together they fit in
  // one op timeout: a session that starts while the MONs stop would wait
  // for both in full (9 s against a 5 s timeout, found by the checker).
  //
  // The node's service keeps its client for as long as it runs, through
  // OSD restarts. An OSD that came back at a new address is reached only
  // once the client has a newer osdmap, and librados asks the MONs for one
  // when an op has waited objecter_timeout (10 s by default, checked every
  // objecter_tick_interval, 5 s): past the op timeout. A quarter of it, on
  // a 1 s tick, leaves the resent op most of its time.
  const std::string osd_timeout = Seconds(config_.op_timeout_ms);
  const std::string mon_timeout = std::to_string(std::max<uint32_t>(1, config_.op_timeout_ms / 2000));
  const std::string laggy_after = std::to_string(std::max<uint32_t>(1, config_.op_timeout_ms / 4000));
  for (const auto& [option, value] : {std::pair{"rados_osd_op_timeout", osd_timeout},
                                      {"rados_mon_op_timeout", mon_timeout},
                                      {"client_mount_timeout", mon_timeout},
                                      {"objecter_timeout", laggy_after},
                                      {"objecter_tick_interval", std::string("1")}}) {
    r = rados_->conf_set(option, value.c_str());
    if (r < 0) return Status::FromRados(r, std::string("rbd_op_timeout: cannot set ") + option);
  }
  r = rados_->connect();
  if (r < 0) return DescribeConnectError(r);
  connected_ = true;
  return Status::OK();
}

Status Cluster::DescribeConnectError(int r) {
  const std::string who = "client." + config_.ceph_user;
  if (r == -ENOENT || r == -EACCES || r == -EPERM || r == -EINVAL || r == -EIO) {
    // librados reports a missing or unreadable keyring as a bare ENOENT,
    // and a key it cannot decode as EIO; name the keyring so a permission
    // problem of the mail uid or a damaged file is obvious.
    std::string keyrings;
    rados_->conf_get("keyring", keyrings);
    std::string detail;
    std::istringstream paths(keyrings);
    std::string path;
    while (std::getline(paths, path, ',')) {
      while (!path.empty() && path.front() == ' ') path.erase(0, 1);
      if (path.empty()) continue;
      if (access(path.c_str(), R_OK) == 0) {
        detail = "keyring " + path +
                 (r == -EIO ? " is readable, but its key for " + who + " cannot be decoded (malformed key?)"
                            : " is readable, but the cluster refused the key");
        break;
      }
      if (errno != ENOENT) {
        detail = "keyring " + path + " is not readable by uid " + std::to_string(getuid()) + ": " +
                 std::strerror(errno);
        break;
      }
    }
    if (detail.empty()) detail = "no keyring found (looked in: " + keyrings + ")";
    return Status::Permission("cannot authenticate to Ceph as " + who + ": " + detail);
  }
  return Status::FromRados(r, "cannot connect to Ceph as " + who + " using " + config_.ceph_conf);
}

Status Cluster::OpenIoCtx(const std::string& pool, const char* setting, librados::IoCtx* io) {
  std::lock_guard<std::mutex> lock(mu_);
  Status s = ConnectLocked();
  if (!s.ok()) return s;
  int r = rados_->ioctx_create(pool.c_str(), *io);
  if (r == -ENOENT) return Status::Invalid(std::string(setting) + ": pool '" + pool + "' does not exist");
  if (r < 0) return Status::FromRados(r, std::string(setting) + ": cannot open pool '" + pool + "'");
  return Status::OK();
}

Status Cluster::CheckNamespace(const std::string& ns) {
  size_t max = 256;  // Ceph's default osd_max_object_namespace_len
  {
    std::lock_guard<std::mutex> lock(mu_);
    Status s = ConnectLocked();
    if (!s.ok()) return s;
    std::string value;
    if (rados_->conf_get("osd_max_object_namespace_len", value) == 0) max = std::stoul(value);
  }
  if (ns.size() <= max) return Status::OK();
  return Status::Invalid("rbd_namespace: the namespace (by default the username) is " +
                         std::to_string(ns.size()) + " bytes long, RADOS allows at most " +
                         std::to_string(max) + " (osd_max_object_namespace_len): '" + ns.substr(0, 40) +
                         "...'");
}

Status Cluster::CheckAccess(const std::vector<PoolUse>& pools, Deadline until) {
  // An object name no key scheme uses (keys.h).
  static constexpr char kProbe[] = "rbd.probe";
  struct Probe {
    const PoolUse* use;
    std::pair<std::string, std::string> where;
    AioCompletionPtr stat, write;
    uint64_t size = 0;
    time_t mtime = 0;
    // The results; an op librados would not even queue has its error here
    // and no completion to wait for.
    int read = 0, written = 0;
  };
  std::vector<Probe> probes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const PoolUse& use : pools) {
      std::pair<std::string, std::string> where{use.io->get_pool_name(), use.io->get_namespace()};
      if (accessible_.count(where)) continue;
      bool duplicate = false;
      for (const Probe& p : probes) duplicate |= p.where == where;
      if (!duplicate) probes.push_back(Probe{&use, std::move(where), nullptr, nullptr});
    }
  }
  AioWaiter waiter;
  for (Probe& p : probes) {
    p.stat = waiter.NewCompletion();
    p.read = p.use->io->aio_stat(kProbe, p.stat.get(), &p.size, &p.mtime);
    if (p.read < 0) p.stat.reset();
    librados::ObjectWriteOperation op;
    op.create(false);
    op.remove();
    p.write = waiter.NewCompletion();
    p.written = p.use->io->aio_operate(kProbe, p.write.get(), &op);
    if (p.written < 0) p.write.reset();
  }
  Status result = Status::OK();
  for (Probe& p : probes) {
    // Both are waited for even after a failure: the waiter must outlive
    // every callback of the completions it made.
    const int read = p.stat ? waiter.Wait(*p.use->io, p.stat, until) : p.read;
    const int write = p.write ? waiter.Wait(*p.use->io, p.write, until) : p.written;
    if (!result.ok()) continue;
    const std::string where =
        std::string(p.use->setting) + ": pool '" + p.where.first + "', namespace '" + p.where.second + "'";
    const std::string key = "client." + config_.ceph_user;
    if (read == -EPERM || read == -EACCES || write == -EPERM || write == -EACCES) {
      result = Status::Permission(where + ": the cephx key " + key + " may not " +
                                  (read == -EPERM || read == -EACCES ? "read" : "write") +
                                  " there (Operation not permitted); its OSD caps need 'allow rw pool=" +
                                  p.where.first + "' (the index pool: rwx)");
    } else if (read < 0 && read != -ENOENT) {
      result = Status::FromRados(read, where + ": cannot read");
    } else if (write < 0) {
      result = Status::FromRados(write, where + ": cannot write");
    } else {
      std::lock_guard<std::mutex> lock(mu_);
      accessible_.insert(p.where);
    }
  }
  return result;
}

}  // namespace rbd
