// Handlers of the dictionary's calls, each store on a connection of its own.
#include "handlers.h"

namespace rbd::remote {

namespace {

rbd_code DictStoreOpen(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  Keep keep;
  const uint64_t id = in.U64();
  const char* ns = keep.String(in);
  if (Malformed(in, err) || Taken(s, id, err) || s.Admit(ns, err) != RBD_OK) return err->code;
  rbd_dict_store* store = nullptr;
  rbd_code code = rbd_dict_store_open(s.cluster(), ns, s.clock(), &store, err);
  if (code == RBD_OK) s.Add(id, store);
  return code;
}

rbd_code DictLookup(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  Keep keep;
  rbd_dict_store* store = Need<rbd_dict_store>(s, in.U64(), err);
  const char* key = keep.String(in);
  if (store == nullptr || Malformed(in, err)) return err->code;
  rbd_buffer* value = nullptr;
  rbd_code code = rbd_dict_store_lookup(store, key, &value, err);
  if (code != RBD_OK) return code;
  out.Bytes(value->data, value->size);
  rbd_buffer_free(&value);
  return code;
}

rbd_code DictList(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  Keep keep;
  rbd_dict_store* store = Need<rbd_dict_store>(s, in.U64(), err);
  const char* prefix = keep.String(in);
  const char* after = keep.String(in);
  const uint64_t max = in.U64();
  if (store == nullptr || Malformed(in, err)) return err->code;
  rbd_dict_entries* entries = nullptr;
  rbd_code code = rbd_dict_store_list(store, prefix, after, max, &entries, err);
  if (code != RBD_OK) return code;
  PutArray(out, entries->entries, entries->count);
  out.U8(entries->more != 0);
  rbd_dict_entries_free(&entries);
  return code;
}

rbd_code DictCommit(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  Keep keep;
  rbd_dict_store* store = Need<rbd_dict_store>(s, in.U64(), err);
  size_t count = 0;
  const rbd_dict_change* changes = GetArray<rbd_dict_change>(in, keep, &count);
  if (store == nullptr || Malformed(in, err)) return err->code;
  int inc_missed = 0;
  rbd_code code = rbd_dict_store_commit(store, changes, count, &inc_missed, err);
  if (code == RBD_OK) out.U8(inc_missed != 0);
  return code;
}

rbd_code DictAdopt(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  Keep keep;
  rbd_dict_store* store = Need<rbd_dict_store>(s, in.U64(), err);
  const char* legacy_ns = keep.String(in);
  const char* prefix = keep.String(in);
  if (store == nullptr || Malformed(in, err)) return err->code;
  return rbd_dict_store_adopt(store, legacy_ns, prefix, err);
}

}  // namespace

void RegisterDictHandlers(HandlerTable& t) {
  Register(t, Op::kDictStoreOpen, DictStoreOpen);
  Register(t, Op::kDictLookup, DictLookup);
  Register(t, Op::kDictList, DictList);
  Register(t, Op::kDictCommit, DictCommit);
  Register(t, Op::kDictAdopt, DictAdopt);
}

}  // namespace rbd::remote
