// The on-disk encoding of everything the core stores in RADOS.
//
// Layout: a 6-byte header (record type, format version, 4-byte little-endian
// payload length) followed by fields, each a 1-byte tag, a 4-byte
// little-endian length and that many bytes.
// Every field carries its length so that a newer writer can add fields an
// older reader skips, and so a decoder never reads past the buffer: any
// malformed input is a Status::Corrupt, never a crash (fuzz/ checks that).
#ifndef STORAGE_RBD_RECORD_CODEC_H_
#define STORAGE_RBD_RECORD_CODEC_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "guid.h"
#include "status.h"

namespace rbd {

struct UnsettledChange;  // unsettled.h

inline constexpr uint8_t kFormatVersion = 1;

enum class RecordType : uint8_t {
  kMessage = 1,
  kMailboxState = 2,
  kChange = 3,
  kMailboxEntry = 4,
  kRootState = 5,
  kBodyMeta = 6,
  kBodyRef = 7,
  kInlineBody = 8,
  kKeyword = 9,
  kUnsettled = 10,  // kept in a node's local cache dir, never in RADOS
  // A MailboxState with sealed shards: a type of its own, so that a node
  // whose plugin predates shards refuses the mailbox ("wrong record type")
  // instead of showing it without its sealed messages.
  kShardedMailboxState = 11,
};

// The \Seen bit of MessageRecord::flags (Dovecot's MAIL_SEEN, as all the
// flag bits are: RBD_FLAG_SEEN in the C ABI).
inline constexpr uint8_t kSeenFlag = 0x08;

// One message of a mailbox: omap value of `u.<uid>`.
struct MessageRecord {
  uint32_t uid = 0;
  Guid guid;
  uint8_t flags = 0;
  // Keyword names, sorted and unique: a record carries its own keywords,
  // so nothing about a message costs more when the mailbox has many.
  std::vector<std::string> keywords;
  // A record written before keywords were names: ids into
  // MailboxState::legacy_keywords. MailboxIndex resolves them into
  // `keywords` as it reads the record; writers never write ids.
  std::vector<uint32_t> legacy_keyword_ids;
  uint64_t modseq = 0;
  int64_t received_date = 0;
  int64_t save_date = 0;
  uint64_t physical_size = 0;
  uint64_t virtual_size = 0;
  std::string pop3_uidl;  // empty: not set
  bool inline_body = false;
  // The GUID as its saver gave it when that was not 128-bit hex (a Maildir
  // GUID, migrated by dsync); `guid` is then a hash of it. Empty: `guid`.
  std::string guid_text;

  bool operator==(const MessageRecord&) const;
};

// "Every change-log entry at or below `modseq` was committed at or before
// `time`" (seconds since the epoch): what the age window of the change log
// trims by (MailboxIndex, "The change log trims itself" in doc/design.md).
struct LogMark {
  uint64_t modseq = 0;
  int64_t time = 0;
  bool operator==(const LogMark& o) const { return modseq == o.modseq && time == o.time; }
};

// The state xattr of an index object: compared and replaced by every
// guarded op, so it is kept small and holds everything STATUS needs.
struct MailboxState {
  uint32_t uidvalidity = 0;
  uint32_t uidnext = 1;
  uint64_t highest_modseq = 1;
  uint32_t messages = 0;
  uint64_t virtual_size = 0;
  uint64_t physical_size = 0;
  uint64_t log_floor = 0;  // change-log entries <= this are trimmed
  // The keyword table of a state written before keywords moved to `k.`
  // omap keys (name of legacy id i), kept unchanged for the records and
  // change entries that still name ids; new names never go here.
  std::vector<std::string> legacy_keywords;
  // Keyword names defined in `k.<name>` omap keys (KeywordEntry).
  uint32_t keyword_count = 0;
  // UIDs at or above this are \Recent for the next read-write session to
  // claim them (MailboxIndex::ClaimRecent). A state written before the
  // field existed decodes with it at UIDNEXT: everything claimed.
  uint32_t first_recent_uid = 1;
  // Ascending by MODSEQ, all above log_floor; a few at most (one per
  // eighth of rbd_changelog_max_age).
  std::vector<LogMark> log_marks;
  // Messages with \Seen, so that STATUS UNSEEN needs no record. A state
  // written before the count existed decodes with seen_counted false:
  // nothing maintains it until a repair counts the records (checker.h).
  uint32_t seen_messages = 0;
  bool seen_counted = true;
  // Messages at or above first_recent_uid, so that STATUS RECENT needs no
  // record. A claim that stops short of UIDNEXT counts the rest from their
  // records when they are few and not in shards (MailboxIndex::ClaimRecent);
  // otherwise, and in a state written before the count, it is not counted
  // until a claim that reaches UIDNEXT (0), or a repair.
  uint32_t recent_messages = 0;
  bool recent_counted = true;
  // Shards (MailboxIndex, "Shards"): UIDs below sealed_shards * shard_uids
  // have their records in shard objects, each of shard_uids UIDs. The size
  // is fixed when the first shard is sealed; 0 while none is.
  uint32_t shard_uids = 0;
  uint32_t sealed_shards = 0;
  // UIDs below this are in sealed shards.
  uint64_t SealedBelow() const { return uint64_t{shard_uids} * sealed_shards; }
  // The name the user's mailbox list gives this mailbox, so that a reader
  // holding a name -> GUID hint needs no read of the list (MailboxList,
  // "Names in the state"). Empty when not known: while a rename, delete or
  // GUID change may be moving the name (`name_pending`, that operation's
  // token, not 0), and after one that failed or in a state written before
  // the field existed (0: any reader that has just read the list may set it).
  std::string name;
  uint64_t name_pending = 0;
  // Some session watches the mailbox for changes until at least this time
  // (seconds since the epoch): writers notify only while it is ahead of
  // their clock ("Notify only the watched", doc/design.md). It only grows.
  uint64_t watched_until = 0;

  // The counters as a message is added, removed, or its flags change:
  // what every op that does so applies in the same guarded op.
  void CountAdded(const MessageRecord& r);
  void CountRemoved(const MessageRecord& r);
  void CountFlags(uint8_t before, uint8_t after);
  // Moves first_recent_uid to `end` (a \Recent claim).
  void ClaimRecentTo(uint32_t end);

  bool operator==(const MailboxState&) const;
};

struct UidRange {
  uint32_t first = 0;
  uint32_t last = 0;
  bool operator==(const UidRange& o) const { return first == o.first && last == o.last; }
};

// A message's flags and keywords as a flag-changing op left them.
struct FlagState {
  uint32_t uid = 0;
  uint8_t flags = 0;
  std::vector<std::string> keywords;  // as MessageRecord::keywords
  std::vector<uint32_t> legacy_keyword_ids;
  bool operator==(const FlagState& o) const {
    return uid == o.uid && flags == o.flags && keywords == o.keywords &&
           legacy_keyword_ids == o.legacy_keyword_ids;
  }
};

// One change-log entry `c.<modseq>`: what one committed op did, at the
// MODSEQ of its key.
//
// `changed` and `expunged` name the UIDs (every writer writes them). A
// replayable entry also carries the op's whole effect, so that a node
// brings its cache forward op by op from the entries alone, read in the
// same RADOS op as the state (no record read that could be newer): the
// new records of an append, the new flags and keywords of each message a
// flag change changed. An entry of an older writer is not replayable;
// readers resync from the records instead, as after a trimmed log.
// An op either changes messages or expunges them, never both.
struct ChangeEntry {
  std::vector<UidRange> changed;
  std::vector<UidRange> expunged;
  bool replayable = false;
  std::vector<MessageRecord> appended;  // ascending UIDs
  std::vector<FlagState> updated;       // ascending UIDs
  // The keyword names the op defined, in the order first set (see
  // KeywordEntry): a replaying node learns them in this order.
  std::vector<std::string> defined;
  bool operator==(const ChangeEntry&) const;
};
// Collapses sorted or unsorted UIDs into ascending, merged ranges.
std::vector<UidRange> ToRanges(std::vector<uint32_t> uids);

// A mailbox in the user root: omap value of `n.<name>`.
struct MailboxEntry {
  Guid guid;
  std::string special_use;
  bool operator==(const MailboxEntry&) const;
};

struct RootState {
  uint64_t version = 0;
  // The highest UIDVALIDITY given to a mailbox of this user: a mailbox
  // re-created under an old name must never get its old UIDVALIDITY back.
  uint32_t last_uidvalidity = 0;
  bool operator==(const RootState& o) const {
    return version == o.version && last_uidvalidity == o.last_uidvalidity;
  }
};

// Storage-side metadata of a stored body (xattr "meta"): enough to rebuild
// a lost index and to verify the bytes.
struct BodyMeta {
  uint64_t size = 0;
  uint64_t xxh3 = 0;
  Guid first_mailbox;
  int64_t received_date = 0;
  int64_t save_date = 0;
  uint64_t chunk_size = 0;  // 0: not striped
  uint32_t chunks = 1;
  bool operator==(const BodyMeta&) const;
};

// Reference count of a stored body (xattr "ref") and when it last changed,
// which gc's grace period is measured from.
struct BodyRef {
  uint32_t count = 0;
  int64_t changed = 0;
  bool operator==(const BodyRef& o) const { return count == o.count && changed == o.changed; }
};

// A small body carried in the index object (omap value of `b.<uid>`).
struct InlineBody {
  uint64_t xxh3 = 0;
  std::string bytes;
  bool operator==(const InlineBody& o) const { return xxh3 == o.xxh3 && bytes == o.bytes; }
};

// A keyword name the mailbox has defined: omap value of `k.<name>`. Names
// are never removed (a keyword stays defined, as in Dovecot's index).
struct KeywordEntry {
  // The MODSEQ of the op that first set it on a message: a fresh cache
  // registers names in this order (doc/design.md, "Keywords").
  uint64_t created = 0;
  // Its place among the names that op defined, in the order the op named
  // them (so every node lists them in the order the writer's node did).
  uint32_t position = 0;
  bool operator==(const KeywordEntry& o) const { return created == o.created && position == o.position; }
};

std::string Encode(const MessageRecord& r);
std::string Encode(const MailboxState& s);
std::string Encode(const ChangeEntry& c);
std::string Encode(const MailboxEntry& e);
std::string Encode(const RootState& s);
std::string Encode(const BodyMeta& m);
std::string Encode(const BodyRef& r);
std::string Encode(const InlineBody& b);
std::string Encode(const KeywordEntry& k);

Status Decode(std::string_view in, MessageRecord* out);
Status Decode(std::string_view in, MailboxState* out);
Status Decode(std::string_view in, ChangeEntry* out);
Status Decode(std::string_view in, MailboxEntry* out);
Status Decode(std::string_view in, RootState* out);
Status Decode(std::string_view in, BodyMeta* out);
Status Decode(std::string_view in, BodyRef* out);
Status Decode(std::string_view in, InlineBody* out);
Status Decode(std::string_view in, KeywordEntry* out);

// Changes answered NO whose outcome no session could check, as one process
// hands them to the next (rbd_user_take_unsettled): records one after the
// other.
std::string Encode(const UnsettledChange& c);
Status Decode(std::string_view in, UnsettledChange* out);
std::string EncodeAll(const std::vector<UnsettledChange>& changes);
Status DecodeAll(std::string_view in, std::vector<UnsettledChange>* out);

}  // namespace rbd

#endif  // STORAGE_RBD_RECORD_CODEC_H_
