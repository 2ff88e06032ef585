// The mailbox index's calls over the service (serve_index.cc answers them).
// An index lives on its user's connection, under the service's number.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

#include "client.h"

using rbd::remote::CallHeld;
using rbd::remote::Decoded;
using rbd::remote::FreeHeld;
using rbd::remote::GetArray;
using rbd::remote::Op;
using rbd::remote::PutArray;
using rbd::remote::Reader;
using rbd::remote::Reply;
using rbd::remote::Writer;

namespace {

// The arguments of a call on `mailbox`: its number first.
Writer Args(const rbd_index* mailbox) {
  Writer args;
  args.U64(mailbox->id);
  return args;
}

rbd_code Call(const rbd_index* mailbox, Op op, const Writer& args, Reply* reply, rbd_error* err) {
  return mailbox->user->conn->Call(op, args, reply, err);
}

// Copies UIDs of a reply into the caller's room for `room` of them, never
// more, whatever the service sent.
void GetUids(Reader& in, uint32_t* uids_r, size_t room) {
  std::vector<uint32_t> uids = in.Uids();
  std::copy_n(uids.begin(), std::min(uids.size(), room), uids_r);
}

// A call answered with records, freed by rbd_records_free().
rbd_code CallRecords(const rbd_index* mailbox, Op op, const Writer& args, rbd_records** records_r,
                     rbd_error* err) {
  return CallHeld(*mailbox->user->conn, op, args, records_r, err, [](Reply& r, rbd_records* records) {
    records->records = GetArray<rbd_record>(r.in, r.keep, &records->count);
  });
}

// The arguments that open the mailbox `guid` under number `id`, its
// writes bound to `guarded_name` unless that is empty.
Writer OpenArgs(uint64_t id, const rbd_user* user, const uint8_t guid[RBD_GUID_SIZE],
                const std::string& guarded_name = {}) {
  Writer args;
  args.U64(id);
  args.U64(user->id);
  args.Guid(guid);
  args.String(guarded_name.c_str());
  return args;
}

rbd_index* NewIndex(rbd_user* user, uint64_t id, const uint8_t guid[RBD_GUID_SIZE]) {
  rbd_index* index = new rbd_index{user, id, {}, {}, nullptr};
  std::memcpy(index->guid.data(), guid, RBD_GUID_SIZE);
  return index;
}

// rbd_index_append(), claiming \Recent too when `first_r` is set.
rbd_code Append(rbd_index* mailbox, const rbd_new_message* messages, size_t count, uint32_t* uids_r,
                uint32_t* first_r, uint32_t* end_r, rbd_error* err) {
  Writer args = Args(mailbox);
  PutArray(args, messages, count);
  args.U8(first_r != nullptr);
  Reply reply;
  rbd_code code = Call(mailbox, Op::kIndexAppend, args, &reply, err);
  if (code == RBD_OK) {
    GetUids(reply.in, uids_r, count);
    if (first_r != nullptr) {
      *first_r = reply.in.U32();
      *end_r = reply.in.U32();
    }
  }
  return Decoded(reply, code, err);
}

}  // namespace

extern "C" {

rbd_code rbd_index_open(rbd_user* user, const uint8_t guid[RBD_GUID_SIZE], rbd_index** mailbox_r,
                        rbd_error* err) {
  const uint64_t id = user->conn->NewId();
  Reply reply;
  rbd_code code = user->conn->CallOpen(Op::kIndexOpen, id, OpenArgs(id, user, guid), &reply, err);
  if (code == RBD_OK) *mailbox_r = NewIndex(user, id, guid);
  return code;
}

rbd_code rbd_index_open_name(rbd_user* user, const char* name, uint8_t guid_r[RBD_GUID_SIZE],
                             rbd_index** mailbox_r, rbd_error* err) {
  const uint64_t id = user->conn->NewId();
  Writer args;
  args.U64(id);
  args.U64(user->id);
  args.String(name);
  Reply reply;
  rbd_code code = user->conn->Call(Op::kIndexOpenName, args, &reply, err);
  if (code != RBD_OK) return code;
  reply.in.Guid(guid_r);
  if ((code = Decoded(reply, code, err)) != RBD_OK) {
    user->conn->Release(Op::kIndexClose, id);
    return code;
  }
  // Opened again by GUID after a reconnect: the handle stays the mailbox
  // it opened, wherever the name leads by then.
  user->conn->Reopens(id, Op::kIndexOpen, OpenArgs(id, user, guid_r));
  *mailbox_r = NewIndex(user, id, guid_r);
  return code;
}

void rbd_index_close(rbd_index** mailbox) {
  (*mailbox)->user->conn->Release(Op::kIndexClose, (*mailbox)->id);
  delete *mailbox;
  *mailbox = nullptr;
}

rbd_code rbd_index_get_status(rbd_index* mailbox, rbd_index_status* status_r, rbd_error* err) {
  Reply reply;
  rbd_code code = Call(mailbox, Op::kIndexGetStatus, Args(mailbox), &reply, err);
  if (code == RBD_OK) Get(reply.in, reply.keep, status_r);
  return Decoded(reply, code, err);
}

rbd_code rbd_index_count_keys(rbd_index* mailbox, rbd_index_keys* keys_r, rbd_error* err) {
  Reply reply;
  rbd_code code = Call(mailbox, Op::kIndexCountKeys, Args(mailbox), &reply, err);
  if (code == RBD_OK) Get(reply.in, reply.keep, keys_r);
  return Decoded(reply, code, err);
}

// The core's call does no I/O and cannot fail; this one can, and then
// answers with the zeroes of a handle that has read nothing yet.
void rbd_index_last_status(const rbd_index* index, rbd_index_status* status_r) {
  Reply reply;
  rbd_code code = Call(index, Op::kIndexLastStatus, Args(index), &reply, nullptr);
  if (code == RBD_OK) Get(reply.in, reply.keep, status_r);
  if (Decoded(reply, code, nullptr) != RBD_OK) *status_r = {};
}

int rbd_index_named(const rbd_index* index, const char* name) {
  Writer args = Args(index);
  args.String(name);
  Reply reply;
  rbd_code code = Call(index, Op::kIndexNamed, args, &reply, nullptr);
  const uint8_t named = code == RBD_OK ? reply.in.U8() : 0;
  return Decoded(reply, code, nullptr) == RBD_OK ? named : 0;
}

void rbd_index_guard_name(rbd_index* index, const char* name) {
  index->guarded_name = name;
  Writer args = Args(index);
  args.String(name);
  Reply reply;
  // When the service has gone, the next call's new connection opens the
  // handle again bound to the name (the replay below).
  (void)Decoded(reply, Call(index, Op::kIndexGuardName, args, &reply, nullptr), nullptr);
  index->user->conn->Reopens(index->id, Op::kIndexOpen,
                             OpenArgs(index->id, index->user, index->guid.data(), index->guarded_name));
}

rbd_code rbd_index_keep_watched(rbd_index* mailbox, uint32_t seconds, rbd_error* err) {
  Writer args = Args(mailbox);
  args.U32(seconds);
  Reply reply;
  return Decoded(reply, Call(mailbox, Op::kIndexKeepWatched, args, &reply, err), err);
}

rbd_code rbd_index_claim_recent(rbd_index* mailbox, uint32_t up_to, uint32_t* first_r, uint32_t* end_r,
                                rbd_error* err) {
  Writer args = Args(mailbox);
  args.U32(up_to);
  Reply reply;
  rbd_code code = Call(mailbox, Op::kIndexClaimRecent, args, &reply, err);
  if (code == RBD_OK) {
    *first_r = reply.in.U32();
    *end_r = reply.in.U32();
  }
  // As the core answers a claim whose outcome is unknown: it claims
  // nothing, so that no message is \Recent in two sessions.
  if (code == RBD_ERR_UNKNOWN) {
    *first_r = *end_r = 0;
    return RBD_OK;
  }
  return Decoded(reply, code, err);
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
  // Both handles must live in one service session: the one of their user.
  if (source->user != dest->user) {
    if (err != nullptr) {
      err->code = RBD_ERR_INVALID;
      std::snprintf(err->message, sizeof(err->message),
                    "rbd_index_copy: source and destination belong to different users (service connections)");
    }
    return RBD_ERR_INVALID;
  }
  Writer args = Args(source);
  args.Uids(source_uids, count);
  args.U64(dest->id);
  args.U8(overrides != nullptr);
  if (overrides != nullptr) PutArray(args, overrides, count);
  Reply reply;
  rbd_code code = Call(source, Op::kIndexCopy, args, &reply, err);
  if (code == RBD_OK) GetUids(reply.in, dest_uids_r, count);
  return Decoded(reply, code, err);
}

rbd_code rbd_index_update_flags(rbd_index* mailbox, const uint32_t* uids, size_t count,
                                const rbd_flag_update* update, uint32_t** conflicts_r,
                                size_t* conflict_count_r, uint64_t* modseq_r, rbd_error* err) {
  const rbd_flag_change change{uids, count, *update};
  return rbd_index_update_flags_of(mailbox, &change, 1, conflicts_r, conflict_count_r, modseq_r, err);
}

rbd_code rbd_index_update_flags_of(rbd_index* mailbox, const rbd_flag_change* changes, size_t count,
                                   uint32_t** conflicts_r, size_t* conflict_count_r, uint64_t* modseq_r,
                                   rbd_error* err) {
  Writer args = Args(mailbox);
  PutArray(args, changes, count);
  Reply reply;
  rbd_code code = Call(mailbox, Op::kIndexUpdateFlags, args, &reply, err);
  std::vector<uint32_t> conflicts;
  uint64_t modseq = 0;
  if (code == RBD_OK) {
    conflicts = reply.in.Uids();
    modseq = reply.in.U64();
  }
  code = Decoded(reply, code, err);
  if (code != RBD_OK) return code;
  *conflicts_r = nullptr;
  if (!conflicts.empty()) {
    *conflicts_r = new uint32_t[conflicts.size()];
    std::copy(conflicts.begin(), conflicts.end(), *conflicts_r);
  }
  *conflict_count_r = conflicts.size();
  *modseq_r = modseq;
  return code;
}

void rbd_uids_free(uint32_t** uids) {
  delete[] * uids;
  *uids = nullptr;
}

rbd_code rbd_index_expunge(rbd_index* mailbox, const uint32_t* uids, size_t count, uint32_t* expunged_r,
                           size_t* expunged_count_r, rbd_error* err) {
  Writer args = Args(mailbox);
  args.Uids(uids, count);
  args.U8(expunged_r != nullptr);
  Reply reply;
  rbd_code code = Call(mailbox, Op::kIndexExpunge, args, &reply, err);
  if (code == RBD_OK) {
    *expunged_count_r = std::min<uint64_t>(reply.in.U64(), count);
    if (expunged_r != nullptr) GetUids(reply.in, expunged_r, count);
  }
  return Decoded(reply, code, err);
}

rbd_code rbd_index_touch(rbd_index* mailbox, const uint32_t* uids, size_t count, uint64_t min_modseq,
                         uint64_t* modseq_r, rbd_error* err) {
  Writer args = Args(mailbox);
  args.Uids(uids, count);
  args.U64(min_modseq);
  Reply reply;
  rbd_code code = Call(mailbox, Op::kIndexTouch, args, &reply, err);
  if (code == RBD_OK) *modseq_r = reply.in.U64();
  return Decoded(reply, code, err);
}

rbd_code rbd_index_list_records(rbd_index* mailbox, uint32_t after_uid, size_t max, rbd_records** records_r,
                                rbd_error* err) {
  Writer args = Args(mailbox);
  args.U32(after_uid);
  args.U64(max);
  return CallRecords(mailbox, Op::kIndexListRecords, args, records_r, err);
}

rbd_code rbd_index_lookup_records(rbd_index* mailbox, const uint32_t* uids, size_t count,
                                  rbd_records** records_r, rbd_error* err) {
  Writer args = Args(mailbox);
  args.Uids(uids, count);
  return CallRecords(mailbox, Op::kIndexLookupRecords, args, records_r, err);
}

void rbd_records_free(rbd_records** records) { FreeHeld(records); }

rbd_code rbd_index_list_all(rbd_index* mailbox, size_t page, rbd_records** records_r,
                            rbd_index_status* status_r, const char* const** keywords_r,
                            size_t* keyword_count_r, rbd_error* err) {
  Writer args = Args(mailbox);
  args.U64(page);
  args.U8(keywords_r != nullptr);
  auto names = std::make_unique<Reply>();
  const char* const* keywords = nullptr;
  size_t keyword_count = 0;
  rbd_code code = CallHeld(*mailbox->user->conn, Op::kIndexListAll, args, records_r, err,
                           [&](Reply& r, rbd_records* records) {
                             records->records = GetArray<rbd_record>(r.in, r.keep, &records->count);
                             Get(r.in, r.keep, status_r);
                             if (keywords_r != nullptr) keywords = names->keep.Strings(r.in, &keyword_count);
                           });
  if (code == RBD_OK && keywords_r != nullptr) {
    mailbox->keywords = std::move(names);
    *keywords_r = keywords;
    *keyword_count_r = keyword_count;
  }
  return code;
}

rbd_code rbd_index_changes(rbd_index* mailbox, uint64_t since_modseq, rbd_changes** changes_r,
                           rbd_error* err) {
  Writer args = Args(mailbox);
  args.U64(since_modseq);
  return CallHeld(*mailbox->user->conn, Op::kIndexChanges, args, changes_r, err,
                  [](Reply& r, rbd_changes* changes) {
                    changes->ops = GetArray<rbd_change>(r.in, r.keep, &changes->op_count);
                    Get(r.in, r.keep, &changes->status);
                  });
}

void rbd_changes_free(rbd_changes** changes) { FreeHeld(changes); }

rbd_code rbd_index_trim_log(rbd_index* mailbox, uint64_t up_to_modseq, rbd_error* err) {
  Writer args = Args(mailbox);
  args.U64(up_to_modseq);
  Reply reply;
  return Call(mailbox, Op::kIndexTrimLog, args, &reply, err);
}

rbd_code rbd_index_update_state(rbd_index* mailbox, uint32_t uidvalidity, uint32_t min_uidnext,
                                uint64_t min_highest_modseq, rbd_error* err) {
  Writer args = Args(mailbox);
  args.U32(uidvalidity);
  args.U32(min_uidnext);
  args.U64(min_highest_modseq);
  Reply reply;
  return Call(mailbox, Op::kIndexUpdateState, args, &reply, err);
}

rbd_code rbd_change_mailbox_guid(rbd_user* user, const char* name, const uint8_t guid[RBD_GUID_SIZE],
                                 rbd_error* err) {
  Writer args;
  args.U64(user->id);
  args.String(name);
  args.Guid(guid);
  Reply reply;
  return user->conn->Call(Op::kChangeMailboxGuid, args, &reply, err);
}

}  // extern "C"
