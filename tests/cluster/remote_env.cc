// The remote suite's service: an rbd-serve process on a socket of its own,
// started before the first test and stopped after the last. Every config
// the tests and their workers make names it (RBD_TEST_SERVICE, NewConfig).
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

extern char** environ;

namespace {

bool Accepts(const std::string& path) {
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  int sock = socket(AF_UNIX, SOCK_STREAM, 0);
  bool ok = connect(sock, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) == 0;
  close(sock);
  return ok;
}

class ServiceEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    char dir[] = "/tmp/rbd-serve.XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    // Reachable by workers that run as another uid (TheServiceServes...).
    ASSERT_EQ(chmod(dir, 0755), 0);
    dir_ = dir;
    socket_ = dir_ + "/rbd";
    char* argv[] = {const_cast<char*>(RBD_TEST_SERVE), socket_.data(), nullptr};
    ASSERT_EQ(posix_spawn(&pid_, argv[0], nullptr, nullptr, argv, environ), 0);
    for (int i = 0; i < 500 && !Accepts(socket_); i++)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_TRUE(Accepts(socket_)) << RBD_TEST_SERVE << " does not listen on " << socket_;
    setenv("RBD_TEST_SERVICE", socket_.c_str(), 1);
  }

  void TearDown() override {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
    unlink(socket_.c_str());
    rmdir(dir_.c_str());
  }

 private:
  pid_t pid_ = -1;
  std::string dir_, socket_;
};

const auto* const kService = ::testing::AddGlobalTestEnvironment(new ServiceEnvironment);

}  // namespace
