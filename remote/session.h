// Session: the service side of one client connection (wire.h).
//
// It decodes each call, runs it on the core through the same C ABI the
// client implements, and answers. Every handle the client opened lives in
// the session under a number; the client holds only that number. When the
// connection ends, the session closes what the client left open, newest
// first, so an index is closed before its user.
#ifndef REMOTE_SESSION_H_
#define REMOTE_SESSION_H_

#include <sys/time.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <variant>

#include "codec.h"

namespace rbd::remote {

class Session {
 public:
  explicit Session(int sock);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Serves calls until the client hangs up or breaks the protocol.
  void Run();

  // Whether the client uses the number `id` (0 is never a handle's).
  bool Has(uint64_t id) const { return id == 0 || handles_.count(id) != 0; }
  // Keeps a handle under the number the client chose for it (not Has()).
  template <typename T>
  void Add(uint64_t id, T* handle) {
    handles_.emplace(id, handle);
  }
  // The handle numbered `id` if it is a T, else nullptr.
  template <typename T>
  T* Find(uint64_t id) const {
    auto it = handles_.find(id);
    if (it == handles_.end()) return nullptr;
    T* const* h = std::get_if<T*>(&it->second);
    return h != nullptr ? *h : nullptr;
  }
  // Removes the handle from the session, leaving it to the caller.
  template <typename T>
  T* Take(uint64_t id) {
    T* h = Find<T>(id);
    if (h != nullptr) handles_.erase(id);
    return h;
  }
  // The descriptor the call's frame carried (-1 if none), now the
  // caller's; one not taken is closed after the call.
  int TakeFd() { return std::exchange(received_fd_, -1); }

  // Admits the connection to namespace `ns` (NULL: the hello's
  // rbd_namespace) before a user or dictionary opens it. A connection
  // serves one namespace. Where that namespace is a system user's name,
  // only that user's processes are served (and root's, and the service's
  // own user's): with system users every mail process runs as its user,
  // so one taken over cannot reach another user's mail through the
  // service. Virtual users sharing one uid cannot be told apart.
  rbd_code Admit(const char* ns, rbd_error* err);

  rbd_cluster* cluster() const { return cluster_; }
  // The user this connection serves, whose op records and settlements go
  // with every reply.
  void set_user(rbd_user* user) { user_ = user; }
  void set_configured_namespace(std::string ns) { configured_ns_ = std::move(ns); }
  void set_cluster(rbd_cluster* cluster) { cluster_ = cluster; }
  // The client's command clock, sent with every call (rbd_user_open), or
  // nullptr when its hello said it has none.
  const struct timeval* clock() const { return has_clock_ ? &clock_ : nullptr; }
  void set_has_clock(bool has_clock) { has_clock_ = has_clock; }

 private:
  using Handle = std::variant<rbd_user*, rbd_index*, rbd_watch*, rbd_lease*, rbd_body_reader*,
                              rbd_body_writer*, rbd_dict_store*>;

  // One call: the reply's status and outputs (sent as one frame), and a
  // descriptor to send beside them or -1.
  void Serve(std::string_view request, Writer* status, Writer* out, int* fd_r);
  void CloseAll();
  // The op records and settlements of user_ since the last reply.
  void PutReports(Writer& w);

  int sock_;
  int received_fd_ = -1;
  // The peer's uid (SO_PEERCRED), or -1 when the kernel did not tell.
  long peer_uid_ = -1;
  std::string configured_ns_;
  bool admitted_ = false;
  std::string ns_;
  bool greeted_ = false;
  rbd_cluster* cluster_ = nullptr;
  rbd_user* user_ = nullptr;
  struct timeval clock_ {};
  bool has_clock_ = false;
  std::map<uint64_t, Handle> handles_;
};

// The service's handlers, one per Op; `in` is positioned at the call's
// arguments. A handler writes its outputs to `out` (read by the client
// stub of the same call) and returns the call's code; *fd_r, when set,
// travels beside the reply.
using Handler = rbd_code (*)(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err);
Handler FindHandler(Op op);

}  // namespace rbd::remote

#endif  // REMOTE_SESSION_H_
