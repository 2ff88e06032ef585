// Handlers of the mailbox index's calls (client_index.cc sends them).
#include <vector>

#include "handlers.h"

namespace rbd::remote {

namespace {

rbd_code IndexOpen(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  Keep keep;
  const uint64_t id = in.U64();
  rbd_user* user = Need<rbd_user>(s, in.U64(), err);
  uint8_t guid[RBD_GUID_SIZE];
  in.Guid(guid);
  const char* guarded_name = keep.String(in);
  if (user == nullptr || Malformed(in, err) || Taken(s, id, err)) return err->code;
  rbd_index* index = nullptr;
  rbd_code code = rbd_index_open(user, guid, &index, err);
  if (code != RBD_OK) return code;
  if (guarded_name != nullptr && *guarded_name != '\0') rbd_index_guard_name(index, guarded_name);
  s.Add(id, index);
  return code;
}

rbd_code IndexOpenName(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  Keep keep;
  const uint64_t id = in.U64();
  rbd_user* user = Need<rbd_user>(s, in.U64(), err);
  const char* name = keep.String(in);
  if (user == nullptr || Malformed(in, err) || Taken(s, id, err)) return err->code;
  uint8_t guid[RBD_GUID_SIZE];
  rbd_index* index = nullptr;
  rbd_code code = rbd_index_open_name(user, name, guid, &index, err);
  if (code != RBD_OK) return code;
  s.Add(id, index);
  out.Guid(guid);
  return code;
}

rbd_code IndexGetStatus(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  rbd_index* index = Need<rbd_index>(s, in.U64(), err);
  if (index == nullptr || Malformed(in, err)) return err->code;
  rbd_index_status status{};
  rbd_code code = rbd_index_get_status(index, &status, err);
  if (code == RBD_OK) Put(out, status);
  return code;
}

rbd_code IndexCountKeys(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  rbd_index* index = Need<rbd_index>(s, in.U64(), err);
  if (index == nullptr || Malformed(in, err)) return err->code;
  rbd_index_keys keys{};
  rbd_code code = rbd_index_count_keys(index, &keys, err);
  if (code == RBD_OK) Put(out, keys);
  return code;
}

rbd_code IndexLastStatus(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  rbd_index* index = Need<rbd_index>(s, in.U64(), err);
  if (index == nullptr || Malformed(in, err)) return err->code;
  rbd_index_status status{};
  rbd_index_last_status(index, &status);
  Put(out, status);
  return RBD_OK;
}

rbd_code IndexNamed(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  Keep keep;
  rbd_index* index = Need<rbd_index>(s, in.U64(), err);
  const char* name = keep.String(in);
  if (index == nullptr || Malformed(in, err)) return err->code;
  out.U8(name != nullptr && rbd_index_named(index, name) ? 1 : 0);
  return RBD_OK;
}

rbd_code IndexGuardName(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  Keep keep;
  rbd_index* index = Need<rbd_index>(s, in.U64(), err);
  const char* name = keep.String(in);
  if (index == nullptr || name == nullptr || Malformed(in, err)) return err->code;
  rbd_index_guard_name(index, name);
  return RBD_OK;
}

rbd_code IndexKeepWatched(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  rbd_index* index = Need<rbd_index>(s, in.U64(), err);
  const uint32_t seconds = in.U32();
  if (index == nullptr || Malformed(in, err)) return err->code;
  return rbd_index_keep_watched(index, seconds, err);
}

rbd_code IndexClaimRecent(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  rbd_index* index = Need<rbd_index>(s, in.U64(), err);
  const uint32_t up_to = in.U32();
  if (index == nullptr || Malformed(in, err)) return err->code;
  uint32_t first = 0;
  uint32_t end = 0;
  rbd_code code = rbd_index_claim_recent(index, up_to, &first, &end, err);
  if (code != RBD_OK) return code;
  out.U32(first);
  out.U32(end);
  return code;
}

rbd_code IndexAppend(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  Keep keep;
  rbd_index* index = Need<rbd_index>(s, in.U64(), err);
  size_t count = 0;
  const rbd_new_message* messages = GetArray<rbd_new_message>(in, keep, &count);
  const bool claiming = in.U8() != 0;
  if (index == nullptr || Malformed(in, err)) return err->code;
  std::vector<uint32_t> uids(count);
  uint32_t first = 0, end = 0;
  rbd_code code = claiming ? rbd_index_append_claiming(index, messages, count, uids.data(), &first, &end, err)
                           : rbd_index_append(index, messages, count, uids.data(), err);
  if (code != RBD_OK) return code;
  out.Uids(uids.data(), uids.size());
  if (claiming) {
    out.U32(first);
    out.U32(end);
  }
  return code;
}

rbd_code IndexCopy(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  Keep keep;
  rbd_index* source = Need<rbd_index>(s, in.U64(), err);
  const std::vector<uint32_t> uids = in.Uids();
  rbd_index* dest = Need<rbd_index>(s, in.U64(), err);
  const bool overridden = in.U8() != 0;
  size_t override_count = 0;
  const rbd_copy_override* overrides =
      overridden ? GetArray<rbd_copy_override>(in, keep, &override_count) : nullptr;
  if (source == nullptr || dest == nullptr || Malformed(in, err)) return err->code;
  if (overridden && override_count != uids.size())
    return Fail(err, RBD_ERR_INVALID, "rbd service: %zu overrides for %zu messages", override_count,
                uids.size());
  std::vector<uint32_t> dest_uids(uids.size());
  rbd_code code = rbd_index_copy(source, uids.data(), uids.size(), dest, overrides, dest_uids.data(), err);
  if (code == RBD_OK) out.Uids(dest_uids.data(), dest_uids.size());
  return code;
}

rbd_code IndexUpdateFlags(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  Keep keep;
  rbd_index* index = Need<rbd_index>(s, in.U64(), err);
  size_t count = 0;
  const rbd_flag_change* changes = GetArray<rbd_flag_change>(in, keep, &count);
  if (index == nullptr || Malformed(in, err)) return err->code;
  uint32_t* conflicts = nullptr;
  size_t conflict_count = 0;
  uint64_t modseq = 0;
  rbd_code code = rbd_index_update_flags_of(index, changes, count, &conflicts, &conflict_count, &modseq, err);
  if (code != RBD_OK) return code;
  out.Uids(conflicts, conflict_count);
  out.U64(modseq);
  rbd_uids_free(&conflicts);
  return code;
}

rbd_code IndexExpunge(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  rbd_index* index = Need<rbd_index>(s, in.U64(), err);
  const std::vector<uint32_t> uids = in.Uids();
  const bool wanted = in.U8() != 0;
  if (index == nullptr || Malformed(in, err)) return err->code;
  std::vector<uint32_t> expunged(uids.size());
  size_t count = 0;
  rbd_code code =
      rbd_index_expunge(index, uids.data(), uids.size(), wanted ? expunged.data() : nullptr, &count, err);
  if (code != RBD_OK) return code;
  out.U64(count);
  if (wanted) out.Uids(expunged.data(), count);
  return code;
}

rbd_code IndexTouch(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  rbd_index* index = Need<rbd_index>(s, in.U64(), err);
  const std::vector<uint32_t> uids = in.Uids();
  const uint64_t min_modseq = in.U64();
  if (index == nullptr || Malformed(in, err)) return err->code;
  uint64_t modseq = 0;
  rbd_code code = rbd_index_touch(index, uids.data(), uids.size(), min_modseq, &modseq, err);
  if (code == RBD_OK) out.U64(modseq);
  return code;
}

// Answers with the records and frees the core's copy.
rbd_code PutRecords(Writer& out, rbd_code code, rbd_records* records) {
  if (code != RBD_OK) return code;
  PutArray(out, records->records, records->count);
  rbd_records_free(&records);
  return code;
}

rbd_code IndexListRecords(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  rbd_index* index = Need<rbd_index>(s, in.U64(), err);
  const uint32_t after_uid = in.U32();
  const uint64_t max = in.U64();
  if (index == nullptr || Malformed(in, err)) return err->code;
  rbd_records* records = nullptr;
  rbd_code code = rbd_index_list_records(index, after_uid, max, &records, err);
  return PutRecords(out, code, records);
}

rbd_code IndexLookupRecords(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  rbd_index* index = Need<rbd_index>(s, in.U64(), err);
  const std::vector<uint32_t> uids = in.Uids();
  if (index == nullptr || Malformed(in, err)) return err->code;
  rbd_records* records = nullptr;
  rbd_code code = rbd_index_lookup_records(index, uids.data(), uids.size(), &records, err);
  return PutRecords(out, code, records);
}

rbd_code IndexListAll(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  rbd_index* index = Need<rbd_index>(s, in.U64(), err);
  const uint64_t page = in.U64();
  const bool wanted = in.U8() != 0;
  if (index == nullptr || Malformed(in, err)) return err->code;
  rbd_records* records = nullptr;
  rbd_index_status status{};
  const char* const* keywords = nullptr;
  size_t keyword_count = 0;
  rbd_code code =
      rbd_index_list_all(index, page, &records, &status, wanted ? &keywords : nullptr, &keyword_count, err);
  if (code != RBD_OK) return code;
  PutArray(out, records->records, records->count);
  Put(out, status);
  if (wanted) out.Strings(keywords, keyword_count);
  rbd_records_free(&records);
  return code;
}

rbd_code IndexChanges(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  rbd_index* index = Need<rbd_index>(s, in.U64(), err);
  const uint64_t since_modseq = in.U64();
  if (index == nullptr || Malformed(in, err)) return err->code;
  rbd_changes* changes = nullptr;
  rbd_code code = rbd_index_changes(index, since_modseq, &changes, err);
  if (code != RBD_OK) return code;
  PutArray(out, changes->ops, changes->op_count);
  Put(out, changes->status);
  rbd_changes_free(&changes);
  return code;
}

rbd_code IndexTrimLog(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  rbd_index* index = Need<rbd_index>(s, in.U64(), err);
  const uint64_t up_to_modseq = in.U64();
  if (index == nullptr || Malformed(in, err)) return err->code;
  return rbd_index_trim_log(index, up_to_modseq, err);
}

rbd_code IndexUpdateState(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  rbd_index* index = Need<rbd_index>(s, in.U64(), err);
  const uint32_t uidvalidity = in.U32();
  const uint32_t min_uidnext = in.U32();
  const uint64_t min_highest_modseq = in.U64();
  if (index == nullptr || Malformed(in, err)) return err->code;
  return rbd_index_update_state(index, uidvalidity, min_uidnext, min_highest_modseq, err);
}

rbd_code ChangeMailboxGuid(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  Keep keep;
  rbd_user* user = Need<rbd_user>(s, in.U64(), err);
  const char* name = keep.String(in);
  uint8_t guid[RBD_GUID_SIZE];
  in.Guid(guid);
  if (user == nullptr || Malformed(in, err)) return err->code;
  // The core takes the name as a std::string: NULL would end the service.
  if (name == nullptr)
    return Fail(err, RBD_ERR_INVALID, "rbd service: rbd_change_mailbox_guid without a name");
  return rbd_change_mailbox_guid(user, name, guid, err);
}

}  // namespace

void RegisterIndexHandlers(HandlerTable& t) {
  Register(t, Op::kIndexOpen, IndexOpen);
  Register(t, Op::kIndexOpenName, IndexOpenName);
  Register(t, Op::kIndexClose, Release<rbd_index, rbd_index_close>);
  Register(t, Op::kIndexGetStatus, IndexGetStatus);
  Register(t, Op::kIndexCountKeys, IndexCountKeys);
  Register(t, Op::kIndexLastStatus, IndexLastStatus);
  Register(t, Op::kIndexNamed, IndexNamed);
  Register(t, Op::kIndexGuardName, IndexGuardName);
  Register(t, Op::kIndexClaimRecent, IndexClaimRecent);
  Register(t, Op::kIndexKeepWatched, IndexKeepWatched);
  Register(t, Op::kIndexAppend, IndexAppend);
  Register(t, Op::kIndexCopy, IndexCopy);
  Register(t, Op::kIndexUpdateFlags, IndexUpdateFlags);
  Register(t, Op::kIndexExpunge, IndexExpunge);
  Register(t, Op::kIndexTouch, IndexTouch);
  Register(t, Op::kIndexListRecords, IndexListRecords);
  Register(t, Op::kIndexLookupRecords, IndexLookupRecords);
  Register(t, Op::kIndexListAll, IndexListAll);
  Register(t, Op::kIndexChanges, IndexChanges);
  Register(t, Op::kIndexTrimLog, IndexTrimLog);
  Register(t, Op::kIndexUpdateState, IndexUpdateState);
  Register(t, Op::kChangeMailboxGuid, ChangeMailboxGuid);
}

}  // namespace rbd::remote
