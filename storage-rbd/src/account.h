// Account: one user's RADOS namespace in the mail and index pools.
//
// All of a user's objects live in one namespace (doc/design.md), so a user
// can be listed, exported or deleted without scanning the pool.
#ifndef STORAGE_RBD_ACCOUNT_H_
#define STORAGE_RBD_ACCOUNT_H_

#include <sys/time.h>

#include <chrono>
#include <map>
#include <memory>
#include <rados/librados.hpp>
#include <set>
#include <string>
#include <vector>

#include "aio.h"
#include "cluster.h"
#include "command_clock.h"
#include "op_log.h"
#include "status.h"
#include "unsettled.h"

namespace rbd {

// Records asked for per omap read. The OSD caps what it returns at
// osd_max_omap_entries_per_request (1024 by default in Pacific) and says
// "more", so the readers loop; raising that OSD setting cuts the round
// trips of a 100k-record listing from ~100 to ~7.
inline constexpr size_t kOmapPage = 16384;

class Account {
 public:
  // `config` is the caller's own: the shared connection only fixes how to
  // reach the cluster, while pools, namespace and size limits may differ
  // between the users one process serves. `command_started`: see
  // deadline(); the access check of a first open already counts against
  // the command's deadline.
  static Status Open(std::shared_ptr<Cluster> cluster, const Config& config, const std::string& ns,
                     const struct timeval* command_started, std::unique_ptr<Account>* account);

  librados::IoCtx& index_io() { return index_io_; }
  librados::IoCtx& mail_io() { return mail_io_; }
  const Config& config() const { return config_; }
  Cluster* cluster() { return cluster_.get(); }
  // For what must keep the connection up after this account is gone.
  std::shared_ptr<Cluster> shared_cluster() const { return cluster_; }
  const std::string& ns() const { return ns_; }
  // Every op a command waited for (Operate, and the body paths that wait
  // for several at once), for the caller's events.
  OpLog& op_log() { return op_log_; }
  // Changes answered as failed whose outcome is still unknown
  // (MailboxIndex::Settle).
  UnsettledChanges& unsettled() { return unsettled_; }
  // Whether the last op sent by Operate() timed out: the cluster is away
  // as far as this account knows.
  bool last_op_timed_out() const { return last_op_timed_out_; }

  // When the current command's RADOS waits must end (CommandClock, from
  // the command clock given to Open()).
  Deadline deadline() const;
  // Which command runs now (CommandClock::began): what it read may stand
  // for the cluster in the rest of that command.
  struct timeval command_began() const {
    return clock_.began();
  }
  // How long past deadline() an unknown outcome may still be resolved by
  // reading (MailboxIndex::Mutate): "rbd_op_timeout + 1 s" for a whole
  // command leaves this much for it, and the rest for what the command
  // does after its last wait and for sending the answer, which on a
  // loaded node took 0.3 s and more (the fault soak saw 9.3 s against 9).
  // One read of a healthy OSD answers in milliseconds.
  static constexpr std::chrono::milliseconds kResolveGrace{400};
  // When a write whose outcome may need resolving (MailboxIndex::Mutate)
  // stops waiting: halfway to deadline(), so that its read-back has the
  // other half. A write cancelled while the cluster is away is never
  // resent, so it cannot be applied when the cluster comes back; one still
  // waiting then is resent and applied late, after a read-back of a few
  // tenths of a second had given up: the fault soak saw APPENDs answered
  // NO across whole-cluster restarts whose messages then appeared. A write
  // that is only slow loses nothing: its read-back, queued behind it on
  // the same object, answers once it is applied.
  Deadline write_deadline() const;

  // One op on `oid`, waited for until deadline() (`until` when given).
  // Returns the RADOS result; -ETIMEDOUT when the deadline passed first,
  // -ETIME for an op not issued because it had passed already. After a
  // write, -ETIMEDOUT means the outcome is unknown; -ETIME never does.
  int Operate(librados::IoCtx& io, const std::string& oid, librados::ObjectWriteOperation* op,
              Deadline until = {});
  int Operate(librados::IoCtx& io, const std::string& oid, librados::ObjectReadOperation* op,
              Deadline until = {});

  // omap values of `oid` in the index pool by key, within deadline().
  int ReadKeys(const std::string& oid, const std::set<std::string>& keys,
               std::map<std::string, librados::bufferlist>* values);

  // Names of the account's objects in one of its pools (a namespace
  // listing: the cost grows with the pool's PG count, not with the pool).
  static Status ListObjects(librados::IoCtx& io, std::vector<std::string>* names);

 private:
  // Records whether an op timed out (last_op_timed_out()); returns `r`.
  int Note(int r);
  Account(std::shared_ptr<Cluster> cluster, const Config& config, std::string ns)
      : cluster_(std::move(cluster)), config_(config), ns_(std::move(ns)) {}

  std::shared_ptr<Cluster> cluster_;
  const Config config_;
  std::string ns_;
  librados::IoCtx index_io_;
  librados::IoCtx mail_io_;
  CommandClock clock_{nullptr, std::chrono::milliseconds(0)};
  OpLog op_log_;
  bool last_op_timed_out_ = false;
  UnsettledChanges unsettled_;
};

}  // namespace rbd

#endif  // STORAGE_RBD_ACCOUNT_H_
