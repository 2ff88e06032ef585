#include "session.h"

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

Session::~Session() { CloseAll(); }

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

void Session::Run() {
  std::string request;
  for (;;) {
    if (ReceiveFrame(sock_, &request, nullptr, -1) < 0) return;
    int fd = -1;
    std::string reply = Serve(request, &fd);
    int r = SendFrame(sock_, reply, fd);
    if (fd >= 0) close(fd);
    if (r < 0) return;
  }
}

std::string Session::Serve(std::string_view request, int* fd_r) {
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
  Writer reply;
  PutStatus(reply, code, err);
  reply.data() += out.data();
  return reply.data();
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
