#include "status.h"

#include <cerrno>
#include <cstring>

#include "rbd-storage.h"

namespace rbd {

Status Status::FromRados(int r, std::string_view what) {
  std::string msg(what);
  msg += ": ";
  // strerror(ETIME) is "Timer expired", which would not tell an operator
  // that the command's earlier ops had used up its time.
  msg += r == -ETIME ? "not sent, the command's rbd_op_timeout had run out" : std::strerror(-r);
  switch (-r) {
    case 0: return OK();
    case ENOENT: return NotFound(std::move(msg));
    case EEXIST: return Exists(std::move(msg));
    case ETIMEDOUT:
    case ETIME:
    case ENOTCONN:
    case ESHUTDOWN:
    case ECONNREFUSED:
    case EAGAIN:
    case ENOSPC:
    case EDQUOT: return Unavailable(std::move(msg));
    case EPERM:
    case EACCES: return Permission(std::move(msg));
    case ECANCELED: return Conflict(std::move(msg));
    case EINVAL:
    case EFBIG:
    case E2BIG: return Invalid(std::move(msg));
    default: return Io(std::move(msg));
  }
}

Status Status::FromRadosWrite(int r, std::string_view what) {
  switch (-r) {
    case ETIMEDOUT:
    case ENOTCONN:
    case ESHUTDOWN:
    case ECONNRESET:
    case ECONNABORTED:
    case EPIPE: return Unknown(std::string(what) + ": outcome unknown: " + std::strerror(-r));
    default: return FromRados(r, what);
  }
}

}  // namespace rbd

// Part of the C ABI, here so that the client library (remote/), which
// does not link the core, names codes as the core does.
extern "C" const char* rbd_code_name(rbd_code code) {
  switch (code) {
    case RBD_OK: return "ok";
    case RBD_ERR_NOT_FOUND: return "not found";
    case RBD_ERR_EXISTS: return "exists";
    case RBD_ERR_UNAVAILABLE: return "unavailable";
    case RBD_ERR_CONFLICT: return "conflict";
    case RBD_ERR_CORRUPT: return "corrupt";
    case RBD_ERR_INVALID: return "invalid";
    case RBD_ERR_PERMISSION: return "permission denied";
    case RBD_ERR_RESYNC: return "resync needed";
    case RBD_ERR_BUSY: return "busy";
    case RBD_ERR_IO: return "I/O error";
    case RBD_ERR_UNKNOWN: return "outcome unknown";
  }
  return "unknown";
}
