#include "mailbox_index.h"

#include <algorithm>
#include <cstring>
#include <ctime>
#include <tuple>

#include "index_shards.h"
#include "keys.h"
#include "mailbox_list.h"
#include "message_store.h"
#include "retry.h"

namespace rbd {

namespace {

// Change-log MODSEQs whose entries one op removes at most, so that a log
// far longer than its window (written before trimming existed, or after
// the window was narrowed) shrinks over several commits instead of making
// one of them large.
constexpr uint64_t kTrimStep = 512;
// The age window is kept in time slots of an eighth of
// rbd_changelog_max_age, one mark per slot that saw a commit, so an entry
// is trimmed at most that much later than its age says.
constexpr int64_t kMarksPerAge = 8;
// A committer looks whether overrides and tombstones of sealed UIDs have
// piled up in the index object whenever HIGHESTMODSEQ crosses a multiple
// of FoldAt() (or its own op wrote that many of them), and folds the
// shards they belong to when there are that many: the index object holds
// about that many keys of sealed UIDs at most between folds. An eighth of
// a shard, 1024 at the default size; small shards (tests) fold often.
uint64_t FoldAt(uint32_t shard_uids) { return std::clamp<uint64_t>(shard_uids / 8, 2, 1024); }
librados::bufferlist ToBufferlist(const std::string& s) {
  librados::bufferlist bl;
  bl.append(s);
  return bl;
}

// Keyword names as records keep them: sorted, unique.
std::vector<std::string> SortedNames(std::vector<std::string> names) {
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

// (current + add) - remove, all sorted and unique.
std::vector<std::string> ApplyKeywords(const std::vector<std::string>& current,
                                       const std::vector<std::string>& add,
                                       const std::vector<std::string>& remove) {
  std::vector<std::string> merged, out;
  std::set_union(current.begin(), current.end(), add.begin(), add.end(), std::back_inserter(merged));
  std::set_difference(merged.begin(), merged.end(), remove.begin(), remove.end(), std::back_inserter(out));
  return out;
}

// What a flag change to some messages writes into a node's transaction
// log when replayed, which decides its MODSEQ step (Mutation::Advance).
struct FlagDelta {
  bool flags = false;
  std::set<std::string> added, removed;

  // Counts a record going from `rec` to `flags` and `keywords`.
  void Add(const MessageRecord& rec, uint8_t new_flags, const std::vector<std::string>& keywords) {
    flags |= new_flags != rec.flags;
    std::set_difference(keywords.begin(), keywords.end(), rec.keywords.begin(), rec.keywords.end(),
                        std::inserter(added, added.end()));
    std::set_difference(rec.keywords.begin(), rec.keywords.end(), keywords.begin(), keywords.end(),
                        std::inserter(removed, removed.end()));
  }
  uint64_t Step() const { return (flags ? 1 : 0) + added.size() + removed.size(); }
};

// The keywords of `messages`, each once, in the order they are named.
std::vector<std::string> NamesOf(const std::vector<NewMessage>& messages) {
  std::vector<std::string> names;
  std::set<std::string> seen;
  for (const NewMessage& msg : messages)
    for (const std::string& name : msg.keywords)
      if (seen.insert(name).second) names.push_back(name);
  return names;
}

int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

template <typename T>
void SortByUid(std::vector<T>* v) {
  std::sort(v->begin(), v->end(), [](const T& a, const T& b) { return a.uid < b.uid; });
}

std::set<std::string> RecordKeys(const std::vector<uint32_t>& uids) {
  std::set<std::string> keys;
  for (uint32_t uid : uids) keys.insert(keys::RecordKey(uid));
  return keys;
}

// Moves the log floor towards `target` by at most kTrimStep MODSEQs,
// removing the entries of the MODSEQs it passes. Removal is by name: an
// entry exists for most MODSEQs (an op's MODSEQ is its key; only ops that
// change keywords skip some), and RADOS ignores the names that do not
// exist, so trimming needs no read of the log.
void RaiseLogFloor(uint64_t target, MailboxState* state, std::set<std::string>* remove) {
  target = std::min({target, state->highest_modseq, state->log_floor + kTrimStep});
  for (uint64_t modseq = state->log_floor + 1; modseq <= target; modseq++)
    remove->insert(keys::ChangeKey(modseq));
  state->log_floor = std::max(state->log_floor, target);
  auto& marks = state->log_marks;
  marks.erase(std::remove_if(marks.begin(), marks.end(),
                             [&](const LogMark& m) { return m.modseq <= state->log_floor; }),
              marks.end());
}

// The change log's window (doc/design.md, "The change log trims itself"):
// applied by every op that adds an entry, in the same guarded op, so no
// extra round trip, lease or scheduled task is needed, and the log can
// never outgrow its window by more than one op's kTrimStep.
void KeepLogWindow(const Config& config, int64_t now, MailboxState* state, std::set<std::string>* remove) {
  const int64_t max_age = config.changelog_max_age_seconds;
  const int64_t slot = std::max<int64_t>(1, max_age / kMarksPerAge);
  auto& marks = state->log_marks;
  if (max_age == 0) {
    marks.clear();
  } else if (marks.empty() || marks.back().time / slot < now / slot) {
    marks.push_back({state->highest_modseq, now});
  } else {
    // The slot's mark covers this op's entry too. A clock behind the last
    // writer's stays in that writer's slot, so marks stay few.
    marks.back() = {state->highest_modseq, std::max(marks.back().time, now)};
  }
  uint64_t target = state->log_floor;
  const uint64_t max_entries = config.changelog_max_entries;
  if (max_entries > 0 && state->highest_modseq > max_entries) target = state->highest_modseq - max_entries;
  for (const LogMark& mark : marks)
    if (max_age > 0 && mark.time <= now - max_age) target = std::max(target, mark.modseq);
  if (target > state->log_floor) RaiseLogFloor(target, state, remove);
}

}  // namespace

MailboxIndex::MailboxIndex(Account* account, const Guid& guid)
    : account_(account), guid_(guid), oid_(keys::IndexObject(guid)), shards_(account, guid) {}

Status MailboxIndex::Create(Account* account, const Guid& guid, uint32_t uidvalidity,
                            const std::string& name) {
  MailboxState state;
  state.uidvalidity = uidvalidity != 0 ? uidvalidity : static_cast<uint32_t>(std::time(nullptr));
  state.name = name;
  return Create(account, guid, state);
}

Status MailboxIndex::Create(Account* account, const Guid& guid, const MailboxState& state) {
  librados::ObjectWriteOperation op;
  op.create(true);
  op.setxattr(keys::kStateAttr, ToBufferlist(Encode(state)));
  const std::string oid = keys::IndexObject(guid);
  int r = account->Operate(account->index_io(), oid, &op);
  return r < 0 ? Status::FromRados(r, "create " + oid) : Status::OK();
}

Status MailboxIndex::ReadKeys(const std::set<std::string>& keys,
                              std::map<std::string, librados::bufferlist>* values, MailboxState* state_r,
                              librados::bufferlist* raw_r) {
  MailboxState own_state;
  librados::bufferlist own_raw;
  MailboxState* state = state_r != nullptr ? state_r : &own_state;
  librados::bufferlist* raw = raw_r != nullptr ? raw_r : &own_raw;
  std::set<std::string> object_keys = keys;
  for (const std::string& key : keys)
    if (auto uid = keys::ParseRecordKey(key)) object_keys.insert(keys::TombstoneKey(*uid));
  librados::ObjectReadOperation op;
  int attr_r = 0, omap_r = 0;
  op.getxattr(keys::kStateAttr, raw, &attr_r);
  if (!object_keys.empty()) op.omap_get_vals_by_keys(object_keys, values, &omap_r);
  int r = account_->Operate(account_->index_io(), oid_, &op);
  if (r == -ENOENT || r == -ENODATA) return Status::NotFound("mailbox index " + oid_ + " does not exist");
  if (r < 0) return Status::FromRados(r, "read " + oid_);
  Status s = Decode(raw->to_str(), state);
  if (!s.ok()) return Status::Corrupt(oid_ + ": " + s.message());
  // The shards are read after the index object (the header says why).
  std::map<uint32_t, std::set<std::string>> in_shards;
  for (const std::string& key : keys) {
    if (values->count(key) != 0) continue;
    auto uid = keys::ParseRecordKey(key);
    if (uid && values->count(keys::TombstoneKey(*uid)) != 0) continue;
    if (!uid) uid = keys::ParseInlineBodyKey(key);
    if (uid && *uid < state->SealedBelow()) in_shards[*uid / state->shard_uids].insert(key);
  }
  for (auto it = values->begin(); it != values->end();)
    it = keys::ParseTombstoneKey(it->first) ? values->erase(it) : std::next(it);
  for (const auto& [n, shard_keys] : in_shards) {
    std::map<std::string, librados::bufferlist> found;
    s = shards_.Read(n, shard_keys, &found);
    if (!s.ok()) return s;
    values->insert(found.begin(), found.end());
  }
  return Status::OK();
}

Status MailboxIndex::ReadStateAndKeys(const std::set<std::string>& keys,
                                      std::map<std::string, librados::bufferlist>* values) {
  librados::bufferlist raw;
  MailboxState state;
  std::map<std::string, librados::bufferlist> unused;
  Status s = ReadKeys(keys, values != nullptr ? values : &unused, &state, &raw);
  if (!s.ok()) {
    state_valid_ = false;
    return s;
  }
  state_ = std::move(state);
  state_raw_ = std::move(raw);
  state_valid_ = true;
  state_seen_in_ = account_->command_began();
  return Status::OK();
}

bool MailboxIndex::InThisCommand(const struct timeval& when) const {
  const struct timeval now = account_->command_began();
  return (now.tv_sec != 0 || now.tv_usec != 0) && now.tv_sec == when.tv_sec && now.tv_usec == when.tv_usec;
}

bool MailboxIndex::StateSeenInThisCommand() const { return state_valid_ && InThisCommand(state_seen_in_); }

Status MailboxIndex::ConfirmName(const MailboxState& state) {
  // The op applies only over this very state: a state naming the mailbox
  // so means the list gave it that name when the op applies. A rename
  // racing with the command is as if it came just after it.
  if (guarded_name_.empty() || state.name == guarded_name_ || InThisCommand(name_confirmed_in_))
    return Status::OK();
  const Status gone = Status::NotFound("mailbox " + guarded_name_ + " was renamed or deleted");
  if (!state.name.empty()) return gone;
  // A rename or delete in flight, or a state older than names.
  MailboxEntry entry;
  Status s = MailboxList(account_).Lookup(guarded_name_, &entry);
  if (s.IsNotFound() || (s.ok() && entry.guid != guid_)) return gone;
  if (!s.ok()) return s;
  name_confirmed_in_ = account_->command_began();
  return Status::OK();
}

void MailboxIndex::RecordOwnOp(const librados::bufferlist& guard, const MailboxState& before,
                               const librados::bufferlist& written, const std::string& change_key,
                               const librados::bufferlist* change) {
  if (!InThisCommand(own_ops_in_) || !guard.contents_equal(own_ops_end_raw_)) {
    own_ops_in_ = account_->command_began();
    own_ops_base_ = before.highest_modseq;
    own_ops_.clear();
  }
  if (change != nullptr) own_ops_[change_key] = *change;
  own_ops_end_raw_ = written;
}

bool MailboxIndex::ChangesFromOwnOps(uint64_t since_modseq, ChangeSet* changes) {
  if (!StateSeenInThisCommand() || !InThisCommand(own_ops_in_) ||
      !state_raw_.contents_equal(own_ops_end_raw_))
    return false;
  const std::string since_key = keys::ChangeKey(since_modseq);
  if (since_modseq != own_ops_base_ && own_ops_.count(since_key) == 0) return false;
  std::map<std::string, librados::bufferlist> after(own_ops_.upper_bound(since_key), own_ops_.end());
  if (!DecodeOps(state_, after, &changes->ops).ok()) return false;
  changes->state = state_;
  return true;
}

Status MailboxIndex::ReadState(MailboxState* state) {
  Status s = ReadStateAndKeys({}, nullptr);
  if (s.ok()) *state = state_;
  return s;
}

Status MailboxIndex::Mutate(const std::set<std::string>& read_keys, const Planner& plan) {
  // A failure here is the cluster's, which the op below meets as well.
  if (!settling_ && account_->unsettled().Has(guid_)) (void)Settle();
  RetryPolicy retry(account_->deadline());
  for (unsigned attempt = 1;; attempt++) {
    std::map<std::string, librados::bufferlist> values;
    const bool read = !state_valid_ || (!read_keys.empty() && !KnownValues(read_keys, &values));
    if (read) {
      values.clear();
      Status s = ReadStateAndKeys(read_keys, &values);
      if (!s.ok()) return s;
      LearnRecords(values);
    }
    Mutation m;
    m.state = state_;
    Status s = plan(values, &m);
    // A refusal planned from the state this handle last saw may be stale
    // (a name given back since): it is planned again from a read.
    if (!s.ok() && !read) {
      state_valid_ = false;
      continue;
    }
    if (!s.ok() || m.noop) return s;
    if (m.advanced) KeepLogWindow(account_->config(), Now(), &m.state, &m.remove);
    std::vector<uint32_t> appended;
    for (const MessageRecord& rec : m.appended) appended.push_back(rec.uid);
    const std::string change_key = m.advanced ? keys::ChangeKey(m.state.highest_modseq) : std::string();
    if (m.advanced) m.set[change_key] = ToBufferlist(Encode(ToChangeEntry(&m)));
    librados::bufferlist new_raw = ToBufferlist(Encode(m.state));
    const librados::bufferlist guard = state_raw_;
    librados::ObjectWriteOperation op;
    op.cmpxattr(keys::kStateAttr, LIBRADOS_CMPXATTR_OP_EQ, guard);
    op.setxattr(keys::kStateAttr, new_raw);
    if (!m.set.empty()) op.omap_set(m.set);
    if (!m.remove.empty()) op.omap_rm_keys(m.remove);
    int r = account_->Operate(account_->index_io(), oid_, &op, account_->write_deadline());
    state_valid_ = false;
    if (r == -ENOENT) return Status::NotFound("mailbox index " + oid_ + " does not exist");
    Outcome outcome = r == 0 ? Outcome::kApplied : Outcome::kNotApplied;
    if (r != 0 && r != -ECANCELED) {
      s = Status::FromRadosWrite(r, "update " + oid_);
      if (!s.IsUnknown()) return s;
      outcome =
          Resolve(guard, new_raw, change_key, change_key.empty() ? nullptr : &m.set[change_key], m.owned);
      if (outcome == Outcome::kUnknown) {
        if (m.advanced && !settling_ && (!appended.empty() || !m.before.empty()))
          account_->unsettled().Add(UnsettledChange{guid_, m.state.highest_modseq, new_raw.to_str(),
                                                    m.set[change_key].to_str(), std::move(appended),
                                                    std::move(m.before)});
        return s;
      }
    }
    if (outcome == Outcome::kApplied) {
      defined_keywords_.insert(m.defined.begin(), m.defined.end());
      if (r == 0) {
        RecordOwnOp(guard, state_, new_raw, change_key, change_key.empty() ? nullptr : &m.set[change_key]);
        LearnWritten(state_, m);
      } else {
        own_ops_in_ = {};  // resolved: others may have written since
        known_.Forget();
      }
      const MailboxState before = std::move(state_);
      state_ = m.state;
      state_raw_ = std::move(new_raw);
      state_valid_ = r == 0;  // resolved: others may have written since
      state_seen_in_ = account_->command_began();
      // Nobody watches: nobody to tell (KeepWatched).
      if (m.advanced && m.state.watched_until > static_cast<uint64_t>(Now())) Notify();
      if (m.advanced && r == 0 && !settling_) KeepShards(before, state_, m.set);
      return Status::OK();
    }
    if (!retry.Backoff(attempt)) {
      if (r != -ECANCELED) return Status::Unavailable("update " + oid_ + ": timed out, not applied");
      return Status::Conflict("update " + oid_ + ": gave up after " + std::to_string(attempt) +
                              " lost races");
    }
  }
}

bool MailboxIndex::KnownValues(const std::set<std::string>& keys,
                               std::map<std::string, librados::bufferlist>* values) {
  if (!known_.CurrentAt(state_)) return false;
  for (const std::string& key : keys) {
    auto uid = keys::ParseRecordKey(key);
    const MessageRecord* rec = uid ? known_.Find(*uid) : nullptr;
    if (rec == nullptr) return false;
    (*values)[key] = ToBufferlist(Encode(*rec));
  }
  return true;
}

void MailboxIndex::LearnRecords(const std::map<std::string, librados::bufferlist>& values) {
  if (!known_.CurrentAt(state_)) known_.Reset(state_);
  for (const auto& [key, bl] : values) {
    if (!keys::ParseRecordKey(key)) continue;
    MessageRecord rec;
    if (Decode(bl.to_str(), &rec).ok() && ResolveLegacy(state_, &rec.legacy_keyword_ids, &rec.keywords))
      known_.Put(rec);
  }
}

void MailboxIndex::LearnWritten(const MailboxState& before, const Mutation& m) {
  if (!known_.CurrentAt(before)) known_.Reset(m.state);
  for (const std::string& key : m.remove)
    if (auto uid = keys::ParseRecordKey(key)) known_.Drop(*uid);
  for (const auto& [key, bl] : m.set) {
    if (auto uid = keys::ParseTombstoneKey(key)) known_.Drop(*uid);
    if (!keys::ParseRecordKey(key)) continue;
    MessageRecord rec;
    if (Decode(bl.to_str(), &rec).ok()) known_.Put(rec);
  }
  known_.MoveTo(m.state);
}

void MailboxIndex::Mutation::Rewrite(const std::string& key, const MessageRecord& rec) {
  set[key] = ToBufferlist(Encode(rec));
  updated.push_back({rec.uid, rec.flags, rec.keywords, {}});
}

MailboxIndex::Outcome MailboxIndex::Resolve(const librados::bufferlist& guard,
                                            const librados::bufferlist& written,
                                            const std::string& change_key, const librados::bufferlist* change,
                                            bool owned) {
  // RADOS applies one client's ops on one object in the order it sent
  // them, and a timed-out op is never resent: once this read is answered,
  // the write either was applied before it or never will be.
  librados::ObjectReadOperation op;
  librados::bufferlist raw;
  std::map<std::string, librados::bufferlist> entries;
  int attr_r = 0, omap_r = 0;
  op.getxattr(keys::kStateAttr, &raw, &attr_r);
  if (change != nullptr) op.omap_get_vals_by_keys({change_key}, &entries, &omap_r);
  int r = account_->Operate(account_->index_io(), oid_, &op, account_->deadline() + Account::kResolveGrace);
  if (r < 0) return Outcome::kUnknown;
  // Every advancing op writes the change entry of its own MODSEQ. Another
  // op writes the same bytes only if it does the same thing from the same
  // state (the entries name the op's UIDs, GUIDs and flags): then either
  // one's being applied has the same effect.
  if (change != nullptr) {
    if (raw.contents_equal(written)) return Outcome::kApplied;
    auto it = entries.find(change_key);
    if (it != entries.end())
      return it->second.contents_equal(*change) ? Outcome::kApplied : Outcome::kNotApplied;
    // Settling long after the op: its entry may have left the log window.
    MailboxState state;
    auto modseq = keys::ParseChangeKey(change_key);
    if (!Decode(raw.to_str(), &state).ok() || !modseq || *modseq <= state.log_floor) return Outcome::kUnknown;
    return Outcome::kNotApplied;
  }
  // Without a change entry (maintenance and \Recent claims: no MODSEQ),
  // unchanged state bytes mean not applied, as the state only moves on.
  if (raw.contents_equal(guard)) return Outcome::kNotApplied;
  return raw.contents_equal(written) && !owned ? Outcome::kApplied : Outcome::kUnknown;
}

Status MailboxIndex::Settle() {
  settling_ = true;
  Status result;
  for (UnsettledChange& change : account_->unsettled().Take(guid_)) {
    const librados::bufferlist entry = ToBufferlist(change.entry);
    Outcome outcome =
        Resolve({}, ToBufferlist(change.state), keys::ChangeKey(change.modseq), &entry, /*owned=*/false);
    Status s = outcome == Outcome::kApplied   ? Undo(change)
               : outcome == Outcome::kUnknown ? Status::Unavailable("settle " + oid_ + ": no answer yet")
                                              : Status::OK();
    if (!s.ok()) {
      account_->unsettled().Add(std::move(change));
      if (result.ok()) result = s;
      continue;
    }
    account_->unsettled().Report(change, outcome == Outcome::kApplied ? Settlement::Outcome::kUndone
                                                                      : Settlement::Outcome::kNotApplied);
  }
  settling_ = false;
  return result;
}

void MailboxIndex::SettleAll(Account* account) {
  // The read would only wait out the deadline again, and a session ending
  // then would hold its process for nothing.
  if (account->last_op_timed_out()) return;
  for (const Guid& guid : account->unsettled().Mailboxes()) (void)MailboxIndex(account, guid).Settle();
}

Status MailboxIndex::Undo(const UnsettledChange& change) {
  if (!change.appended.empty()) {
    std::vector<uint32_t> expunged;
    Status s = Expunge(change.appended, &expunged);
    if (!s.ok()) return s;
  }
  if (change.before.empty()) return Status::OK();
  std::set<std::string> read_keys;
  for (const auto& [key, bl] : change.before) read_keys.insert(key);
  // The keywords restored were on the messages before, so they are defined.
  return Mutate(read_keys, [&](const auto& values, Mutation* m) -> Status {
    std::vector<std::pair<std::string, MessageRecord>> restored;
    FlagDelta delta;
    for (const auto& [key, bl] : values) {
      MessageRecord rec, old;
      Status ds = Decode(bl.to_str(), &rec);
      if (ds.ok()) ds = Decode(change.before.at(key), &old);
      if (!ds.ok()) return Status::Corrupt(oid_ + " " + key + ": " + ds.message());
      // Changed again since: that later change stands.
      if (rec.modseq != change.modseq) continue;
      (void)ResolveLegacy(m->state, &rec.legacy_keyword_ids, &rec.keywords);
      (void)ResolveLegacy(m->state, &old.legacy_keyword_ids, &old.keywords);
      if (old.flags == rec.flags && old.keywords == rec.keywords) continue;
      delta.Add(rec, old.flags, old.keywords);
      m->state.CountFlags(rec.flags, old.flags);
      rec.flags = old.flags;
      rec.keywords = std::move(old.keywords);
      restored.emplace_back(key, std::move(rec));
    }
    m->noop = restored.empty();
    if (m->noop) return Status::OK();
    const uint64_t modseq = m->Advance(delta.Step());
    for (auto& [key, rec] : restored) {
      rec.modseq = modseq;
      m->Rewrite(key, rec);
    }
    return Status::OK();
  });
}

ChangeEntry MailboxIndex::ToChangeEntry(Mutation* m) {
  ChangeEntry change;
  SortByUid(&m->appended);
  SortByUid(&m->updated);
  std::vector<uint32_t> changed;
  for (const MessageRecord& r : m->appended) changed.push_back(r.uid);
  for (const FlagState& u : m->updated) changed.push_back(u.uid);
  change.changed = ToRanges(std::move(changed));
  change.expunged = ToRanges(m->expunged);
  change.replayable = true;
  change.appended = std::move(m->appended);
  change.updated = std::move(m->updated);
  change.defined = std::move(m->newly_defined);
  return change;
}

void MailboxIndex::Notify() {
  account_->cluster()->Notify(account_->index_io(), oid_, std::to_string(state_.highest_modseq));
}

std::set<std::string> MailboxIndex::KeywordKeysToRead(const std::set<std::string>& names) const {
  std::set<std::string> keys;
  for (const std::string& name : names)
    if (defined_keywords_.count(name) == 0) keys.insert(keys::KeywordKey(name));
  return keys;
}

void MailboxIndex::DefineKeywords(const std::vector<std::string>& used,
                                  const std::map<std::string, librados::bufferlist>& values,
                                  Mutation* m) const {
  const std::vector<std::string>& legacy = m->state.legacy_keywords;
  uint32_t position = 0;
  for (const std::string& name : used) {
    const std::string key = keys::KeywordKey(name);
    if (defined_keywords_.count(name) != 0 || values.count(key) != 0 || m->set.count(key) != 0 ||
        std::find(legacy.begin(), legacy.end(), name) != legacy.end())
      continue;
    m->defined.push_back(name);
    m->newly_defined.push_back(name);
    m->set[key] = ToBufferlist(Encode(KeywordEntry{m->state.highest_modseq, position++}));
    m->state.keyword_count++;
  }
  for (const auto& [key, bl] : values)
    if (key.rfind(keys::kKeywordPrefix, 0) == 0)
      m->defined.push_back(key.substr(std::strlen(keys::kKeywordPrefix)));
}

bool MailboxIndex::ResolveLegacy(const MailboxState& state, std::vector<uint32_t>* ids,
                                 std::vector<std::string>* names) {
  if (ids->empty()) return true;
  bool known = true;
  for (uint32_t id : *ids) {
    if (id < state.legacy_keywords.size()) {
      names->push_back(state.legacy_keywords[id]);
    } else {
      known = false;
    }
  }
  ids->clear();
  *names = SortedNames(std::move(*names));
  return known;
}

bool MailboxIndex::ResolveLegacy(const MailboxState& state, std::vector<MessageRecord>* records) {
  bool known = true;
  for (MessageRecord& r : *records) known &= ResolveLegacy(state, &r.legacy_keyword_ids, &r.keywords);
  return known;
}

Status MailboxIndex::Append(const std::vector<NewMessage>& messages, std::vector<uint32_t>* uids,
                            uint32_t* claimed_first, uint32_t* claimed_end) {
  const Config& config = account_->config();
  MessageStore store(account_);
  // Bodies first (doc/design.md): a crash before the index op leaves only
  // unreferenced bodies, never a record without its body.
  std::vector<BodyToWrite> to_write;
  std::vector<Guid> shared;      // stored bodies that gain a reference
  std::vector<Guid> referenced;  // references this append holds
  for (const NewMessage& msg : messages) {
    if (msg.stored) {
      (msg.referenced ? referenced : shared).push_back(msg.guid);
    } else if (!msg.body) {
      return Status::Invalid("append: message without a body");
    } else if (msg.body->size() > config.inline_max) {
      BodyMeta meta;
      meta.first_mailbox = guid_;
      meta.received_date = msg.received_date;
      meta.save_date = msg.save_date;
      to_write.push_back({msg.guid, *msg.body, meta});
    }
  }
  std::vector<Status> statuses;
  std::vector<Status> unused;
  store.ChangeRefs(shared, +1, &statuses);
  for (size_t i = 0; i < shared.size(); i++)
    if (statuses[i].ok()) referenced.push_back(shared[i]);
  for (const Status& rs : statuses) {
    if (!rs.ok()) {
      store.ChangeRefs(referenced, -1, &unused);
      return rs;
    }
  }
  if (!to_write.empty()) {
    Status s = store.Write(to_write);
    for (const BodyToWrite& b : to_write) referenced.push_back(b.guid);
    if (!s.ok()) {
      store.ChangeRefs(referenced, -1, &unused);
      return s;
    }
  }
  const std::vector<std::string> names = NamesOf(messages);
  const std::set<std::string> to_read = KeywordKeysToRead({names.begin(), names.end()});
  Status s = Mutate(to_read, [&](const auto& values, Mutation* m) -> Status {
    if (Status named = ConfirmName(m->state); !named.ok()) return named;
    // UIDs wanted at or above UIDNEXT are given; the others follow the
    // highest UID given, as Dovecot's mail_index_append_finish_uids() does.
    std::set<uint32_t> wanted;
    uint64_t next = m->state.uidnext;
    for (const NewMessage& msg : messages) {
      if (msg.uid >= m->state.uidnext && wanted.insert(msg.uid).second)
        next = std::max(next, uint64_t{msg.uid} + 1);
    }
    if (next + (messages.size() - wanted.size()) > UINT32_MAX)
      return Status::Invalid("append to " + oid_ + ": UID space exhausted");
    uids->clear();
    const uint64_t modseq = m->Advance(1 + names.size());
    DefineKeywords(names, values, m);
    for (size_t i = 0; i < messages.size(); i++) {
      const NewMessage& msg = messages[i];
      MessageRecord rec;
      rec.uid = wanted.erase(msg.uid) != 0 ? msg.uid : static_cast<uint32_t>(next++);
      rec.guid = msg.guid;
      rec.guid_text = msg.guid_text;
      rec.flags = msg.flags;
      rec.keywords = SortedNames(msg.keywords);
      rec.modseq = modseq;
      rec.received_date = msg.received_date;
      rec.save_date = msg.save_date;
      rec.physical_size = msg.physical_size;
      rec.virtual_size = msg.virtual_size;
      rec.pop3_uidl = msg.pop3_uidl;
      rec.inline_body = !msg.stored && msg.body->size() <= config.inline_max;
      if (rec.inline_body) {
        InlineBody inl{BodyChecksum(*msg.body), std::string(*msg.body)};
        m->set[keys::InlineBodyKey(rec.uid)] = ToBufferlist(Encode(inl));
      }
      m->set[keys::RecordKey(rec.uid)] = ToBufferlist(Encode(rec));
      m->state.CountAdded(rec);
      uids->push_back(rec.uid);
      m->appended.push_back(std::move(rec));
    }
    m->state.uidnext = static_cast<uint32_t>(next);
    if (claimed_first != nullptr) {
      *claimed_first = m->state.first_recent_uid;
      *claimed_end = m->state.uidnext;
      m->state.ClaimRecentTo(m->state.uidnext);
    }
    return Status::OK();
  });
  // A claim that may or may not have been applied claims nothing (as in
  // ClaimRecent).
  if (claimed_first != nullptr && !s.ok()) *claimed_end = *claimed_first;
  // Nothing was published: give back the references taken above. An
  // unknown outcome keeps them, since the records may still appear; if
  // they never do, gc reclaims the bodies after rbd_gc_grace.
  if (!s.ok() && !s.IsUnknown()) store.ChangeRefs(referenced, -1, &unused);
  return s;
}

Status MailboxIndex::CopyFrom(MailboxIndex* source, const std::vector<uint32_t>& source_uids,
                              const std::vector<std::optional<FlagOverride>>& overrides,
                              std::vector<uint32_t>* dest_uids) {
  std::vector<MessageRecord> records;
  Status s = source->LookupRecords(source_uids, &records);
  if (!s.ok()) return s;
  std::map<uint32_t, const MessageRecord*> by_uid;
  for (const MessageRecord& r : records) by_uid[r.uid] = &r;
  // Expunged since the caller's session last synced: copied as the session
  // shows it, while gc has not reclaimed the body.
  std::set<uint32_t> shown_only;
  for (size_t i = 0; i < source_uids.size() && i < overrides.size(); i++) {
    if (by_uid.count(source_uids[i]) || !overrides[i] || !overrides[i]->shown) continue;
    by_uid[source_uids[i]] = &*overrides[i]->shown;
    shown_only.insert(source_uids[i]);
  }

  // Inline bodies travel with the copy; stored ones are shared.
  std::set<std::string> inline_keys;
  for (const auto& [uid, r] : by_uid)
    if (r->inline_body) inline_keys.insert(keys::InlineBodyKey(uid));
  std::map<std::string, librados::bufferlist> inline_bodies;
  if (!inline_keys.empty()) {
    s = source->ReadKeys(inline_keys, &inline_bodies);
    if (!s.ok()) return s;
  }

  MessageStore store(account_);
  // References on stored bodies are taken here, all in one batch, so that
  // a body gone from the store (gc reclaimed it, or it was lost) makes its
  // message expunged for this COPY, as in any other storage, rather than
  // failing the whole command.
  std::vector<Guid> stored;
  std::vector<size_t> stored_at;
  for (size_t i = 0; i < source_uids.size(); i++) {
    auto it = by_uid.find(source_uids[i]);
    if (it != by_uid.end() && !it->second->inline_body) {
      stored.push_back(it->second->guid);
      stored_at.push_back(i);
    }
  }
  std::vector<Status> ref_statuses;
  store.ChangeRefs(stored, +1, &ref_statuses);
  std::vector<bool> referenced(source_uids.size(), false), gone(source_uids.size(), false);
  Status ref_failure;
  for (size_t j = 0; j < stored.size(); j++) {
    if (ref_statuses[j].ok()) {
      referenced[stored_at[j]] = true;
    } else if (ref_statuses[j].IsNotFound()) {
      gone[stored_at[j]] = true;
    } else if (ref_failure.ok()) {
      ref_failure = ref_statuses[j];
    }
  }
  auto give_back = [&](const Status& status) {
    std::vector<Guid> held;
    for (size_t j = 0; j < stored.size(); j++)
      if (referenced[stored_at[j]]) held.push_back(stored[j]);
    std::vector<Status> unused;
    store.ChangeRefs(held, -1, &unused);
    return status;
  };
  if (!ref_failure.ok()) return give_back(ref_failure);

  std::vector<NewMessage> messages;
  std::vector<std::string> inline_storage;
  inline_storage.reserve(source_uids.size());
  std::vector<size_t> message_of(source_uids.size(), SIZE_MAX);
  for (size_t i = 0; i < source_uids.size(); i++) {
    auto it = by_uid.find(source_uids[i]);
    if (it == by_uid.end() || gone[i]) continue;
    const MessageRecord& r = *it->second;
    NewMessage msg;
    msg.guid = r.guid;
    msg.guid_text = r.guid_text;
    if (r.inline_body) {
      auto body = inline_bodies.find(keys::InlineBodyKey(r.uid));
      if (shown_only.count(r.uid) != 0 && body == inline_bodies.end()) continue;  // reclaimed
      InlineBody inl;
      Status ds = Decode(body == inline_bodies.end() ? "" : body->second.to_str(), &inl);
      if (!ds.ok()) return give_back(Status::Corrupt(source->oid_ + ": " + ds.message()));
      inline_storage.push_back(std::move(inl.bytes));
      msg.body = inline_storage.back();
    } else {
      msg.stored = msg.referenced = true;
    }
    if (i < overrides.size() && overrides[i]) {
      msg.flags = overrides[i]->flags;
      msg.keywords = overrides[i]->keywords;
      msg.uid = overrides[i]->uid;
    } else {
      msg.flags = r.flags;
      msg.keywords = r.keywords;
    }
    msg.received_date = r.received_date;
    msg.save_date = r.save_date;
    msg.physical_size = r.physical_size;
    msg.virtual_size = r.virtual_size;
    message_of[i] = messages.size();
    messages.push_back(std::move(msg));
  }
  dest_uids->assign(source_uids.size(), 0);
  // A session's COPY copies all its messages or none (see the header).
  if (!overrides.empty() && messages.size() < source_uids.size()) return give_back(Status::OK());
  std::vector<uint32_t> uids;
  if (!messages.empty()) {
    s = Append(messages, &uids);
    if (!s.ok()) return s;
  }
  for (size_t i = 0; i < source_uids.size(); i++)
    if (message_of[i] != SIZE_MAX) (*dest_uids)[i] = uids[message_of[i]];
  return Status::OK();
}

Status MailboxIndex::UpdateFlags(const std::vector<FlagChange>& changes, std::vector<uint32_t>* conflicts,
                                 uint64_t* modseq) {
  bool changed = false;
  std::vector<std::pair<std::vector<std::string>, std::vector<std::string>>> names;  // add, remove
  std::set<std::string> read_keys;
  for (const FlagChange& c : changes) {
    names.emplace_back(SortedNames(c.update.add_keywords), SortedNames(c.update.remove_keywords));
    read_keys.merge(RecordKeys(c.uids));
    read_keys.merge(KeywordKeysToRead({names.back().first.begin(), names.back().first.end()}));
  }
  Status s = Mutate(read_keys, [&](const auto& values, Mutation* m) -> Status {
    if (Status named = ConfirmName(m->state); !named.ok()) return named;
    conflicts->clear();
    m->before.clear();
    std::map<std::string, MessageRecord> before;
    for (const auto& [key, bl] : values) {
      if (!keys::ParseRecordKey(key)) continue;
      MessageRecord rec;
      Status ds = Decode(bl.to_str(), &rec);
      if (!ds.ok()) return Status::Corrupt(oid_ + " " + key + ": " + ds.message());
      (void)ResolveLegacy(m->state, &rec.legacy_keyword_ids, &rec.keywords);
      before.emplace(key, std::move(rec));
    }
    // Each record as the changes leave it, applied in their order.
    std::map<std::string, MessageRecord> after;
    for (size_t i = 0; i < changes.size(); i++) {
      const FlagUpdate& update = changes[i].update;
      for (uint32_t uid : changes[i].uids) {
        auto it = before.find(keys::RecordKey(uid));
        if (it == before.end()) continue;
        if (update.unchanged_since != 0 && it->second.modseq > update.unchanged_since) {
          conflicts->push_back(uid);
          continue;
        }
        MessageRecord& rec = after.try_emplace(it->first, it->second).first->second;
        rec.flags = static_cast<uint8_t>((rec.flags | update.add_flags) & ~update.remove_flags);
        rec.keywords = ApplyKeywords(rec.keywords, names[i].first, names[i].second);
      }
    }
    std::sort(conflicts->begin(), conflicts->end());
    conflicts->erase(std::unique(conflicts->begin(), conflicts->end()), conflicts->end());
    std::vector<std::pair<std::string, MessageRecord>> updated;
    FlagDelta delta;
    for (auto& [key, rec] : after) {
      const MessageRecord& old = before.at(key);
      if (rec.flags == old.flags && rec.keywords == old.keywords) continue;
      delta.Add(old, rec.flags, rec.keywords);
      m->state.CountFlags(old.flags, rec.flags);
      m->before[key] = values.at(key).to_str();
      updated.emplace_back(key, std::move(rec));
    }
    // A new keyword name alone is not worth a MODSEQ.
    m->noop = updated.empty();
    changed = !m->noop;
    if (m->noop) return Status::OK();
    const uint64_t modseq = m->Advance(delta.Step());
    std::vector<std::string> added_in_order;
    for (const FlagChange& c : changes)
      for (const std::string& name : c.update.add_keywords)
        if (delta.added.erase(name) != 0) added_in_order.push_back(name);
    DefineKeywords(added_in_order, values, m);
    for (auto& [key, rec] : updated) {
      rec.modseq = modseq;
      m->Rewrite(key, rec);
    }
    return Status::OK();
  });
  if (s.ok()) *modseq = changed ? state_.highest_modseq : 0;
  return s;
}

Status MailboxIndex::Touch(const std::vector<uint32_t>& uids, uint64_t min_modseq, uint64_t* modseq) {
  bool touched = false;
  Status s = Mutate(RecordKeys(uids), [&](const auto& values, Mutation* m) -> Status {
    m->noop = values.empty();
    touched = !m->noop;
    if (m->noop) return Status::OK();
    // A replay writes no counted record for it, only MODSEQ updates, which
    // raise: any step lands it exactly; a larger one lifts it above what
    // the asking node counted.
    const uint64_t step = min_modseq > m->state.highest_modseq ? min_modseq - m->state.highest_modseq : 1;
    const uint64_t new_modseq = m->Advance(step);
    for (const auto& [key, bl] : values) {
      MessageRecord rec;
      Status ds = Decode(bl.to_str(), &rec);
      if (!ds.ok()) return Status::Corrupt(oid_ + " " + key + ": " + ds.message());
      (void)ResolveLegacy(m->state, &rec.legacy_keyword_ids, &rec.keywords);
      rec.modseq = new_modseq;
      m->Rewrite(key, rec);
    }
    return Status::OK();
  });
  if (s.ok()) *modseq = touched ? state_.highest_modseq : 0;
  return s;
}

Status MailboxIndex::Expunge(const std::vector<uint32_t>& uids, std::vector<uint32_t>* expunged) {
  std::vector<Guid> stored;
  Status s = Mutate(RecordKeys(uids), [&](const auto& values, Mutation* m) -> Status {
    if (Status named = ConfirmName(m->state); !named.ok()) return named;
    stored.clear();
    const librados::bufferlist released = ToBufferlist(Encode(BodyRef{0, Now()}));
    for (const auto& [key, bl] : values) {
      MessageRecord rec;
      Status ds = Decode(bl.to_str(), &rec);
      if (!ds.ok()) return Status::Corrupt(oid_ + " " + key + ": " + ds.message());
      m->remove.insert(key);
      // The shard's copy stays until a fold: the tombstone hides it.
      if (rec.uid < m->state.SealedBelow()) m->set[keys::TombstoneKey(rec.uid)] = librados::bufferlist();
      // The body outlives the record: sessions may still show the message
      // (MessageStore's reference rule; gc reclaims it after the grace).
      if (rec.inline_body) {
        m->set[keys::ReleasedBodyKey(rec.uid)] = released;
      } else {
        stored.push_back(rec.guid);
      }
      m->state.CountRemoved(rec);
      m->expunged.push_back(rec.uid);
    }
    m->noop = m->expunged.empty();
    *expunged = m->expunged;
    if (!m->noop) m->Advance(1);
    return Status::OK();
  });
  if (!s.ok()) return s;
  // The records are gone: now the references may go. A failure here only
  // leaves a count too high, which gc repairs.
  std::vector<Status> statuses;
  MessageStore(account_).ChangeRefs(stored, -1, &statuses);
  return Status::OK();
}

Status MailboxIndex::ClaimRecent(uint32_t up_to, uint32_t* first, uint32_t* end) {
  // A write is guarded, but a no-op is decided on the state this handle
  // last saw: fine when that state has reached the caller's UIDNEXT (the
  // first recent UID only grows), re-read when it is older than that.
  if (state_.uidnext < up_to) state_valid_ = false;
  Status s = Mutate({}, [&](const auto&, Mutation* m) -> Status {
    *first = m->state.first_recent_uid;
    *end = std::max(*first, std::min(up_to, m->state.uidnext));
    m->noop = *end == *first;
    m->owned = true;
    m->state.ClaimRecentTo(*end);
    // Short of UIDNEXT (a session behind concurrent appends) the messages
    // of [end, UIDNEXT) stay recent: counted from their records while
    // they are few and all in this object, so that STATUS RECENT still
    // reads the state alone. The guard makes the count hold at the commit.
    const MailboxState& st = m->state;
    if (!m->noop && !st.recent_counted && *end >= st.SealedBelow() && st.uidnext - *end <= kRecentCountMax) {
      std::map<std::string, librados::bufferlist> rest;
      int r = ReadPages(keys::RecordKey(*end - 1), keys::kRecordPrefix, st.uidnext - *end, PageState::kIgnore,
                        nullptr, &rest);
      if (r < 0) return Status::FromRados(r, "read " + oid_);
      m->state.recent_messages = static_cast<uint32_t>(rest.size());
      m->state.recent_counted = true;
    }
    return Status::OK();
  });
  // A claim that may or may not have been applied claims nothing: its
  // messages are then \Recent in no session, where taking them could make
  // them \Recent in two.
  if (s.IsUnknown()) {
    *end = *first;
    return Status::OK();
  }
  return s;
}

Status MailboxIndex::KeepWatched(std::chrono::seconds for_at_least) {
  // watched_until only grows, so any state this handle has seen that
  // reaches far enough proves the cluster's does, current or not: an IDLE
  // poll reads nothing. A write guarded by a stale state is refused and
  // planned again from a read.
  const uint64_t wanted = static_cast<uint64_t>(Now() + for_at_least.count());
  if (state_.watched_until >= wanted) return Status::OK();
  return Mutate({}, [&](const auto&, Mutation* m) -> Status {
    m->noop = m->state.watched_until >= wanted;
    m->state.watched_until = std::max(m->state.watched_until, wanted + for_at_least.count());
    return Status::OK();
  });
}

Status MailboxIndex::SetCounters(const MailboxState& listed, const MailboxState& counted) {
  state_valid_ = false;  // compared with the cluster's state, not a cached one
  return Mutate({}, [&](const auto&, Mutation* m) -> Status {
    if (!(m->state == listed)) return Status::Conflict(oid_ + " changed since its records were counted");
    m->state.messages = counted.messages;
    m->state.virtual_size = counted.virtual_size;
    m->state.physical_size = counted.physical_size;
    m->state.seen_messages = counted.seen_messages;
    m->state.seen_counted = true;
    m->state.recent_messages = counted.recent_messages;
    m->state.recent_counted = true;
    m->state.uidnext = std::max(m->state.uidnext, counted.uidnext);
    return Status::OK();
  });
}

int MailboxIndex::ReadPages(const std::string& after, const char* prefix, size_t max, PageState mode,
                            librados::bufferlist* state_raw,
                            std::map<std::string, librados::bufferlist>* values) {
  values->clear();
  std::string from = after;
  bool more = true;
  while (more && values->size() < max) {
    std::map<std::string, librados::bufferlist> page;
    librados::ObjectReadOperation op;
    int attr_r = 0, omap_r = 0;
    if (mode == PageState::kRead) {
      op.getxattr(keys::kStateAttr, state_raw, &attr_r);
    } else if (mode == PageState::kGuard) {
      op.cmpxattr(keys::kStateAttr, LIBRADOS_CMPXATTR_OP_EQ, *state_raw);
    }
    op.omap_get_vals2(from, prefix, std::min(kOmapPage, max - values->size()), &page, &more, &omap_r);
    int r = account_->Operate(account_->index_io(), oid_, &op);
    if (r < 0) return r;
    if (mode == PageState::kRead) mode = PageState::kGuard;
    if (page.empty()) break;
    from = page.rbegin()->first;
    values->insert(page.begin(), page.end());
  }
  return 0;
}

namespace {

Status DecodeRecords(const std::string& oid, const std::map<std::string, librados::bufferlist>& values,
                     std::vector<MessageRecord>* records) {
  records->clear();
  records->reserve(values.size());
  for (const auto& [key, bl] : values) {
    MessageRecord rec;
    Status s = Decode(bl.to_str(), &rec);
    if (!s.ok()) return Status::Corrupt(oid + " " + key + ": " + s.message());
    records->push_back(std::move(rec));
  }
  return Status::OK();
}

}  // namespace

Status MailboxIndex::ListRecords(uint32_t after_uid, size_t max, std::vector<MessageRecord>* records) {
  records->clear();
  MailboxState state;
  std::map<std::string, librados::bufferlist> values;
  Status s = ReadKeys({}, &values, &state);
  if (!s.ok()) return s;
  // Sealed shards first, one UID range at a time, then the index object's
  // own records above them.
  uint64_t from = uint64_t{after_uid} + 1;
  while (from < state.SealedBelow() && records->size() < max) {
    const uint32_t n = static_cast<uint32_t>(from / state.shard_uids);
    const uint64_t end = uint64_t{n + 1} * state.shard_uids;
    std::vector<MessageRecord> sealed;
    s = ListSealed(state, n, from, end, &sealed);
    if (!s.ok()) return s;
    if (sealed.size() > max - records->size()) sealed.resize(max - records->size());
    from = sealed.size() == max - records->size() && !sealed.empty() ? uint64_t{sealed.back().uid} + 1 : end;
    records->insert(records->end(), std::make_move_iterator(sealed.begin()),
                    std::make_move_iterator(sealed.end()));
  }
  if (records->size() < max) {
    s = ReadUidRange(account_, oid_, keys::kRecordPrefix, std::max(from, state.SealedBelow()),
                     uint64_t{UINT32_MAX} + 1, max - records->size(), &values);
    std::vector<MessageRecord> unsealed;
    if (s.ok()) s = DecodeRecords(oid_, values, &unsealed);
    if (!s.ok()) return s;
    records->insert(records->end(), std::make_move_iterator(unsealed.begin()),
                    std::make_move_iterator(unsealed.end()));
  }
  (void)ResolveLegacy(state, records);
  return Status::OK();
}

Status MailboxIndex::ListSealed(const MailboxState& state, uint32_t n, uint64_t lo, uint64_t hi,
                                std::vector<MessageRecord>* records) {
  std::map<std::string, librados::bufferlist> overrides, tombstones, sealed;
  Status s = ReadUidRange(account_, oid_, keys::kRecordPrefix, lo, hi, SIZE_MAX, &overrides);
  if (s.ok()) s = ReadUidRange(account_, oid_, keys::kTombstonePrefix, lo, hi, SIZE_MAX, &tombstones);
  if (s.ok()) s = ReadUidRange(account_, shards_.Oid(n), keys::kRecordPrefix, lo, hi, SIZE_MAX, &sealed);
  if (!s.ok()) return s;
  for (const auto& [key, bl] : tombstones) sealed.erase(keys::RecordKey(*keys::ParseTombstoneKey(key)));
  overrides.merge(sealed);  // keeps the index object's value of a key in both
  return DecodeRecords(oid_, overrides, records);
}

Status MailboxIndex::ResolveLegacyRecords(std::vector<MessageRecord>* records) {
  if (std::all_of(records->begin(), records->end(),
                  [](const MessageRecord& r) { return r.legacy_keyword_ids.empty(); }))
    return Status::OK();
  // The legacy table only ever grew, and no writer adds to it any more.
  if (!state_valid_) {
    Status s = ReadStateAndKeys({}, nullptr);
    if (!s.ok()) return s;
  }
  (void)ResolveLegacy(state_, records);
  return Status::OK();
}

Status MailboxIndex::ReadKeywords(const MailboxState& state, std::vector<std::string>* keywords) {
  *keywords = state.legacy_keywords;
  if (state.keyword_count == 0) return Status::OK();
  // Not guarded: names are never undefined, so a read after `state` finds
  // its names and perhaps later ones, each in its place in the order.
  std::map<std::string, librados::bufferlist> values;
  int r =
      ReadPages(keys::kKeywordPrefix, keys::kKeywordPrefix, SIZE_MAX, PageState::kIgnore, nullptr, &values);
  if (r < 0) return Status::FromRados(r, "list keywords of " + oid_);
  std::vector<std::tuple<uint64_t, uint32_t, std::string>> defined;
  for (const auto& [key, bl] : values) {
    KeywordEntry entry;
    Status s = Decode(bl.to_str(), &entry);
    if (!s.ok()) return Status::Corrupt(oid_ + " " + key + ": " + s.message());
    defined.emplace_back(entry.created, entry.position, key.substr(std::strlen(keys::kKeywordPrefix)));
  }
  std::sort(defined.begin(), defined.end());
  for (auto& [created, position, name] : defined) {
    defined_keywords_.insert(name);
    keywords->push_back(std::move(name));
  }
  return Status::OK();
}

namespace {

// Brings listed records (ascending UIDs) forward over ops committed after
// they were read: flag changes and expunges of listed UIDs, and the
// keyword names the ops defined; with `appends`, also the records the ops
// appended that are not listed. Between pages appends are left out: their
// UIDs are above every UID listed so far, so a later page lists them.
// Replaying an op a record already reflects is harmless: ops are applied
// in order and carry whole flag sets, so the last op wins.
void Forward(const std::vector<Change>& ops, bool appends, std::vector<MessageRecord>* records,
             std::vector<std::string>* keywords) {
  auto at = [&](uint32_t uid) {
    return std::lower_bound(records->begin(), records->end(), uid,
                            [](const MessageRecord& r, uint32_t u) { return r.uid < u; });
  };
  auto find = [&](uint32_t uid) {
    auto it = at(uid);
    return it != records->end() && it->uid == uid ? it : records->end();
  };
  for (const Change& op : ops) {
    for (const MessageRecord& rec : op.entry.appended) {
      auto it = at(rec.uid);
      if (appends && (it == records->end() || it->uid != rec.uid)) records->insert(it, rec);
    }
    for (const FlagState& u : op.entry.updated) {
      auto it = find(u.uid);
      if (it == records->end()) continue;
      it->flags = u.flags;
      it->keywords = u.keywords;
      it->legacy_keyword_ids.clear();
      it->modseq = op.modseq;
    }
    auto range = op.entry.expunged.begin();
    records->erase(std::remove_if(records->begin(), records->end(),
                                  [&](const MessageRecord& r) {
                                    while (range != op.entry.expunged.end() && range->last < r.uid) ++range;
                                    return range != op.entry.expunged.end() && range->first <= r.uid;
                                  }),
                   records->end());
    if (keywords == nullptr) continue;
    for (const std::string& name : op.entry.defined)
      if (std::find(keywords->begin(), keywords->end(), name) == keywords->end()) keywords->push_back(name);
  }
}

}  // namespace

Status MailboxIndex::ListOnce(std::vector<MessageRecord>* records, MailboxState* state,
                              std::vector<std::string>* keywords, size_t page) {
  records->clear();
  librados::bufferlist raw;  // the state the records listed so far are at
  uint64_t first_modseq = 0;
  std::string from = keys::kRecordPrefix;
  for (bool first = true, more = true; more; first = false) {
    librados::ObjectReadOperation op;
    librados::bufferlist now_raw;
    std::map<std::string, librados::bufferlist> values, entries;
    bool entries_more = false;
    int attr_r = 0, omap_r = 0, log_r = 0;
    op.getxattr(keys::kStateAttr, &now_raw, &attr_r);
    op.omap_get_vals2(from, keys::kRecordPrefix, page, &values, &more, &omap_r);
    if (!first) {
      op.omap_get_vals2(keys::ChangeKey(state->highest_modseq), keys::kChangePrefix, kOmapPage, &entries,
                        &entries_more, &log_r);
    }
    int r = account_->Operate(account_->index_io(), oid_, &op);
    if (r == -ENOENT || r == -ENODATA) return Status::NotFound("mailbox index " + oid_ + " does not exist");
    if (r < 0) return Status::FromRados(r, "list " + oid_);
    if (first || !now_raw.contents_equal(raw)) {
      MailboxState now;
      Status s = Decode(now_raw.to_str(), &now);
      if (!s.ok()) return Status::Corrupt(oid_ + ": " + s.message());
      if (first) {
        // Growing by doubling would hold up to twice a big mailbox's records.
        records->reserve(now.messages);
        first_modseq = now.highest_modseq;
        if (keywords != nullptr) s = ReadKeywords(now, keywords);
      } else if (entries_more || now.log_floor > state->highest_modseq) {
        s = Status::Conflict(oid_ + ": its change log moved past the listing");
      } else {
        std::vector<Change> ops;
        s = DecodeOps(now, entries, &ops);
        if (s.code() == Code::kResync) s = Status::Conflict(s.message());
        if (s.ok()) Forward(ops, /*appends=*/false, records, keywords);
      }
      if (!s.ok()) return s;
      *state = std::move(now);
      raw = std::move(now_raw);
    }
    std::vector<MessageRecord> listed;
    Status s = DecodeRecords(oid_, values, &listed);
    if (!s.ok()) return s;
    records->insert(records->end(), std::make_move_iterator(listed.begin()),
                    std::make_move_iterator(listed.end()));
    if (!values.empty()) from = values.rbegin()->first;
  }
  if (state->SealedBelow() != 0) {
    Status s = AddSealed(first_modseq, records, state, &raw, keywords);
    if (!s.ok()) return s;
  }
  (void)ResolveLegacy(*state, records);
  listed_raw_ = std::move(raw);
  return Status::OK();
}

Status MailboxIndex::AddSealed(uint64_t since_modseq, std::vector<MessageRecord>* records,
                               MailboxState* state, librados::bufferlist* raw,
                               std::vector<std::string>* keywords) {
  // After the index object's pages (the header says why): its tombstones,
  // then the shards.
  std::map<std::string, librados::bufferlist> values;
  Status s = ReadUidRange(account_, oid_, keys::kTombstonePrefix, 0, state->SealedBelow(), SIZE_MAX, &values);
  if (!s.ok()) return s;
  std::set<uint32_t> hidden;  // overridden or tombstoned
  for (const auto& [key, bl] : values) hidden.insert(*keys::ParseTombstoneKey(key));
  for (const MessageRecord& r : *records)
    if (r.uid < state->SealedBelow()) hidden.insert(r.uid);
  std::vector<std::vector<MessageRecord>> by_shard(state->sealed_shards);
  s = shards_.ListRecords(
      state->sealed_shards, [&](uint32_t n, const std::map<std::string, librados::bufferlist>& listed) {
        Status ds = DecodeRecords(shards_.Oid(n), listed, &by_shard[n]);
        auto& records = by_shard[n];
        records.erase(std::remove_if(records.begin(), records.end(),
                                     [&](const MessageRecord& r) { return hidden.count(r.uid) != 0; }),
                      records.end());
        return ds;
      });
  if (!s.ok()) return s;
  // Merged into *records itself, which ListOnce reserved for the whole
  // mailbox: at a million records each full-size copy more costs hundreds
  // of MB of fresh memory, and touching fresh memory is what a big listing
  // spends most of its time on. The index object's own records (two
  // shards' worth at most) step aside; each shard is freed once moved.
  std::vector<MessageRecord> own(std::make_move_iterator(records->begin()),
                                 std::make_move_iterator(records->end()));
  records->clear();
  size_t total = own.size();
  for (const auto& shard : by_shard) total += shard.size();
  records->reserve(total);
  auto next_own = own.begin();
  for (auto& shard : by_shard) {
    for (MessageRecord& r : shard) {
      for (; next_own != own.end() && next_own->uid < r.uid; ++next_own)
        records->push_back(std::move(*next_own));
      records->push_back(std::move(r));
    }
    std::vector<MessageRecord>().swap(shard);
  }
  records->insert(records->end(), std::make_move_iterator(next_own), std::make_move_iterator(own.end()));

  // A shard may hold a record newer than the pages' states (folded since):
  // everything is brought forward over every op since the first page, to
  // a state read after the shards.
  librados::ObjectReadOperation op;
  librados::bufferlist now_raw;
  std::map<std::string, librados::bufferlist> entries;
  bool more = false;
  int attr_r = 0, log_r = 0;
  op.getxattr(keys::kStateAttr, &now_raw, &attr_r);
  op.omap_get_vals2(keys::ChangeKey(since_modseq), keys::kChangePrefix, kOmapPage, &entries, &more, &log_r);
  int r = account_->Operate(account_->index_io(), oid_, &op);
  if (r == -ENOENT || r == -ENODATA) return Status::NotFound("mailbox index " + oid_ + " does not exist");
  if (r < 0) return Status::FromRados(r, "list " + oid_);
  MailboxState now;
  s = Decode(now_raw.to_str(), &now);
  if (!s.ok()) return Status::Corrupt(oid_ + ": " + s.message());
  if (more || now.log_floor > since_modseq)
    return Status::Conflict(oid_ + ": its change log moved past the listing");
  std::vector<Change> ops;
  s = DecodeOps(now, entries, &ops);
  if (s.code() == Code::kResync) return Status::Conflict(s.message());
  if (!s.ok()) return s;
  Forward(ops, /*appends=*/true, records, keywords);
  *state = std::move(now);
  *raw = std::move(now_raw);
  return Status::OK();
}

Status MailboxIndex::ListAll(std::vector<MessageRecord>* records, MailboxState* state,
                             std::vector<std::string>* keywords, size_t page) {
  RetryPolicy retry(account_->deadline());
  for (unsigned attempt = 1;; attempt++) {
    Status s = ListOnce(records, state, keywords, page == 0 ? kOmapPage : page);
    if (s.code() != Code::kConflict || !retry.Backoff(attempt)) return s;
  }
}

Status MailboxIndex::HasRecords(bool* any) {
  std::vector<MessageRecord> first;
  Status s = ListRecords(0, 1, &first);
  if (s.ok()) *any = !first.empty();
  return s;
}

Status MailboxIndex::LookupRecords(const std::vector<uint32_t>& uids, std::vector<MessageRecord>* records) {
  records->clear();
  std::set<std::string> all = RecordKeys(uids);
  auto it = all.begin();
  while (it != all.end()) {
    std::set<std::string> batch;
    while (it != all.end() && batch.size() < kOmapPage) batch.insert(*it++);
    std::map<std::string, librados::bufferlist> values;
    Status s = ReadKeys(batch, &values);
    if (!s.ok()) return s;
    std::vector<MessageRecord> found;
    s = DecodeRecords(oid_, values, &found);
    if (!s.ok()) return s;
    records->insert(records->end(), std::make_move_iterator(found.begin()),
                    std::make_move_iterator(found.end()));
  }
  return ResolveLegacyRecords(records);
}

Status MailboxIndex::Changes(uint64_t since_modseq, ChangeSet* changes) {
  // Before the session syncs: it must not see a change it heard NO for
  // without that change's undo.
  if (!settling_ && account_->unsettled().Has(guid_)) (void)Settle();
  // The sync that follows an open in the same command (STATUS, SELECT)
  // needs no second read when the cache is at the state the open read, nor
  // the sync that follows this handle's own ops when the cache is at the
  // state they started from: a change another node makes meanwhile counts
  // as after the command.
  if (StateSeenInThisCommand() && since_modseq == state_.highest_modseq) {
    changes->state = state_;
    changes->ops.clear();
    return Status::OK();
  }
  if (ChangesFromOwnOps(since_modseq, changes)) return Status::OK();
  RetryPolicy retry(account_->deadline());
  std::map<std::string, librados::bufferlist> entries;
  librados::bufferlist raw;
  for (unsigned attempt = 1;; attempt++) {
    raw.clear();
    int r = ReadPages(keys::ChangeKey(since_modseq), keys::kChangePrefix, SIZE_MAX, PageState::kRead, &raw,
                      &entries);
    if (r == 0) break;
    if (r == -ENOENT || r == -ENODATA) return Status::NotFound("mailbox index " + oid_ + " does not exist");
    if (r != -ECANCELED) return Status::FromRados(r, "read changes of " + oid_);
    if (!retry.Backoff(attempt))
      return Status::Conflict("read changes of " + oid_ + ": changed under " + std::to_string(attempt) +
                              " reads");
  }
  MailboxState state;
  Status s = Decode(raw.to_str(), &state);
  if (!s.ok()) return Status::Corrupt(oid_ + ": " + s.message());
  if (since_modseq < state.log_floor)
    return Status::Resync(oid_ + ": change log trimmed past MODSEQ " + std::to_string(since_modseq));
  s = DecodeOps(state, entries, &changes->ops);
  if (!s.ok()) return s;
  if (known_.CanFollow(since_modseq, state)) {
    for (const Change& op : changes->ops) known_.Apply(op.modseq, op.entry);
    known_.MoveTo(state);
  } else {
    known_.Reset(state);
  }
  changes->state = state;
  state_ = std::move(state);
  state_raw_ = std::move(raw);
  state_valid_ = true;
  state_seen_in_ = account_->command_began();
  return Status::OK();
}

Status MailboxIndex::DecodeOps(const MailboxState& state,
                               const std::map<std::string, librados::bufferlist>& entries,
                               std::vector<Change>* ops) {
  ops->clear();
  for (const auto& [key, bl] : entries) {
    auto modseq = keys::ParseChangeKey(key);
    // The log and the state are written by the same ops, so a snapshot
    // holds no entry above its HIGHESTMODSEQ.
    if (!modseq || *modseq > state.highest_modseq) return Status::Corrupt(oid_ + ": change entry " + key);
    Change change{*modseq, {}};
    Status s = Decode(bl.to_str(), &change.entry);
    if (!s.ok()) return Status::Corrupt(oid_ + " " + key + ": " + s.message());
    if (!change.entry.replayable)
      return Status::Resync(oid_ + " " + key + ": change entry of an older version");
    bool known = ResolveLegacy(state, &change.entry.appended);
    for (FlagState& u : change.entry.updated)
      known &= ResolveLegacy(state, &u.legacy_keyword_ids, &u.keywords);
    if (!known) return Status::Resync(oid_ + " " + key + ": unknown keyword id");
    ops->push_back(std::move(change));
  }
  return Status::OK();
}

Status MailboxIndex::TrimLog(uint64_t up_to_modseq) {
  for (;;) {
    bool done = false;
    Status s = Mutate({}, [&](const auto&, Mutation* m) -> Status {
      const uint64_t target = std::min(up_to_modseq, m->state.highest_modseq);
      done = m->state.log_floor >= target;
      m->noop = done;
      RaiseLogFloor(target, &m->state, &m->remove);  // maintenance: no MODSEQ
      return Status::OK();
    });
    if (!s.ok() || done) return s;
  }
}

Status MailboxIndex::CountKeys(KeyCounts* counts) {
  *counts = KeyCounts();
  MailboxState state;
  Status s = ReadState(&state);
  if (!s.ok()) return s;
  s = CountOmapKeys(account_, oid_, &counts->total, &counts->changes);
  for (uint32_t n = 0; s.ok() && n < state.sealed_shards; n++) {
    uint64_t keys = 0;
    s = CountOmapKeys(account_, shards_.Oid(n), &keys, nullptr);
    counts->shards++;
    counts->largest_shard_keys = std::max(counts->largest_shard_keys, keys);
  }
  return s;
}

Status MailboxIndex::ReclaimReleasedBodies(int64_t cutoff, uint64_t* reclaimed, uint64_t* in_grace) {
  std::string after = keys::kReleasedBodyPrefix;
  for (bool more = true; more;) {
    std::map<std::string, librados::bufferlist> page;
    int r =
        account_->index_io().omap_get_vals2(oid_, after, keys::kReleasedBodyPrefix, kOmapPage, &page, &more);
    if (r == -ENOENT) return Status::OK();
    if (r < 0) return Status::FromRados(r, "list released bodies of " + oid_);
    if (page.empty()) break;
    after = page.rbegin()->first;
    std::set<std::string> old;
    for (const auto& [key, bl] : page) {
      auto uid = keys::ParseReleasedBodyKey(key);
      BodyRef released;
      if (!uid || !Decode(bl.to_str(), &released).ok()) return Status::Corrupt(oid_ + ": bad key " + key);
      if (released.changed > cutoff) {
        (*in_grace)++;
        continue;
      }
      old.insert(key);
      old.insert(keys::InlineBodyKey(*uid));
    }
    if (old.empty()) continue;
    Status s = Mutate({}, [&](const auto&, Mutation* m) -> Status {
      m->remove = old;  // maintenance: no MODSEQ, nothing a client sees
      return Status::OK();
    });
    if (!s.ok()) return s;
    *reclaimed += old.size() / 2;
    // Folds never move a released body, but one may have moved before
    // its message was expunged.
    std::map<uint32_t, std::set<std::string>> in_shards;
    for (const std::string& key : old) {
      auto uid = keys::ParseInlineBodyKey(key);
      if (uid && *uid < state_.SealedBelow()) in_shards[*uid / state_.shard_uids].insert(key);
    }
    for (const auto& [n, shard_keys] : in_shards) {
      s = shards_.RemoveKeys(n, shard_keys);
      if (!s.ok()) return s;
    }
  }
  return Status::OK();
}

Status MailboxIndex::ReadBody(const MessageRecord& record, uint64_t offset, uint64_t length,
                              std::string* out) {
  if (!record.inline_body) return MessageStore(account_).Read(record.guid, offset, length, out);
  const std::string key = keys::InlineBodyKey(record.uid);
  std::map<std::string, librados::bufferlist> values;
  Status s = ReadKeys({key}, &values);
  if (!s.ok()) return s;
  if (values.empty())
    return Status::NotFound(oid_ + ": message " + std::to_string(record.uid) + " was expunged");
  InlineBody body;
  s = Decode(values.begin()->second.to_str(), &body);
  if (!s.ok()) return Status::Corrupt(oid_ + " " + key + ": " + s.message());
  if (BodyChecksum(body.bytes) != body.xxh3)
    return Status::Corrupt(oid_ + " " + key + ": XXH3 checksum mismatch");
  if (offset >= body.bytes.size()) {
    out->clear();
  } else {
    *out = body.bytes.substr(offset, length == 0 ? std::string::npos : length);
  }
  return Status::OK();
}

Status MailboxIndex::OpenBody(const MessageRecord& record, std::unique_ptr<BodyReader>* reader) {
  if (!record.inline_body) return BodyReader::Open(account_, record.guid, reader);
  std::string bytes;
  Status s = ReadBody(record, 0, 0, &bytes);
  if (s.ok()) *reader = BodyReader::FromBytes(std::move(bytes));
  return s;
}

void MailboxIndex::ReadBodies(const std::vector<MessageRecord>& records, std::vector<std::string>* out,
                              std::vector<Status>* statuses) {
  out->assign(records.size(), std::string());
  statuses->assign(records.size(), Status::OK());
  std::vector<Guid> stored;
  std::vector<size_t> stored_at;
  std::set<std::string> inline_keys;
  for (size_t i = 0; i < records.size(); i++) {
    if (records[i].inline_body) {
      inline_keys.insert(keys::InlineBodyKey(records[i].uid));
    } else {
      stored.push_back(records[i].guid);
      stored_at.push_back(i);
    }
  }
  // The stored bodies are on their way while the index is read.
  BodyReads stored_reads(account_, stored);
  std::map<std::string, librados::bufferlist> values;
  Status read;
  if (!inline_keys.empty()) {
    read = ReadKeys(inline_keys, &values);
  }
  for (size_t i = 0; i < records.size(); i++) {
    if (!records[i].inline_body) continue;
    const std::string key = keys::InlineBodyKey(records[i].uid);
    auto it = values.find(key);
    if (!read.ok()) {
      (*statuses)[i] = read;
    } else if (it == values.end()) {
      (*statuses)[i] =
          Status::NotFound(oid_ + ": message " + std::to_string(records[i].uid) + " was expunged");
    } else {
      InlineBody body;
      Status s = Decode(it->second.to_str(), &body);
      if (s.ok() && BodyChecksum(body.bytes) != body.xxh3) s = Status::Corrupt("XXH3 checksum mismatch");
      if (!s.ok()) (*statuses)[i] = Status::Corrupt(oid_ + " " + key + ": " + s.message());
      (*out)[i] = std::move(body.bytes);
    }
  }
  std::vector<std::string> bodies;
  std::vector<Status> body_statuses;
  stored_reads.Collect(&bodies, &body_statuses);
  for (size_t j = 0; j < stored.size(); j++) {
    (*out)[stored_at[j]] = std::move(bodies[j]);
    (*statuses)[stored_at[j]] = body_statuses[j];
  }
}

void MailboxIndex::KeepShards(const MailboxState& before, const MailboxState& after,
                              const std::map<std::string, librados::bufferlist>& written) {
  // Half of the command's time stays for the rest of the command.
  if (std::chrono::steady_clock::now() >= account_->write_deadline()) return;
  const uint32_t shard_uids = after.shard_uids != 0 ? after.shard_uids : account_->config().shard_uids;
  if (shard_uids != 0 && after.uidnext >= uint64_t{after.sealed_shards + 2} * shard_uids) {
    bool sealed = false;
    const uint32_t n = after.sealed_shards;
    if (Seal(n, shard_uids, &sealed).ok() && sealed) (void)shards_.Fold(state_, n);
    return;
  }
  if (after.sealed_shards == 0) return;
  size_t sealed_keys = 0;
  for (const auto& [key, bl] : written) {
    auto uid = keys::ParseRecordKey(key);
    if (!uid) uid = keys::ParseTombstoneKey(key);
    if (uid && *uid < after.SealedBelow()) sealed_keys++;
  }
  const uint64_t fold_at = FoldAt(after.shard_uids);
  if (sealed_keys < fold_at && before.highest_modseq / fold_at == after.highest_modseq / fold_at) return;
  std::map<uint32_t, size_t> per_shard;
  size_t total = 0;
  for (const char* prefix : {keys::kRecordPrefix, keys::kTombstonePrefix}) {
    std::map<std::string, librados::bufferlist> values;
    if (!ReadUidRange(account_, oid_, prefix, 0, after.SealedBelow(), SIZE_MAX, &values).ok()) return;
    for (const auto& [key, bl] : values) {
      auto uid = keys::ParseRecordKey(key);
      if (!uid) uid = keys::ParseTombstoneKey(key);
      per_shard[*uid / after.shard_uids]++;
      total++;
    }
  }
  if (total < fold_at) return;
  for (const auto& [n, count] : per_shard)
    if (!shards_.Fold(after, n).ok()) return;
}

Status MailboxIndex::Seal(uint32_t n, uint32_t shard_uids, bool* sealed) {
  *sealed = false;
  return Mutate({}, [&](const auto&, Mutation* m) -> Status {
    // Another committer sealed it meanwhile, or an older size stands.
    const uint32_t size = m->state.shard_uids != 0 ? m->state.shard_uids : shard_uids;
    m->noop = m->state.sealed_shards != n || m->state.uidnext < uint64_t{n + 2} * size;
    *sealed = !m->noop;
    m->state.shard_uids = size;
    m->state.sealed_shards = n + 1;
    return Status::OK();
  });
}

Status MailboxIndex::EditName(const NameEdit& edit) {
  state_valid_ = false;
  return Mutate({}, [&](const auto&, Mutation* m) -> Status { return edit(&m->state, &m->noop); });
}

Status MailboxIndex::Remove() {
  RetryPolicy retry(account_->deadline());
  state_valid_ = false;
  for (unsigned attempt = 1;; attempt++) {
    std::vector<MessageRecord> records;
    MailboxState state;
    Status s = ListAll(&records, &state);
    if (s.IsNotFound()) return Status::OK();  // removed meanwhile, by whoever drops its references
    if (!s.ok()) return s;
    librados::ObjectWriteOperation op;
    op.cmpxattr(keys::kStateAttr, LIBRADOS_CMPXATTR_OP_EQ, listed_raw_);
    op.remove();
    int r = account_->Operate(account_->index_io(), oid_, &op);
    if (r == -ENOENT) return Status::OK();
    if (r == -ECANCELED) {
      if (!retry.Backoff(attempt))
        return Status::Conflict("remove " + oid_ + ": written to under " + std::to_string(attempt) +
                                " removals");
      continue;
    }
    if (r < 0) return Status::FromRados(r, "remove " + oid_);
    shards_.RemoveAll(state.sealed_shards);
    std::vector<Guid> stored;
    for (const MessageRecord& rec : records)
      if (!rec.inline_body) stored.push_back(rec.guid);
    std::vector<Status> statuses;
    MessageStore(account_).ChangeRefs(stored, -1, &statuses);
    return Status::OK();
  }
}

Status MailboxIndex::UpdateState(uint32_t uidvalidity, uint32_t min_uidnext, uint64_t min_highest_modseq) {
  // Raised first: a crash after it only skips a value, never reuses one.
  if (uidvalidity != 0) {
    Status s = MailboxList(account_).RaiseLastUidValidity(uidvalidity);
    if (!s.ok()) return s;
  }
  return Mutate({}, [&](const auto&, Mutation* m) -> Status {
    const MailboxState before = m->state;
    if (uidvalidity != 0 && uidvalidity != m->state.uidvalidity) {
      // A node's cache holds UIDs under the old UIDVALIDITY: with no
      // message left, rebuilding it loses nothing (rbd-sync.c does).
      bool any = false;
      Status hs = HasRecords(&any);
      if (!hs.ok()) return hs;
      if (any) return Status::Invalid(oid_ + ": UIDVALIDITY can change only while the mailbox is empty");
      m->state.uidvalidity = uidvalidity;
    }
    m->state.uidnext = std::max(m->state.uidnext, min_uidnext);
    if (min_highest_modseq > m->state.highest_modseq)
      m->Advance(min_highest_modseq - m->state.highest_modseq);
    m->noop = m->state == before;
    return Status::OK();
  });
}

Status MailboxIndex::RemoveIfUnchanged() {
  if (!state_valid_) return Status::Conflict(oid_ + " changed since it was read");
  librados::ObjectWriteOperation op;
  op.cmpxattr(keys::kStateAttr, LIBRADOS_CMPXATTR_OP_EQ, state_raw_);
  op.remove();
  int r = account_->Operate(account_->index_io(), oid_, &op);
  state_valid_ = false;
  if (r == -ECANCELED) return Status::Conflict(oid_ + " changed since it was read");
  if (r < 0 && r != -ENOENT) return Status::FromRados(r, "remove " + oid_);
  return Status::OK();
}

}  // namespace rbd
