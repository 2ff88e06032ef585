// RAII ownership of librados completions: every AioCompletion the core
// creates is released by its owner's destructor, on every path.
#ifndef STORAGE_RBD_AIO_H_
#define STORAGE_RBD_AIO_H_

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <rados/librados.hpp>
#include <string>
#include <type_traits>

#include "op_log.h"

namespace rbd {

struct AioCompletionRelease {
  void operator()(librados::AioCompletion* c) const { c->release(); }
};
using AioCompletionPtr = std::unique_ptr<librados::AioCompletion, AioCompletionRelease>;

inline AioCompletionPtr NewAioCompletion() {
  return AioCompletionPtr(librados::Rados::aio_create_completion());
}

// Waits for a completion and returns its result.
inline int WaitFor(const AioCompletionPtr& c) {
  c->wait_for_complete();
  return c->get_return_value();
}

// When a command must have its answer (Account::deadline).
using Deadline = std::chrono::steady_clock::time_point;

// Waits for completions up to a deadline. librados has no timed wait, so
// the completions it makes signal it from librados's finisher thread.
// Past the deadline the op is cancelled in the client: a write may still
// have reached the OSD, so the caller must treat -ETIMEDOUT from a write
// as "outcome unknown" (doc/design.md, "Unknown outcomes and command
// deadlines"). Wait() returns only after the completion's callback has
// run, so a waiter on the caller's stack outlives every callback as long
// as each completion it made is waited for.
class AioWaiter {
 public:
  // A completion that signals this waiter; issue its op at once.
  AioCompletionPtr NewCompletion() {
    return AioCompletionPtr(librados::Rados::aio_create_completion(this, &AioWaiter::Signal));
  }

  // Whether `c` completed by the deadline. An op still in flight is left
  // to the caller, who must keep this waiter until it completes.
  bool WaitUntil(const AioCompletionPtr& c, Deadline deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_until(lock, deadline, [&] { return c->is_complete(); });
  }

  // The op's result, or -ETIMEDOUT when the deadline passed first.
  int Wait(librados::IoCtx& io, const AioCompletionPtr& c, Deadline deadline) {
    const bool done = WaitUntil(c, deadline);
    // aio_cancel fails (-ENOENT) once the op has completed on its own:
    // then its own result stands.
    const bool cancelled = !done && io.aio_cancel(c.get()) == 0;
    c->wait_for_complete_and_cb();
    return cancelled ? -ETIMEDOUT : c->get_return_value();
  }

 private:
  static void Signal(librados::completion_t, void* arg) {
    auto* waiter = static_cast<AioWaiter*>(arg);
    std::lock_guard<std::mutex> lock(waiter->mu_);
    waiter->cv_.notify_all();
  }

  std::mutex mu_;
  std::condition_variable cv_;
};

// One op on `oid`, waited for until `until`: the RADOS result, or
// -ETIMEDOUT when the deadline passed first. An op whose deadline had
// passed already is not issued and not logged: -ETIME, which says the op
// cannot have taken effect (later ops of a command that ran out of time).
// Recorded in `log` when given.
template <typename Op>
int OperateUntil(librados::IoCtx& io, const std::string& oid, Op* op, Deadline until, OpLog* log) {
  const auto issued = std::chrono::steady_clock::now();
  if (issued >= until) return -ETIME;
  AioWaiter waiter;
  AioCompletionPtr c = waiter.NewCompletion();
  int r;
  constexpr bool kRead = std::is_same_v<Op, librados::ObjectReadOperation>;
  if constexpr (kRead) {
    r = io.aio_operate(oid, c.get(), op, nullptr);
  } else {
    r = io.aio_operate(oid, c.get(), op);
  }
  if (r >= 0) r = waiter.Wait(io, c, until);
  if (log != nullptr) log->Add(kRead ? OpType::kRead : OpType::kWrite, oid, 0, r, issued);
  return r;
}

}  // namespace rbd

#endif  // STORAGE_RBD_AIO_H_
