// Account: one user's RADOS namespace in the mail and index pools.
//
// All of a user's objects live in one namespace (doc/design.md), so a user
// can be listed, exported or deleted without scanning the pool.
#ifndef STORAGE_RBD_ACCOUNT_H_
#define STORAGE_RBD_ACCOUNT_H_

#include <memory>
#include <rados/librados.hpp>
#include <string>
#include <vector>

#include "cluster.h"
#include "status.h"

namespace rbd {

class Account {
 public:
  // `config` is the caller's own: the shared connection only fixes how to
  // reach the cluster, while pools, namespace and size limits may differ
  // between the users one process serves.
  static Status Open(std::shared_ptr<Cluster> cluster, const Config& config, const std::string& ns,
                     std::unique_ptr<Account>* account);

  librados::IoCtx& index_io() { return index_io_; }
  librados::IoCtx& mail_io() { return mail_io_; }
  const Config& config() const { return config_; }
  Cluster* cluster() { return cluster_.get(); }
  const std::string& ns() const { return ns_; }

  // Names of the account's objects in one of its pools (a namespace
  // listing: the cost grows with the pool's PG count, not with the pool).
  static Status ListObjects(librados::IoCtx& io, std::vector<std::string>* names);

 private:
  Account(std::shared_ptr<Cluster> cluster, const Config& config, std::string ns)
      : cluster_(std::move(cluster)), config_(config), ns_(std::move(ns)) {}

  std::shared_ptr<Cluster> cluster_;
  const Config config_;
  std::string ns_;
  librados::IoCtx index_io_;
  librados::IoCtx mail_io_;
};

}  // namespace rbd

#endif  // STORAGE_RBD_ACCOUNT_H_
