// The calls that need no service (configuration, handle bookkeeping) and
// the connection every other call goes through.
#include "client.h"

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

rbd_code Decoded(const Reply& reply, rbd_code code, rbd_error* err) {
  if (code == RBD_OK && reply.in.failed()) return Report(Status::Io("rbd service: malformed reply"), err);
  return code;
}

namespace {

struct OwnedBuffer : rbd_buffer {
  std::string bytes;
};

}  // namespace

rbd_buffer* MakeBuffer(std::string_view bytes) {
  auto* b = new OwnedBuffer;
  b->bytes = bytes;
  b->data = b->bytes.data();
  b->size = b->bytes.size();
  return b;
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
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  if (config.service.size() >= sizeof(addr.sun_path))
    return Report(Status::Invalid("rbd_service: path too long: " + config.service), err);
  std::memcpy(addr.sun_path, config.service.c_str(), config.service.size() + 1);
  int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sock < 0) return Report(Status::Io(std::string("socket(): ") + std::strerror(errno)), err);
  if (connect(sock, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) < 0) {
    Status s = Status::Unavailable("rbd service " + config.service + ": " + std::strerror(errno) +
                                   " (is `service rbd` running? see rbd_service)");
    close(sock);
    return Report(s, err);
  }
  std::unique_ptr<Connection> conn(new Connection(sock, config.service, clock));
  Writer hello;
  hello.U32(kProtocolVersion);
  hello.U8(clock != nullptr);
  hello.U32(static_cast<uint32_t>(settings.size()));
  for (const auto& [name, value] : settings) {
    hello.String(name.c_str());
    hello.String(value.c_str());
  }
  Reply reply;
  rbd_code code = conn->Call(Op::kHello, hello, &reply, err);
  if (code == RBD_OK) *conn_r = std::move(conn);
  return code;
}

Connection::~Connection() { close(sock_); }

rbd_code Connection::Call(Op op, const Writer& args, Reply* reply, rbd_error* err) {
  const rbd_code lost = Mutates(op) ? RBD_ERR_UNKNOWN : RBD_ERR_UNAVAILABLE;
  if (lost_errno_ == 0) {
    Writer request;
    request.U16(static_cast<uint16_t>(op));
    request.I64(clock_ != nullptr ? clock_->tv_sec : 0);
    request.I64(clock_ != nullptr ? clock_->tv_usec : 0);
    request.data() += args.data();
    if (request.data().size() > kMaxFrame)
      return Report(Status::Invalid("rbd service: a call of " + std::to_string(request.data().size()) +
                                    " bytes is too large to send"),
                    err);
    int r = SendFrame(sock_, request.data());
    if (r == 0) r = ReceiveFrame(sock_, &reply->body, &reply->fd, -1);
    if (r < 0) lost_errno_ = -r;
  }
  if (lost_errno_ != 0) {
    std::string msg = "rbd service " + path_ + ": connection lost (" + std::strerror(lost_errno_) + ")";
    return Report(
        lost == RBD_ERR_UNKNOWN ? Status::Unknown(msg + ": outcome unknown") : Status::Unavailable(msg), err);
  }
  reply->in = Reader(reply->body);
  rbd_code code = GetStatus(reply->in, err);
  if (reply->in.failed()) return Report(Status::Io("rbd service " + path_ + ": malformed reply"), err);
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
  delete static_cast<rbd::remote::OwnedBuffer*>(*buffer);
  *buffer = nullptr;
}

}  // extern "C"
