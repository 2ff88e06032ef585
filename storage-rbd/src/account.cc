#include "account.h"

#include <algorithm>
#include <type_traits>

namespace rbd {

Status Account::Open(std::shared_ptr<Cluster> cluster, const Config& config, const std::string& ns,
                     const struct timeval* command_started, std::unique_ptr<Account>* account) {
  if (ns.empty()) return Status::Invalid("rbd_namespace: the user's namespace is empty");
  Status s = cluster->CheckNamespace(ns);
  if (!s.ok()) return s;
  std::unique_ptr<Account> a(new Account(std::move(cluster), config, ns));
  s = a->cluster_->OpenIoCtx(config.pool, "rbd_pool", &a->mail_io_);
  if (!s.ok()) return s;
  s = a->cluster_->OpenIoCtx(config.IndexPool(), config.IndexPoolSetting(), &a->index_io_);
  if (!s.ok()) return s;
  a->mail_io_.set_namespace(ns);
  a->index_io_.set_namespace(ns);
  a->command_started_ = command_started;
  s = a->cluster_->CheckAccess({{&a->mail_io_, "rbd_pool"}, {&a->index_io_, config.IndexPoolSetting()}},
                               a->deadline());
  if (!s.ok()) return s;
  *account = std::move(a);
  return Status::OK();
}

Deadline Account::deadline() const {
  const auto now = std::chrono::steady_clock::now();
  const std::chrono::milliseconds timeout(config_.op_timeout_ms);
  if (command_started_ == nullptr) return now + timeout;
  struct timeval wall;
  gettimeofday(&wall, nullptr);
  const auto elapsed = std::chrono::seconds(wall.tv_sec - command_started_->tv_sec) +
                       std::chrono::microseconds(wall.tv_usec - command_started_->tv_usec);
  // A clock step must not turn into no time at all or into more than the
  // op timeout.
  return now + std::clamp<std::chrono::steady_clock::duration>(timeout - elapsed, {}, timeout);
}

Deadline Account::write_deadline() const {
  const auto now = std::chrono::steady_clock::now();
  return now + (deadline() - now) / 2;
}

namespace {

template <typename Op>
int OperateUntil(librados::IoCtx& io, const std::string& oid, Op* op, Deadline until, OpLog* log) {
  const auto issued = std::chrono::steady_clock::now();
  if (issued >= until) return -ETIMEDOUT;
  AioWaiter waiter;
  AioCompletionPtr c = waiter.NewCompletion();
  int r;
  constexpr bool kRead = std::is_same_v<Op, librados::ObjectReadOperation>;
  if constexpr (kRead) {
    r = io.aio_operate(oid, c.get(), op, nullptr);
  } else {
    r = io.aio_operate(oid, c.get(), op);
  }
  if (r >= 0) r = waiter.Wait(io, c, until);
  log->Add(kRead ? OpType::kRead : OpType::kWrite, oid, 0, r, issued);
  return r;
}

}  // namespace

int Account::Operate(librados::IoCtx& io, const std::string& oid, librados::ObjectWriteOperation* op,
                     Deadline until) {
  return OperateUntil(io, oid, op, until == Deadline{} ? deadline() : until, &op_log_);
}

int Account::Operate(librados::IoCtx& io, const std::string& oid, librados::ObjectReadOperation* op,
                     Deadline until) {
  return OperateUntil(io, oid, op, until == Deadline{} ? deadline() : until, &op_log_);
}

int Account::ReadKeys(const std::string& oid, const std::set<std::string>& keys,
                      std::map<std::string, librados::bufferlist>* values) {
  librados::ObjectReadOperation op;
  int omap_r = 0;
  op.omap_get_vals_by_keys(keys, values, &omap_r);
  return Operate(index_io_, oid, &op);
}

Status Account::ListObjects(librados::IoCtx& io, std::vector<std::string>* names) {
  try {
    for (auto it = io.nobjects_begin(); it != io.nobjects_end(); ++it) names->push_back(it->get_oid());
  } catch (const std::exception& e) {
    // librados reports listing errors only by throwing from the iterator.
    return Status::Unavailable(std::string("list objects: ") + e.what());
  }
  return Status::OK();
}

}  // namespace rbd
