// MailboxIndex: one mailbox's authoritative index, `i.<mailbox-guid>`.
//
// The object holds the mailbox state in the "state" xattr and, in omap,
// one record per message (`u.<uid>`), small bodies carried inline
// (`b.<uid>`) and the change log (`c.<modseq>`).
//
// Shards. So that no object outgrows Ceph's large-omap limits, the records
// and inline bodies of old UIDs move out into shard objects
// `i.<guid>.<n>`, each holding UIDs [n * K, (n + 1) * K) (K:
// MailboxState::shard_uids). The index object stays the only commit point:
// once a shard is sealed (its UIDs below MailboxState::SealedBelow()), a
// change to one of its messages writes the new record (an override) or a
// tombstone (`t.<uid>`) into the index object, and the index object's copy
// wins over the shard's. Folding copies the index object's keys of a
// sealed range into the shard and only then removes them from the index
// object, each compared with what was copied; so a reader that reads the
// index object first and the shard after never misses a record, and one
// that finds a newer value in the shard than its state allows either
// fails its guard (writers) or brings everything forward over the log
// (ListAll). Sealing happens when UIDNEXT is two shards past a range; the
// committer that sees it due seals and folds it (so old unsharded
// mailboxes convert as they are written), and folds again when overrides
// pile up.
//
// Every change is ONE write op guarded by a compare of the state xattr
// against the bytes last read (doc/design.md). Every change also replaces the
// state (HIGHESTMODSEQ grows by one), so "state unchanged" means "nothing in
// the object changed", and anything read after the state and before the
// commit is consistent once the guard holds. A lost race (-ECANCELED)
// re-reads and retries with jittered backoff. Every op that adds a
// change-log entry also trims the log to its window, in the same op. The
// handle remembers the
// state it last wrote, so a stream of appends from one writer needs no read
// at all: one RADOS op per APPEND while nobody else writes.
#ifndef STORAGE_RBD_MAILBOX_INDEX_H_
#define STORAGE_RBD_MAILBOX_INDEX_H_

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <rados/librados.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "account.h"
#include "guid.h"
#include "index_shards.h"
#include "known_records.h"
#include "message_store.h"
#include "record_codec.h"
#include "status.h"

namespace rbd {

struct NewMessage {
  Guid guid;
  // See MessageRecord::guid_text.
  std::string guid_text;
  // The UID wanted (dsync keeps the source's UIDs): given when it is at or
  // above UIDNEXT, as Dovecot's own index does; 0 or a lower one gets the
  // next UID after every UID given in the same append.
  uint32_t uid = 0;
  // The body, when the caller has it (see rbd_new_message in the C ABI).
  std::optional<std::string_view> body;
  // The body is already in `m.<guid>`: take a reference on it.
  bool stored = false;
  // With `stored`: the caller has taken that reference; the append holds
  // it from now on (and gives it back if nothing is published).
  bool referenced = false;
  uint8_t flags = 0;
  std::vector<std::string> keywords;
  int64_t received_date = 0;
  int64_t save_date = 0;
  uint64_t physical_size = 0;
  uint64_t virtual_size = 0;
  std::string pop3_uidl;
};

// Removal wins over addition, for flags and keywords alike.
struct FlagUpdate {
  uint8_t add_flags = 0;
  uint8_t remove_flags = 0;
  std::vector<std::string> add_keywords;
  std::vector<std::string> remove_keywords;
  uint64_t unchanged_since = 0;  // 0: unconditional
};

// One flag update of a transaction and the UIDs it applies to.
struct FlagChange {
  std::vector<uint32_t> uids;
  FlagUpdate update;
};

struct FlagOverride {
  uint8_t flags = 0;
  std::vector<std::string> keywords;
  uint32_t uid = 0;  // the UID wanted for the copy, as NewMessage::uid
  // What the caller's session shows of the source message: copied as
  // shown when its record is gone (expunged since) but gc has not yet
  // reclaimed its body.
  std::optional<MessageRecord> shown;
};

// One op of the change log: its MODSEQ and what it did.
struct Change {
  uint64_t modseq = 0;
  ChangeEntry entry;
};

// What changed after a MODSEQ, as one snapshot: `state` and every op after
// that MODSEQ up to the state's HIGHESTMODSEQ, ascending by MODSEQ (their
// keywords by name, see MessageRecord::keywords).
struct ChangeSet {
  std::vector<Change> ops;
  MailboxState state;
};

// The omap keys of an index object (what `doveadm rbd stat` shows an
// operator watching growth).
struct KeyCounts {
  uint64_t total = 0;    // of the index object
  uint64_t changes = 0;  // c.<modseq>: the change log's length
  uint64_t shards = 0;   // sealed shard objects
  uint64_t largest_shard_keys = 0;
};

class MailboxIndex {
 public:
  MailboxIndex(Account* account, const Guid& guid);
  MailboxIndex(const MailboxIndex&) = delete;
  MailboxIndex& operator=(const MailboxIndex&) = delete;

  // Creates the index object of the mailbox the list is to name `name`;
  // Exists if it is there already.
  static Status Create(Account* account, const Guid& guid, uint32_t uidvalidity, const std::string& name);
  // The same, starting from `state` (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ,
  // name).
  static Status Create(Account* account, const Guid& guid, const MailboxState& state);

  // Reads the state (one read); NotFound if the mailbox does not exist.
  Status ReadState(MailboxState* state);
  // The state as of the last read or commit through this handle.
  const MailboxState& last_state() const { return state_; }
  // Whether last_state() is the cluster's as the current command saw it.
  bool StateSeenInThisCommand() const;
  // From now on the client writes through this handle (Append, CopyFrom,
  // UpdateFlags, Expunge) apply only while the user's list gives the
  // mailbox `name`, and fail NotFound once a rename or delete has taken it
  // away. The state each op is guarded by usually names the mailbox, which
  // proves it (doc/design.md, "Names in the state"); the list is read only
  // when that state names none.
  void GuardName(const std::string& name) { guarded_name_ = name; }

  // With `claimed_first` and `claimed_end`, the same op also claims
  // \Recent up to the UIDNEXT it leaves (ClaimRecent), for a session whose
  // next sync brings every message below it into its view; they get the
  // claimed range, empty when the outcome is unknown.
  Status Append(const std::vector<NewMessage>& messages, std::vector<uint32_t>* uids,
                uint32_t* claimed_first = nullptr, uint32_t* claimed_end = nullptr);
  // dest_uids[i] is 0 when source_uids[i] no longer exists (its record,
  // or, with no record the session still shows, its body). With overrides
  // (a session's COPY) the copy is all or nothing, as Dovecot's COPY is:
  // when any message no longer exists, nothing is copied and every
  // dest_uids[i] is 0. Without (maintenance), what exists is copied.
  Status CopyFrom(MailboxIndex* source, const std::vector<uint32_t>& source_uids,
                  const std::vector<std::optional<FlagOverride>>& overrides,
                  std::vector<uint32_t>* dest_uids);
  // Applies the changes of one transaction, in their order, in ONE guarded
  // op: a transaction whose changes took one op each could fail after its
  // first had taken effect, and its client would hear NO for a change the
  // cluster kept (the fault soak saw a STORE FLAGS answered NO set
  // \Draft). *modseq: the op's MODSEQ, or 0 when nothing changed (no op
  // was committed, so no MODSEQ is this caller's).
  Status UpdateFlags(const std::vector<FlagChange>& changes, std::vector<uint32_t>* conflicts,
                     uint64_t* modseq);
  Status Expunge(const std::vector<uint32_t>& uids, std::vector<uint32_t>* expunged);
  // Gives those of `uids` that exist one new MODSEQ, at least `min_modseq`,
  // and changes nothing else: every node replays it (the records, flags and
  // keywords as they are) and lands each of them on that MODSEQ. For a node
  // whose cache could only land them above their MODSEQ (a catch-up from
  // behind the log floor, plugin/rbd-sync.c). *modseq: the op's MODSEQ, or
  // 0 when none of them exists.
  Status Touch(const std::vector<uint32_t>& uids, uint64_t min_modseq, uint64_t* modseq);
  // RFC 3501 \Recent across nodes: raises the state's first recent UID to
  // `up_to` (at most UIDNEXT) in one guarded op, so the UIDs from the old
  // value up to the new one are this caller's alone: concurrent claims from
  // any number of nodes partition the UIDs. `*first` receives the old value
  // and `*end` the new one; the claimed UIDs are [*first, *end), empty (and
  // nothing written) when another claim already reached `up_to`. No MODSEQ:
  // no client sees a claim as a change.
  Status ClaimRecent(uint32_t up_to, uint32_t* first, uint32_t* end);
  // Tells writers that a session watches the mailbox for at least
  // `for_at_least` more: until then every op that changes it notifies its
  // watchers, which it skips while nobody watches. Writes (without a
  // MODSEQ) only when the state says less, and then twice as long, so that
  // a watcher renewing at every sync or IDLE writes rarely.
  Status KeepWatched(std::chrono::seconds for_at_least);
  // How many UIDs a claim short of UIDNEXT counts the records of (at most
  // four omap pages of the OSD's: a cold SELECT of a million messages
  // beside one APPEND loop fell about 1,600 UIDs behind); beyond, the
  // recent count stays unknown.
  static constexpr uint32_t kRecentCountMax = 4096;
  // Repair: sets the message, \Seen, recent and size counters to `counted`'s (what
  // the records add up to) and raises UIDNEXT to its, only while the state
  // is still `listed`, the one the records were counted under (ListAll);
  // Conflict when a writer changed it since: the caller counts again. No
  // client sees counters change through MODSEQs, so HIGHESTMODSEQ stays.
  Status SetCounters(const MailboxState& listed, const MailboxState& counted);

  Status ListRecords(uint32_t after_uid, size_t max, std::vector<MessageRecord>* records);
  // Every record and the state they are at, read `page` records per op (0:
  // as many as one read returns) without holding writers back: each op also reads the state and the
  // change-log entries since the previous op's state, and the records
  // listed before are brought forward over those ops, so all of them end at
  // the last op's state (*state). A listing guarded by its first state
  // started again whenever anyone wrote, and on a mailbox that a writer
  // never leaves alone it never finished (bench/scale: a cold SELECT of
  // 20k messages beside one APPEND loop answered NO [UNAVAILABLE]). With
  // `keywords`, also every keyword name defined, in the order first set
  // (legacy table first, then `k.` names by KeywordEntry::created): only
  // here does a reader pay for the names a mailbox has ever seen. Conflict
  // only when the log was trimmed past the listing meanwhile, after
  // listing again within the op timeout.
  Status ListAll(std::vector<MessageRecord>* records, MailboxState* state,
                 std::vector<std::string>* keywords = nullptr, size_t page = 0);
  Status LookupRecords(const std::vector<uint32_t>& uids, std::vector<MessageRecord>* records);
  // The ops after `since_modseq` and the state they lead to, as one
  // snapshot (see ChangeSet): the state and the log come from one read op,
  // further log pages from ops guarded by a compare with the same state
  // bytes (a lost race reads everything again). Resync when the log was
  // trimmed past `since_modseq` or holds an entry no replay can use (an
  // older writer's, or one naming a legacy keyword id the table lacks).
  Status Changes(uint64_t since_modseq, ChangeSet* changes);
  // Trims change-log entries <= up_to_modseq now, in guarded maintenance
  // ops (no MODSEQ). Every advancing op already trims the log to its window
  // (rbd_changelog_max_entries, rbd_changelog_max_age); this is for a
  // narrower cut at once.
  Status TrimLog(uint64_t up_to_modseq);

  // Counts the omap keys of the index object by kind and of its shards,
  // page by page (not one snapshot: a writer may move the counts meanwhile).
  Status CountKeys(KeyCounts* counts);

  // Removes the inline bodies of messages expunged at or before `cutoff`
  // (seconds since the epoch), counting them in *reclaimed and the younger
  // ones in *in_grace. Sessions that still show an expunged message read
  // its inline body until then (Expunge keeps it).
  Status ReclaimReleasedBodies(int64_t cutoff, uint64_t* reclaimed, uint64_t* in_grace);

  Status ReadBody(const MessageRecord& record, uint64_t offset, uint64_t length, std::string* out);
  // A reader of the record's body by range (an inline one is read whole).
  Status OpenBody(const MessageRecord& record, std::unique_ptr<BodyReader>* reader);
  void ReadBodies(const std::vector<MessageRecord>& records, std::vector<std::string>* out,
                  std::vector<Status>* statuses);

  // Removes the index object, then drops the references its records held.
  // The removal is guarded by the state the records were listed under, so
  // a writer racing it (an APPEND from a node that opened the mailbox
  // before it was unlisted) either lands first, and its references are
  // dropped with the others, or finds no index and publishes nothing.
  Status Remove();

  // For dsync's mailbox_update(): sets UIDVALIDITY (when not 0) and raises
  // UIDNEXT and HIGHESTMODSEQ to at least the values given, in one guarded
  // op. UIDVALIDITY changes only while no record exists (Invalid
  // otherwise): every node's cache of it is then rebuilt. The caller raises
  // the user's last UIDVALIDITY first (MailboxList::RaiseLastUidValidity).
  Status UpdateState(uint32_t uidvalidity, uint32_t min_uidnext, uint64_t min_highest_modseq);
  // Changes the state's name fields (MailboxState::name), for
  // MailboxList alone: one guarded op planned from a fresh read, with no
  // MODSEQ. `edit` may read other objects (the guard makes what it read
  // hold at the commit) and sets *noop when there is nothing to write.
  using NameEdit = std::function<Status(MailboxState* state, bool* noop)>;
  Status EditName(const NameEdit& edit);

  // Removes the index object if its state is still the one last read
  // through this handle (Conflict otherwise); it must hold no records.
  Status RemoveIfUnchanged();
  // Whether any message record exists (a read of its own): read inside a
  // planner, a guarded op makes the answer hold at its commit, as a record
  // appearing or going moves the state. The counters do not decide this: a
  // repair computes them from a listing and may be wrong.
  Status HasRecords(bool* any);

  // Checks the changes to this mailbox that the account's commands were
  // answered "failed" for while their outcome was unknown (see
  // unsettled.h), and undoes those that took effect after all: appended
  // messages are expunged, flags and keywords restored on the messages the
  // change was the last to touch. Mutate and Changes do this first, so the
  // session that heard NO never syncs the change without its undo.
  // Unavailable (the change kept for later) while the object does not
  // answer. An expunge is never kept: it cannot be taken back, and a
  // client told it failed loses only the messages it asked to remove.
  Status Settle();
  // Settle() for every mailbox with unsettled changes, unless the
  // account's last op timed out; what stays unknown stays unsettled.
  static void SettleAll(Account* account);

  const Guid& guid() const { return guid_; }
  const std::string& oid() const { return oid_; }

 private:
  // What one guarded op changes. Mutate() fills `state` with the current
  // state before calling the planner.
  struct Mutation {
    MailboxState state;
    std::map<std::string, librados::bufferlist> set;
    std::set<std::string> remove;
    // What the change-log entry says the op did (ChangeEntry).
    std::vector<MessageRecord> appended;
    std::vector<FlagState> updated;
    std::vector<uint32_t> expunged;
    // Keyword names known to be defined once the op is applied, and those
    // of them the op defines (ChangeEntry::defined).
    std::vector<std::string> defined;
    std::vector<std::string> newly_defined;
    // The records the op rewrites, as they were before (`u.<uid>` keys):
    // what undoing it restores (UnsettledChange::before). Left empty by
    // ops nobody needs undone.
    std::map<std::string, std::string> before;
    bool advanced = false;  // false: maintenance that no client sees
    bool noop = false;      // nothing to write
    // What the op takes is its writer's alone (a \Recent claim). Two
    // writers planning it from the same state write the same bytes, so
    // reading them back proves nothing about whose write was applied.
    bool owned = false;

    // Gives the op its MODSEQ, `step` above the current HIGHESTMODSEQ.
    // The step is the number of records Dovecot's transaction log writes
    // when a node replays the op: one for an append, an expunge or any
    // system-flag change, plus one per distinct keyword added and per
    // distinct keyword removed. Dovecot counts MODSEQs per log record, so
    // a node replaying this op alone in one index transaction never counts
    // past the op's MODSEQ, and explicit MODSEQ updates (which only raise)
    // land it and every message the op touched exactly on the cluster's
    // values (plugin/rbd-sync.c, doc/design.md relies on it).
    uint64_t Advance(uint64_t step) {
      state.highest_modseq += step;
      advanced = true;
      return state.highest_modseq;
    }
    // Writes `rec` back under `key` (its new flags and MODSEQ set) and
    // names it among the messages the op changed.
    void Rewrite(const std::string& key, const MessageRecord& rec);
  };
  using Planner =
      std::function<Status(const std::map<std::string, librados::bufferlist>& values, Mutation* m)>;

  // Runs one guarded op, re-planning after a lost race. A write whose
  // outcome is unknown (timeout, lost connection) is resolved by Resolve():
  // applied is success, not applied is retried like a lost race, and
  // unresolved is returned as Status::Unknown, which callers must treat as
  // "may still be applied later".
  Status Mutate(const std::set<std::string>& read_keys, const Planner& plan);
  enum class Outcome { kApplied, kNotApplied, kUnknown };
  // Reads back after a write with an unknown outcome (`guard`: the state
  // it compared with; `written`: the state it set; `change`: the change
  // entry it wrote under `change_key`, or nullptr; `owned`:
  // Mutation::owned), within Account::kResolveGrace past the command's
  // deadline.
  Outcome Resolve(const librados::bufferlist& guard, const librados::bufferlist& written,
                  const std::string& change_key, const librados::bufferlist* change, bool owned);
  // Undoes a change that took effect after its caller was answered NO.
  Status Undo(const UnsettledChange& change);
  // The change-log entry of an advancing mutation (consumes its op data).
  static ChangeEntry ToChangeEntry(Mutation* m);
  Status ReadStateAndKeys(const std::set<std::string>& keys,
                          std::map<std::string, librados::bufferlist>* values);
  // One read op on the index object for the state and `keys`, then the
  // shards for those of `keys` (records and inline bodies) that live there:
  // a record key of a sealed UID that the index object neither overrides
  // nor tombstones, an inline body key the index object lacks. The state
  // goes to *state_r and its bytes to *raw_r when given; this handle's
  // own state is left alone.
  Status ReadKeys(const std::set<std::string>& keys, std::map<std::string, librados::bufferlist>* values,
                  MailboxState* state_r = nullptr, librados::bufferlist* raw_r = nullptr);
  // The records of UIDs in [lo, hi) within sealed shard `n` (lo and hi
  // inside it), as the index object's overrides and tombstones leave them.
  Status ListSealed(const MailboxState& state, uint32_t n, uint64_t lo, uint64_t hi,
                    std::vector<MessageRecord>* records);
  // After an op that advanced the state from `before` to `after` and set
  // the omap keys `written`: seals the next shard when UIDNEXT is two
  // shards past it, and folds when overrides and tombstones of sealed UIDs
  // may have piled up. Best effort: what fails now is due again at a later
  // commit.
  void KeepShards(const MailboxState& before, const MailboxState& after,
                  const std::map<std::string, librados::bufferlist>& written);
  // Marks shard `n` sealed (a guarded op on the state, no MODSEQ); *sealed
  // is false when it was sealed already or is not due.
  Status Seal(uint32_t n, uint32_t shard_uids, bool* sealed);
  // How ReadPages relates its pages to the state xattr.
  enum class PageState {
    kIgnore,  // pages only
    kRead,    // the first op also reads the state into *state_raw
    kGuard,   // every op first compares the state with *state_raw
  };
  // Reads up to `max` omap values with `prefix` after `after`, page by
  // page. With kRead, the pages after the first are guarded as with
  // kGuard. Returns the RADOS result: -ECANCELED when a guard failed.
  int ReadPages(const std::string& after, const char* prefix, size_t max, PageState mode,
                librados::bufferlist* state_raw, std::map<std::string, librados::bufferlist>* values);
  // The `k.` keys a planner must read to know which of `names` are new
  // (none for names this handle already knows to be defined).
  std::set<std::string> KeywordKeysToRead(const std::set<std::string>& names) const;
  // Defines the names of `used` (the keywords an op set on messages, in
  // the order the op named them) that are neither in the legacy table nor
  // in `values` (read by KeywordKeysToRead) nor known: their `k.` keys are
  // written with the op's MODSEQ, in the op itself.
  void DefineKeywords(const std::vector<std::string>& used,
                      const std::map<std::string, librados::bufferlist>& values, Mutation* m) const;
  // Resolves legacy keyword ids (MessageRecord::legacy_keyword_ids)
  // against the state they were read with; false if one is not in its
  // table (it is then left out).
  static bool ResolveLegacy(const MailboxState& state, std::vector<uint32_t>* ids,
                            std::vector<std::string>* names);
  static bool ResolveLegacy(const MailboxState& state, std::vector<MessageRecord>* records);
  // Resolves with the state this handle last read (reading it if need be).
  Status ResolveLegacyRecords(std::vector<MessageRecord>* records);
  // One ListAll attempt.
  Status ListOnce(std::vector<MessageRecord>* records, MailboxState* state,
                  std::vector<std::string>* keywords, size_t page);
  // ListOnce for a mailbox with sealed shards: adds the shards' records to
  // the index object's pages, listed from HIGHESTMODSEQ `since_modseq`
  // on and now at *state (*raw), and brings them all to a state read last.
  Status AddSealed(uint64_t since_modseq, std::vector<MessageRecord>* records, MailboxState* state,
                   librados::bufferlist* raw, std::vector<std::string>* keywords);
  // Every keyword name defined now, in the order first set (ListAll).
  Status ReadKeywords(const MailboxState& state, std::vector<std::string>* keywords);
  // The ops of change-log `entries` read with `state`, ascending (Changes).
  Status DecodeOps(const MailboxState& state, const std::map<std::string, librados::bufferlist>& entries,
                   std::vector<Change>* ops);
  void Notify();
  // Whether `when` is the current command's start (never without a command
  // clock, as in doveadm).
  bool InThisCommand(const struct timeval& when) const;
  // Records an op this handle committed (guarded by `guard`, writing
  // `written` and, when it advanced, `change`) in the chain of its own ops
  // of this command; starts the chain again when the op did not follow the
  // chain's last state.
  void RecordOwnOp(const librados::bufferlist& guard, const MailboxState& before,
                   const librados::bufferlist& written, const std::string& change_key,
                   const librados::bufferlist* change);
  // Changes() without a read: the ops after `since_modseq` when this
  // handle's own ops of this command are all that happened after it.
  bool ChangesFromOwnOps(uint64_t since_modseq, ChangeSet* changes);
  // GuardName()'s check of the state a client write plans from.
  Status ConfirmName(const MailboxState& state);
  // The values of `keys`, all records, as known_ has them at state_, the
  // state this handle last saw: false when one is not known there.
  bool KnownValues(const std::set<std::string>& keys, std::map<std::string, librados::bufferlist>* values);
  // known_ learns the records among `values`, read at state_.
  void LearnRecords(const std::map<std::string, librados::bufferlist>& values);
  // known_ learns what an op applied over `before` wrote and removed.
  void LearnWritten(const MailboxState& before, const Mutation& m);

  Account* account_;
  Guid guid_;
  std::string oid_;
  IndexShards shards_;
  // The records this handle's ops and reads named, as of a state: what a
  // STORE or EXPUNGE from state_ plans from without a read.
  KnownRecords known_;
  MailboxState state_;
  librados::bufferlist state_raw_;
  bool state_valid_ = false;
  // The command (Account::command_began) in which state_ was the
  // cluster's, as read or as written; {0, 0} when none.
  struct timeval state_seen_in_ {};
  // Inside Settle(): its undo ops neither settle again nor are kept as
  // unsettled (a second undo of the same change finds nothing to do).
  bool settling_ = false;
  // Keyword names known to be defined in `k.` keys: names are never
  // undefined, so once seen they need no read again.
  std::set<std::string> defined_keywords_;
  // The ops this handle committed one after another in the command
  // own_ops_in_, each guarded by the state the previous one wrote: their
  // change entries, the MODSEQ before the first, and the state the last
  // one wrote. While state_ is that state, nothing else happened after
  // own_ops_base_, and a cache at it or at one of these ops needs no read
  // to learn them (the sync that closes a STORE, EXPUNGE or APPEND).
  struct timeval own_ops_in_ {};
  uint64_t own_ops_base_ = 0;
  std::map<std::string, librados::bufferlist> own_ops_;
  librados::bufferlist own_ops_end_raw_;
  // GuardName(), and the command in which the list confirmed it.
  std::string guarded_name_;
  struct timeval name_confirmed_in_ {};
  // The state bytes the last ListAll's records are at (Remove's guard).
  librados::bufferlist listed_raw_;
};

}  // namespace rbd

#endif  // STORAGE_RBD_MAILBOX_INDEX_H_
