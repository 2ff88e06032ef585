#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <thread>

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

extern "C" int rbd_server_serve(int fd, void (*done)(void* context), void* context) {
  // The session blocks on its socket (Dovecot's master hands it over
  // non-blocking).
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) return -1;
  try {
    std::thread([fd, done, context] {
      {
        rbd::remote::Session session(fd);
        session.Run();
      }
      close(fd);
      if (done != nullptr) done(context);
    }).detach();
    return 0;
  } catch (const std::system_error& e) {
    errno = e.code().value();
    return -1;
  }
}
