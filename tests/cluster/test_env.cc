#include "test_env.h"

#include <poll.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

extern char** environ;

namespace rbdtest {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') {
    ADD_FAILURE() << name << " is not set: run the suite through scripts/test (or eval "
                  << "\"$(scripts/ceph-dev-cluster env DIR)\")";
    return "";
  }
  return v;
}

StoppedOsds::StoppedOsds() {
  const std::string run = Env("RBD_TEST_CEPH_DIR") + "/run/";
  for (int id = 0;; id++) {
    std::ifstream pid_file(run + "osd." + std::to_string(id) + ".pid");
    pid_t pid = 0;
    if (!(pid_file >> pid)) break;
    if (kill(pid, SIGSTOP) == 0) pids_.push_back(pid);
  }
  EXPECT_FALSE(pids_.empty()) << "no OSD pid under " << run;
}

void StoppedOsds::Resume() {
  for (pid_t pid : pids_) kill(pid, SIGCONT);
  pids_.clear();
}

rbd_config* NewConfig(const std::vector<std::pair<std::string, std::string>>& extra) {
  rbd_config* config = rbd_config_new();
  rbd_error err{};
  std::vector<std::pair<std::string, std::string>> settings = {
      {"rbd_ceph_conf", Env("RBD_TEST_CEPH_CONF")},
      {"rbd_ceph_user", Env("RBD_TEST_CEPH_USER")},
      {"rbd_pool", Env("RBD_TEST_POOL")},
      {"rbd_index_pool", Env("RBD_TEST_INDEX_POOL")},
      {"rbd_op_timeout", "20s"},
  };
  // Set by the remote suite (remote_env.cc), whose calls go to a service.
  if (!WorkersRunTheCore()) settings.emplace_back("rbd_service", std::getenv("RBD_TEST_SERVICE"));
  settings.insert(settings.end(), extra.begin(), extra.end());
  for (const auto& [k, v] : settings)
    EXPECT_EQ(rbd_config_set(config, k.c_str(), v.c_str(), &err), RBD_OK) << err.message;
  return config;
}

bool WorkersRunTheCore() { return std::getenv("RBD_TEST_SERVICE") == nullptr; }

std::string RandomNamespace() {
  static std::mt19937_64 rng{std::random_device{}()};
  std::ostringstream s;
  s << "test-" << std::hex << rng();
  return s.str();
}

std::string Hex(const uint8_t guid[RBD_GUID_SIZE]) {
  static const char kDigits[] = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < RBD_GUID_SIZE; i++) {
    s += kDigits[guid[i] >> 4];
    s += kDigits[guid[i] & 0xf];
  }
  return s;
}

void RandomGuid(uint8_t guid[RBD_GUID_SIZE]) {
  static thread_local std::mt19937_64 rng{std::random_device{}() ^ static_cast<uint64_t>(getpid())};
  for (int i = 0; i < RBD_GUID_SIZE; i += 8) {
    uint64_t v = rng();
    std::memcpy(guid + i, &v, 8);
  }
}

bool ParseHex(const std::string& hex, uint8_t guid[RBD_GUID_SIZE]) {
  if (hex.size() != 2 * RBD_GUID_SIZE) return false;
  for (int i = 0; i < RBD_GUID_SIZE; i++)
    guid[i] = static_cast<uint8_t>(std::stoul(hex.substr(2 * i, 2), nullptr, 16));
  return true;
}

int64_t NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

void UserFixture::SetUp() {
  ns_ = RandomNamespace();
  config_ = NewConfig();
  ASSERT_EQ(rbd_cluster_get(config_, &cluster_, &err_), RBD_OK) << err_.message;
  ASSERT_EQ(rbd_user_open(cluster_, ns_.c_str(), nullptr, &user_, &err_), RBD_OK) << err_.message;
}

void UserFixture::TearDown() {
  if (user_ != nullptr) rbd_user_close(&user_);
  if (cluster_ != nullptr) rbd_cluster_unref(&cluster_);
  if (config_ != nullptr) rbd_config_free(&config_);
}

void UserFixture::Reopen(const std::vector<std::pair<std::string, std::string>>& settings) {
  UserFixture::TearDown();  // not a subclass's: only this fixture's handles
  config_ = NewConfig(settings);
  ASSERT_EQ(rbd_cluster_get(config_, &cluster_, &err_), RBD_OK) << err_.message;
  ASSERT_EQ(rbd_user_open(cluster_, ns_.c_str(), nullptr, &user_, &err_), RBD_OK) << err_.message;
}

std::string UserFixture::CreateMailbox(const std::string& name) {
  uint8_t guid[RBD_GUID_SIZE];
  RandomGuid(guid);
  EXPECT_EQ(rbd_create_mailbox(user_, name.c_str(), guid, 0, "", &err_), RBD_OK) << err_.message;
  return Hex(guid);
}

rbd_index* UserFixture::OpenMailbox(const std::string& guid_hex) {
  uint8_t guid[RBD_GUID_SIZE];
  ParseHex(guid_hex, guid);
  rbd_index* mailbox = nullptr;
  EXPECT_EQ(rbd_index_open(user_, guid, &mailbox, &err_), RBD_OK) << err_.message;
  return mailbox;
}

rbd_index* UserFixture::OpenWithClock(const std::string& guid_hex, const struct timeval* started,
                                      rbd_user** user_r) {
  *user_r = nullptr;
  EXPECT_EQ(rbd_user_open(cluster_, ns_.c_str(), started, user_r, &err_), RBD_OK) << err_.message;
  if (*user_r == nullptr) return nullptr;
  uint8_t guid[RBD_GUID_SIZE];
  ParseHex(guid_hex, guid);
  rbd_index* mailbox = nullptr;
  EXPECT_EQ(rbd_index_open(*user_r, guid, &mailbox, &err_), RBD_OK) << err_.message;
  return mailbox;
}

std::vector<rbd_record> UserFixture::Records(rbd_index* mailbox, rbd_records** holder) {
  EXPECT_EQ(rbd_index_list_records(mailbox, 0, 1000000, holder, &err_), RBD_OK) << err_.message;
  return std::vector<rbd_record>((*holder)->records, (*holder)->records + (*holder)->count);
}

Worker::Worker(const std::string& ns, const std::vector<std::string>& args,
               const std::vector<std::string>& wrapper) {
  int fds[2];
  if (pipe(fds) != 0) {
    ADD_FAILURE() << "pipe: " << std::strerror(errno);
    return;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  std::vector<std::string> argv_s = wrapper;
  argv_s.push_back(RBD_TEST_WORKER);
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  setenv("RBD_TEST_NS", ns.c_str(), 1);
  int r = posix_spawnp(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  fd_ = fds[0];
  if (r != 0) ADD_FAILURE() << "spawn " << argv_s[0] << ": " << std::strerror(r);
}

Worker::~Worker() {
  if (pid_ > 0) {
    Kill();
    Wait();
  }
  if (fd_ >= 0) close(fd_);
}

bool Worker::ReadLine(std::string* line, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    size_t nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      *line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return true;
    }
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    struct pollfd p = {fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char buf[4096];
    ssize_t n = read(fd_, buf, sizeof(buf));
    if (n <= 0) return false;
    buffer_.append(buf, n);
  }
}

std::vector<std::string> Worker::ReadAll() {
  std::vector<std::string> lines;
  std::string line;
  while (ReadLine(&line)) lines.push_back(line);
  return lines;
}

int Worker::Wait() {
  if (pid_ <= 0) return -1;
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return status;
}

void Worker::Kill() {
  if (pid_ > 0) kill(pid_, SIGKILL);
}

}  // namespace rbdtest

namespace {

// Every suite linking this file shuts the connections down after its last
// test, as a process using the core must before it exits.
class ShutdownEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { rbd_shutdown(); }
};

const auto* const kShutdown = ::testing::AddGlobalTestEnvironment(new ShutdownEnvironment);

}  // namespace
