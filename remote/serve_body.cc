// Handlers of the calls on message bodies and of the watches.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "handlers.h"

namespace rbd::remote {

namespace {

// An rbd_body_info that may be NULL: `info` or nullptr.
const rbd_body_info* GetInfo(Reader& in, rbd_body_info* info) {
  if (in.U8() == 0) return nullptr;
  Keep keep;
  Get(in, keep, info);
  return info;
}

rbd_code ReadBody(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  Keep keep;
  rbd_index* index = Need<rbd_index>(s, in.U64(), err);
  rbd_record record{};
  Get(in, keep, &record);
  const uint64_t offset = in.U64();
  const uint64_t length = in.U64();
  if (index == nullptr || Malformed(in, err)) return err->code;
  rbd_buffer* body = nullptr;
  rbd_code code = rbd_index_read_body(index, &record, offset, length, &body, err);
  if (code != RBD_OK) return code;
  out.Bytes(body->data, body->size);
  rbd_buffer_free(&body);
  return code;
}

rbd_code ReadBodies(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  Keep keep;
  rbd_index* index = Need<rbd_index>(s, in.U64(), err);
  size_t count = 0;
  const rbd_record* records = GetArray<rbd_record>(in, keep, &count);
  if (index == nullptr || Malformed(in, err)) return err->code;
  std::vector<rbd_buffer*> bodies(count);
  rbd_code code = rbd_index_read_bodies(index, records, count, bodies.data(), err);
  for (rbd_buffer*& body : bodies) {
    out.U8(body != nullptr);
    if (body == nullptr) continue;
    out.Bytes(body->data, body->size);
    rbd_buffer_free(&body);
  }
  return code;
}

rbd_code BodyReaderOpen(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  Keep keep;
  const uint64_t id = in.U64();
  rbd_index* index = Need<rbd_index>(s, in.U64(), err);
  rbd_record record{};
  Get(in, keep, &record);
  if (index == nullptr || Malformed(in, err) || Taken(s, id, err)) return err->code;
  rbd_body_reader* reader = nullptr;
  uint64_t size = 0;
  rbd_code code = rbd_body_reader_open(index, &record, &reader, &size, err);
  if (code != RBD_OK) return code;
  s.Add(id, reader);
  out.U64(size);
  return code;
}

rbd_code BodyReaderRead(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  rbd_body_reader* reader = Need<rbd_body_reader>(s, in.U64(), err);
  const uint64_t offset = in.U64();
  const uint64_t size = in.U64();
  if (reader == nullptr || Malformed(in, err)) return err->code;
  // What is read must fit the reply, with room for its header.
  if (size > kMaxFrame / 2)
    return Fail(err, RBD_ERR_INVALID, "rbd service: read of %llu bytes at once",
                static_cast<unsigned long long>(size));
  std::string buf(size, '\0');
  size_t got = 0;
  rbd_code code = rbd_body_reader_read(reader, offset, buf.data(), buf.size(), &got, err);
  if (code == RBD_OK) out.Bytes(buf.data(), got);
  return code;
}

rbd_code BodyWrite(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  rbd_user* user = Need<rbd_user>(s, in.U64(), err);
  uint8_t guid[RBD_GUID_SIZE];
  in.Guid(guid);
  const std::string_view data = in.Bytes();
  rbd_body_info info{};
  const rbd_body_info* given = GetInfo(in, &info);
  if (user == nullptr || Malformed(in, err)) return err->code;
  return rbd_body_write(user, guid, data.data(), data.size(), given, err);
}

rbd_code BodyWriterOpen(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  const uint64_t id = in.U64();
  rbd_user* user = Need<rbd_user>(s, in.U64(), err);
  uint8_t guid[RBD_GUID_SIZE];
  in.Guid(guid);
  if (user == nullptr || Malformed(in, err) || Taken(s, id, err)) return err->code;
  rbd_body_writer* writer = nullptr;
  rbd_code code = rbd_body_writer_open(user, guid, &writer, err);
  if (code == RBD_OK) s.Add(id, writer);
  return code;
}

rbd_code BodyWriterWrite(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  rbd_body_writer* writer = Need<rbd_body_writer>(s, in.U64(), err);
  const std::string_view data = in.Bytes();
  if (writer == nullptr || Malformed(in, err)) return err->code;
  return rbd_body_writer_write(writer, data.data(), data.size(), err);
}

rbd_code BodyWriterFinish(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  rbd_body_writer* writer = Need<rbd_body_writer>(s, in.U64(), err);
  rbd_body_info info{};
  const rbd_body_info* given = GetInfo(in, &info);
  if (writer == nullptr || Malformed(in, err)) return err->code;
  return rbd_body_writer_finish(writer, given, err);
}

rbd_code BodyStat(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  rbd_user* user = Need<rbd_user>(s, in.U64(), err);
  uint8_t guid[RBD_GUID_SIZE];
  in.Guid(guid);
  if (user == nullptr || Malformed(in, err)) return err->code;
  rbd_body_info info{};
  rbd_code code = rbd_body_stat(user, guid, &info, err);
  if (code == RBD_OK) Put(out, info);
  return code;
}

rbd_code BodyUnref(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  rbd_user* user = Need<rbd_user>(s, in.U64(), err);
  uint8_t guid[RBD_GUID_SIZE];
  in.Guid(guid);
  if (user == nullptr || Malformed(in, err)) return err->code;
  return rbd_body_unref(user, guid, err);
}

// Keeps a watch the core opened and sends a copy of its eventfd beside the
// reply (the session closes what it sends).
rbd_code Watching(Session& s, uint64_t id, rbd_code code, rbd_watch* watch, int* fd_r, rbd_error* err) {
  if (code != RBD_OK) return code;
  *fd_r = fcntl(rbd_watch_fd(watch), F_DUPFD_CLOEXEC, 0);
  if (*fd_r < 0) {
    const int e = errno;
    rbd_watch_close(&watch);
    return Fail(err, RBD_ERR_IO, "rbd service: dup(): %s", std::strerror(e));
  }
  s.Add(id, watch);
  return code;
}

rbd_code WatchOpen(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  const uint64_t id = in.U64();
  rbd_index* index = Need<rbd_index>(s, in.U64(), err);
  if (index == nullptr || Malformed(in, err) || Taken(s, id, err)) return err->code;
  rbd_watch* watch = nullptr;
  rbd_code code = rbd_watch_open(index, &watch, err);
  return Watching(s, id, code, watch, fd_r, err);
}

rbd_code WatchOpenList(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  const uint64_t id = in.U64();
  rbd_user* user = Need<rbd_user>(s, in.U64(), err);
  if (user == nullptr || Malformed(in, err) || Taken(s, id, err)) return err->code;
  rbd_watch* watch = nullptr;
  rbd_code code = rbd_watch_open_list(user, &watch, err);
  return Watching(s, id, code, watch, fd_r, err);
}

// Without a file to write to (a client bug) the watch is closed at once.
rbd_code WatchCloseLingering(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  const int fd = s.TakeFd();
  const uint64_t id = in.U64();
  const uint32_t seconds = in.U32();
  rbd_watch* watch =
      Need<rbd_watch>(s, id, err) != nullptr && !Malformed(in, err) ? s.Take<rbd_watch>(id) : nullptr;
  if (watch != nullptr && fd >= 0) {
    rbd_watch_close_lingering(&watch, fd, seconds);
    return RBD_OK;
  }
  if (fd >= 0) close(fd);
  if (watch == nullptr) return err->code;
  rbd_watch_close(&watch);
  return RBD_OK;
}

rbd_code WatchConsume(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  rbd_watch* watch = Need<rbd_watch>(s, in.U64(), err);
  if (watch == nullptr || Malformed(in, err)) return err->code;
  out.U32(rbd_watch_consume(watch));
  return RBD_OK;
}

}  // namespace

void RegisterBodyHandlers(HandlerTable& t) {
  Register(t, Op::kIndexReadBody, ReadBody);
  Register(t, Op::kIndexReadBodies, ReadBodies);
  Register(t, Op::kBodyReaderOpen, BodyReaderOpen);
  Register(t, Op::kBodyReaderRead, BodyReaderRead);
  Register(t, Op::kBodyReaderFree, Release<rbd_body_reader, rbd_body_reader_free>);
  Register(t, Op::kBodyWrite, BodyWrite);
  Register(t, Op::kBodyWriterOpen, BodyWriterOpen);
  Register(t, Op::kBodyWriterWrite, BodyWriterWrite);
  Register(t, Op::kBodyWriterFinish, BodyWriterFinish);
  Register(t, Op::kBodyWriterFree, Release<rbd_body_writer, rbd_body_writer_free>);
  Register(t, Op::kBodyStat, BodyStat);
  Register(t, Op::kBodyUnref, BodyUnref);
  Register(t, Op::kWatchOpen, WatchOpen);
  Register(t, Op::kWatchOpenList, WatchOpenList);
  Register(t, Op::kWatchConsume, WatchConsume);
  Register(t, Op::kWatchClose, Release<rbd_watch, rbd_watch_close>);
  Register(t, Op::kWatchCloseLingering, WatchCloseLingering);
}

}  // namespace rbd::remote
