// Handlers of the user's calls: the hello, the user itself, its mailbox
// list, settlements, leases and maintenance.
#include <cstdio>
#include <cstring>
#include <vector>

#include "handlers.h"

namespace rbd::remote {

rbd_code Fail(rbd_error* err, rbd_code code, const char* format, ...) {
  va_list args;
  va_start(args, format);
  std::vsnprintf(err->message, sizeof(err->message), format, args);
  va_end(args);
  err->code = code;
  return code;
}

rbd_code ServeHello(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  const uint32_t version = in.U32();
  const bool has_clock = in.U8() != 0;
  const uint32_t count = in.U32();
  Keep keep;
  std::vector<std::pair<const char*, const char*>> settings;
  for (uint32_t i = 0; i < count && !in.failed(); i++) {
    const char* name = keep.String(in);
    const char* value = keep.String(in);
    settings.emplace_back(name, value);
  }
  if (version != kProtocolVersion)
    return Fail(err, RBD_ERR_INVALID,
                "rbd service speaks protocol %u, this client %u: install matching versions", kProtocolVersion,
                version);
  if (Malformed(in, err)) return err->code;
  if (s.cluster() != nullptr) return Fail(err, RBD_ERR_INVALID, "rbd service: hello twice");
  rbd_config* config = rbd_config_new();
  rbd_code code = RBD_OK;
  for (const auto& [name, value] : settings) {
    if (name == nullptr || value == nullptr)
      code = Fail(err, RBD_ERR_INVALID, "rbd service: malformed setting");
    if (code == RBD_OK) code = rbd_config_set(config, name, value, err);
    if (code == RBD_OK && std::strcmp(name, "rbd_namespace") == 0) s.set_configured_namespace(value);
  }
  for (const auto& [name, value] : PinnedSettings())
    if (code == RBD_OK) code = rbd_config_set(config, name.c_str(), value.c_str(), err);
  rbd_cluster* cluster = nullptr;
  if (code == RBD_OK) code = rbd_cluster_get(config, &cluster, err);
  if (code == RBD_OK) s.set_cluster(cluster);
  s.set_has_clock(has_clock);
  rbd_config_free(&config);
  return code;
}

namespace {

rbd_code ClusterConnect(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  return rbd_cluster_connect(s.cluster(), err);
}

rbd_code UserOpen(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  Keep keep;
  const uint64_t id = in.U64();
  const char* ns = keep.String(in);
  if (Malformed(in, err) || Taken(s, id, err) || s.Admit(ns, err) != RBD_OK) return err->code;
  rbd_user* user = nullptr;
  rbd_code code = rbd_user_open(s.cluster(), ns, s.clock(), &user, err);
  if (code == RBD_OK) {
    s.Add(id, user);
    s.set_user(user);
  }
  return code;
}

rbd_code ListMailboxes(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  rbd_user* user = Need<rbd_user>(s, in.U64(), err);
  if (user == nullptr || Malformed(in, err)) return err->code;
  rbd_mailbox_entries* list = nullptr;
  rbd_code code = rbd_list_mailboxes(user, &list, err);
  if (code != RBD_OK) return code;
  PutArray(out, list->entries, list->count);
  rbd_mailbox_entries_free(&list);
  return code;
}

rbd_code LookupMailbox(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  Keep keep;
  rbd_user* user = Need<rbd_user>(s, in.U64(), err);
  const char* name = keep.String(in);
  if (user == nullptr || Malformed(in, err)) return err->code;
  uint8_t guid[RBD_GUID_SIZE];
  rbd_code code = rbd_lookup_mailbox(user, name, guid, err);
  if (code == RBD_OK) out.Guid(guid);
  return code;
}

rbd_code CreateMailbox(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  Keep keep;
  rbd_user* user = Need<rbd_user>(s, in.U64(), err);
  const char* name = keep.String(in);
  uint8_t guid[RBD_GUID_SIZE];
  in.Guid(guid);
  const uint32_t uidvalidity = in.U32();
  const char* special_use = keep.String(in);
  if (user == nullptr || Malformed(in, err)) return err->code;
  return rbd_create_mailbox(user, name, guid, uidvalidity, special_use, err);
}

rbd_code DeleteMailbox(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  Keep keep;
  rbd_user* user = Need<rbd_user>(s, in.U64(), err);
  const char* name = keep.String(in);
  if (user == nullptr || Malformed(in, err)) return err->code;
  return rbd_delete_mailbox(user, name, err);
}

rbd_code RenameMailbox(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  Keep keep;
  rbd_user* user = Need<rbd_user>(s, in.U64(), err);
  const char* old_name = keep.String(in);
  const char* new_name = keep.String(in);
  const char separator = static_cast<char>(in.U8());
  if (user == nullptr || Malformed(in, err)) return err->code;
  return rbd_rename_mailbox(user, old_name, new_name, separator, err);
}

rbd_code SetSubscribed(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  Keep keep;
  rbd_user* user = Need<rbd_user>(s, in.U64(), err);
  const char* name = keep.String(in);
  const int subscribed = in.U8();
  if (user == nullptr || Malformed(in, err)) return err->code;
  return rbd_set_subscribed(user, name, subscribed, err);
}

rbd_code SetSpecialUse(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  Keep keep;
  rbd_user* user = Need<rbd_user>(s, in.U64(), err);
  const char* name = keep.String(in);
  const char* special_use = keep.String(in);
  if (user == nullptr || Malformed(in, err)) return err->code;
  return rbd_set_special_use(user, name, special_use, err);
}

rbd_code UserSettle(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  rbd_user* user = Need<rbd_user>(s, in.U64(), err);
  if (user == nullptr || Malformed(in, err)) return err->code;
  rbd_user_settle(user);
  return RBD_OK;
}

rbd_code UserTakeUnsettled(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  rbd_user* user = Need<rbd_user>(s, in.U64(), err);
  const bool keep = in.U8() != 0;
  if (user == nullptr || Malformed(in, err)) return err->code;
  rbd_buffer* kept = nullptr;
  rbd_user_take_unsettled(user, keep ? &kept : nullptr);
  out.U8(kept != nullptr);
  if (kept != nullptr) {
    out.Bytes(kept->data, kept->size);
    rbd_buffer_free(&kept);
  }
  return RBD_OK;
}

rbd_code UserAddUnsettled(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  rbd_user* user = Need<rbd_user>(s, in.U64(), err);
  std::string_view data = in.Bytes();
  if (user == nullptr || Malformed(in, err)) return err->code;
  return rbd_user_add_unsettled(user, data.data(), data.size(), err);
}

rbd_code LeaseAcquire(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  Keep keep;
  const uint64_t id = in.U64();
  rbd_user* user = Need<rbd_user>(s, in.U64(), err);
  const char* name = keep.String(in);
  const uint32_t duration_ms = in.U32();
  if (user == nullptr || Malformed(in, err) || Taken(s, id, err)) return err->code;
  rbd_lease* lease = nullptr;
  rbd_code code = rbd_lease_acquire(user, name, duration_ms, &lease, err);
  if (code == RBD_OK) s.Add(id, lease);
  return code;
}

rbd_code LeaseRenew(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  rbd_lease* lease = Need<rbd_lease>(s, in.U64(), err);
  if (lease == nullptr || Malformed(in, err)) return err->code;
  return rbd_lease_renew(lease, err);
}

// gc and rebuild count what they did also when they fail part way.
rbd_code UserGc(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  rbd_user* user = Need<rbd_user>(s, in.U64(), err);
  const uint32_t grace = in.U32();
  if (user == nullptr || Malformed(in, err)) return err->code;
  rbd_gc_stats stats{};
  rbd_code code = rbd_user_gc(user, grace, &stats, err);
  Put(out, stats);
  return code;
}

rbd_code UserCheck(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  rbd_user* user = Need<rbd_user>(s, in.U64(), err);
  const int repair = in.U8();
  const uint32_t grace = in.U32();
  if (user == nullptr || Malformed(in, err)) return err->code;
  rbd_problems* problems = nullptr;
  rbd_code code = rbd_user_check(user, repair, grace, &problems, err);
  if (code != RBD_OK) return code;
  PutArray(out, problems->problems, problems->count);
  rbd_problems_free(&problems);
  return code;
}

rbd_code UserListObjects(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  rbd_user* user = Need<rbd_user>(s, in.U64(), err);
  if (user == nullptr || Malformed(in, err)) return err->code;
  rbd_objects* objects = nullptr;
  rbd_code code = rbd_user_list_objects(user, &objects, err);
  if (code != RBD_OK) return code;
  PutArray(out, objects->objects, objects->count);
  rbd_objects_free(&objects);
  return code;
}

rbd_code UserRebuild(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  rbd_user* user = Need<rbd_user>(s, in.U64(), err);
  const bool one = in.U8() != 0;
  uint8_t guid[RBD_GUID_SIZE];
  if (one) in.Guid(guid);
  if (user == nullptr || Malformed(in, err)) return err->code;
  rbd_rebuild_stats stats{};
  rbd_code code = one ? rbd_mailbox_rebuild(user, guid, &stats, err) : rbd_user_rebuild(user, &stats, err);
  Put(out, stats);
  return code;
}

}  // namespace

void RegisterUserHandlers(HandlerTable& t) {
  Register(t, Op::kClusterConnect, ClusterConnect);
  Register(t, Op::kUserOpen, UserOpen);
  Register(t, Op::kListMailboxes, ListMailboxes);
  Register(t, Op::kLookupMailbox, LookupMailbox);
  Register(t, Op::kCreateMailbox, CreateMailbox);
  Register(t, Op::kDeleteMailbox, DeleteMailbox);
  Register(t, Op::kRenameMailbox, RenameMailbox);
  Register(t, Op::kSetSubscribed, SetSubscribed);
  Register(t, Op::kSetSpecialUse, SetSpecialUse);
  Register(t, Op::kUserSettle, UserSettle);
  Register(t, Op::kUserTakeUnsettled, UserTakeUnsettled);
  Register(t, Op::kUserAddUnsettled, UserAddUnsettled);
  Register(t, Op::kLeaseAcquire, LeaseAcquire);
  Register(t, Op::kLeaseRenew, LeaseRenew);
  Register(t, Op::kLeaseRelease, Release<rbd_lease, rbd_lease_release>);
  Register(t, Op::kUserGc, UserGc);
  Register(t, Op::kUserCheck, UserCheck);
  Register(t, Op::kUserListObjects, UserListObjects);
  Register(t, Op::kUserRebuild, UserRebuild);
}

}  // namespace rbd::remote
