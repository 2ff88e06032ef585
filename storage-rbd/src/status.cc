#include "status.h"

#include <cerrno>
#include <cstring>

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
