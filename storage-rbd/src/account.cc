#include "account.h"

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
  a->clock_ = CommandClock(command_started, std::chrono::milliseconds(config.op_timeout_ms));
  s = a->cluster_->CheckAccess({{&a->mail_io_, "rbd_pool"}, {&a->index_io_, config.IndexPoolSetting()}},
                               a->deadline());
  if (!s.ok()) return s;
  *account = std::move(a);
  return Status::OK();
}

Deadline Account::deadline() const { return clock_.deadline(); }

Deadline Account::write_deadline() const {
  const auto now = std::chrono::steady_clock::now();
  return now + (deadline() - now) / 2;
}

int Account::Operate(librados::IoCtx& io, const std::string& oid, librados::ObjectWriteOperation* op,
                     Deadline until) {
  return Note(OperateUntil(io, oid, op, until == Deadline{} ? deadline() : until, &op_log_));
}

int Account::Operate(librados::IoCtx& io, const std::string& oid, librados::ObjectReadOperation* op,
                     Deadline until) {
  return Note(OperateUntil(io, oid, op, until == Deadline{} ? deadline() : until, &op_log_));
}

int Account::Note(int r) {
  // An op not sent (-ETIME) says nothing about the cluster.
  if (r != -ETIME) last_op_timed_out_ = r == -ETIMEDOUT;
  return r;
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
