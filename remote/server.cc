#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

#include "handlers.h"
#include "rbd-server.h"

namespace rbd::remote {

std::vector<std::pair<std::string, std::string>>& PinnedSettings() {
  static std::vector<std::pair<std::string, std::string>> pinned;
  return pinned;
}

}  // namespace rbd::remote

extern "C" void rbd_server_pin(const char* name, const char* value) {
  rbd::remote::PinnedSettings().emplace_back(name, value);
}

namespace {

// A session's thread blocks on its socket and on RADOS calls; what it
// holds lives on the heap. glibc's default stack (RLIMIT_STACK, 8 MiB)
// let Dovecot's vsz_limit (RLIMIT_AS) cap a node at about 400 sessions;
// at 512 KiB, 10k sessions take 5 GiB of address space (not of memory).
// The remote cluster suite needs more than 64 KiB (a session's first
// call connects to Ceph) and passes with 128 KiB: this is 4 times that.
constexpr size_t kSessionStack = 512 * 1024;

struct SessionStart {
  int fd;
  void (*done)(void* context);
  void* context;
};

void* RunSession(void* arg) {
  std::unique_ptr<SessionStart> start(static_cast<SessionStart*>(arg));
  {
    rbd::remote::Session session(start->fd);
    session.Run();
  }
  close(start->fd);
  if (start->done != nullptr) start->done(start->context);
  return nullptr;
}

}  // namespace

extern "C" int rbd_server_serve(int fd, void (*done)(void* context), void* context) {
  // The session blocks on its socket (Dovecot's master hands it over
  // non-blocking).
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) return -1;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, kSessionStack);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  auto start = std::make_unique<SessionStart>(SessionStart{fd, done, context});
  pthread_t thread;
  const int r = pthread_create(&thread, &attr, RunSession, start.get());
  pthread_attr_destroy(&attr);
  if (r != 0) {
    errno = r;
    return -1;
  }
  start.release();
  return 0;
}
