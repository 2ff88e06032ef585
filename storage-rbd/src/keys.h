// Object names and omap keys (doc/design.md).
//
// UIDs and MODSEQs are fixed-width decimal so that omap's lexicographic
// order is numeric order: a listing "after u.0000000041" is "UIDs > 41".
// Record keys carry the UID, never an omap position, so the same keys serve
// the index object and its shards `i.<guid>.<n>` (MailboxIndex).
#ifndef STORAGE_RBD_KEYS_H_
#define STORAGE_RBD_KEYS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "guid.h"

namespace rbd::keys {

// Objects.
inline constexpr char kRoot[] = "r";
// A key-value dictionary (DictStore): one per user namespace, and one in
// the default namespace for keys every user shares.
inline constexpr char kDict[] = "d";
std::string IndexObject(const Guid& mailbox);
// Shard `n` of a mailbox index: the sealed records of UIDs
// [n * shard_uids, (n + 1) * shard_uids) (MailboxIndex, "Shards").
std::string IndexShardObject(const Guid& mailbox, uint32_t n);
std::string BodyObject(const Guid& mail);
std::string ChunkObject(const Guid& mail, uint32_t chunk);
std::string LeaseObject(std::string_view name);

// Classifies an object name found by listing a namespace.
enum class ObjectKind { kRoot, kIndex, kIndexShard, kBody, kChunk, kLease, kDict, kOther };
struct ParsedObject {
  ObjectKind kind = ObjectKind::kOther;
  Guid guid;
  uint32_t chunk = 0;  // the chunk's or the shard's number
};
ParsedObject ParseObject(std::string_view name);

// Xattrs.
inline constexpr char kStateAttr[] = "state";
inline constexpr char kBodyMetaAttr[] = "meta";
inline constexpr char kBodyRefAttr[] = "ref";
// An index shard's version: what every write to it compares and replaces.
inline constexpr char kShardVersionAttr[] = "version";

// Omap keys of an index object.
inline constexpr char kRecordPrefix[] = "u.";
inline constexpr char kInlineBodyPrefix[] = "b.";
inline constexpr char kChangePrefix[] = "c.";
// An expunged message's inline body, kept for the grace period: its value
// is a BodyRef (count 0, time of the expunge), see MailboxIndex::Expunge.
inline constexpr char kReleasedBodyPrefix[] = "x.";
// A keyword name the mailbox has defined (KeywordEntry).
inline constexpr char kKeywordPrefix[] = "k.";
// A message of a sealed shard expunged since the shard was last folded
// (empty value): its record in the shard no longer counts.
inline constexpr char kTombstonePrefix[] = "t.";
std::string RecordKey(uint32_t uid);
std::string InlineBodyKey(uint32_t uid);
std::string ChangeKey(uint64_t modseq);
std::string ReleasedBodyKey(uint32_t uid);
std::string KeywordKey(std::string_view name);
std::string TombstoneKey(uint32_t uid);
std::optional<uint32_t> ParseRecordKey(std::string_view key);
std::optional<uint32_t> ParseInlineBodyKey(std::string_view key);
std::optional<uint32_t> ParseTombstoneKey(std::string_view key);
std::optional<uint32_t> ParseReleasedBodyKey(std::string_view key);
std::optional<uint64_t> ParseChangeKey(std::string_view key);

// Omap keys of the user root.
inline constexpr char kMailboxPrefix[] = "n.";
inline constexpr char kSubscriptionPrefix[] = "s.";
std::string MailboxKey(std::string_view name);
std::string SubscriptionKey(std::string_view name);

}  // namespace rbd::keys

#endif  // STORAGE_RBD_KEYS_H_
