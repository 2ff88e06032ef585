// RAII ownership of librados completions: every AioCompletion the core
// creates is released by its owner's destructor, on every path.
#ifndef STORAGE_RBD_AIO_H_
#define STORAGE_RBD_AIO_H_

#include <memory>
#include <rados/librados.hpp>

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

}  // namespace rbd

#endif  // STORAGE_RBD_AIO_H_
