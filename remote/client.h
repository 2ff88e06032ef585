// The client library: rbd-storage.h implemented over a connection to the
// node's rbd service (wire.h), for the mail processes. A process that
// links it instead of the core has no librados, no RADOS connection and
// no cephx key; the handles below hold only the service's numbers.
#ifndef REMOTE_CLIENT_H_
#define REMOTE_CLIENT_H_

#include <sys/time.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "codec.h"
#include "config.h"

namespace rbd::remote {

// A call's answer: the frame, a reader past its status, what decoded
// results point to, and a descriptor sent beside it (closed unless taken).
struct Reply {
  Reply() = default;
  Reply(const Reply&) = delete;
  ~Reply();
  std::string body;
  Reader in{""};
  Keep keep;
  int fd = -1;
};

class Connection {
 public:
  // Connects to the service named by rbd_service and says hello with the
  // caller's rbd_* settings. `clock`: the command clock (rbd_user_open),
  // sent with every call so the service keeps the same deadlines.
  static rbd_code Open(const Config& config, const std::vector<std::pair<std::string, std::string>>& settings,
                       const struct timeval* clock, std::unique_ptr<Connection>* conn_r, rbd_error* err);
  ~Connection();

  // One call. When the service goes away meanwhile the call fails with
  // RBD_ERR_UNAVAILABLE, or RBD_ERR_UNKNOWN when it could have changed
  // something, and so does every later call on this connection.
  rbd_code Call(Op op, const Writer& args, Reply* reply, rbd_error* err);

 private:
  Connection(int sock, std::string path, const struct timeval* clock)
      : sock_(sock), path_(std::move(path)), clock_(clock) {}

  int sock_;
  std::string path_;
  const struct timeval* clock_;
  int lost_errno_ = 0;
};

// Sets *err (when not NULL) from `s` and returns its code.
rbd_code Report(const Status& s, rbd_error* err);

// The code of a call whose outputs were decoded from `reply`: RBD_ERR_IO
// when they did not decode (a service of another build).
rbd_code Decoded(const Reply& reply, rbd_code code, rbd_error* err);

// An rbd_buffer the caller frees with rbd_buffer_free().
rbd_buffer* MakeBuffer(std::string_view bytes);

// Whether a call may change what is stored: its outcome is unknown when
// the connection is lost during it.
bool Mutates(Op op);

}  // namespace rbd::remote

// The client's handles: what the caller holds is the service's number for
// the real handle, and the connection it lives on.
struct rbd_config {
  rbd::Config config;
  std::vector<std::pair<std::string, std::string>> settings;
};

struct rbd_cluster {
  rbd_config config;
};

struct rbd_user {
  std::unique_ptr<rbd::remote::Connection> conn;
  uint64_t id;
};

struct rbd_index {
  rbd_user* user;
  uint64_t id;
  // What the last rbd_index_list_all() returned keyword names from.
  std::unique_ptr<rbd::remote::Reply> keywords;
};

struct rbd_watch {
  rbd_user* user;
  uint64_t id;
  int fd;
};

struct rbd_lease {
  rbd_user* user;
  uint64_t id;
};

struct rbd_body_reader {
  rbd_user* user;
  uint64_t id;
};

struct rbd_body_writer {
  rbd_user* user;
  uint64_t id;
};

struct rbd_dict_store {
  std::unique_ptr<rbd::remote::Connection> conn;
  uint64_t id;
};

namespace rbd::remote {

// Results the caller frees with rbd_*_free(): the C struct first, then
// the reply its pointers point into.
template <typename T>
struct Held : T {
  Reply reply;
};

}  // namespace rbd::remote

#endif  // REMOTE_CLIENT_H_
