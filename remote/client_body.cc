// Message bodies and watches over the service (serve_body.cc answers them).
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <optional>
#include <vector>

#include "client.h"

using rbd::remote::Decoded;
using rbd::remote::Op;
using rbd::remote::Reply;
using rbd::remote::Writer;

namespace rbd::remote {

namespace {

// An rbd_body_info that may be NULL.
void PutInfo(Writer& w, const rbd_body_info* info) {
  w.U8(info != nullptr);
  if (info != nullptr) Put(w, *info);
}

// Puts the service's eventfd, and the socket whose end also wakes the
// caller, into the watch's epoll set (again, after a new connection).
void Arm(rbd_watch* watch, Reply& reply) {
  if (watch->event_fd >= 0) close(watch->event_fd);
  watch->event_fd = reply.fd;
  reply.fd = -1;
  struct epoll_event ev {};
  ev.events = EPOLLIN;
  epoll_ctl(watch->epoll_fd, EPOLL_CTL_ADD, watch->event_fd, &ev);
  ev.events = EPOLLIN | EPOLLRDHUP;
  epoll_ctl(watch->epoll_fd, EPOLL_CTL_ADD, watch->user->conn->sock(), &ev);
}

// How long after a failed attempt to reach a restarted service the caller
// is woken to try again.
constexpr long kRetrySeconds = 1;

// The service has gone: takes its eventfd and socket out of the epoll set
// and connects again at once, which opens the watch again into the set
// (Arm). While no service answers yet, the set's timerfd wakes the caller
// every kRetrySeconds to try again, so the watch comes back without a
// command or a poll of the mailbox.
unsigned int Rewatch(rbd_watch* watch) {
  if (watch->event_fd >= 0) close(watch->event_fd);
  watch->event_fd = -1;
  epoll_ctl(watch->epoll_fd, EPOLL_CTL_DEL, watch->user->conn->sock(), nullptr);
  if (watch->user->conn->Reconnect(nullptr) == RBD_OK) return RBD_WATCH_LOST | RBD_WATCH_CHANGED;
  struct itimerspec retry {};
  retry.it_value.tv_sec = kRetrySeconds;
  timerfd_settime(watch->timer_fd, 0, &retry, nullptr);
  return RBD_WATCH_LOST;
}

rbd_code OpenWatch(rbd_user* user, Op op, uint64_t on, rbd_watch** watch_r, rbd_error* err) {
  const int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd < 0) return Report(Status::Io(std::string("epoll_create1(): ") + std::strerror(errno)), err);
  const int timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  struct epoll_event ev {};
  ev.events = EPOLLIN;
  if (timer_fd < 0 || epoll_ctl(epoll_fd, EPOLL_CTL_ADD, timer_fd, &ev) < 0) {
    const int e = errno;
    if (timer_fd >= 0) close(timer_fd);
    close(epoll_fd);
    return Report(Status::Io(std::string("timerfd: ") + std::strerror(e)), err);
  }
  auto* watch = new rbd_watch{user, user->conn->NewId(), epoll_fd, -1, timer_fd};
  Writer args;
  args.U64(watch->id);
  args.U64(on);
  Reply reply;
  rbd_code code =
      user->conn->CallOpen(op, watch->id, args, &reply, err, [watch](Reply& r) { Arm(watch, r); });
  // The kernel drops a descriptor the process has no room for.
  if (code == RBD_OK && reply.fd < 0)
    code = Report(Status::Io("rbd service: watch descriptor not received (out of file descriptors?)"), err);
  if (code != RBD_OK) {
    user->conn->Release(Op::kWatchClose, watch->id);
    close(timer_fd);
    close(epoll_fd);
    delete watch;
    return code;
  }
  Arm(watch, reply);
  *watch_r = watch;
  return code;
}

// Frees the client's side of a watch the service was told to close.
void FreeWatch(rbd_watch** watch) {
  if ((*watch)->event_fd >= 0) close((*watch)->event_fd);
  close((*watch)->timer_fd);
  close((*watch)->epoll_fd);
  delete *watch;
  *watch = nullptr;
}

}  // namespace

}  // namespace rbd::remote

extern "C" {

rbd_code rbd_index_read_body(rbd_index* mailbox, const rbd_record* record, uint64_t offset, uint64_t length,
                             rbd_buffer** body_r, rbd_error* err) {
  Writer args;
  args.U64(mailbox->id);
  Put(args, *record);
  args.U64(offset);
  args.U64(length);
  Reply reply;
  rbd_code code = mailbox->user->conn->Call(Op::kIndexReadBody, args, &reply, err);
  const std::string_view body = code == RBD_OK ? reply.in.Bytes() : std::string_view();
  code = Decoded(reply, code, err);
  if (code == RBD_OK) *body_r = rbd::remote::FrameShare(reply).Buffer(body);
  return code;
}

rbd_code rbd_index_read_bodies(rbd_index* mailbox, const rbd_record* records, size_t count,
                               rbd_buffer** bodies_r, rbd_error* err) {
  Writer args;
  args.U64(mailbox->id);
  PutArray(args, records, count);
  Reply reply;
  rbd_code code = mailbox->user->conn->Call(Op::kIndexReadBodies, args, &reply, err);
  // The bodies read come whatever the code, which is the first failure's.
  std::vector<std::optional<std::string_view>> bodies(count);
  for (size_t i = 0; i < count; i++) {
    if (reply.in.U8() != 0) bodies[i] = reply.in.Bytes();
  }
  const bool decoded = !reply.in.failed();
  code = Decoded(reply, code, err);
  const rbd::remote::FrameShare share(reply);
  for (size_t i = 0; i < count; i++) bodies_r[i] = decoded && bodies[i] ? share.Buffer(*bodies[i]) : nullptr;
  return code;
}

rbd_code rbd_body_reader_open(rbd_index* mailbox, const rbd_record* record, rbd_body_reader** reader_r,
                              uint64_t* size_r, rbd_error* err) {
  rbd::remote::Connection& conn = *mailbox->user->conn;
  const uint64_t id = conn.NewId();
  Writer args;
  args.U64(id);
  args.U64(mailbox->id);
  Put(args, *record);
  Reply reply;
  rbd_code code = conn.Call(Op::kBodyReaderOpen, args, &reply, err);
  const uint64_t size = code == RBD_OK ? reply.in.U64() : 0;
  code = Decoded(reply, code, err);
  if (code != RBD_OK) return code;
  *reader_r = new rbd_body_reader{mailbox->user, id, conn.generation()};
  *size_r = size;
  return code;
}

rbd_code rbd_body_reader_read(rbd_body_reader* reader, uint64_t offset, void* buf, size_t size,
                              size_t* read_r, rbd_error* err) {
  Writer args;
  args.U64(reader->id);
  args.U64(offset);
  args.U64(size);
  Reply reply;
  rbd_code code = reader->user->conn->CallOn(reader->generation, Op::kBodyReaderRead, args, &reply, err);
  const std::string_view bytes = code == RBD_OK ? reply.in.Bytes() : std::string_view();
  code = Decoded(reply, code, err);
  if (code != RBD_OK) return code;
  if (bytes.size() > size)
    return rbd::remote::Report(rbd::Status::Io("rbd service: read more than asked"), err);
  std::memcpy(buf, bytes.data(), bytes.size());
  *read_r = bytes.size();
  return code;
}

void rbd_body_reader_free(rbd_body_reader** reader) {
  if ((*reader)->user->conn->generation() == (*reader)->generation)
    (*reader)->user->conn->Release(Op::kBodyReaderFree, (*reader)->id);
  delete *reader;
  *reader = nullptr;
}

rbd_code rbd_body_write(rbd_user* user, const uint8_t guid[RBD_GUID_SIZE], const void* data, size_t size,
                        const rbd_body_info* info, rbd_error* err) {
  Writer args;
  args.U64(user->id);
  args.Guid(guid);
  args.Bytes(data, size);
  rbd::remote::PutInfo(args, info);
  Reply reply;
  return user->conn->Call(Op::kBodyWrite, args, &reply, err);
}

rbd_code rbd_body_writer_open(rbd_user* user, const uint8_t guid[RBD_GUID_SIZE], rbd_body_writer** writer_r,
                              rbd_error* err) {
  const uint64_t id = user->conn->NewId();
  Writer args;
  args.U64(id);
  args.U64(user->id);
  args.Guid(guid);
  Reply reply;
  rbd_code code = user->conn->Call(Op::kBodyWriterOpen, args, &reply, err);
  if (code == RBD_OK) *writer_r = new rbd_body_writer{user, id, user->conn->generation()};
  return code;
}

rbd_code rbd_body_writer_write(rbd_body_writer* writer, const void* data, size_t size, rbd_error* err) {
  // The data as Writer::Bytes writes it, but sent from the caller's buffer:
  // a streamed message is never copied whole.
  Writer args;
  args.U64(writer->id);
  args.U64(size);
  Reply reply;
  return writer->user->conn->CallOn(writer->generation, Op::kBodyWriterWrite, args, &reply, err,
                                    std::string_view(static_cast<const char*>(data), size));
}

rbd_code rbd_body_writer_finish(rbd_body_writer* writer, const rbd_body_info* info, rbd_error* err) {
  Writer args;
  args.U64(writer->id);
  rbd::remote::PutInfo(args, info);
  Reply reply;
  return writer->user->conn->CallOn(writer->generation, Op::kBodyWriterFinish, args, &reply, err);
}

void rbd_body_writer_free(rbd_body_writer** writer) {
  if ((*writer)->user->conn->generation() == (*writer)->generation)
    (*writer)->user->conn->Release(Op::kBodyWriterFree, (*writer)->id);
  delete *writer;
  *writer = nullptr;
}

rbd_code rbd_body_stat(rbd_user* user, const uint8_t guid[RBD_GUID_SIZE], rbd_body_info* info_r,
                       rbd_error* err) {
  Writer args;
  args.U64(user->id);
  args.Guid(guid);
  Reply reply;
  rbd_code code = user->conn->Call(Op::kBodyStat, args, &reply, err);
  if (code == RBD_OK) Get(reply.in, reply.keep, info_r);
  return Decoded(reply, code, err);
}

rbd_code rbd_body_unref(rbd_user* user, const uint8_t guid[RBD_GUID_SIZE], rbd_error* err) {
  Writer args;
  args.U64(user->id);
  args.Guid(guid);
  Reply reply;
  return user->conn->Call(Op::kBodyUnref, args, &reply, err);
}

rbd_code rbd_watch_open(rbd_index* mailbox, rbd_watch** watch_r, rbd_error* err) {
  return rbd::remote::OpenWatch(mailbox->user, Op::kWatchOpen, mailbox->id, watch_r, err);
}

rbd_code rbd_watch_open_list(rbd_user* user, rbd_watch** watch_r, rbd_error* err) {
  return rbd::remote::OpenWatch(user, Op::kWatchOpenList, user->id, watch_r, err);
}

int rbd_watch_fd(const rbd_watch* watch) { return watch->epoll_fd; }

unsigned int rbd_watch_consume(rbd_watch* watch) {
  uint64_t expirations;
  (void)!read(watch->timer_fd, &expirations, sizeof(expirations));
  if (watch->user->conn->Lost()) return rbd::remote::Rewatch(watch);
  Writer args;
  args.U64(watch->id);
  Reply reply;
  rbd_code code = watch->user->conn->Call(Op::kWatchConsume, args, &reply, nullptr);
  const unsigned int bits = code == RBD_OK ? reply.in.U32() : 0;
  if (Decoded(reply, code, nullptr) == RBD_OK) return bits;
  return rbd::remote::Rewatch(watch);
}

void rbd_watch_close(rbd_watch** watch) {
  (*watch)->user->conn->Release(Op::kWatchClose, (*watch)->id);
  rbd::remote::FreeWatch(watch);
}

void rbd_watch_close_lingering(rbd_watch** watch, int fd, unsigned int seconds) {
  Writer args;
  args.U64((*watch)->id);
  args.U32(seconds);
  (*watch)->user->conn->Release(Op::kWatchCloseLingering, (*watch)->id, args, fd);
  rbd::remote::FreeWatch(watch);
}

}  // extern "C"
