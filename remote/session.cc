#include "session.h"

#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <vector>

#include "handlers.h"

namespace rbd::remote {

namespace {

template <typename... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <typename... F>
Overloaded(F...) -> Overloaded<F...>;

}  // namespace

Session::Session(int sock) : sock_(sock) {
  struct ucred cred {};
  socklen_t len = sizeof(cred);
  if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) peer_uid_ = cred.uid;
}

Session::~Session() { CloseAll(); }

rbd_code Session::Admit(const char* ns, rbd_error* err) {
  const std::string name = ns != nullptr ? ns : configured_ns_;
  if (admitted_ && name != ns_)
    return Fail(err, RBD_ERR_PERMISSION, "rbd service: this connection serves namespace '%s' only",
                ns_.c_str());
  if (peer_uid_ != 0 && peer_uid_ != static_cast<long>(getuid())) {
    struct passwd pw, *found = nullptr;
    std::vector<char> buf(16384);
    if (getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found) == 0 && found != nullptr &&
        static_cast<long>(found->pw_uid) != peer_uid_)
      return Fail(err, RBD_ERR_PERMISSION,
                  "rbd service: namespace '%s' belongs to system user %s (uid %u), not served to uid %ld",
                  name.c_str(), found->pw_name, static_cast<unsigned>(found->pw_uid), peer_uid_);
  }
  admitted_ = true;
  ns_ = name;
  return RBD_OK;
}

void Session::CloseAll() {
  while (!handles_.empty()) {
    auto last = std::prev(handles_.end());
    std::visit(
        Overloaded{[](rbd_user* h) { rbd_user_close(&h); }, [](rbd_index* h) { rbd_index_close(&h); },
                   [](rbd_watch* h) { rbd_watch_close(&h); }, [](rbd_lease* h) { rbd_lease_release(&h); },
                   [](rbd_body_reader* h) { rbd_body_reader_free(&h); },
                   [](rbd_body_writer* h) { rbd_body_writer_free(&h); },
                   [](rbd_dict_store* h) { rbd_dict_store_close(&h); }},
        last->second);
    handles_.erase(last);
  }
  if (cluster_ != nullptr) rbd_cluster_unref(&cluster_);
}

void Session::PutReports(Writer& w) {
  std::vector<rbd_op_record> ops;
  std::vector<rbd_settled> settled;
  uint64_t dropped = 0;
  if (user_ != nullptr) {
    constexpr size_t kBatch = 256;
    size_t n;
    do {
      ops.resize(ops.size() + kBatch);
      uint64_t more_dropped = 0;
      n = rbd_user_drain_ops(user_, ops.data() + ops.size() - kBatch, kBatch, &more_dropped);
      dropped += more_dropped;
      ops.resize(ops.size() - kBatch + n);
    } while (n == kBatch);
    do {
      settled.resize(settled.size() + kBatch);
      n = rbd_user_drain_settled(user_, settled.data() + settled.size() - kBatch, kBatch);
      settled.resize(settled.size() - kBatch + n);
    } while (n == kBatch);
  }
  PutArray(w, ops.data(), ops.size());
  w.U64(dropped);
  PutArray(w, settled.data(), settled.size());
}

void Session::Run() {
  std::string request;
  for (;;) {
    if (ReceiveFrame(sock_, &request, &received_fd_, -1) < 0) return;
    int fd = -1;
    Writer status, out;
    Serve(request, &status, &out, &fd);
    if (received_fd_ >= 0) close(TakeFd());
    int r = SendFrame(sock_, {status.data(), out.data()}, fd);
    if (fd >= 0) close(fd);
    if (r < 0) return;
  }
}

void Session::Serve(std::string_view request, Writer* status, Writer* out_r, int* fd_r) {
  Reader in(request);
  const auto op = static_cast<Op>(in.U16());
  clock_.tv_sec = in.I64();
  clock_.tv_usec = in.I64();
  Writer out;
  rbd_error err{};
  rbd_code code;
  if (op == Op::kHello) {
    code = ServeHello(*this, in, out, fd_r, &err);
    greeted_ = code == RBD_OK;
  } else if (!greeted_) {
    code = Fail(&err, RBD_ERR_INVALID, "rbd service: a connection starts with its hello");
  } else if (Handler handler = FindHandler(op); handler == nullptr) {
    code = Fail(&err, RBD_ERR_INVALID, "rbd service: unknown call %u", static_cast<unsigned>(op));
  } else {
    // The core catches its own exceptions; these are the session's (an
    // allocation for a call too large to serve), and end only the call.
    try {
      code = handler(*this, in, out, fd_r, &err);
    } catch (const std::exception& e) {
      out.data().clear();
      code = Fail(&err, RBD_ERR_IO, "rbd service: %s", e.what());
    }
  }
  PutReports(*status);
  PutStatus(*status, code, err);
  *out_r = std::move(out);
}

Handler FindHandler(Op op) {
  static const std::array<Handler, static_cast<size_t>(Op::kEnd)> table = [] {
    std::array<Handler, static_cast<size_t>(Op::kEnd)> t{};
    RegisterUserHandlers(t);
    RegisterIndexHandlers(t);
    RegisterBodyHandlers(t);
    RegisterDictHandlers(t);
    return t;
  }();
  const auto i = static_cast<size_t>(op);
  return i < table.size() ? table[i] : nullptr;
}

}  // namespace rbd::remote
