// rbd-serve: the rbd service without Dovecot, for the tests of the
// client library and for running a node's service by hand:
//
//   rbd-serve SOCKET
//
// listens on the unix socket SOCKET (mode 0666, as Dovecot's listener) and
// serves each connection on a thread of its own until killed. Settings
// come from each client's hello.
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>

#include "rbd-server.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: rbd-serve SOCKET\n");
    return 2;
  }
  std::signal(SIGPIPE, SIG_IGN);
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  if (std::strlen(argv[1]) >= sizeof(addr.sun_path)) {
    std::fprintf(stderr, "rbd-serve: socket path too long: %s\n", argv[1]);
    return 2;
  }
  std::strcpy(addr.sun_path, argv[1]);
  int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  unlink(argv[1]);
  if (listener < 0 || bind(listener, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) < 0 ||
      chmod(argv[1], 0666) < 0 || listen(listener, 128) < 0) {
    std::fprintf(stderr, "rbd-serve: %s: %s\n", argv[1], std::strerror(errno));
    return 1;
  }
  for (;;) {
    int sock = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (sock < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      std::fprintf(stderr, "rbd-serve: accept: %s\n", std::strerror(errno));
      return 1;
    }
    if (rbd_server_serve(sock, nullptr, nullptr) < 0) {
      std::fprintf(stderr, "rbd-serve: %s\n", std::strerror(errno));
      close(sock);
    }
  }
}
