// Config: the rbd_* settings of dovecot.conf, parsed and validated.
//
// Parsing lives here, not in the plugin, so the rules (and their error
// messages, which must name the setting) are unit-tested without Dovecot.
#ifndef STORAGE_RBD_CONFIG_H_
#define STORAGE_RBD_CONFIG_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "status.h"

namespace rbd {

struct Config {
  std::string ceph_conf = "/etc/ceph/ceph.conf";
  std::string ceph_user = "dovecot";
  std::string pool;
  // Empty means: the same pool as `pool`.
  std::string index_pool;
  // Empty means: the username the plugin opens the user with.
  std::string ns;
  uint32_t op_timeout_ms = 30000;
  // Bodies up to this size travel inline in the index op: one RADOS write
  // per APPEND instead of a body write followed by the index op. Measured
  // by bench/run-core on 1 OSD (4 KiB, one stream): 1.77-2.27 x the append
  // rate of body object + index op, and 0.88-1.00 x raw `rados bench -t 1`.
  // The cost is omap size: at 8 KiB a 200k-record index shard carries at
  // most ~1.6 GB of inline bodies, and only messages up to the median
  // (~4 KiB) and a little above pay it.
  uint64_t inline_max = 8 * 1024;
  // Bodies above this size are split into chunk objects of this size, so
  // no message is limited by osd_max_object_size (default 128 MiB) and a
  // partial FETCH reads only the chunks it covers.
  uint64_t stripe_size = 4 * 1024 * 1024;
  uint32_t gc_grace_seconds = 3600;
  // The change log keeps the entries of the last this many MODSEQs (so at
  // most this many entries) and none older than changelog_max_age_seconds;
  // every commit trims what falls out (doc/design.md, "The change log
  // trims itself"). 0 turns that limit off. A node whose cache is further
  // behind lists every record once instead of replaying the log.
  uint64_t changelog_max_entries = 10000;
  uint32_t changelog_max_age_seconds = 30 * 24 * 3600;
  // UIDs per index shard (MailboxIndex, "Shards"): a mailbox's records and
  // inline bodies move out of its index object in shards of this many UIDs
  // once UIDNEXT is two shards past them, so no object holds more than
  // about 2 x this many records and inline bodies (at rbd_inline_max 8k,
  // at most 16k omap keys and 64 MiB per shard). Fixed per mailbox when
  // its first shard is sealed; 0: never shard.
  uint32_t shard_uids = 8192;
  // The largest message a save accepts; 0: not set, and the plugin takes
  // Dovecot's own limit (quota_max_mail_size) or its default.
  uint64_t max_message_size = 0;
  // The unix socket of the node's rbd service (doc/service.md). Only the
  // client library reads it; the service itself runs the core.
  std::string service;

  // Sets one setting by its dovecot.conf name (e.g. "rbd_op_timeout").
  Status Set(std::string_view name, std::string_view value);
  // Checks required settings; the message names the first missing one.
  Status Validate() const;

  const std::string& IndexPool() const { return index_pool.empty() ? pool : index_pool; }
  // The setting IndexPool() came from, for messages.
  const char* IndexPoolSetting() const { return index_pool.empty() ? "rbd_pool" : "rbd_index_pool"; }
  // Identifies connections that can be shared (see Cluster::Get).
  std::string ConnectionKey() const;
};

// "30s", "30 secs", "500ms", "2m", "1h", "30d", or a bare number of seconds.
bool ParseDurationMs(std::string_view text, uint64_t* ms);
// "4096", "4k", "4 KiB", "16M", "1G".
bool ParseSize(std::string_view text, uint64_t* bytes);

}  // namespace rbd

#endif  // STORAGE_RBD_CONFIG_H_
