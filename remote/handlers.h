// The service's handlers by part of the ABI (session.h): each file
// registers one Handler per call of its part, and the client stubs of the
// same part (client_*.cc) are their mirror image, field for field.
#ifndef REMOTE_HANDLERS_H_
#define REMOTE_HANDLERS_H_

#include <array>
#include <cstdarg>
#include <string>
#include <utility>
#include <vector>

#include "session.h"

namespace rbd::remote {

using HandlerTable = std::array<Handler, static_cast<size_t>(Op::kEnd)>;

inline void Register(HandlerTable& t, Op op, Handler h) { t[static_cast<size_t>(op)] = h; }

void RegisterUserHandlers(HandlerTable& t);
void RegisterIndexHandlers(HandlerTable& t);
void RegisterBodyHandlers(HandlerTable& t);
void RegisterDictHandlers(HandlerTable& t);

// The settings rbd_server_pin() fixed for every session.
std::vector<std::pair<std::string, std::string>>& PinnedSettings();

// The first call of a connection: protocol version and the client's rbd_*
// settings, from which the session gets its cluster handle.
rbd_code ServeHello(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err);

// Sets *err and returns `code`.
rbd_code Fail(rbd_error* err, rbd_code code, const char* format, ...) __attribute__((format(printf, 3, 4)));

// A handle the call names, or nullptr after failing the call: unknown
// number, or a handle of another kind.
template <typename T>
T* Need(Session& s, uint64_t id, rbd_error* err) {
  T* h = s.Find<T>(id);
  if (h == nullptr)
    Fail(err, RBD_ERR_INVALID, "rbd service: no such handle %llu", static_cast<unsigned long long>(id));
  return h;
}

// The number an open call gives its new handle (its first argument) is
// in use already: a client bug, refused before anything is opened.
inline bool Taken(const Session& s, uint64_t id, rbd_error* err) {
  if (s.Has(id))
    Fail(err, RBD_ERR_INVALID, "rbd service: handle %llu is in use", static_cast<unsigned long long>(id));
  return s.Has(id);
}

// Call arguments that did not decode: the client is of another version or
// no client at all. Checked once all arguments are read, before any runs.
inline bool Malformed(const Reader& in, rbd_error* err) {
  if (in.failed()) Fail(err, RBD_ERR_INVALID, "rbd service: malformed call");
  return in.failed();
}

// The handler of a call that frees a handle of type T with Free.
template <typename T, void (*Free)(T**)>
rbd_code Release(Session& s, Reader& in, Writer& out, int* fd_r, rbd_error* err) {
  const uint64_t id = in.U64();
  if (Need<T>(s, id, err) == nullptr || Malformed(in, err)) return err->code;
  T* handle = s.Take<T>(id);
  Free(&handle);
  return RBD_OK;
}

}  // namespace rbd::remote

#endif  // REMOTE_HANDLERS_H_
