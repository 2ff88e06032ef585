// IndexShards: the shard objects `i.<guid>.<n>` of one mailbox index, each
// holding the sealed records and inline bodies of a fixed range of UIDs.
// MailboxIndex's header says when records move there and why its readers
// are never wrong; this class reads the shards, folds the index object's
// keys of a range into its shard, and removes them.
#ifndef STORAGE_RBD_INDEX_SHARDS_H_
#define STORAGE_RBD_INDEX_SHARDS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <rados/librados.hpp>
#include <set>
#include <string>

#include "account.h"
#include "guid.h"
#include "record_codec.h"
#include "status.h"

namespace rbd {

// Values with `prefix` (one of keys.h's UID-keyed prefixes) of object `oid`
// in the index pool whose UIDs are in [lo, hi), at most `max`, page by
// page. ENOENT reads as empty.
Status ReadUidRange(Account* account, const std::string& oid, const char* prefix, uint64_t lo, uint64_t hi,
                    size_t max, std::map<std::string, librados::bufferlist>* values);

// The omap keys of `oid` in the index pool, page by page, and of those the
// change-log entries (`changes` may be null). ENOENT counts none.
Status CountOmapKeys(Account* account, const std::string& oid, uint64_t* total, uint64_t* changes);

class IndexShards {
 public:
  IndexShards(Account* account, const Guid& mailbox);

  std::string Oid(uint32_t n) const;
  // `keys` of shard `n`. A shard sealed but never folded has none.
  Status Read(uint32_t n, const std::set<std::string>& keys,
              std::map<std::string, librados::bufferlist>* values);
  // Lists the records of shards 0 .. count-1, several at once, handing
  // each shard's values to `done` once all of them are read (in no
  // particular order of shards). ENOENT reads as an empty shard.
  Status ListRecords(
      uint32_t count,
      const std::function<Status(uint32_t, const std::map<std::string, librados::bufferlist>&)>& done);
  // Copies the index object's records, inline bodies and tombstones of
  // shard `n`'s UIDs (sized by `state`) into the shard, then removes them
  // from the index object, each record only while it is still the value
  // copied. Waits until half the command's time at most.
  Status Fold(const MailboxState& state, uint32_t n);
  // Removes `keys` from shard `n`; keys or a shard already gone are fine.
  Status RemoveKeys(uint32_t n, const std::set<std::string>& keys);
  // Removes shards 0 .. count-1, best effort: gc removes what is left
  // once the index object is gone.
  void RemoveAll(uint32_t count);

 private:
  Account* account_;
  Guid mailbox_;
  std::string index_oid_;
};

}  // namespace rbd

#endif  // STORAGE_RBD_INDEX_SHARDS_H_
