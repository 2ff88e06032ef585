#include "mailbox_list.h"

#include <algorithm>
#include <cstring>
#include <ctime>

#include "keys.h"
#include "mailbox_index.h"
#include "retry.h"

namespace rbd {

namespace {

librados::bufferlist ToBufferlist(const std::string& s) {
  librados::bufferlist bl;
  bl.append(s);
  return bl;
}

bool InSubtree(const std::string& name, const std::string& root, char separator) {
  return name == root || (name.size() > root.size() && name.compare(0, root.size(), root) == 0 &&
                          name[root.size()] == separator);
}

// Moves every message of `from` into `to` (bodies are shared, UIDs new).
Status MoveRecords(MailboxIndex* from, MailboxIndex* to) {
  MailboxState state;
  std::vector<MessageRecord> records;
  Status s = from->ReadState(&state);
  if (s.ok()) s = from->ListRecords(0, SIZE_MAX, &records);
  if (!s.ok() || records.empty()) return s;
  std::vector<uint32_t> uids, copied;
  for (const MessageRecord& r : records) uids.push_back(r.uid);
  s = to->CopyFrom(from, uids, {}, &copied);
  std::vector<uint32_t> expunged;
  return s.ok() ? from->Expunge(uids, &expunged) : s;
}

// A token no other operation draws: the low bits of a random GUID, never 0.
uint64_t NewToken() {
  uint64_t token = 0;
  while (token == 0) std::memcpy(&token, Guid::Random().bytes.data(), sizeof token);
  return token;
}

}  // namespace

MailboxList::NameRelease::NameRelease(Account* account) : account_(account), token_(NewToken()) {}

Status MailboxList::NameRelease::Release(const Guid& guid) {
  if (released_.count(guid) != 0) return Status::OK();
  MailboxIndex index(account_, guid);
  Status s = index.EditName([&](MailboxState* state, bool* noop) -> Status {
    state->name.clear();
    state->name_pending = token_;
    return Status::OK();
  });
  // An index already gone has no name to give.
  if (s.IsNotFound()) return Status::OK();
  if (s.ok()) released_.insert(guid);
  return s;
}

void MailboxList::NameRelease::Settle(const std::map<Guid, std::string>& names) {
  for (const Guid& guid : released_) {
    auto it = names.find(guid);
    MailboxIndex index(account_, guid);
    (void)index.EditName([&](MailboxState* state, bool* noop) -> Status {
      *noop = state->name_pending != token_;
      state->name = it != names.end() ? it->second : std::string();
      state->name_pending = 0;
      return Status::OK();
    });
  }
}

std::string MailboxList::HintList() { return account_->index_io().get_pool_name() + '/' + account_->ns(); }

Status MailboxList::AdoptName(MailboxIndex* index, const std::string& name) {
  return index->EditName([&](MailboxState* state, bool* noop) -> Status {
    *noop = true;
    if (!state->name.empty() || state->name_pending != 0) return Status::OK();
    // Read after the state the op is guarded by: a mark made after that
    // read fails the guard, one made before it is seen above.
    MailboxEntry entry;
    Status s = Lookup(name, &entry);
    if (s.IsNotFound()) return Status::OK();
    if (!s.ok()) return s;
    *noop = entry.guid != index->guid();
    state->name = name;
    return Status::OK();
  });
}

Status MailboxList::OpenIndex(const std::string& name, std::unique_ptr<MailboxIndex>* index) {
  index->reset();
  MailboxState state;
  if (std::optional<Guid> hint = account_->cluster()->name_hints().Find(HintList(), name)) {
    auto hinted = std::make_unique<MailboxIndex>(account_, *hint);
    Status s = hinted->ReadState(&state);
    if (s.ok() && state.name == name) {
      *index = std::move(hinted);
      return s;
    }
    if (!s.ok() && !s.IsNotFound()) return s;
    if (s.ok()) *index = std::move(hinted);
  }
  MailboxEntry entry;
  Status s = Lookup(name, &entry);
  if (s.ok() && (*index == nullptr || (*index)->guid() != entry.guid)) {
    *index = std::make_unique<MailboxIndex>(account_, entry.guid);
    s = (*index)->ReadState(&state);
  }
  if (!s.ok()) {
    index->reset();
    return s;
  }
  // Only saves the next open a read: the open itself stands without it.
  if (state.name.empty() && state.name_pending == 0) (void)AdoptName(index->get(), name);
  return Status::OK();
}

Status MailboxList::ReadVersion(RootState* state, librados::bufferlist* raw, bool* exists) {
  librados::ObjectReadOperation op;
  int attr_r = 0;
  op.getxattr(keys::kStateAttr, raw, &attr_r);
  int r = account_->Operate(account_->index_io(), keys::kRoot, &op);
  if (r == -ENOENT || r == -ENODATA) {
    *exists = false;
    *state = RootState();
    return Status::OK();
  }
  if (r < 0) return Status::FromRados(r, "read mailbox list root");
  *exists = true;
  Status s = Decode(raw->to_str(), state);
  return s.ok() ? s : Status::Corrupt("mailbox list root: " + s.message());
}

Status MailboxList::ReadPrefix(const std::string& prefix,
                               std::map<std::string, librados::bufferlist>* values) {
  values->clear();
  // Start before the prefix: start_after excludes its own key, and the
  // key equal to the prefix (the subtree's root) must be included.
  std::string after;
  for (bool more = true; more;) {
    std::map<std::string, librados::bufferlist> page;
    librados::ObjectReadOperation op;
    int omap_r = 0;
    op.omap_get_vals2(after, prefix, kOmapPage, &page, &more, &omap_r);
    int r = account_->Operate(account_->index_io(), keys::kRoot, &op);
    if (r == -ENOENT) return Status::OK();
    if (r < 0) return Status::FromRados(r, "read mailbox list");
    if (page.empty()) break;
    after = page.rbegin()->first;
    values->insert(page.begin(), page.end());
  }
  return Status::OK();
}

Status MailboxList::Mutate(const Planner& plan) {
  RetryPolicy retry(account_->deadline());
  for (unsigned attempt = 1;; attempt++) {
    RootState state;
    librados::bufferlist raw;
    bool exists = false;
    Status s = ReadVersion(&state, &raw, &exists);
    if (!s.ok()) return s;
    Mutation m;
    m.state = state;
    s = plan(&m);
    if (!s.ok() || m.noop) return s;
    m.state.version = state.version + 1;
    librados::ObjectWriteOperation op;
    if (exists) {
      op.cmpxattr(keys::kStateAttr, LIBRADOS_CMPXATTR_OP_EQ, raw);
    } else {
      // No root yet: the first writer creates it, a racing one gets EEXIST.
      op.create(true);
    }
    op.setxattr(keys::kStateAttr, ToBufferlist(Encode(m.state)));
    if (!m.set.empty()) op.omap_set(m.set);
    if (!m.remove.empty()) op.omap_rm_keys(m.remove);
    int r = account_->Operate(account_->index_io(), keys::kRoot, &op);
    if (r == 0) {
      // After the commit, as MailboxIndex does: a watcher (NOTIFY) that
      // re-reads the list on this signal must find the change.
      account_->cluster()->Notify(account_->index_io(), keys::kRoot, std::to_string(m.state.version));
      return Status::OK();
    }
    if (r != -ECANCELED && r != -EEXIST) return Status::FromRados(r, "update mailbox list");
    if (!retry.Backoff(attempt)) return Status::Conflict("update mailbox list: too much contention");
  }
}

Status MailboxList::Version(uint64_t* version) {
  RootState state;
  librados::bufferlist raw;
  bool exists;
  Status s = ReadVersion(&state, &raw, &exists);
  if (s.ok()) *version = state.version;
  return s;
}

Status MailboxList::List(std::vector<MailboxInfo>* mailboxes) {
  mailboxes->clear();
  // One read op for the whole list when it fits in a page (the usual case).
  std::map<std::string, librados::bufferlist> values;
  std::string after;
  for (bool more = true; more;) {
    std::map<std::string, librados::bufferlist> page;
    librados::ObjectReadOperation op;
    int omap_r = 0;
    op.omap_get_vals2(after, kOmapPage, &page, &more, &omap_r);
    int r = account_->Operate(account_->index_io(), keys::kRoot, &op);
    if (r == -ENOENT) break;
    if (r < 0) return Status::FromRados(r, "list mailboxes");
    if (page.empty()) break;
    after = page.rbegin()->first;
    values.insert(page.begin(), page.end());
  }
  std::map<std::string, MailboxInfo> by_name;
  for (const auto& [key, bl] : values) {
    if (key.compare(0, 2, keys::kMailboxPrefix) == 0) {
      MailboxInfo& info = by_name[key.substr(2)];
      Status s = Decode(bl.to_str(), &info.entry);
      if (!s.ok()) return Status::Corrupt("mailbox list " + key + ": " + s.message());
      info.exists = true;
    } else if (key.compare(0, 2, keys::kSubscriptionPrefix) == 0) {
      by_name[key.substr(2)].subscribed = true;
    }
  }
  NameHints& hints = account_->cluster()->name_hints();
  const std::string hint_list = HintList();
  for (auto& [name, info] : by_name) {
    info.name = name;
    if (info.exists) hints.Remember(hint_list, name, info.entry.guid);
    mailboxes->push_back(std::move(info));
  }
  return Status::OK();
}

Status MailboxList::Lookup(const std::string& name, MailboxEntry* entry) {
  std::map<std::string, librados::bufferlist> values;
  const std::string key = keys::MailboxKey(name);
  int r = account_->ReadKeys(keys::kRoot, {key}, &values);
  if (r < 0 && r != -ENOENT) return Status::FromRados(r, "look up mailbox " + name);
  NameHints& hints = account_->cluster()->name_hints();
  if (values.empty()) {
    hints.Forget(HintList(), name);
    return Status::NotFound("mailbox " + name + " does not exist");
  }
  Status s = Decode(values.begin()->second.to_str(), entry);
  if (!s.ok()) return Status::Corrupt("mailbox list " + key + ": " + s.message());
  hints.Remember(HintList(), name, entry->guid);
  return s;
}

Status MailboxList::Create(const std::string& name, const Guid& guid, uint32_t uidvalidity,
                           const std::string& special_use) {
  if (name.empty()) return Status::Invalid("create mailbox: empty name");
  // The index object first (doc/design.md), with a UIDVALIDITY above every
  // one this user had; a lost race re-creates it with a fresh one.
  uint32_t created_uidvalidity = 0;
  Status s = Mutate([&](Mutation* m) -> Status {
    MailboxEntry existing;
    Status ls = Lookup(name, &existing);
    if (ls.ok()) return Status::Exists("mailbox " + name + " already exists");
    if (!ls.IsNotFound()) return ls;
    uint32_t uv = uidvalidity;
    if (uv == 0)
      uv = std::max<uint32_t>(static_cast<uint32_t>(std::time(nullptr)), m->state.last_uidvalidity + 1);
    if (created_uidvalidity != uv) {
      if (created_uidvalidity != 0) MailboxIndex(account_, guid).Remove();
      Status cs = MailboxIndex::Create(account_, guid, uv, name);
      if (!cs.ok()) return cs;
      created_uidvalidity = uv;
    }
    m->state.last_uidvalidity = std::max(m->state.last_uidvalidity, uv);
    m->set[keys::MailboxKey(name)] = ToBufferlist(Encode(MailboxEntry{guid, special_use}));
    return Status::OK();
  });
  if (!s.ok() && created_uidvalidity != 0) MailboxIndex(account_, guid).Remove();
  return s;
}

Status MailboxList::Recreate(const std::string& name, const Guid& guid, bool listed_only) {
  bool created = false;
  Status s = Mutate([&](Mutation* m) -> Status {
    MailboxEntry existing;
    Status ls = Lookup(name, &existing);
    if (ls.ok() && existing.guid != guid) return Status::Exists("mailbox " + name + " names another mailbox");
    if (!ls.ok() && !ls.IsNotFound()) return ls;
    if (ls.IsNotFound()) {
      if (listed_only) return Status::NotFound("mailbox " + name + " was deleted");
      m->set[keys::MailboxKey(name)] = ToBufferlist(Encode(MailboxEntry{guid, ""}));
    }
    const uint32_t uv =
        std::max<uint32_t>(static_cast<uint32_t>(std::time(nullptr)), m->state.last_uidvalidity + 1);
    Status cs = MailboxIndex::Create(account_, guid, uv, name);
    if (!cs.ok() && cs.code() != Code::kExists) return cs;
    created |= cs.ok();
    m->state.last_uidvalidity = std::max(m->state.last_uidvalidity, uv);
    return Status::OK();
  });
  // The name went while the index was created: no index without a name.
  if (!s.ok() && created) MailboxIndex(account_, guid).Remove();
  return s;
}

Status MailboxList::RaiseLastUidValidity(uint32_t uidvalidity) {
  return Mutate([&](Mutation* m) -> Status {
    m->noop = m->state.last_uidvalidity >= uidvalidity;
    m->state.last_uidvalidity = std::max(m->state.last_uidvalidity, uidvalidity);
    return Status::OK();
  });
}

Status MailboxList::Delete(const std::string& name) {
  MailboxEntry entry;
  NameRelease release(account_);
  Status s = Mutate([&](Mutation* m) -> Status {
    Status ls = Lookup(name, &entry);
    if (ls.ok()) ls = release.Release(entry.guid);
    if (!ls.ok()) return ls;
    m->remove.insert(keys::MailboxKey(name));
    return Status::OK();
  });
  // Unlisted now; a crash from here on leaves an orphan index for gc.
  if (s.ok()) s = MailboxIndex(account_, entry.guid).Remove();
  // Unmarks what an earlier attempt released and another name now holds
  // (the removed index is not found).
  release.Settle({});
  return s;
}

Status MailboxList::Rename(const std::string& old_name, const std::string& new_name, char separator) {
  if (new_name.empty()) return Status::Invalid("rename mailbox: empty name");
  if (InSubtree(new_name, old_name, separator))
    return Status::Invalid("rename mailbox: cannot move " + old_name + " into itself");
  NameRelease release(account_);
  std::map<Guid, std::string> renamed;
  Status status = Mutate([&](Mutation* m) -> Status {
    renamed.clear();
    std::map<std::string, librados::bufferlist> mailboxes, subscriptions;
    Status s = ReadPrefix(keys::MailboxKey(old_name), &mailboxes);
    if (s.ok()) s = ReadPrefix(keys::SubscriptionKey(old_name), &subscriptions);
    if (!s.ok()) return s;
    std::set<std::string> targets;
    for (auto* group : {&mailboxes, &subscriptions}) {
      for (const auto& [key, bl] : *group) {
        const std::string prefix = key.substr(0, 2);
        const std::string name = key.substr(2);
        if (!InSubtree(name, old_name, separator)) continue;
        const std::string target = prefix + new_name + name.substr(old_name.size());
        m->remove.insert(key);
        m->set[target] = bl;
        if (group != &mailboxes) continue;
        targets.insert(target);
        MailboxEntry entry;
        Status es = Decode(bl.to_str(), &entry);
        if (!es.ok()) return Status::Corrupt("mailbox list " + key + ": " + es.message());
        renamed[entry.guid] = target.substr(2);
      }
    }
    if (targets.empty()) return Status::NotFound("mailbox " + old_name + " does not exist");
    std::map<std::string, librados::bufferlist> taken;
    int r = account_->ReadKeys(keys::kRoot, targets, &taken);
    if (r < 0) return Status::FromRados(r, "rename mailbox " + old_name);
    if (!taken.empty())
      return Status::Exists("mailbox " + taken.begin()->first.substr(2) + " already exists");
    for (const auto& [guid, new_name] : renamed) {
      Status rs = release.Release(guid);
      if (!rs.ok()) return rs;
    }
    return Status::OK();
  });
  release.Settle(status.ok() ? renamed : std::map<Guid, std::string>());
  return status;
}

Status MailboxList::ChangeGuid(const std::string& name, const Guid& new_guid) {
  MailboxEntry entry;
  Status s = Lookup(name, &entry);
  if (!s.ok() || entry.guid == new_guid) return s;
  MailboxIndex old_index(account_, entry.guid), new_index(account_, new_guid);
  MailboxState state;
  s = old_index.ReadState(&state);
  bool any = false;
  // Records, not the counters (a repair may have written them from a
  // stale listing); the removal below is guarded by this state.
  if (s.ok()) s = old_index.HasRecords(&any);
  if (!s.ok()) return s;
  if (any)
    return Status::Invalid("mailbox " + name + " has messages: its GUID can change only while it is empty");
  // No UID or MODSEQ goes backwards; the change log stays behind.
  state.log_floor = state.highest_modseq;
  state.name = name;
  state.name_pending = 0;
  s = MailboxIndex::Create(account_, new_guid, state);
  if (!s.ok()) return s;
  NameRelease release(account_);
  s = Mutate([&](Mutation* m) -> Status {
    MailboxEntry current;
    Status ls = Lookup(name, &current);
    if (!ls.ok()) return ls;
    if (current.guid != entry.guid) return Status::Conflict("mailbox " + name + " changed meanwhile");
    ls = release.Release(entry.guid);
    if (!ls.ok()) return ls;
    current.guid = new_guid;
    m->set[keys::MailboxKey(name)] = ToBufferlist(Encode(current));
    return Status::OK();
  });
  if (!s.ok()) {
    release.Settle({});
    new_index.Remove();
    return s;
  }
  // Listed under the new GUID from here on (a crash leaves the old index
  // unlisted, for gc). A writer that opened the old index before the switch
  // may still have added messages: those move over before it goes.
  while ((s = old_index.RemoveIfUnchanged()).code() == Code::kConflict) {
    s = MoveRecords(&old_index, &new_index);
    if (!s.ok()) return s;
  }
  return s;
}

Status MailboxList::SetSubscribed(const std::string& name, bool subscribed) {
  return Mutate([&](Mutation* m) -> Status {
    if (subscribed) {
      m->set[keys::SubscriptionKey(name)] = librados::bufferlist();
    } else {
      m->remove.insert(keys::SubscriptionKey(name));
    }
    return Status::OK();
  });
}

Status MailboxList::SetSpecialUse(const std::string& name, const std::string& special_use) {
  return Mutate([&](Mutation* m) -> Status {
    MailboxEntry entry;
    Status s = Lookup(name, &entry);
    if (!s.ok()) return s;
    entry.special_use = special_use;
    m->set[keys::MailboxKey(name)] = ToBufferlist(Encode(entry));
    return Status::OK();
  });
}

}  // namespace rbd
