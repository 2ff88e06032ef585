// The dictionary's calls over the service (serve_dict.cc answers them).
#include "client.h"

using rbd::remote::Connection;
using rbd::remote::Decoded;
using rbd::remote::MakeBuffer;
using rbd::remote::Op;
using rbd::remote::Reply;
using rbd::remote::Writer;

extern "C" {

rbd_code rbd_dict_store_open(rbd_cluster* cluster, const char* ns, const struct timeval* command_started,
                             rbd_dict_store** store_r, rbd_error* err) {
  std::unique_ptr<Connection> conn;
  uint64_t id = 0;
  rbd_code code = rbd::remote::OpenOwn(cluster, command_started, Op::kDictStoreOpen, ns, &conn, &id, err);
  if (code == RBD_OK) *store_r = new rbd_dict_store{std::move(conn), id};
  return code;
}

// The service closes the store when its connection ends.
void rbd_dict_store_close(rbd_dict_store** store) {
  delete *store;
  *store = nullptr;
}

rbd_code rbd_dict_store_lookup(rbd_dict_store* store, const char* key, rbd_buffer** value_r, rbd_error* err) {
  Writer args;
  args.U64(store->id);
  args.String(key);
  Reply reply;
  rbd_code code = store->conn->Call(Op::kDictLookup, args, &reply, err);
  const std::string_view value = code == RBD_OK ? reply.in.Bytes() : std::string_view();
  code = Decoded(reply, code, err);
  if (code == RBD_OK) *value_r = MakeBuffer(value);
  return code;
}

rbd_code rbd_dict_store_list(rbd_dict_store* store, const char* prefix, const char* after, size_t max,
                             rbd_dict_entries** entries_r, rbd_error* err) {
  Writer args;
  args.U64(store->id);
  args.String(prefix);
  args.String(after);
  args.U64(max);
  return rbd::remote::CallHeld(
      *store->conn, Op::kDictList, args, entries_r, err, [](Reply& r, rbd_dict_entries* list) {
        list->entries = rbd::remote::GetArray<rbd_dict_entry>(r.in, r.keep, &list->count);
        list->more = r.in.U8();
      });
}

void rbd_dict_entries_free(rbd_dict_entries** entries) { rbd::remote::FreeHeld(entries); }

rbd_code rbd_dict_store_commit(rbd_dict_store* store, const rbd_dict_change* changes, size_t count,
                               int* inc_missed_r, rbd_error* err) {
  Writer args;
  args.U64(store->id);
  PutArray(args, changes, count);
  Reply reply;
  rbd_code code = store->conn->Call(Op::kDictCommit, args, &reply, err);
  const int inc_missed = code == RBD_OK ? reply.in.U8() : 0;
  code = Decoded(reply, code, err);
  if (code == RBD_OK && inc_missed_r != nullptr) *inc_missed_r = inc_missed;
  return code;
}

rbd_code rbd_dict_store_adopt(rbd_dict_store* store, const char* legacy_ns, const char* prefix,
                              rbd_error* err) {
  Writer args;
  args.U64(store->id);
  args.String(legacy_ns);
  args.String(prefix);
  Reply reply;
  return store->conn->Call(Op::kDictAdopt, args, &reply, err);
}

}  // extern "C"
