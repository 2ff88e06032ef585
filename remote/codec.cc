#include "codec.h"

#include <cstring>
#include <mutex>
#include <set>

namespace rbd::remote {

const char* Keep::String(const char* s) { return s == nullptr ? nullptr : String(std::string_view(s)); }

const char* Keep::String(std::string_view s) {
  strings_.emplace_back(s);
  return strings_.back().c_str();
}

const char* const* Keep::Names(const std::vector<std::string>& names) {
  // Most records have no keyword: one terminator serves them all, instead
  // of a list each in a listing of a million.
  static const char* const kNone[] = {nullptr};
  if (names.empty()) return kNone;
  std::vector<const char*>& list = lists_.emplace_back();
  for (const std::string& n : names) list.push_back(String(n));
  list.push_back(nullptr);
  return list.data();
}

const char* Keep::String(Reader& r) {
  std::vector<std::string> one;
  const char* s = r.String(&one);
  return s == nullptr ? nullptr : String(std::string_view(one.back()));
}

const char* const* Keep::Strings(Reader& r, size_t* count_r) {
  std::vector<std::string> names = r.Strings();
  *count_r = names.size();
  return Names(names);
}

void Put(Writer& w, const rbd_index_status& s) {
  w.U32(s.uidvalidity);
  w.U32(s.uidnext);
  w.U64(s.highest_modseq);
  w.U32(s.messages);
  w.U64(s.virtual_size);
  w.U64(s.physical_size);
  w.U64(s.log_floor_modseq);
  w.U32(s.keyword_count);
  w.U32(s.first_recent_uid);
  w.U32(s.seen_messages);
  w.U8(s.seen_counted);
  w.U32(s.recent_messages);
  w.U8(s.recent_counted);
}

void Get(Reader& r, Keep&, rbd_index_status* s) {
  s->uidvalidity = r.U32();
  s->uidnext = r.U32();
  s->highest_modseq = r.U64();
  s->messages = r.U32();
  s->virtual_size = r.U64();
  s->physical_size = r.U64();
  s->log_floor_modseq = r.U64();
  s->keyword_count = r.U32();
  s->first_recent_uid = r.U32();
  s->seen_messages = r.U32();
  s->seen_counted = r.U8();
  s->recent_messages = r.U32();
  s->recent_counted = r.U8();
}

void Put(Writer& w, const rbd_index_keys& k) {
  w.U64(k.total);
  w.U64(k.changes);
  w.U64(k.shards);
  w.U64(k.largest_shard_keys);
}

void Get(Reader& r, Keep&, rbd_index_keys* k) {
  k->total = r.U64();
  k->changes = r.U64();
  k->shards = r.U64();
  k->largest_shard_keys = r.U64();
}

void Put(Writer& w, const rbd_record& rec) {
  w.U32(rec.uid);
  w.Guid(rec.guid);
  w.U8(rec.flags);
  w.Strings(rec.keywords, rec.keyword_count);
  w.U64(rec.modseq);
  w.I64(rec.received_date);
  w.I64(rec.save_date);
  w.U64(rec.physical_size);
  w.U64(rec.virtual_size);
  w.String(rec.pop3_uidl);
  w.U8(rec.inline_body != 0);
  w.String(rec.guid_text);
}

void Get(Reader& r, Keep& keep, rbd_record* rec) {
  rec->uid = r.U32();
  r.Guid(rec->guid);
  rec->flags = r.U8();
  rec->keywords = keep.Strings(r, &rec->keyword_count);
  rec->modseq = r.U64();
  rec->received_date = r.I64();
  rec->save_date = r.I64();
  rec->physical_size = r.U64();
  rec->virtual_size = r.U64();
  rec->pop3_uidl = keep.String(r);
  rec->inline_body = r.U8();
  rec->guid_text = keep.String(r);
}

void Put(Writer& w, const rbd_mailbox_entry& e) {
  w.String(e.name);
  w.Guid(e.guid);
  w.String(e.special_use);
  w.U8(e.subscribed != 0);
  w.U8(e.nonexistent != 0);
}

void Get(Reader& r, Keep& keep, rbd_mailbox_entry* e) {
  e->name = keep.String(r);
  r.Guid(e->guid);
  e->special_use = keep.String(r);
  e->subscribed = r.U8();
  e->nonexistent = r.U8();
}

void Put(Writer& w, const rbd_new_message& m) {
  w.Guid(m.guid);
  w.U8(m.body != nullptr);
  if (m.body != nullptr) w.Bytes(m.body, m.body_size);
  w.U8(m.stored != 0);
  w.U8(m.referenced != 0);
  w.U8(m.flags);
  w.Strings(m.keywords, m.keyword_count);
  w.I64(m.received_date);
  w.I64(m.save_date);
  w.U64(m.physical_size);
  w.U64(m.virtual_size);
  w.String(m.pop3_uidl);
  w.String(m.guid_text);
  w.U32(m.uid);
}

void Get(Reader& r, Keep& keep, rbd_new_message* m) {
  r.Guid(m->guid);
  if (r.U8() != 0) {
    std::string_view body = r.Bytes();
    m->body = body.data();
    m->body_size = body.size();
  }
  m->stored = r.U8();
  m->referenced = r.U8();
  m->flags = r.U8();
  m->keywords = keep.Strings(r, &m->keyword_count);
  m->received_date = r.I64();
  m->save_date = r.I64();
  m->physical_size = r.U64();
  m->virtual_size = r.U64();
  m->pop3_uidl = keep.String(r);
  m->guid_text = keep.String(r);
  m->uid = r.U32();
}

void Put(Writer& w, const rbd_copy_override& o) {
  w.U8(o.flags);
  w.Strings(o.keywords, o.keyword_count);
  w.U32(o.uid);
  w.U8(o.shown != nullptr);
  if (o.shown != nullptr) Put(w, *o.shown);
}

void Get(Reader& r, Keep& keep, rbd_copy_override* o) {
  o->flags = r.U8();
  o->keywords = keep.Strings(r, &o->keyword_count);
  o->uid = r.U32();
  if (r.U8() != 0) {
    rbd_record* shown = keep.Array<rbd_record>(1);
    Get(r, keep, shown);
    o->shown = shown;
  }
}

void Put(Writer& w, const rbd_flag_update& u) {
  w.U8(u.add_flags);
  w.U8(u.remove_flags);
  w.Strings(u.add_keywords, u.add_keyword_count);
  w.Strings(u.remove_keywords, u.remove_keyword_count);
  w.U64(u.unchanged_since);
}

void Get(Reader& r, Keep& keep, rbd_flag_update* u) {
  u->add_flags = r.U8();
  u->remove_flags = r.U8();
  u->add_keywords = keep.Strings(r, &u->add_keyword_count);
  u->remove_keywords = keep.Strings(r, &u->remove_keyword_count);
  u->unchanged_since = r.U64();
}

void Put(Writer& w, const rbd_flag_change& c) {
  w.Uids(c.uids, c.uid_count);
  Put(w, c.update);
}

namespace {

const uint32_t* GetUids(Reader& r, Keep& keep, size_t* count_r) {
  std::vector<uint32_t> uids = r.Uids();
  uint32_t* out = keep.Array<uint32_t>(uids.size());
  std::copy(uids.begin(), uids.end(), out);
  *count_r = uids.size();
  return out;
}

// The interned copy of a static name the core gave (rbd_op_record).
const char* Intern(Reader& r) {
  static std::mutex mutex;
  static std::set<std::string, std::less<>> names;
  std::vector<std::string> one;
  const char* s = r.String(&one);
  if (s == nullptr) return "";
  std::lock_guard<std::mutex> lock(mutex);
  return names.insert(one.back()).first->c_str();
}

}  // namespace

void Put(Writer& w, const rbd_flag_state& s) {
  w.U32(s.uid);
  w.U8(s.flags);
  w.Strings(s.keywords, s.keyword_count);
}

void Get(Reader& r, Keep& keep, rbd_flag_state* s) {
  s->uid = r.U32();
  s->flags = r.U8();
  s->keywords = keep.Strings(r, &s->keyword_count);
}

void Get(Reader& r, Keep& keep, rbd_flag_change* c) {
  c->uids = GetUids(r, keep, &c->uid_count);
  Get(r, keep, &c->update);
}

void Put(Writer& w, const rbd_change& c) {
  w.U64(c.modseq);
  PutArray(w, c.appended, c.appended_count);
  PutArray(w, c.updated, c.updated_count);
  w.Uids(c.expunged, c.expunged_count);
  w.Strings(c.defined, c.defined_count);
}

void Get(Reader& r, Keep& keep, rbd_change* c) {
  c->modseq = r.U64();
  c->appended = GetArray<rbd_record>(r, keep, &c->appended_count);
  c->updated = GetArray<rbd_flag_state>(r, keep, &c->updated_count);
  c->expunged = GetUids(r, keep, &c->expunged_count);
  c->defined = keep.Strings(r, &c->defined_count);
}

void Put(Writer& w, const rbd_settled& s) {
  w.Guid(s.mailbox_guid);
  w.U64(s.modseq);
  w.U32(s.outcome);
}

void Get(Reader& r, Keep&, rbd_settled* s) {
  r.Guid(s->mailbox_guid);
  s->modseq = r.U64();
  s->outcome = static_cast<rbd_settlement>(r.U32());
}

void Put(Writer& w, const rbd_op_record& o) {
  w.String(o.op);
  w.String(o.object);
  w.U64(o.bytes);
  w.String(o.result);
  w.I64(o.error);
  w.U64(o.usecs);
}

void Get(Reader& r, Keep&, rbd_op_record* o) {
  o->op = Intern(r);
  o->object = Intern(r);
  o->bytes = r.U64();
  o->result = Intern(r);
  o->error = static_cast<int>(r.I64());
  o->usecs = r.U64();
}

void Put(Writer& w, const rbd_body_info& i) {
  w.U64(i.size);
  w.U64(i.xxh3);
  w.Guid(i.first_mailbox_guid);
  w.I64(i.received_date);
  w.I64(i.save_date);
  w.U32(i.references);
  w.U32(i.chunks);
}

void Get(Reader& r, Keep&, rbd_body_info* i) {
  i->size = r.U64();
  i->xxh3 = r.U64();
  r.Guid(i->first_mailbox_guid);
  i->received_date = r.I64();
  i->save_date = r.I64();
  i->references = r.U32();
  i->chunks = r.U32();
}

void Put(Writer& w, const rbd_gc_stats& s) {
  w.U64(s.bodies_scanned);
  w.U64(s.bodies_reclaimed);
  w.U64(s.bodies_in_grace);
  w.U64(s.indexes_reclaimed);
}

void Get(Reader& r, Keep&, rbd_gc_stats* s) {
  s->bodies_scanned = r.U64();
  s->bodies_reclaimed = r.U64();
  s->bodies_in_grace = r.U64();
  s->indexes_reclaimed = r.U64();
}

void Put(Writer& w, const rbd_problem& p) {
  w.U32(p.kind);
  w.Guid(p.mailbox_guid);
  w.U32(p.uid);
  w.Guid(p.body_guid);
  w.String(p.detail);
  w.U8(p.repaired != 0);
}

void Get(Reader& r, Keep& keep, rbd_problem* p) {
  p->kind = static_cast<rbd_problem_kind>(r.U32());
  r.Guid(p->mailbox_guid);
  p->uid = r.U32();
  r.Guid(p->body_guid);
  p->detail = keep.String(r);
  p->repaired = r.U8();
}

void Put(Writer& w, const rbd_object& o) {
  w.String(o.pool);
  w.String(o.name);
  w.U64(o.size);
  w.String(o.kind);
}

void Get(Reader& r, Keep& keep, rbd_object* o) {
  o->pool = keep.String(r);
  o->name = keep.String(r);
  o->size = r.U64();
  o->kind = keep.String(r);
}

void Put(Writer& w, const rbd_rebuild_stats& s) {
  w.U64(s.mailboxes_recreated);
  w.U64(s.messages_recovered);
}

void Get(Reader& r, Keep&, rbd_rebuild_stats* s) {
  s->mailboxes_recreated = r.U64();
  s->messages_recovered = r.U64();
}

void Put(Writer& w, const rbd_dict_entry& e) {
  w.String(e.key);
  w.String(e.value);
}

void Get(Reader& r, Keep& keep, rbd_dict_entry* e) {
  e->key = keep.String(r);
  e->value = keep.String(r);
}

void Put(Writer& w, const rbd_dict_change& c) {
  w.U32(c.op);
  w.String(c.key);
  w.String(c.value);
  w.I64(c.diff);
  w.U8(c.guarded != 0);
  w.String(c.expected);
}

void Get(Reader& r, Keep& keep, rbd_dict_change* c) {
  c->op = static_cast<rbd_dict_op>(r.U32());
  c->key = keep.String(r);
  c->value = keep.String(r);
  c->diff = r.I64();
  c->guarded = r.U8();
  c->expected = keep.String(r);
}

}  // namespace rbd::remote
