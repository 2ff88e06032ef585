#include "dict_store.h"

#include <cerrno>
#include <charconv>
#include <optional>

#include "account.h"
#include "keys.h"
#include "mailbox_list.h"
#include "retry.h"

namespace rbd {

namespace {

librados::bufferlist ToBufferlist(const std::string& s) {
  librados::bufferlist bl;
  bl.append(s);
  return bl;
}

bool ParseInt64(const std::string& text, int64_t* value) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, *value);
  return ec == std::errc() && ptr == end && !text.empty();
}

}  // namespace

Status DictStore::Open(std::shared_ptr<Cluster> cluster, const Config& config, const std::string& ns,
                       const struct timeval* command_started, std::unique_ptr<DictStore>* store) {
  Status s = cluster->CheckNamespace(ns);
  if (!s.ok()) return s;
  std::unique_ptr<DictStore> d(new DictStore(std::move(cluster), config, ns, command_started));
  s = d->cluster_->OpenIoCtx(config.IndexPool(), config.IndexPoolSetting(), &d->io_);
  if (!s.ok()) return s;
  d->io_.set_namespace(ns);
  s = d->cluster_->CheckAccess({{&d->io_, config.IndexPoolSetting()}}, d->clock_.deadline());
  if (!s.ok()) return s;
  *store = std::move(d);
  return Status::OK();
}

std::string DictStore::Where() const { return std::string(keys::kDict) + " in namespace '" + ns_ + "'"; }

Status DictStore::Lookup(const std::string& key, std::string* value) {
  std::map<std::string, librados::bufferlist> values;
  librados::ObjectReadOperation op;
  int omap_r = 0;
  op.omap_get_vals_by_keys({key}, &values, &omap_r);
  int r = OperateUntil(io_, keys::kDict, &op, clock_.deadline(), nullptr);
  if (r < 0 && r != -ENOENT) return Status::FromRados(r, "look up " + key + " in " + Where());
  auto it = values.find(key);
  if (it == values.end()) return Status::NotFound("dict key " + key + " does not exist");
  *value = it->second.to_str();
  return Status::OK();
}

Status DictStore::List(const std::string& prefix, const std::string& after, size_t max, DictEntries* entries,
                       bool* more) {
  entries->clear();
  *more = false;
  std::map<std::string, librados::bufferlist> page;
  librados::ObjectReadOperation op;
  int omap_r = 0;
  op.omap_get_vals2(after, prefix, max, &page, more, &omap_r);
  int r = OperateUntil(io_, keys::kDict, &op, clock_.deadline(), nullptr);
  if (r == -ENOENT) {
    *more = false;
    return Status::OK();
  }
  if (r < 0) return Status::FromRados(r, "list " + prefix + " in " + Where());
  for (const auto& [key, bl] : page) entries->emplace_back(key, bl.to_str());
  return Status::OK();
}

Status DictStore::MakePlan(const std::vector<DictChange>& changes,
                           const std::map<std::string, librados::bufferlist>& counters, Plan* plan) {
  // Each key's value after the changes so far; nullopt: removed.
  std::map<std::string, std::optional<std::string>> after;
  for (const DictChange& c : changes) {
    switch (c.kind) {
      case DictChange::Kind::kSet: after[c.key] = c.value; break;
      case DictChange::Kind::kUnset: after[c.key] = std::nullopt; break;
      case DictChange::Kind::kIncrement: {
        std::optional<std::string> value;
        if (auto it = after.find(c.key); it != after.end()) {
          value = it->second;
        } else if (auto stored = counters.find(c.key); stored != counters.end()) {
          value = stored->second.to_str();
        }
        if (!value) {
          plan->increment_missed = true;
          break;
        }
        int64_t n = 0;
        if (!ParseInt64(*value, &n))
          return Status::Invalid("dict key " + c.key + ": cannot increment '" + *value + "': not an integer");
        if (__builtin_add_overflow(n, c.diff, &n))
          return Status::Invalid("dict key " + c.key + ": incrementing " + *value + " by " +
                                 std::to_string(c.diff) + " overflows");
        after[c.key] = std::to_string(n);
        break;
      }
    }
  }
  for (const auto& [key, value] : after) {
    if (value) {
      plan->set[key] = ToBufferlist(*value);
    } else {
      plan->remove.insert(key);
    }
  }
  return Status::OK();
}

Status DictStore::Commit(const std::vector<DictChange>& changes, bool* increment_missed) {
  *increment_missed = false;
  std::set<std::string> counters;
  // omap_cmp compares a missing key as an empty value: "expected to be
  // missing" guards as "expected empty" (the callers never store one).
  std::map<std::string, std::pair<librados::bufferlist, int>> expected;
  for (const DictChange& c : changes) {
    if (c.kind == DictChange::Kind::kIncrement) counters.insert(c.key);
    if (c.guarded) expected[c.key] = {ToBufferlist(c.expected.value_or("")), LIBRADOS_CMPXATTR_OP_EQ};
  }
  RetryPolicy retry(clock_.deadline());
  for (unsigned attempt = 1;; attempt++) {
    std::map<std::string, librados::bufferlist> current;
    bool exists = true;
    if (!counters.empty()) {
      librados::ObjectReadOperation read;
      int omap_r = 0;
      read.omap_get_vals_by_keys(counters, &current, &omap_r);
      int r = OperateUntil(io_, keys::kDict, &read, clock_.deadline(), nullptr);
      if (r == -ENOENT) {
        exists = false;
      } else if (r < 0) {
        return Status::FromRados(r, "read counters in " + Where());
      }
    }
    Plan plan;
    Status s = MakePlan(changes, current, &plan);
    if (!s.ok()) return s;
    *increment_missed = plan.increment_missed;
    if (plan.set.empty() && plan.remove.empty()) return Status::OK();

    librados::ObjectWriteOperation op;
    if (!counters.empty()) {
      if (exists) {
        // The op applies only if every incremented key still holds what
        // was read. omap_cmp compares a missing key as an empty value, so
        // "missing" and "empty" guard alike: neither is an integer.
        std::map<std::string, std::pair<librados::bufferlist, int>> guard;
        for (const std::string& key : counters) {
          auto it = current.find(key);
          guard[key] = {it != current.end() ? it->second : librados::bufferlist(), LIBRADOS_CMPXATTR_OP_EQ};
        }
        op.omap_cmp(guard, nullptr);
      } else {
        // No object: every counter was missing. A writer that creates
        // it meanwhile makes this op fail with EEXIST and re-read.
        op.create(true);
      }
    }
    if (!expected.empty()) {
      // So that a key expected to be missing compares as such even
      // before the object exists.
      op.create(false);
      op.omap_cmp(expected, nullptr);
    }
    if (!plan.set.empty()) op.omap_set(plan.set);
    if (!plan.remove.empty()) op.omap_rm_keys(plan.remove);
    int r = OperateUntil(io_, keys::kDict, &op, clock_.deadline(), nullptr);
    if (r == 0) return Status::OK();
    // Only removals, and no object: nothing to remove.
    if (r == -ENOENT && counters.empty()) return Status::OK();
    if (r != -ECANCELED && r != -EEXIST && r != -ENOENT)
      return Status::FromRadosWrite(r, "update " + Where());
    if (r == -ECANCELED && !expected.empty())
      return Status::Conflict("update " + Where() + ": a guarded key changed since it was read");
    if (!retry.Backoff(attempt))
      return Status::Conflict("update " + Where() + ": gave up after " + std::to_string(attempt) +
                              " lost races");
  }
}

Status DictStore::Adopt(const std::string& legacy_ns, const std::string& prefix) {
  const std::string marker = kAdoptedPrefix + prefix;
  std::string done;
  Status s = Lookup(marker, &done);
  if (s.ok() || !s.IsNotFound()) return s;

  std::unique_ptr<Account> account;
  s = Account::Open(cluster_, config_, ns_, clock_.command_started(), &account);
  if (!s.ok()) return s;
  std::vector<MailboxInfo> mailboxes;
  s = MailboxList(account.get()).List(&mailboxes);
  if (!s.ok()) return s;
  std::unique_ptr<DictStore> legacy;
  s = Open(cluster_, config_, legacy_ns, clock_.command_started(), &legacy);
  if (!s.ok()) return s;
  std::map<std::string, librados::bufferlist> copies;
  for (const MailboxInfo& mailbox : mailboxes) {
    if (!mailbox.exists) continue;
    const std::string mailbox_prefix = prefix + mailbox.entry.guid.Hex() + "/";
    DictEntries page;
    bool more = true;
    for (std::string after; more; after = page.back().first) {
      s = legacy->List(mailbox_prefix, after, 1000, &page, &more);
      if (!s.ok()) return s;
      if (page.empty()) break;
      for (const auto& [key, value] : page) copies[key] = ToBufferlist(value);
    }
  }
  copies[marker] = ToBufferlist("1");

  librados::ObjectWriteOperation op;
  op.create(false);
  // A missing key compares as empty: only the first adoption applies.
  op.omap_cmp({{marker, {librados::bufferlist(), LIBRADOS_CMPXATTR_OP_EQ}}}, nullptr);
  op.omap_set(copies);
  int r = OperateUntil(io_, keys::kDict, &op, clock_.deadline(), nullptr);
  if (r == -ECANCELED) return Status::OK();
  if (r < 0)
    return Status::FromRados(r,
                             "adopt " + prefix + " entries of namespace '" + legacy_ns + "' into " + Where());
  return Status::OK();
}

}  // namespace rbd
