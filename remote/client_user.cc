// The user's calls over the service (serve_user.cc answers them).
#include <algorithm>
#include <cstring>

#include "client.h"

using rbd::remote::CallHeld;
using rbd::remote::Connection;
using rbd::remote::FreeHeld;
using rbd::remote::GetArray;
using rbd::remote::Op;
using rbd::remote::Reply;
using rbd::remote::Writer;

namespace {

// Moves up to `max` of `items`, oldest first, into `out`.
template <typename T>
size_t Take(std::vector<T>& items, T* out, size_t max) {
  const size_t n = std::min(max, items.size());
  std::copy(items.begin(), items.begin() + n, out);
  items.erase(items.begin(), items.begin() + n);
  return n;
}

}  // namespace

extern "C" {

rbd_code rbd_user_open(rbd_cluster* cluster, const char* ns, const struct timeval* command_started,
                       rbd_user** user_r, rbd_error* err) {
  std::unique_ptr<Connection> conn;
  uint64_t id = 0;
  rbd_code code = rbd::remote::OpenOwn(cluster, command_started, Op::kUserOpen, ns, &conn, &id, err);
  if (code == RBD_OK) *user_r = new rbd_user{std::move(conn), id};
  return code;
}

// The service closes the user, and whatever is still open under it, when
// its connection ends.
void rbd_user_close(rbd_user** user) {
  delete *user;
  *user = nullptr;
}

rbd_code rbd_list_mailboxes(rbd_user* user, rbd_mailbox_entries** list_r, rbd_error* err) {
  Writer args;
  args.U64(user->id);
  return CallHeld(*user->conn, Op::kListMailboxes, args, list_r, err,
                  [](Reply& r, rbd_mailbox_entries* list) {
                    list->entries = GetArray<rbd_mailbox_entry>(r.in, r.keep, &list->count);
                  });
}

void rbd_mailbox_entries_free(rbd_mailbox_entries** list) { FreeHeld(list); }

// What the replies brought (Connection::Exchange): no call of its own.
size_t rbd_user_drain_ops(rbd_user* user, rbd_op_record* out, size_t max, uint64_t* dropped_r) {
  *dropped_r = user->conn->TakeDropped();
  return Take(user->conn->reported_ops(), out, max);
}

rbd_code rbd_lookup_mailbox(rbd_user* user, const char* name, uint8_t guid_r[RBD_GUID_SIZE], rbd_error* err) {
  Writer args;
  args.U64(user->id);
  args.String(name);
  Reply reply;
  rbd_code code = user->conn->Call(Op::kLookupMailbox, args, &reply, err);
  if (code == RBD_OK) reply.in.Guid(guid_r);
  return rbd::remote::Decoded(reply, code, err);
}

rbd_code rbd_create_mailbox(rbd_user* user, const char* name, const uint8_t guid[RBD_GUID_SIZE],
                            uint32_t uidvalidity, const char* special_use, rbd_error* err) {
  Writer args;
  args.U64(user->id);
  args.String(name);
  args.Guid(guid);
  args.U32(uidvalidity);
  args.String(special_use);
  Reply reply;
  return user->conn->Call(Op::kCreateMailbox, args, &reply, err);
}

rbd_code rbd_delete_mailbox(rbd_user* user, const char* name, rbd_error* err) {
  Writer args;
  args.U64(user->id);
  args.String(name);
  Reply reply;
  return user->conn->Call(Op::kDeleteMailbox, args, &reply, err);
}

rbd_code rbd_rename_mailbox(rbd_user* user, const char* old_name, const char* new_name, char separator,
                            rbd_error* err) {
  Writer args;
  args.U64(user->id);
  args.String(old_name);
  args.String(new_name);
  args.U8(static_cast<uint8_t>(separator));
  Reply reply;
  return user->conn->Call(Op::kRenameMailbox, args, &reply, err);
}

rbd_code rbd_set_subscribed(rbd_user* user, const char* name, int subscribed, rbd_error* err) {
  Writer args;
  args.U64(user->id);
  args.String(name);
  args.U8(subscribed != 0);
  Reply reply;
  return user->conn->Call(Op::kSetSubscribed, args, &reply, err);
}

rbd_code rbd_set_special_use(rbd_user* user, const char* name, const char* special_use, rbd_error* err) {
  Writer args;
  args.U64(user->id);
  args.String(name);
  args.String(special_use);
  Reply reply;
  return user->conn->Call(Op::kSetSpecialUse, args, &reply, err);
}

size_t rbd_user_drain_settled(rbd_user* user, rbd_settled* out, size_t max) {
  return Take(user->conn->reported_settled(), out, max);
}

void rbd_user_settle(rbd_user* user) {
  Writer args;
  args.U64(user->id);
  Reply reply;
  user->conn->Call(Op::kUserSettle, args, &reply, nullptr);
}

void rbd_user_take_unsettled(rbd_user* user, rbd_buffer** kept_r) {
  Writer args;
  args.U64(user->id);
  args.U8(kept_r != nullptr);
  Reply reply;
  if (kept_r != nullptr) *kept_r = nullptr;
  if (user->conn->Call(Op::kUserTakeUnsettled, args, &reply, nullptr) != RBD_OK || reply.in.U8() == 0) return;
  std::string_view kept = reply.in.Bytes();
  if (kept_r != nullptr && !reply.in.failed()) *kept_r = rbd::remote::MakeBuffer(kept);
}

rbd_code rbd_user_add_unsettled(rbd_user* user, const void* data, size_t size, rbd_error* err) {
  Writer args;
  args.U64(user->id);
  args.Bytes(data, size);
  Reply reply;
  return user->conn->Call(Op::kUserAddUnsettled, args, &reply, err);
}

rbd_code rbd_lease_acquire(rbd_user* user, const char* name, uint32_t duration_ms, rbd_lease** lease_r,
                           rbd_error* err) {
  const uint64_t id = user->conn->NewId();
  Writer args;
  args.U64(id);
  args.U64(user->id);
  args.String(name);
  args.U32(duration_ms);
  Reply reply;
  rbd_code code = user->conn->Call(Op::kLeaseAcquire, args, &reply, err);
  if (code == RBD_OK) *lease_r = new rbd_lease{user, id, user->conn->generation()};
  return code;
}

rbd_code rbd_lease_renew(rbd_lease* lease, rbd_error* err) {
  // The lease ended with the service that held it.
  if (lease->user->conn->generation() != lease->generation)
    return rbd::remote::Report(rbd::Status::Busy("lease lost: the rbd service restarted"), err);
  Writer args;
  args.U64(lease->id);
  Reply reply;
  return lease->user->conn->CallOn(lease->generation, Op::kLeaseRenew, args, &reply, err);
}

void rbd_lease_release(rbd_lease** lease) {
  if ((*lease)->user->conn->generation() == (*lease)->generation)
    (*lease)->user->conn->Release(Op::kLeaseRelease, (*lease)->id);
  delete *lease;
  *lease = nullptr;
}

rbd_code rbd_user_gc(rbd_user* user, uint32_t grace_seconds, rbd_gc_stats* stats_r, rbd_error* err) {
  Writer args;
  args.U64(user->id);
  args.U32(grace_seconds);
  Reply reply;
  rbd_code code = user->conn->Call(Op::kUserGc, args, &reply, err);
  *stats_r = {};
  if (!reply.body.empty()) rbd::remote::Get(reply.in, reply.keep, stats_r);
  return rbd::remote::Decoded(reply, code, err);
}

rbd_code rbd_user_check(rbd_user* user, int repair, uint32_t grace_seconds, rbd_problems** problems_r,
                        rbd_error* err) {
  Writer args;
  args.U64(user->id);
  args.U8(repair != 0);
  args.U32(grace_seconds);
  *problems_r = nullptr;
  return CallHeld(*user->conn, Op::kUserCheck, args, problems_r, err, [](Reply& r, rbd_problems* problems) {
    problems->problems = GetArray<rbd_problem>(r.in, r.keep, &problems->count);
  });
}

void rbd_problems_free(rbd_problems** problems) { FreeHeld(problems); }

rbd_code rbd_user_list_objects(rbd_user* user, rbd_objects** objects_r, rbd_error* err) {
  Writer args;
  args.U64(user->id);
  *objects_r = nullptr;
  return CallHeld(*user->conn, Op::kUserListObjects, args, objects_r, err,
                  [](Reply& r, rbd_objects* objects) {
                    objects->objects = GetArray<rbd_object>(r.in, r.keep, &objects->count);
                  });
}

void rbd_objects_free(rbd_objects** objects) { FreeHeld(objects); }

namespace {

rbd_code Rebuild(rbd_user* user, const uint8_t* only, rbd_rebuild_stats* stats_r, rbd_error* err) {
  Writer args;
  args.U64(user->id);
  args.U8(only != nullptr);
  if (only != nullptr) args.Guid(only);
  Reply reply;
  rbd_code code = user->conn->Call(Op::kUserRebuild, args, &reply, err);
  *stats_r = {};
  if (!reply.body.empty()) rbd::remote::Get(reply.in, reply.keep, stats_r);
  return rbd::remote::Decoded(reply, code, err);
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
