// The client library: rbd-storage.h implemented over a connection to the
// node's rbd service (wire.h), for the mail processes. A process that
// links it instead of the core has no librados, no RADOS connection and
// no cephx key; the handles below hold only the service's numbers.
#ifndef REMOTE_CLIENT_H_
#define REMOTE_CLIENT_H_

#include <sys/time.h>

#include <array>
#include <functional>
#include <map>
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
  Reply& operator=(Reply&& other);
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

  // A number for a handle this connection opens next.
  uint64_t NewId() { return ++last_id_; }

  // One call. When the service goes away meanwhile the call fails with
  // RBD_ERR_UNAVAILABLE, or RBD_ERR_UNKNOWN when it could have changed
  // something. The next call connects again (to the service the master
  // started in its place) and first opens again what CallOpen opened.
  rbd_code Call(Op op, const Writer& args, Reply* reply, rbd_error* err);
  // A call on a handle the service cannot open again (a lease, a body
  // reader or writer), opened at `generation`: RBD_ERR_UNAVAILABLE, and no
  // new connection, once the service it lived in has gone.
  // `tail` follows the arguments in the frame without being copied into
  // them (a body writer's data).
  rbd_code CallOn(uint64_t generation, Op op, const Writer& args, Reply* reply, rbd_error* err,
                  std::string_view tail = {});
  // A call that opens handle `id` (its first argument), which a new
  // service opens again before any other call: a user, an index, a watch,
  // a dictionary. `reopened` takes the reply of each such replay.
  rbd_code CallOpen(Op op, uint64_t id, const Writer& args, Reply* reply, rbd_error* err,
                    std::function<void(Reply&)> reopened = nullptr);
  // After a call that opened handle `id`: the call that opens it again
  // after a reconnect (CallOpen records its own).
  void Reopens(uint64_t id, Op op, Writer args, std::function<void(Reply&)> reopened = nullptr);
  // Closes handle `id` in the service (if it is still there) and forgets
  // it: errors are the service's to clean up, when the connection ends.
  void Release(Op op, uint64_t id);
  // The same with the call's own arguments (`args`, the number first) and
  // a descriptor passed along (`fd`, closed here).
  void Release(Op op, uint64_t id, const Writer& args, int fd);

  // Whether the service has gone (checked without a call).
  bool Lost();
  // Connects again (opening the replays again) if the service has gone.
  rbd_code Reconnect(rbd_error* err) { return Lost() ? Connect(err) : RBD_OK; }
  // Counts connections made: handles of an earlier one are gone unless
  // CallOpen opened them.
  uint64_t generation() const { return generation_; }
  int sock() const { return sock_; }
  // What the replies brought of the user's op records (and how many the
  // core dropped) and settlements, until taken.
  std::vector<rbd_op_record>& reported_ops() { return reported_ops_; }
  uint64_t TakeDropped() { return std::exchange(dropped_, 0); }
  std::vector<rbd_settled>& reported_settled() { return reported_settled_; }

 private:
  struct Replay {
    Op op;
    Writer args;
    std::function<void(Reply&)> reopened;
  };

  Connection(std::string path, const struct timeval* clock) : path_(std::move(path)), clock_(clock) {}
  // Connects, says hello and opens the replays again.
  rbd_code Connect(rbd_error* err);
  // Sends one call and reads its answer, on the connection as it is.
  rbd_code Exchange(Op op, const Writer& args, Reply* reply, rbd_error* err, std::string_view tail = {},
                    int fd = -1);

  int sock_ = -1;
  const std::string path_;
  const struct timeval* clock_;
  Writer hello_;
  int lost_errno_ = 0;
  uint64_t generation_ = 0;
  uint64_t last_id_ = 0;
  std::vector<rbd_op_record> reported_ops_;
  uint64_t dropped_ = 0;
  std::vector<rbd_settled> reported_settled_;
  std::map<uint64_t, Replay> replays_;
};

// Sets *err (when not NULL) from `s` and returns its code.
rbd_code Report(const Status& s, rbd_error* err);

// The code of a call whose outputs were decoded from `reply`: RBD_ERR_IO
// when they did not decode (a service of another build).
rbd_code Decoded(const Reply& reply, rbd_code code, rbd_error* err);

// An rbd_buffer the caller frees with rbd_buffer_free(): a copy of `bytes`.
rbd_buffer* MakeBuffer(std::string_view bytes);

// rbd_buffers of bytes a reply carries, without copying them (message
// bodies): they share the reply's frame, which the share takes over, so
// the reply must not be read after. `bytes` are views into it.
class FrameShare {
 public:
  explicit FrameShare(Reply& reply);
  rbd_buffer* Buffer(std::string_view bytes) const;

 private:
  const char* base_;
  std::shared_ptr<const std::string> frame_;
};

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
  // The mailbox it opened, and the name it is bound to (none when empty):
  // what a new service opens again.
  std::array<uint8_t, RBD_GUID_SIZE> guid;
  std::string guarded_name;
  // What the last rbd_index_list_all() returned keyword names from.
  std::unique_ptr<rbd::remote::Reply> keywords;
};

// What the caller polls (rbd_watch_fd) is an epoll set of the service's
// eventfd, the connection's socket and a timerfd: readable on a change,
// and also when the service has gone, when rbd_watch_consume() connects
// again, which opens the watch again into the same set (or arms the timer
// to try again).
struct rbd_watch {
  rbd_user* user;
  uint64_t id;
  int epoll_fd;
  // The service's eventfd, or -1 while the service is away.
  int event_fd;
  int timer_fd;
};

// Leases and body readers and writers live only as long as the service
// that opened them (generation).
struct rbd_lease {
  rbd_user* user;
  uint64_t id;
  uint64_t generation;
};

struct rbd_body_reader {
  rbd_user* user;
  uint64_t id;
  uint64_t generation;
};

struct rbd_body_writer {
  rbd_user* user;
  uint64_t id;
  uint64_t generation;
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

// A call whose result the caller frees with rbd_*_free(): `decode(reply,
// result)` reads it on RBD_OK; *result_r is set only when all decoded.
template <typename T, typename Decode>
rbd_code CallHeld(Connection& conn, Op op, const Writer& args, T** result_r, rbd_error* err, Decode decode) {
  auto* held = new Held<T>();
  rbd_code code = conn.Call(op, args, &held->reply, err);
  if (code == RBD_OK) decode(held->reply, held);
  code = Decoded(held->reply, code, err);
  if (code == RBD_OK)
    *result_r = held;
  else
    delete held;
  return code;
}

template <typename T>
void FreeHeld(T** result) {
  delete static_cast<Held<T>*>(*result);
  *result = nullptr;
}

// A connection of its own for a user or a dictionary of namespace `ns`,
// opened by `op` under a number the connection opens again after a
// restart of the service.
rbd_code OpenOwn(const rbd_cluster* cluster, const struct timeval* clock, Op op, const char* ns,
                 std::unique_ptr<Connection>* conn_r, uint64_t* id_r, rbd_error* err);

}  // namespace rbd::remote

#endif  // REMOTE_CLIENT_H_
