// The C ABI (include/rbd-storage.h) over the C++ core.
//
// This is the one place where Status becomes rbd_code and where exceptions
// are caught: every entry point runs its body through Guarded(), so nothing
// C++ ever unwinds into Dovecot's C frames.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "account.h"
#include "checker.h"
#include "cluster.h"
#include "config.h"
#include "dict_store.h"
#include "garbage_collector.h"
#include "keys.h"
#include "lease.h"
#include "mailbox_index.h"
#include "mailbox_list.h"
#include "mailbox_watch.h"
#include "message_store.h"
#include "rbd-storage.h"
#include "rebuilder.h"
#include "record_codec.h"

struct rbd_config {
  rbd::Config config;
};

// Each handle carries its caller's whole config; `impl` is shared by every
// handle with the same connection settings.
struct rbd_cluster {
  std::shared_ptr<rbd::Cluster> impl;
  rbd::Config config;
};

struct rbd_user {
  std::unique_ptr<rbd::Account> account;
  // Drained from the account's op log but not handed out yet (the
  // caller's buffer was full).
  std::vector<rbd::OpRecord> drained;
  // The same for settlements (rbd_user_drain_settled).
  std::vector<rbd::Settlement> settled;
};

struct rbd_index {
  rbd::Account* account;
  std::unique_ptr<rbd::MailboxIndex> index;
  // The keyword names of the last rbd_index_list_all().
  std::vector<std::string> keyword_source;
  std::vector<const char*> keyword_names;
};

struct rbd_watch {
  std::unique_ptr<rbd::MailboxWatch> impl;
};

struct rbd_lease {
  std::unique_ptr<rbd::Lease> impl;
};

struct rbd_body_reader {
  std::unique_ptr<rbd::BodyReader> impl;
};

struct rbd_body_writer {
  std::unique_ptr<rbd::BodyWriter> impl;
  rbd::Guid guid;
};

namespace {

static_assert(static_cast<int>(rbd::Code::kUnknown) == RBD_ERR_UNKNOWN, "rbd::Code must mirror rbd_code");
static_assert(static_cast<int>(rbd::Settlement::Outcome::kUnchecked) == RBD_SETTLED_UNCHECKED,
              "Settlement::Outcome must mirror rbd_settlement");

rbd_code Report(const rbd::Status& s, rbd_error* err) {
  auto code = static_cast<rbd_code>(s.code());
  if (err != nullptr) {
    err->code = code;
    std::snprintf(err->message, sizeof(err->message), "%s", s.message().c_str());
  }
  return code;
}

template <typename Body>
rbd_code Guarded(rbd_error* err, Body body) {
  try {
    return Report(body(), err);
  } catch (const std::bad_alloc&) {
    return Report(rbd::Status::Io("out of memory"), err);
  } catch (const std::exception& e) {
    return Report(rbd::Status::Io(std::string("internal error: ") + e.what()), err);
  }
}

// Result holders derive from the C structs, so the pointer handed out is
// a base-class pointer and the free functions static_cast back to it.
struct EntriesHolder : rbd_mailbox_entries {
  std::vector<rbd::MailboxInfo> infos;
  std::vector<rbd_mailbox_entry> items;
};

// NULL-terminated pointers to `names` (which must outlive them).
std::vector<const char*> NamePointers(const std::vector<std::string>& names) {
  std::vector<const char*> out;
  out.reserve(names.size() + 1);
  for (const std::string& n : names) out.push_back(n.c_str());
  out.push_back(nullptr);
  return out;
}

struct RecordsHolder : rbd_records {
  std::vector<rbd::MessageRecord> source;
  // Only for the records that have keywords; a moved inner vector keeps
  // its buffer, so the records' pointers stay valid as this grows.
  std::vector<std::vector<const char*>> keywords;
  std::vector<rbd_record> items;
};

struct ChangesHolder : rbd_changes {
  std::vector<rbd::Change> source;
  std::vector<rbd_records*> appended;
  std::vector<std::vector<std::vector<const char*>>> updated_keywords;
  std::vector<std::vector<const char*>> defined;
  std::vector<std::vector<rbd_flag_state>> updated;
  std::vector<std::vector<uint32_t>> expunged;
  std::vector<rbd_change> items;
};

struct ProblemsHolder : rbd_problems {
  std::vector<rbd::Problem> source;
  std::vector<rbd_problem> items;
};

struct ObjectsHolder : rbd_objects {
  std::vector<std::string> pools, names;
  std::vector<rbd_object> items;
};

const char* ObjectKindName(rbd::keys::ObjectKind kind) {
  switch (kind) {
    case rbd::keys::ObjectKind::kRoot: return "mailbox list";
    case rbd::keys::ObjectKind::kIndex: return "index";
    case rbd::keys::ObjectKind::kIndexShard: return "index shard";
    case rbd::keys::ObjectKind::kBody: return "body";
    case rbd::keys::ObjectKind::kChunk: return "body chunk";
    case rbd::keys::ObjectKind::kLease: return "lease";
    case rbd::keys::ObjectKind::kDict: return "dictionary";
    case rbd::keys::ObjectKind::kOther: break;
  }
  return "other";
}

const char* OpResultName(int r) {
  switch (r) {
    case 0: return "ok";
    case -ETIMEDOUT: return "timeout";
    case -ECANCELED: return "conflict";
    case -ENOENT: return "not_found";
    case -EPERM:
    case -EACCES: return "permission";
  }
  return r > 0 ? "ok" : "error";
}

struct BufferHolder : rbd_buffer {
  std::string bytes;
};

rbd_records* MakeRecords(std::vector<rbd::MessageRecord> records) {
  auto* h = new RecordsHolder;
  h->source = std::move(records);
  h->items.resize(h->source.size());
  for (size_t i = 0; i < h->source.size(); i++) {
    const rbd::MessageRecord& r = h->source[i];
    rbd_record& c = h->items[i];
    c.uid = r.uid;
    std::memcpy(c.guid, r.guid.bytes.data(), RBD_GUID_SIZE);
    c.flags = r.flags;
    // Most messages have no keyword: a million of them listed at once
    // would otherwise allocate a million terminators.
    static const char* const kNoKeywords[] = {nullptr};
    if (r.keywords.empty()) {
      c.keywords = kNoKeywords;
    } else {
      c.keywords = h->keywords.emplace_back(NamePointers(r.keywords)).data();
    }
    c.keyword_count = r.keywords.size();
    c.modseq = r.modseq;
    c.received_date = r.received_date;
    c.save_date = r.save_date;
    c.physical_size = r.physical_size;
    c.virtual_size = r.virtual_size;
    c.pop3_uidl = r.pop3_uidl.empty() ? nullptr : r.pop3_uidl.c_str();
    c.inline_body = r.inline_body ? 1 : 0;
    c.guid_text = r.guid_text.empty() ? nullptr : r.guid_text.c_str();
  }
  h->records = h->items.data();
  h->count = h->items.size();
  return h;
}

rbd::MessageRecord ToRecord(const rbd_record& c) {
  rbd::MessageRecord r;
  r.uid = c.uid;
  r.guid = rbd::Guid::FromBytes(c.guid);
  r.flags = c.flags;
  r.keywords.assign(c.keywords, c.keywords + c.keyword_count);
  std::sort(r.keywords.begin(), r.keywords.end());
  r.keywords.erase(std::unique(r.keywords.begin(), r.keywords.end()), r.keywords.end());
  r.modseq = c.modseq;
  r.received_date = c.received_date;
  r.save_date = c.save_date;
  r.physical_size = c.physical_size;
  r.virtual_size = c.virtual_size;
  if (c.pop3_uidl != nullptr) r.pop3_uidl = c.pop3_uidl;
  r.inline_body = c.inline_body != 0;
  if (c.guid_text != nullptr) r.guid_text = c.guid_text;
  return r;
}

void ToStatus(const rbd::MailboxState& s, struct rbd_index_status* out) {
  out->uidvalidity = s.uidvalidity;
  out->uidnext = s.uidnext;
  out->highest_modseq = s.highest_modseq;
  out->messages = s.messages;
  out->virtual_size = s.virtual_size;
  out->physical_size = s.physical_size;
  out->log_floor_modseq = s.log_floor;
  out->keyword_count = static_cast<uint32_t>(s.legacy_keywords.size()) + s.keyword_count;
  out->first_recent_uid = s.first_recent_uid;
  out->seen_counted = s.seen_counted ? 1 : 0;
  out->seen_messages = s.seen_counted ? s.seen_messages : 0;
  out->recent_counted = s.recent_counted ? 1 : 0;
  out->recent_messages = s.recent_counted ? s.recent_messages : 0;
}

std::vector<std::string> Strings(const char* const* names, size_t count) {
  std::vector<std::string> out;
  for (size_t i = 0; i < count; i++) out.emplace_back(names[i]);
  return out;
}

rbd_buffer* MakeBuffer(std::string bytes) {
  auto* b = new BufferHolder;
  b->bytes = std::move(bytes);
  b->data = b->bytes.data();
  b->size = b->bytes.size();
  return b;
}

rbd::BodyMeta ToMeta(const rbd_body_info* info) {
  rbd::BodyMeta meta;
  if (info != nullptr) {
    meta.first_mailbox = rbd::Guid::FromBytes(info->first_mailbox_guid);
    meta.received_date = info->received_date;
    meta.save_date = info->save_date;
  }
  return meta;
}

// rbd_index_append(), claiming \Recent too when `first_r` is set.
rbd_code Append(rbd_index* mailbox, const rbd_new_message* messages, size_t count, uint32_t* uids_r,
                uint32_t* first_r, uint32_t* end_r, rbd_error* err) {
  return Guarded(err, [&] {
    std::vector<rbd::NewMessage> batch(count);
    for (size_t i = 0; i < count; i++) {
      const rbd_new_message& m = messages[i];
      rbd::NewMessage& n = batch[i];
      n.guid = rbd::Guid::FromBytes(m.guid);
      if (m.body != nullptr) n.body = std::string_view(static_cast<const char*>(m.body), m.body_size);
      n.stored = m.stored != 0;
      n.referenced = n.stored && m.referenced != 0;
      n.flags = m.flags;
      n.keywords = Strings(m.keywords, m.keyword_count);
      n.received_date = m.received_date;
      n.save_date = m.save_date;
      n.physical_size = m.physical_size;
      n.virtual_size = m.virtual_size;
      if (m.pop3_uidl != nullptr) n.pop3_uidl = m.pop3_uidl;
      if (m.guid_text != nullptr) n.guid_text = m.guid_text;
      n.uid = m.uid;
    }
    std::vector<uint32_t> uids;
    rbd::Status s = mailbox->index->Append(batch, &uids, first_r, end_r);
    if (s.ok()) std::copy(uids.begin(), uids.end(), uids_r);
    return s;
  });
}

}  // namespace

extern "C" {

rbd_config* rbd_config_new(void) { return new (std::nothrow) rbd_config; }

void rbd_config_free(rbd_config** config) {
  delete *config;
  *config = nullptr;
}

rbd_code rbd_config_set(rbd_config* config, const char* name, const char* value, rbd_error* err) {
  return Guarded(err, [&] { return config->config.Set(name, value); });
}

rbd_code rbd_config_validate(const rbd_config* config, rbd_error* err) {
  return Guarded(err, [&] { return config->config.Validate(); });
}

uint32_t rbd_config_gc_grace(const rbd_config* config) { return config->config.gc_grace_seconds; }

uint64_t rbd_config_max_message_size(const rbd_config* config) { return config->config.max_message_size; }

rbd_code rbd_cluster_get(const rbd_config* config, rbd_cluster** cluster_r, rbd_error* err) {
  return Guarded(err, [&] {
    rbd::Status s = config->config.Validate();
    if (!s.ok()) return s;
    *cluster_r = new rbd_cluster{rbd::Cluster::Get(config->config), config->config};
    return rbd::Status::OK();
  });
}

void rbd_cluster_unref(rbd_cluster** cluster) {
  delete *cluster;
  *cluster = nullptr;
}

void rbd_shutdown(void) {
  // librados must not be torn down under a watch still closing: if one
  // is, the process exits with the connection up, as a killed one does.
  if (!rbd::MailboxWatch::WaitForClosing(std::chrono::seconds(5))) return;
  rbd::Cluster::ShutdownAll();
}

rbd_code rbd_cluster_connect(rbd_cluster* cluster, rbd_error* err) {
  return Guarded(err, [&] { return cluster->impl->Connect(); });
}

rbd_code rbd_user_open(rbd_cluster* cluster, const char* ns, const struct timeval* command_started,
                       rbd_user** user_r, rbd_error* err) {
  return Guarded(err, [&] {
    std::string name = ns != nullptr ? ns : cluster->config.ns;
    std::unique_ptr<rbd::Account> account;
    rbd::Status s = rbd::Account::Open(cluster->impl, cluster->config, name, command_started, &account);
    if (s.ok()) *user_r = new rbd_user{std::move(account), {}, {}};
    return s;
  });
}

size_t rbd_user_drain_ops(rbd_user* user, rbd_op_record* out, size_t max, uint64_t* dropped_r) {
  rbd::OpLog& log = user->account->op_log();
  std::vector<rbd::OpRecord>& pending = user->drained;
  uint64_t dropped = 0;
  std::vector<rbd::OpRecord> more = log.Drain(&dropped);
  pending.insert(pending.end(), more.begin(), more.end());
  *dropped_r = dropped;
  const size_t n = std::min(max, pending.size());
  for (size_t i = 0; i < n; i++) {
    const rbd::OpRecord& r = pending[i];
    out[i] = rbd_op_record{r.type == rbd::OpType::kRead ? "read" : "write",
                           ObjectKindName(r.object),
                           r.bytes,
                           OpResultName(r.result),
                           r.result,
                           static_cast<uint64_t>(r.latency.count())};
  }
  pending.erase(pending.begin(), pending.begin() + n);
  return n;
}

size_t rbd_user_drain_settled(rbd_user* user, rbd_settled* out, size_t max) {
  std::vector<rbd::Settlement>& pending = user->settled;
  std::vector<rbd::Settlement> more = user->account->unsettled().Drain();
  pending.insert(pending.end(), more.begin(), more.end());
  const size_t n = std::min(max, pending.size());
  for (size_t i = 0; i < n; i++) {
    std::copy(pending[i].mailbox.bytes.begin(), pending[i].mailbox.bytes.end(), out[i].mailbox_guid);
    out[i].modseq = pending[i].modseq;
    out[i].outcome = static_cast<rbd_settlement>(pending[i].outcome);
  }
  pending.erase(pending.begin(), pending.begin() + n);
  return n;
}

void rbd_user_settle(rbd_user* user) { rbd::MailboxIndex::SettleAll(user->account.get()); }

void rbd_user_take_unsettled(rbd_user* user, rbd_buffer** kept_r) {
  rbd::UnsettledChanges& unsettled = user->account->unsettled();
  std::vector<rbd::UnsettledChange> left = unsettled.TakeAll();
  for (const rbd::UnsettledChange& change : left)
    unsettled.Report(
        change, kept_r != nullptr ? rbd::Settlement::Outcome::kKept : rbd::Settlement::Outcome::kUnchecked);
  if (kept_r != nullptr) *kept_r = left.empty() ? nullptr : MakeBuffer(rbd::EncodeAll(left));
}

rbd_code rbd_user_add_unsettled(rbd_user* user, const void* data, size_t size, rbd_error* err) {
  return Guarded(err, [&] {
    std::vector<rbd::UnsettledChange> changes;
    rbd::Status s = rbd::DecodeAll(std::string_view(static_cast<const char*>(data), size), &changes);
    if (!s.ok()) return s;
    for (rbd::UnsettledChange& change : changes) user->account->unsettled().Add(std::move(change));
    return rbd::Status::OK();
  });
}

void rbd_user_close(rbd_user** user) {
  delete *user;
  *user = nullptr;
}

rbd_code rbd_list_mailboxes(rbd_user* user, rbd_mailbox_entries** list_r, rbd_error* err) {
  return Guarded(err, [&] {
    auto h = std::make_unique<EntriesHolder>();
    rbd::Status s = rbd::MailboxList(user->account.get()).List(&h->infos);
    if (!s.ok()) return s;
    h->items.resize(h->infos.size());
    for (size_t i = 0; i < h->infos.size(); i++) {
      const rbd::MailboxInfo& info = h->infos[i];
      rbd_mailbox_entry& e = h->items[i];
      e.name = info.name.c_str();
      std::memcpy(e.guid, info.entry.guid.bytes.data(), RBD_GUID_SIZE);
      e.special_use = info.entry.special_use.c_str();
      e.subscribed = info.subscribed ? 1 : 0;
      e.nonexistent = info.exists ? 0 : 1;
    }
    h->entries = h->items.data();
    h->count = h->items.size();
    *list_r = h.release();
    return rbd::Status::OK();
  });
}

void rbd_mailbox_entries_free(rbd_mailbox_entries** list) {
  delete static_cast<EntriesHolder*>(*list);
  *list = nullptr;
}

rbd_code rbd_lookup_mailbox(rbd_user* user, const char* name, uint8_t guid_r[RBD_GUID_SIZE], rbd_error* err) {
  return Guarded(err, [&] {
    rbd::MailboxEntry entry;
    rbd::Status s = rbd::MailboxList(user->account.get()).Lookup(name, &entry);
    if (s.ok()) std::memcpy(guid_r, entry.guid.bytes.data(), RBD_GUID_SIZE);
    return s;
  });
}

rbd_code rbd_create_mailbox(rbd_user* user, const char* name, const uint8_t guid[RBD_GUID_SIZE],
                            uint32_t uidvalidity, const char* special_use, rbd_error* err) {
  return Guarded(err, [&] {
    return rbd::MailboxList(user->account.get())
        .Create(name, rbd::Guid::FromBytes(guid), uidvalidity, special_use ? special_use : "");
  });
}

rbd_code rbd_delete_mailbox(rbd_user* user, const char* name, rbd_error* err) {
  return Guarded(err, [&] { return rbd::MailboxList(user->account.get()).Delete(name); });
}

rbd_code rbd_rename_mailbox(rbd_user* user, const char* old_name, const char* new_name, char separator,
                            rbd_error* err) {
  return Guarded(err,
                 [&] { return rbd::MailboxList(user->account.get()).Rename(old_name, new_name, separator); });
}

rbd_code rbd_set_subscribed(rbd_user* user, const char* name, int subscribed, rbd_error* err) {
  return Guarded(err,
                 [&] { return rbd::MailboxList(user->account.get()).SetSubscribed(name, subscribed != 0); });
}

rbd_code rbd_set_special_use(rbd_user* user, const char* name, const char* special_use, rbd_error* err) {
  return Guarded(err, [&] {
    return rbd::MailboxList(user->account.get()).SetSpecialUse(name, special_use ? special_use : "");
  });
}

void rbd_records_free(rbd_records** records) {
  delete static_cast<RecordsHolder*>(*records);
  *records = nullptr;
}

rbd_code rbd_index_open(rbd_user* user, const uint8_t guid[RBD_GUID_SIZE], rbd_index** mailbox_r,
                        rbd_error* err) {
  return Guarded(err, [&] {
    auto index = std::make_unique<rbd::MailboxIndex>(user->account.get(), rbd::Guid::FromBytes(guid));
    rbd::MailboxState state;
    rbd::Status s = index->ReadState(&state);
    if (s.ok()) *mailbox_r = new rbd_index{user->account.get(), std::move(index), {}, {}};
    return s;
  });
}

rbd_code rbd_index_open_name(rbd_user* user, const char* name, uint8_t guid_r[RBD_GUID_SIZE],
                             rbd_index** mailbox_r, rbd_error* err) {
  return Guarded(err, [&] {
    std::unique_ptr<rbd::MailboxIndex> index;
    rbd::Status s = rbd::MailboxList(user->account.get()).OpenIndex(name, &index);
    if (!s.ok()) return s;
    std::memcpy(guid_r, index->guid().bytes.data(), RBD_GUID_SIZE);
    *mailbox_r = new rbd_index{user->account.get(), std::move(index), {}, {}};
    return s;
  });
}

void rbd_index_close(rbd_index** mailbox) {
  delete *mailbox;
  *mailbox = nullptr;
}

rbd_code rbd_index_get_status(rbd_index* mailbox, struct rbd_index_status* status_r, rbd_error* err) {
  return Guarded(err, [&] {
    rbd::MailboxState state;
    rbd::Status s = mailbox->index->ReadState(&state);
    if (s.ok()) ToStatus(state, status_r);
    return s;
  });
}

rbd_code rbd_index_count_keys(rbd_index* mailbox, struct rbd_index_keys* keys_r, rbd_error* err) {
  return Guarded(err, [&] {
    rbd::KeyCounts counts;
    rbd::Status s = mailbox->index->CountKeys(&counts);
    if (s.ok()) *keys_r = {counts.total, counts.changes, counts.shards, counts.largest_shard_keys};
    return s;
  });
}

void rbd_index_last_status(const rbd_index* index, struct rbd_index_status* status_r) {
  ToStatus(index->index->last_state(), status_r);
}

int rbd_index_named(const rbd_index* index, const char* name) {
  return index->index->StateSeenInThisCommand() && index->index->last_state().name == name ? 1 : 0;
}

void rbd_index_guard_name(rbd_index* index, const char* name) { index->index->GuardName(name); }

rbd_code rbd_index_claim_recent(rbd_index* mailbox, uint32_t up_to, uint32_t* first_r, uint32_t* end_r,
                                rbd_error* err) {
  return Guarded(err, [&] { return mailbox->index->ClaimRecent(up_to, first_r, end_r); });
}

rbd_code rbd_index_append(rbd_index* mailbox, const rbd_new_message* messages, size_t count, uint32_t* uids_r,
                          rbd_error* err) {
  return Append(mailbox, messages, count, uids_r, nullptr, nullptr, err);
}

rbd_code rbd_index_append_claiming(rbd_index* mailbox, const rbd_new_message* messages, size_t count,
                                   uint32_t* uids_r, uint32_t* first_r, uint32_t* end_r, rbd_error* err) {
  *first_r = *end_r = 0;
  return Append(mailbox, messages, count, uids_r, first_r, end_r, err);
}

rbd_code rbd_index_copy(rbd_index* source, const uint32_t* source_uids, size_t count, rbd_index* dest,
                        const rbd_copy_override* overrides, uint32_t* dest_uids_r, rbd_error* err) {
  return Guarded(err, [&] {
    std::vector<uint32_t> uids(source_uids, source_uids + count);
    std::vector<std::optional<rbd::FlagOverride>> over;
    if (overrides != nullptr) {
      over.resize(count);
      for (size_t i = 0; i < count; i++) {
        over[i] = rbd::FlagOverride{overrides[i].flags,
                                    Strings(overrides[i].keywords, overrides[i].keyword_count),
                                    overrides[i].uid,
                                    {}};
        if (overrides[i].shown != nullptr) {
          over[i]->shown = ToRecord(*overrides[i].shown);
          over[i]->shown->uid = source_uids[i];
        }
      }
    }
    std::vector<uint32_t> dest_uids;
    rbd::Status s = dest->index->CopyFrom(source->index.get(), uids, over, &dest_uids);
    if (s.ok()) std::copy(dest_uids.begin(), dest_uids.end(), dest_uids_r);
    return s;
  });
}

rbd_code rbd_index_update_flags_of(rbd_index* mailbox, const rbd_flag_change* changes, size_t count,
                                   uint32_t** conflicts_r, size_t* conflict_count_r, uint64_t* modseq_r,
                                   rbd_error* err) {
  return Guarded(err, [&] {
    std::vector<rbd::FlagChange> cs(count);
    for (size_t i = 0; i < count; i++) {
      const rbd_flag_update& update = changes[i].update;
      cs[i].uids.assign(changes[i].uids, changes[i].uids + changes[i].uid_count);
      cs[i].update.add_flags = update.add_flags;
      cs[i].update.remove_flags = update.remove_flags;
      cs[i].update.add_keywords = Strings(update.add_keywords, update.add_keyword_count);
      cs[i].update.remove_keywords = Strings(update.remove_keywords, update.remove_keyword_count);
      cs[i].update.unchanged_since = update.unchanged_since;
    }
    std::vector<uint32_t> conflicts;
    rbd::Status s = mailbox->index->UpdateFlags(cs, &conflicts, modseq_r);
    if (!s.ok()) return s;
    *conflict_count_r = conflicts.size();
    *conflicts_r = nullptr;
    if (!conflicts.empty()) {
      *conflicts_r = new uint32_t[conflicts.size()];
      std::copy(conflicts.begin(), conflicts.end(), *conflicts_r);
    }
    return s;
  });
}

rbd_code rbd_index_update_flags(rbd_index* mailbox, const uint32_t* uids, size_t count,
                                const rbd_flag_update* update, uint32_t** conflicts_r,
                                size_t* conflict_count_r, uint64_t* modseq_r, rbd_error* err) {
  const rbd_flag_change change{uids, count, *update};
  return rbd_index_update_flags_of(mailbox, &change, 1, conflicts_r, conflict_count_r, modseq_r, err);
}

void rbd_uids_free(uint32_t** uids) {
  delete[] * uids;
  *uids = nullptr;
}

rbd_code rbd_index_expunge(rbd_index* mailbox, const uint32_t* uids, size_t count, uint32_t* expunged_r,
                           size_t* expunged_count_r, rbd_error* err) {
  return Guarded(err, [&] {
    std::vector<uint32_t> expunged;
    rbd::Status s = mailbox->index->Expunge(std::vector<uint32_t>(uids, uids + count), &expunged);
    if (!s.ok()) return s;
    if (expunged_r != nullptr) std::copy(expunged.begin(), expunged.end(), expunged_r);
    *expunged_count_r = expunged.size();
    return s;
  });
}

rbd_code rbd_index_touch(rbd_index* mailbox, const uint32_t* uids, size_t count, uint64_t min_modseq,
                         uint64_t* modseq_r, rbd_error* err) {
  return Guarded(err, [&] {
    return mailbox->index->Touch(std::vector<uint32_t>(uids, uids + count), min_modseq, modseq_r);
  });
}

rbd_code rbd_index_list_records(rbd_index* mailbox, uint32_t after_uid, size_t max, rbd_records** records_r,
                                rbd_error* err) {
  return Guarded(err, [&] {
    std::vector<rbd::MessageRecord> records;
    rbd::Status s = mailbox->index->ListRecords(after_uid, max, &records);
    if (s.ok()) *records_r = MakeRecords(std::move(records));
    return s;
  });
}

rbd_code rbd_index_list_all(rbd_index* mailbox, size_t page, rbd_records** records_r,
                            struct rbd_index_status* status_r, const char* const** keywords_r,
                            size_t* keyword_count_r, rbd_error* err) {
  return Guarded(err, [&] {
    std::vector<rbd::MessageRecord> records;
    rbd::MailboxState state;
    std::vector<std::string> names;
    rbd::Status s = mailbox->index->ListAll(&records, &state, keywords_r != nullptr ? &names : nullptr, page);
    if (!s.ok()) return s;
    *records_r = MakeRecords(std::move(records));
    ToStatus(state, status_r);
    if (keywords_r != nullptr) {
      mailbox->keyword_source = std::move(names);
      mailbox->keyword_names = NamePointers(mailbox->keyword_source);
      *keywords_r = mailbox->keyword_names.data();
      *keyword_count_r = mailbox->keyword_source.size();
    }
    return s;
  });
}

rbd_code rbd_index_lookup_records(rbd_index* mailbox, const uint32_t* uids, size_t count,
                                  rbd_records** records_r, rbd_error* err) {
  return Guarded(err, [&] {
    std::vector<rbd::MessageRecord> records;
    rbd::Status s = mailbox->index->LookupRecords(std::vector<uint32_t>(uids, uids + count), &records);
    if (s.ok()) *records_r = MakeRecords(std::move(records));
    return s;
  });
}

rbd_code rbd_index_changes(rbd_index* mailbox, uint64_t since_modseq, rbd_changes** changes_r,
                           rbd_error* err) {
  return Guarded(err, [&] {
    rbd::ChangeSet set;
    rbd::Status s = mailbox->index->Changes(since_modseq, &set);
    if (!s.ok()) return s;
    auto* h = new ChangesHolder;
    h->source = std::move(set.ops);
    const size_t n = h->source.size();
    h->appended.resize(n);
    h->updated.resize(n);
    h->updated_keywords.resize(n);
    h->defined.resize(n);
    h->expunged.resize(n);
    h->items.resize(n);
    for (size_t i = 0; i < n; i++) {
      rbd::ChangeEntry& e = h->source[i].entry;
      h->appended[i] = MakeRecords(std::move(e.appended));
      for (const rbd::FlagState& u : e.updated) {
        h->updated_keywords[i].push_back(NamePointers(u.keywords));
        h->updated[i].push_back({u.uid, u.flags, h->updated_keywords[i].back().data(), u.keywords.size()});
      }
      for (const rbd::UidRange& range : e.expunged)
        for (uint64_t uid = range.first; uid <= range.last; uid++)
          h->expunged[i].push_back(static_cast<uint32_t>(uid));
      rbd_change& c = h->items[i];
      c.modseq = h->source[i].modseq;
      c.appended = h->appended[i]->records;
      c.appended_count = h->appended[i]->count;
      c.updated = h->updated[i].data();
      c.updated_count = h->updated[i].size();
      c.expunged = h->expunged[i].data();
      c.expunged_count = h->expunged[i].size();
      h->defined[i] = NamePointers(e.defined);
      c.defined = h->defined[i].data();
      c.defined_count = e.defined.size();
    }
    h->ops = h->items.data();
    h->op_count = n;
    ToStatus(set.state, &h->status);
    *changes_r = h;
    return s;
  });
}

void rbd_changes_free(rbd_changes** changes) {
  auto* h = static_cast<ChangesHolder*>(*changes);
  if (h != nullptr)
    for (rbd_records*& r : h->appended) rbd_records_free(&r);
  delete h;
  *changes = nullptr;
}

rbd_code rbd_index_trim_log(rbd_index* mailbox, uint64_t up_to_modseq, rbd_error* err) {
  return Guarded(err, [&] { return mailbox->index->TrimLog(up_to_modseq); });
}

// ------------------------------------------------------------------
// Migration

rbd_code rbd_index_update_state(rbd_index* mailbox, uint32_t uidvalidity, uint32_t min_uidnext,
                                uint64_t min_highest_modseq, rbd_error* err) {
  return Guarded(err,
                 [&] { return mailbox->index->UpdateState(uidvalidity, min_uidnext, min_highest_modseq); });
}

rbd_code rbd_change_mailbox_guid(rbd_user* user, const char* name, const uint8_t guid[RBD_GUID_SIZE],
                                 rbd_error* err) {
  return Guarded(err, [&] {
    return rbd::MailboxList(user->account.get()).ChangeGuid(name, rbd::Guid::FromBytes(guid));
  });
}

void rbd_buffer_free(rbd_buffer** buffer) {
  delete static_cast<BufferHolder*>(*buffer);
  *buffer = nullptr;
}

rbd_code rbd_index_read_body(rbd_index* mailbox, const rbd_record* record, uint64_t offset, uint64_t length,
                             rbd_buffer** body_r, rbd_error* err) {
  return Guarded(err, [&] {
    std::string bytes;
    rbd::Status s = mailbox->index->ReadBody(ToRecord(*record), offset, length, &bytes);
    if (s.ok()) *body_r = MakeBuffer(std::move(bytes));
    return s;
  });
}

rbd_code rbd_index_read_bodies(rbd_index* mailbox, const rbd_record* records, size_t count,
                               rbd_buffer** bodies_r, rbd_error* err) {
  return Guarded(err, [&] {
    std::vector<rbd::MessageRecord> recs;
    for (size_t i = 0; i < count; i++) recs.push_back(ToRecord(records[i]));
    std::vector<std::string> bodies;
    std::vector<rbd::Status> statuses;
    mailbox->index->ReadBodies(recs, &bodies, &statuses);
    rbd::Status first;
    for (size_t i = 0; i < count; i++) {
      bodies_r[i] = nullptr;
      if (statuses[i].ok()) {
        bodies_r[i] = MakeBuffer(std::move(bodies[i]));
      } else if (first.ok()) {
        first = statuses[i];
      }
    }
    return first;
  });
}

rbd_code rbd_body_reader_open(rbd_index* mailbox, const rbd_record* record, rbd_body_reader** reader_r,
                              uint64_t* size_r, rbd_error* err) {
  return Guarded(err, [&] {
    std::unique_ptr<rbd::BodyReader> reader;
    rbd::Status s = mailbox->index->OpenBody(ToRecord(*record), &reader);
    if (!s.ok()) return s;
    *size_r = reader->size();
    *reader_r = new rbd_body_reader{std::move(reader)};
    return s;
  });
}

rbd_code rbd_body_reader_read(rbd_body_reader* reader, uint64_t offset, void* buf, size_t size,
                              size_t* read_r, rbd_error* err) {
  return Guarded(err, [&] {
    std::string bytes;
    rbd::Status s = reader->impl->Read(offset, size, &bytes);
    if (!s.ok()) return s;
    std::memcpy(buf, bytes.data(), bytes.size());
    *read_r = bytes.size();
    return s;
  });
}

void rbd_body_reader_free(rbd_body_reader** reader) {
  delete *reader;
  *reader = nullptr;
}

rbd_code rbd_body_write(rbd_user* user, const uint8_t guid[RBD_GUID_SIZE], const void* data, size_t size,
                        const rbd_body_info* info, rbd_error* err) {
  return Guarded(err, [&] {
    rbd::BodyToWrite body{rbd::Guid::FromBytes(guid), std::string_view(static_cast<const char*>(data), size),
                          ToMeta(info)};
    return rbd::MessageStore(user->account.get()).Write({body});
  });
}

rbd_code rbd_body_writer_open(rbd_user* user, const uint8_t guid[RBD_GUID_SIZE], rbd_body_writer** writer_r,
                              rbd_error* err) {
  return Guarded(err, [&] {
    rbd::Guid g = rbd::Guid::FromBytes(guid);
    *writer_r = new rbd_body_writer{std::make_unique<rbd::BodyWriter>(user->account.get(), g), g};
    return rbd::Status::OK();
  });
}

rbd_code rbd_body_writer_write(rbd_body_writer* writer, const void* data, size_t size, rbd_error* err) {
  return Guarded(
      err, [&] { return writer->impl->Append(std::string_view(static_cast<const char*>(data), size)); });
}

rbd_code rbd_body_writer_finish(rbd_body_writer* writer, const rbd_body_info* info, rbd_error* err) {
  return Guarded(err, [&] { return writer->impl->Finish(ToMeta(info)); });
}

void rbd_body_writer_free(rbd_body_writer** writer) {
  delete *writer;
  *writer = nullptr;
}

rbd_code rbd_body_stat(rbd_user* user, const uint8_t guid[RBD_GUID_SIZE], rbd_body_info* info_r,
                       rbd_error* err) {
  return Guarded(err, [&] {
    rbd::BodyMeta meta;
    rbd::BodyRef ref;
    rbd::Status s = rbd::MessageStore(user->account.get()).Stat(rbd::Guid::FromBytes(guid), &meta, &ref);
    if (!s.ok()) return s;
    info_r->size = meta.size;
    info_r->xxh3 = meta.xxh3;
    std::memcpy(info_r->first_mailbox_guid, meta.first_mailbox.bytes.data(), RBD_GUID_SIZE);
    info_r->received_date = meta.received_date;
    info_r->save_date = meta.save_date;
    info_r->references = ref.count;
    info_r->chunks = meta.chunks;
    return s;
  });
}

rbd_code rbd_body_unref(rbd_user* user, const uint8_t guid[RBD_GUID_SIZE], rbd_error* err) {
  return Guarded(err,
                 [&] { return rbd::MessageStore(user->account.get()).Unref(rbd::Guid::FromBytes(guid)); });
}

rbd_code rbd_watch_open(rbd_index* mailbox, rbd_watch** watch_r, rbd_error* err) {
  return Guarded(err, [&] {
    std::unique_ptr<rbd::MailboxWatch> w;
    rbd::Status s =
        rbd::MailboxWatch::Open(mailbox->account, rbd::keys::IndexObject(mailbox->index->guid()), &w);
    // Watching first: a write that lands before the mailbox is said to be
    // watched notifies nobody, and the caller's sync after this sees it.
    if (s.ok()) s = mailbox->index->KeepWatched(std::chrono::seconds(RBD_WATCHED_SECS));
    if (s.ok()) {
      *watch_r = new rbd_watch{std::move(w)};
    } else if (w != nullptr) {
      rbd::MailboxWatch::Close(std::move(w));
    }
    return s;
  });
}

rbd_code rbd_index_keep_watched(rbd_index* mailbox, uint32_t seconds, rbd_error* err) {
  return Guarded(err, [&] { return mailbox->index->KeepWatched(std::chrono::seconds(seconds)); });
}

rbd_code rbd_watch_open_list(rbd_user* user, rbd_watch** watch_r, rbd_error* err) {
  return Guarded(err, [&] {
    std::unique_ptr<rbd::MailboxWatch> w;
    rbd::Status s = rbd::MailboxWatch::Open(user->account.get(), rbd::keys::kRoot, &w);
    if (s.ok()) *watch_r = new rbd_watch{std::move(w)};
    return s;
  });
}

int rbd_watch_fd(const rbd_watch* watch) { return watch->impl->fd(); }

unsigned int rbd_watch_consume(rbd_watch* watch) {
  try {
    unsigned bits = watch->impl->Consume();
    return ((bits & rbd::MailboxWatch::kChanged) ? RBD_WATCH_CHANGED : 0) |
           ((bits & rbd::MailboxWatch::kLost) ? RBD_WATCH_LOST : 0);
  } catch (const std::exception&) {
    return RBD_WATCH_LOST;
  }
}

void rbd_watch_close(rbd_watch** watch) {
  rbd::MailboxWatch::Close(std::move((*watch)->impl));
  delete *watch;
  *watch = nullptr;
}

void rbd_watch_close_lingering(rbd_watch** watch, int fd, unsigned int seconds) {
  rbd::MailboxWatch::CloseLingering(std::move((*watch)->impl), fd, std::chrono::seconds(seconds));
  delete *watch;
  *watch = nullptr;
}

rbd_code rbd_lease_acquire(rbd_user* user, const char* name, uint32_t duration_ms, rbd_lease** lease_r,
                           rbd_error* err) {
  return Guarded(err, [&] {
    std::unique_ptr<rbd::Lease> lease;
    rbd::Status s = rbd::Lease::Acquire(user->account->index_io(), rbd::keys::LeaseObject(name), name,
                                        std::chrono::milliseconds(duration_ms), &lease);
    if (s.ok()) *lease_r = new rbd_lease{std::move(lease)};
    return s;
  });
}

rbd_code rbd_lease_renew(rbd_lease* lease, rbd_error* err) {
  return Guarded(err, [&] { return lease->impl->Renew(); });
}

void rbd_lease_release(rbd_lease** lease) {
  delete *lease;
  *lease = nullptr;
}

rbd_code rbd_user_gc(rbd_user* user, uint32_t grace_seconds, rbd_gc_stats* stats_r, rbd_error* err) {
  return Guarded(err, [&] {
    rbd::GcStats stats;
    rbd::Status s = rbd::GarbageCollector(user->account.get()).Run(grace_seconds, &stats);
    stats_r->bodies_scanned = stats.bodies_scanned;
    stats_r->bodies_reclaimed = stats.bodies_reclaimed;
    stats_r->bodies_in_grace = stats.bodies_in_grace;
    stats_r->indexes_reclaimed = stats.indexes_reclaimed;
    return s;
  });
}

rbd_code rbd_user_check(rbd_user* user, int repair, uint32_t grace_seconds, rbd_problems** problems_r,
                        rbd_error* err) {
  *problems_r = nullptr;
  return Guarded(err, [&] {
    auto h = std::make_unique<ProblemsHolder>();
    rbd::Status s = rbd::Checker(user->account.get()).Run(repair != 0, grace_seconds, &h->source);
    if (!s.ok()) return s;
    for (const rbd::Problem& p : h->source) {
      rbd_problem c{};
      c.kind = p.kind == rbd::Problem::Kind::kMissingBody     ? RBD_PROBLEM_MISSING_BODY
               : p.kind == rbd::Problem::Kind::kWrongCounters ? RBD_PROBLEM_WRONG_COUNTERS
                                                              : RBD_PROBLEM_UNREFERENCED_BODY;
      std::memcpy(c.mailbox_guid, p.mailbox.bytes.data(), RBD_GUID_SIZE);
      c.uid = p.uid;
      std::memcpy(c.body_guid, p.body.bytes.data(), RBD_GUID_SIZE);
      c.detail = p.detail.c_str();
      c.repaired = p.repaired ? 1 : 0;
      h->items.push_back(c);
    }
    h->problems = h->items.data();
    h->count = h->items.size();
    *problems_r = h.release();
    return s;
  });
}

void rbd_problems_free(rbd_problems** problems) {
  delete static_cast<ProblemsHolder*>(*problems);
  *problems = nullptr;
}

rbd_code rbd_user_list_objects(rbd_user* user, rbd_objects** objects_r, rbd_error* err) {
  *objects_r = nullptr;
  return Guarded(err, [&] {
    auto h = std::make_unique<ObjectsHolder>();
    std::vector<uint64_t> sizes;
    for (librados::IoCtx* io : {&user->account->index_io(), &user->account->mail_io()}) {
      std::vector<std::string> names;
      rbd::Status s = rbd::Account::ListObjects(*io, &names);
      if (!s.ok()) return s;
      std::sort(names.begin(), names.end());
      for (std::string& name : names) {
        uint64_t size = 0;
        time_t mtime;
        int r = io->stat(name, &size, &mtime);
        if (r == -ENOENT) continue;  // removed since the listing
        if (r < 0) return rbd::Status::FromRados(r, "stat " + name);
        h->pools.push_back(io->get_pool_name());
        h->names.push_back(std::move(name));
        sizes.push_back(size);
      }
    }
    for (size_t i = 0; i < h->names.size(); i++)
      h->items.push_back({h->pools[i].c_str(), h->names[i].c_str(), sizes[i],
                          ObjectKindName(rbd::keys::ParseObject(h->names[i]).kind)});
    h->objects = h->items.data();
    h->count = h->items.size();
    *objects_r = h.release();
    return rbd::Status::OK();
  });
}

void rbd_objects_free(rbd_objects** objects) {
  delete static_cast<ObjectsHolder*>(*objects);
  *objects = nullptr;
}

namespace {

rbd_code Rebuild(rbd_user* user, const uint8_t* only, rbd_rebuild_stats* stats_r, rbd_error* err) {
  return Guarded(err, [&] {
    rbd::RebuildStats stats;
    rbd::Rebuilder rebuilder(user->account.get());
    rbd::Status s = only ? rebuilder.RunFor(rbd::Guid::FromBytes(only), &stats) : rebuilder.Run(&stats);
    stats_r->mailboxes_recreated = stats.mailboxes_recreated;
    stats_r->messages_recovered = stats.messages_recovered;
    return s;
  });
}

}  // namespace

rbd_code rbd_user_rebuild(rbd_user* user, rbd_rebuild_stats* stats_r, rbd_error* err) {
  return Rebuild(user, nullptr, stats_r, err);
}

rbd_code rbd_mailbox_rebuild(rbd_user* user, const uint8_t guid[RBD_GUID_SIZE], rbd_rebuild_stats* stats_r,
                             rbd_error* err) {
  return Rebuild(user, guid, stats_r, err);
}

}  // extern "C"

// ------------------------------------------------------------------
// Dictionary

struct rbd_dict_store {
  std::unique_ptr<rbd::DictStore> impl;
};

namespace {

struct DictEntriesHolder : rbd_dict_entries {
  rbd::DictEntries source;
  std::vector<rbd_dict_entry> items;
};

}  // namespace

extern "C" {

rbd_code rbd_dict_store_open(rbd_cluster* cluster, const char* ns, const struct timeval* command_started,
                             rbd_dict_store** store_r, rbd_error* err) {
  return Guarded(err, [&] {
    std::unique_ptr<rbd::DictStore> store;
    rbd::Status s = rbd::DictStore::Open(cluster->impl, cluster->config, ns, command_started, &store);
    if (s.ok()) *store_r = new rbd_dict_store{std::move(store)};
    return s;
  });
}

void rbd_dict_store_close(rbd_dict_store** store) {
  delete *store;
  *store = nullptr;
}

rbd_code rbd_dict_store_lookup(rbd_dict_store* store, const char* key, rbd_buffer** value_r, rbd_error* err) {
  return Guarded(err, [&] {
    std::string value;
    rbd::Status s = store->impl->Lookup(key, &value);
    if (s.ok()) *value_r = MakeBuffer(std::move(value));
    return s;
  });
}

rbd_code rbd_dict_store_list(rbd_dict_store* store, const char* prefix, const char* after, size_t max,
                             rbd_dict_entries** entries_r, rbd_error* err) {
  return Guarded(err, [&] {
    auto h = std::make_unique<DictEntriesHolder>();
    bool more = false;
    rbd::Status s = store->impl->List(prefix, after, max, &h->source, &more);
    if (!s.ok()) return s;
    for (const auto& [key, value] : h->source) h->items.push_back({key.c_str(), value.c_str()});
    h->entries = h->items.data();
    h->count = h->items.size();
    h->more = more ? 1 : 0;
    *entries_r = h.release();
    return s;
  });
}

void rbd_dict_entries_free(rbd_dict_entries** entries) {
  delete static_cast<DictEntriesHolder*>(*entries);
  *entries = nullptr;
}

rbd_code rbd_dict_store_commit(rbd_dict_store* store, const rbd_dict_change* changes, size_t count,
                               int* inc_missed_r, rbd_error* err) {
  return Guarded(err, [&] {
    std::vector<rbd::DictChange> batch(count);
    for (size_t i = 0; i < count; i++) {
      batch[i].key = changes[i].key;
      batch[i].guarded = changes[i].guarded != 0;
      if (changes[i].expected != nullptr) batch[i].expected = changes[i].expected;
      switch (changes[i].op) {
        case RBD_DICT_SET:
          batch[i].kind = rbd::DictChange::Kind::kSet;
          batch[i].value = changes[i].value;
          break;
        case RBD_DICT_UNSET: batch[i].kind = rbd::DictChange::Kind::kUnset; break;
        case RBD_DICT_INC:
          batch[i].kind = rbd::DictChange::Kind::kIncrement;
          batch[i].diff = changes[i].diff;
          break;
      }
    }
    bool missed = false;
    rbd::Status s = store->impl->Commit(batch, &missed);
    if (s.ok()) *inc_missed_r = missed ? 1 : 0;
    return s;
  });
}

rbd_code rbd_dict_store_adopt(rbd_dict_store* store, const char* legacy_ns, const char* prefix,
                              rbd_error* err) {
  return Guarded(err, [&] { return store->impl->Adopt(legacy_ns, prefix); });
}

}  // extern "C"
