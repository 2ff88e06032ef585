// DictStore: a key-value dictionary in the omap of one object, `d`.
//
// The Dovecot plugin keeps its dict driver's keys here (plugin/rbd-dict.c
// decides which namespace holds which keys). Keys and values are opaque
// strings; keys sort bytewise, so a prefix is a contiguous key range.
//
// Every commit is ONE RADOS write op, so a transaction is applied whole or
// not at all. Increments are read-modify-write: the op carries an omap_cmp
// of each incremented key against the value read, and a lost race
// (-ECANCELED) re-reads and retries with jittered backoff, the pattern of
// MailboxIndex (doc/design.md), guarded per key instead of per object so
// that plain sets never contend.
#ifndef STORAGE_RBD_DICT_STORE_H_
#define STORAGE_RBD_DICT_STORE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <rados/librados.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "cluster.h"
#include "command_clock.h"
#include "status.h"

namespace rbd {

struct DictChange {
  enum class Kind { kSet, kUnset, kIncrement };
  Kind kind = Kind::kSet;
  std::string key;
  std::string value;  // kSet
  int64_t diff = 0;   // kIncrement
  // kSet and kUnset: apply only if the key still holds `expected`
  // (nullopt: does not exist), i.e. the value the change was computed from.
  bool guarded = false;
  std::optional<std::string> expected;
};

using DictEntries = std::vector<std::pair<std::string, std::string>>;

class DictStore {
 public:
  // Opens `d` in namespace `ns` of the index pool; "" is the pool's
  // default namespace. Connects if needed; the object need not exist.
  // `command_started`: the caller's command clock (CommandClock), so that
  // a command's dictionary waits end with its other RADOS waits.
  static Status Open(std::shared_ptr<Cluster> cluster, const Config& config, const std::string& ns,
                     const struct timeval* command_started, std::unique_ptr<DictStore>* store);

  // NotFound when the key (or the whole object) does not exist.
  Status Lookup(const std::string& key, std::string* value);

  // Up to `max` entries whose key starts with `prefix` and sorts after
  // `after` ("" = from the first), in key order. *more is true when a
  // further call from the last key returned may find more.
  Status List(const std::string& prefix, const std::string& after, size_t max, DictEntries* entries,
              bool* more);

  // Applies `changes` in order as one write op. An increment of a key that
  // does not exist (at that point of the sequence) changes nothing and
  // sets *increment_missed; the other changes are still applied, as
  // Dovecot's dict_atomic_inc() requires. An increment of a value that is
  // not a decimal integer, or that would overflow, fails the whole commit.
  // A guarded change whose key no longer holds its `expected` value fails
  // the whole commit with Conflict at once, without retrying: the caller
  // computed it from that value and must read again.
  Status Commit(const std::vector<DictChange>& changes, bool* increment_missed);

  // Copies into this namespace's dictionary, once, the entries of the
  // dictionary in namespace `legacy_ns` whose key starts with `prefix`
  // followed by the GUID (hex) of one of this namespace's mailboxes and
  // "/". For keys that older versions kept where every user shared them:
  // each user owning such a mailbox gets its own copy, and from then on
  // only that copy is read and written. The legacy entries stay (another
  // user may own a mailbox with the same GUID). Done is marked by the key
  // kAdoptedPrefix + prefix, written in the same op as the copies and
  // guarded against a concurrent adoption, so it happens exactly once.
  Status Adopt(const std::string& legacy_ns, const std::string& prefix);

  // Marks a finished Adopt(). Dovecot never sees it: its keys start with
  // "priv/" or "shared/".
  static constexpr char kAdoptedPrefix[] = "rbd.adopted/";

 private:
  struct Plan {
    std::map<std::string, librados::bufferlist> set;
    std::set<std::string> remove;
    bool increment_missed = false;
  };

  DictStore(std::shared_ptr<Cluster> cluster, const Config& config, std::string ns,
            const struct timeval* command_started)
      : cluster_(std::move(cluster)),
        config_(config),
        ns_(std::move(ns)),
        clock_(command_started, std::chrono::milliseconds(config.op_timeout_ms)) {}
  // `counters`: the stored values of the incremented keys, as read.
  static Status MakePlan(const std::vector<DictChange>& changes,
                         const std::map<std::string, librados::bufferlist>& counters, Plan* plan);
  // "d in namespace 'x'", for messages.
  std::string Where() const;

  std::shared_ptr<Cluster> cluster_;
  const Config config_;
  const std::string ns_;
  const CommandClock clock_;
  librados::IoCtx io_;
};

}  // namespace rbd

#endif  // STORAGE_RBD_DICT_STORE_H_
