// The calls that need no service (configuration, handle bookkeeping) and
// the connection every other call goes through.
#include "client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>

namespace rbd::remote {

rbd_code Report(const Status& s, rbd_error* err) {
  auto code = static_cast<rbd_code>(s.code());
  if (err != nullptr && code != RBD_OK) {
    err->code = code;
    std::snprintf(err->message, sizeof(err->message), "%s", s.message().c_str());
  }
  return code;
}

Reply::~Reply() {
  if (fd >= 0) close(fd);
}

Reply& Reply::operator=(Reply&& other) {
  if (fd >= 0) close(fd);
  body = std::move(other.body);
  in = Reader(body);
  keep = std::move(other.keep);
  fd = other.fd;
  other.fd = -1;
  return *this;
}

rbd_code Decoded(const Reply& reply, rbd_code code, rbd_error* err) {
  if (code == RBD_OK && reply.in.failed()) return Report(Status::Io("rbd service: malformed reply"), err);
  return code;
}

namespace {

// Every rbd_buffer the client hands out: bytes in a frame it shares.
struct SharedBuffer : rbd_buffer {
  std::shared_ptr<const std::string> frame;
};

rbd_buffer* NewBuffer(std::shared_ptr<const std::string> frame, const char* data, size_t size) {
  auto* b = new SharedBuffer;
  b->frame = std::move(frame);
  b->data = const_cast<char*>(data);
  b->size = size;
  return b;
}

}  // namespace

rbd_buffer* MakeBuffer(std::string_view bytes) {
  auto copy = std::make_shared<const std::string>(bytes);
  return NewBuffer(copy, copy->data(), copy->size());
}

FrameShare::FrameShare(Reply& reply)
    : base_(reply.body.data()), frame_(std::make_shared<const std::string>(std::move(reply.body))) {}

rbd_buffer* FrameShare::Buffer(std::string_view bytes) const {
  return NewBuffer(frame_, frame_->data() + (bytes.data() - base_), bytes.size());
}

bool Mutates(Op op) {
  switch (op) {
    case Op::kCreateMailbox:
    case Op::kDeleteMailbox:
    case Op::kRenameMailbox:
    case Op::kSetSubscribed:
    case Op::kSetSpecialUse:
    case Op::kIndexClaimRecent:
    case Op::kIndexAppend:
    case Op::kIndexCopy:
    case Op::kIndexUpdateFlags:
    case Op::kIndexExpunge:
    case Op::kIndexTouch:
    case Op::kUserSettle:
    case Op::kIndexTrimLog:
    case Op::kIndexUpdateState:
    case Op::kChangeMailboxGuid:
    case Op::kBodyWrite:
    case Op::kBodyWriterWrite:
    case Op::kBodyWriterFinish:
    case Op::kBodyUnref:
    case Op::kLeaseAcquire:
    case Op::kLeaseRenew:
    case Op::kUserGc:
    case Op::kUserCheck:
    case Op::kUserRebuild:
    case Op::kDictCommit:
    case Op::kDictAdopt: return true;
    default: return false;
  }
}

rbd_code Connection::Open(const Config& config,
                          const std::vector<std::pair<std::string, std::string>>& settings,
                          const struct timeval* clock, std::unique_ptr<Connection>* conn_r, rbd_error* err) {
  if (config.service.empty())
    return Report(Status::Invalid("rbd_service: setting is required (the rbd service's socket)"), err);
  if (config.service.size() >= sizeof(sockaddr_un::sun_path))
    return Report(Status::Invalid("rbd_service: path too long: " + config.service), err);
  std::unique_ptr<Connection> conn(new Connection(config.service, clock));
  conn->hello_.U32(kProtocolVersion);
  conn->hello_.U8(clock != nullptr);
  conn->hello_.U32(static_cast<uint32_t>(settings.size()));
  for (const auto& [name, value] : settings) {
    conn->hello_.String(name.c_str());
    conn->hello_.String(value.c_str());
  }
  rbd_code code = conn->Connect(err);
  if (code == RBD_OK) *conn_r = std::move(conn);
  return code;
}

Connection::~Connection() {
  if (sock_ >= 0) close(sock_);
}

rbd_code Connection::Connect(rbd_error* err) {
  if (sock_ >= 0) close(sock_);
  sock_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sock_ < 0) return Report(Status::Io(std::string("socket(): ") + std::strerror(errno)), err);
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
  if (connect(sock_, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) < 0) {
    lost_errno_ = errno;
    return Report(Status::Unavailable("rbd service " + path_ + ": " + std::strerror(errno) +
                                      " (is `service rbd` running? see rbd_service)"),
                  err);
  }
  lost_errno_ = 0;
  generation_++;
  Reply reply;
  rbd_code code = Exchange(Op::kHello, hello_, &reply, err);
  // Handles of the service that went away, opened again in the order they
  // were first opened, so an index follows its user. One that cannot be
  // (its mailbox was deleted meanwhile) is left out, and its calls fail;
  // the first, the user or dictionary itself, must be.
  for (auto it = replays_.begin(); code == RBD_OK && it != replays_.end();) {
    Reply replayed;
    rbd_code r = Exchange(it->second.op, it->second.args, &replayed, err);
    if (r == RBD_OK) {
      if (it->second.reopened) it->second.reopened(replayed);
      ++it;
    } else if (lost_errno_ != 0 || it == replays_.begin()) {
      code = r;
    } else {
      it = replays_.erase(it);
    }
  }
  // Half a connection serves nothing: the next call tries again.
  if (code != RBD_OK && lost_errno_ == 0) lost_errno_ = ECONNABORTED;
  return code;
}

bool Connection::Lost() {
  if (lost_errno_ == 0 && sock_ >= 0) {
    // Between calls the service never sends: a readable socket is its end.
    struct pollfd p {
      sock_, POLLIN | POLLRDHUP, 0
    };
    if (poll(&p, 1, 0) > 0) lost_errno_ = ECONNRESET;
  }
  return lost_errno_ != 0;
}

rbd_code Connection::Call(Op op, const Writer& args, Reply* reply, rbd_error* err) {
  if (Lost()) {
    rbd_code code = Connect(err);
    if (code != RBD_OK) return code;
  }
  rbd_code code = Exchange(op, args, reply, err);
  // A call that changes nothing is asked again of the service the master
  // started in its place: a restart then costs a read nothing, and a sync
  // (which Dovecot's IDLE gives up on after one failure) does not fail.
  if (lost_errno_ != 0 && !Mutates(op) && Connect(nullptr) == RBD_OK) {
    *reply = Reply();
    code = Exchange(op, args, reply, err);
  }
  return code;
}

rbd_code Connection::CallOn(uint64_t generation, Op op, const Writer& args, Reply* reply, rbd_error* err,
                            std::string_view tail) {
  if (generation != generation_ || Lost())
    return Report(Status::Unavailable("rbd service " + path_ + " restarted since this was opened"), err);
  return Exchange(op, args, reply, err, tail);
}

rbd_code Connection::CallOpen(Op op, uint64_t id, const Writer& args, Reply* reply, rbd_error* err,
                              std::function<void(Reply&)> reopened) {
  rbd_code code = Call(op, args, reply, err);
  if (code == RBD_OK) Reopens(id, op, args, std::move(reopened));
  return code;
}

void Connection::Reopens(uint64_t id, Op op, Writer args, std::function<void(Reply&)> reopened) {
  replays_[id] = Replay{op, std::move(args), std::move(reopened)};
}

void Connection::Release(Op op, uint64_t id) {
  Writer args;
  args.U64(id);
  Release(op, id, args, -1);
}

void Connection::Release(Op op, uint64_t id, const Writer& args, int fd) {
  replays_.erase(id);
  if (!Lost()) {
    Reply reply;
    Exchange(op, args, &reply, nullptr, {}, fd);
  }
  if (fd >= 0) close(fd);
}

rbd_code Connection::Exchange(Op op, const Writer& args, Reply* reply, rbd_error* err, std::string_view tail,
                              int fd) {
  const rbd_code lost = Mutates(op) ? RBD_ERR_UNKNOWN : RBD_ERR_UNAVAILABLE;
  if (lost_errno_ == 0) {
    Writer request;
    request.U16(static_cast<uint16_t>(op));
    request.I64(clock_ != nullptr ? clock_->tv_sec : 0);
    request.I64(clock_ != nullptr ? clock_->tv_usec : 0);
    const size_t size = request.data().size() + args.data().size() + tail.size();
    if (size > kMaxFrame)
      return Report(
          Status::Invalid("rbd service: a call of " + std::to_string(size) + " bytes is too large to send"),
          err);
    int r = SendFrame(sock_, {request.data(), args.data(), tail}, fd);
    if (r == 0) r = ReceiveFrame(sock_, &reply->body, &reply->fd, -1);
    if (r < 0) lost_errno_ = -r;
  }
  if (lost_errno_ != 0) {
    std::string msg = "rbd service " + path_ + ": connection lost (" + std::strerror(lost_errno_) + ")";
    return Report(
        lost == RBD_ERR_UNKNOWN ? Status::Unknown(msg + ": outcome unknown") : Status::Unavailable(msg), err);
  }
  reply->in = Reader(reply->body);
  size_t n = 0;
  const rbd_op_record* ops = GetArray<rbd_op_record>(reply->in, reply->keep, &n);
  reported_ops_.insert(reported_ops_.end(), ops, ops + n);
  dropped_ += reply->in.U64();
  const rbd_settled* settled = GetArray<rbd_settled>(reply->in, reply->keep, &n);
  reported_settled_.insert(reported_settled_.end(), settled, settled + n);
  rbd_code code = GetStatus(reply->in, err);
  if (reply->in.failed()) return Report(Status::Io("rbd service " + path_ + ": malformed reply"), err);
  return code;
}

rbd_code OpenOwn(const rbd_cluster* cluster, const struct timeval* clock, Op op, const char* ns,
                 std::unique_ptr<Connection>* conn_r, uint64_t* id_r, rbd_error* err) {
  std::unique_ptr<Connection> conn;
  rbd_code code = Connection::Open(cluster->config.config, cluster->config.settings, clock, &conn, err);
  if (code != RBD_OK) return code;
  const uint64_t id = conn->NewId();
  Writer args;
  args.U64(id);
  args.String(ns);
  Reply reply;
  code = conn->CallOpen(op, id, args, &reply, err);
  if (code != RBD_OK) return code;
  *conn_r = std::move(conn);
  *id_r = id;
  return code;
}

}  // namespace rbd::remote

using rbd::remote::Connection;

extern "C" {

rbd_config* rbd_config_new(void) { return new (std::nothrow) rbd_config; }

void rbd_config_free(rbd_config** config) {
  delete *config;
  *config = nullptr;
}

rbd_code rbd_config_set(rbd_config* config, const char* name, const char* value, rbd_error* err) {
  rbd::Status s = config->config.Set(name, value);
  if (s.ok() && std::strcmp(name, "rbd_service") != 0) config->settings.emplace_back(name, value);
  return rbd::remote::Report(s, err);
}

rbd_code rbd_config_validate(const rbd_config* config, rbd_error* err) {
  return rbd::remote::Report(config->config.Validate(), err);
}

uint32_t rbd_config_gc_grace(const rbd_config* config) { return config->config.gc_grace_seconds; }

uint64_t rbd_config_max_message_size(const rbd_config* config) { return config->config.max_message_size; }

rbd_code rbd_cluster_get(const rbd_config* config, rbd_cluster** cluster_r, rbd_error* err) {
  rbd::Status s = config->config.Validate();
  if (s.ok()) *cluster_r = new rbd_cluster{*config};
  return rbd::remote::Report(s, err);
}

void rbd_cluster_unref(rbd_cluster** cluster) {
  delete *cluster;
  *cluster = nullptr;
}

// The process holds no connection of its own: each user's closes with it.
void rbd_shutdown(void) {}

rbd_code rbd_cluster_connect(rbd_cluster* cluster, rbd_error* err) {
  std::unique_ptr<Connection> conn;
  rbd_code code = Connection::Open(cluster->config.config, cluster->config.settings, nullptr, &conn, err);
  if (code != RBD_OK) return code;
  rbd::remote::Reply reply;
  return conn->Call(rbd::remote::Op::kClusterConnect, {}, &reply, err);
}

void rbd_buffer_free(rbd_buffer** buffer) {
  delete static_cast<rbd::remote::SharedBuffer*>(*buffer);
  *buffer = nullptr;
}

}  // extern "C"
