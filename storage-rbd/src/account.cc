#include "account.h"

namespace rbd {

Status Account::Open(std::shared_ptr<Cluster> cluster, const Config& config, const std::string& ns,
                     std::unique_ptr<Account>* account) {
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
  s = a->cluster_->CheckAccess({{&a->mail_io_, "rbd_pool"}, {&a->index_io_, config.IndexPoolSetting()}});
  if (!s.ok()) return s;
  *account = std::move(a);
  return Status::OK();
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
