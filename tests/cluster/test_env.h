// Shared by the cluster and fault suites: the cluster under test (from the
// environment that `scripts/ceph-dev-cluster env DIR` prints), a fresh
// namespace per test, and worker processes spoken to over a pipe.
//
// Concurrency tests use separate processes, not threads: that is how
// Dovecot runs (one process per session), and librados state does not
// survive fork(), so workers are fresh exec()s of rbd_test_worker.
#ifndef TESTS_CLUSTER_TEST_ENV_H_
#define TESTS_CLUSTER_TEST_ENV_H_

#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "rbd-storage.h"

namespace rbdtest {

std::string Env(const char* name);

// A config for the test cluster; extra settings override the defaults.
rbd_config* NewConfig(const std::vector<std::pair<std::string, std::string>>& extra = {});

std::string RandomNamespace();
// Whether the tests' and workers' calls run the core in their own process;
// false in the remote suite, whose calls go to an rbd service (remote_env.cc).
bool WorkersRunTheCore();
std::string Hex(const uint8_t guid[RBD_GUID_SIZE]);
void RandomGuid(uint8_t guid[RBD_GUID_SIZE]);
bool ParseHex(const std::string& hex, uint8_t guid[RBD_GUID_SIZE]);
int64_t NowNs();

// A user namespace on the test cluster, opened through the C ABI.
class UserFixture : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;
  // Re-opens the same namespace with these settings on top of the defaults.
  void Reopen(const std::vector<std::pair<std::string, std::string>>& settings);
  // Creates a mailbox and returns its GUID in hex.
  std::string CreateMailbox(const std::string& name);
  rbd_index* OpenMailbox(const std::string& guid_hex);
  // Mailbox `guid_hex` through a user handle of its own (*user_r) on the
  // same namespace and connection, as another command of a session would
  // be served, with the command clock `started` (rbd_user_open). NULL when
  // an open failed (the test has failed then).
  rbd_index* OpenWithClock(const std::string& guid_hex, const struct timeval* started, rbd_user** user_r);
  std::vector<rbd_record> Records(rbd_index* mailbox, rbd_records** holder);

  std::string ns_;
  rbd_config* config_ = nullptr;
  rbd_cluster* cluster_ = nullptr;
  rbd_user* user_ = nullptr;
  rbd_error err_{};
};

// Every OSD of the test cluster stopped (SIGSTOP) while the object lives:
// ops sent meanwhile wait in the OSDs' sockets, in the order they were sent
// on each connection, until Resume().
class StoppedOsds {
 public:
  StoppedOsds();
  ~StoppedOsds() { Resume(); }
  void Resume();

 private:
  std::vector<pid_t> pids_;
};

// A rbd_test_worker process. Its environment carries the namespace.
class Worker {
 public:
  // `wrapper` runs the worker under another program (gdb ... --args).
  Worker(const std::string& ns, const std::vector<std::string>& args,
         const std::vector<std::string>& wrapper = {});
  ~Worker();
  // Reads one line of the worker's stdout; false at EOF or on timeout.
  bool ReadLine(std::string* line, std::chrono::milliseconds timeout = std::chrono::seconds(120));
  std::vector<std::string> ReadAll();
  int Wait();  // exit status
  void Kill();
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
  int fd_ = -1;
  std::string buffer_;
};

}  // namespace rbdtest

#endif  // TESTS_CLUSTER_TEST_ENV_H_
