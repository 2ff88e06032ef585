// core_bench: APPEND, flag-update, sync and listing rates of the storage core,
// measured through its C ABI and compared with a raw `rados bench` baseline
// taken on the same cluster in the same run (bench/run-core passes it in).
//
//   core_bench [--raw-t1=IOPS] [--raw-t16=IOPS] [--quick] [--keep]
//
// The cluster comes from the environment that `scripts/ceph-dev-cluster env
// DIR` prints. Every scenario runs in a fresh random namespace; the bench
// removes its namespaces at the end unless --keep. It is a benchmark, not a
// test: it exits 0 unless an operation fails, whatever the timings.
//
// Concurrent streams are separate processes (Dovecot runs one process per
// session, and librados state does not survive fork), so the binary re-execs
// itself in a hidden `--worker` mode.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <rados/librados.hpp>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "rbd-storage.h"

extern char** environ;

namespace {

using Guid = std::array<uint8_t, RBD_GUID_SIZE>;
using Setting = std::pair<std::string, std::string>;

// The goals of the issue, against the raw figure with the same concurrency.
constexpr double kSingleStreamGoal = 0.9;
constexpr double kManyStreamGoal = 0.8;
constexpr int kStreams = 16;
// Appends before a timed single-stream run: connection, OSD session and
// the object's first write stay out of the figures.
constexpr int kWarmupAppends = 20;

struct Options {
  double raw_t1 = 0;
  double raw_t16 = 0;
  bool quick = false;  // a tenth of every N, to check the bench itself
  bool keep = false;   // leave the bench's namespaces in the pools
};

// ---------------------------------------------------------------------------
// Small helpers

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "core_bench: %s\n", what.c_str());
  std::exit(1);
}

[[noreturn]] void Fail(const std::string& what, const rbd_error& err) {
  Fail(what + ": " + err.message + " (" + rbd_code_name(err.code) + ")");
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0')
    Fail(std::string(name) +
         " is not set: run bench/run-core, or eval \"$(scripts/ceph-dev-cluster env DIR)\"");
  return v;
}

std::mt19937_64& Rng() {
  static std::mt19937_64 rng{std::random_device{}() ^ static_cast<uint64_t>(getpid())};
  return rng;
}

std::string Hex(const uint8_t* bytes, size_t n) {
  static const char kDigits[] = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; i++) {
    s += kDigits[bytes[i] >> 4];
    s += kDigits[bytes[i] & 0xf];
  }
  return s;
}

Guid ParseGuid(const std::string& hex) {
  Guid g{};
  if (hex.size() != 2 * g.size()) Fail("bad GUID " + hex);
  for (size_t i = 0; i < g.size(); i++)
    g[i] = static_cast<uint8_t>(std::stoul(hex.substr(2 * i, 2), nullptr, 16));
  return g;
}

Guid RandomGuid() {
  Guid g;
  for (size_t i = 0; i < g.size(); i += 8) {
    uint64_t v = Rng()();
    std::memcpy(g.data() + i, &v, 8);
  }
  return g;
}

std::string RandomNamespace() {
  uint64_t v = Rng()();
  return "bench-" + Hex(reinterpret_cast<const uint8_t*>(&v), sizeof(v));
}

// CLOCK_MONOTONIC is one clock for all processes of the host, so workers'
// end times compare with the parent's start time.
int64_t MonotonicNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// User + system time of this process, librados threads included.
double CpuSeconds() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(std::ceil(p * v.size()));
  return v[std::min(v.size() - 1, i == 0 ? 0 : i - 1)];
}

double Median(const std::vector<double>& v) { return Percentile(v, 0.5); }

// A message body of `size` bytes: a plausible header, then filler.
std::string MakeBody(size_t size) {
  std::string body =
      "From: bench@example.com\r\nTo: user@example.com\r\nSubject: core_bench\r\n"
      "Message-ID: <core-bench@example.com>\r\n\r\n";
  body.resize(std::max(body.size(), size), 'x');
  body.resize(size);
  return body;
}

rbd_new_message NewMessage(const std::string& body) {
  rbd_new_message msg{};
  Guid g = RandomGuid();
  std::memcpy(msg.guid, g.data(), g.size());
  msg.body = body.data();
  msg.body_size = body.size();
  msg.received_date = msg.save_date = time(nullptr);
  msg.physical_size = msg.virtual_size = body.size();
  return msg;
}

// ---------------------------------------------------------------------------
// The core, through the C ABI

struct MailboxCloser {
  void operator()(rbd_index* m) const { rbd_index_close(&m); }
};
using MailboxPtr = std::unique_ptr<rbd_index, MailboxCloser>;

// One user's namespace with its own config and cluster handle. Scenarios
// with different settings must not overlap: rbd_cluster_get hands out the
// live connection of an equal conf/user/timeout, with that connection's
// settings (rbd_inline_max included).
class Session {
 public:
  explicit Session(const std::string& ns, const std::vector<Setting>& extra = {}) {
    config_ = rbd_config_new();
    std::vector<Setting> settings = {
        {"rbd_ceph_conf", Env("RBD_TEST_CEPH_CONF")},
        {"rbd_ceph_user", Env("RBD_TEST_CEPH_USER")},
        {"rbd_pool", Env("RBD_TEST_POOL")},
        {"rbd_index_pool", Env("RBD_TEST_INDEX_POOL")},
    };
    settings.insert(settings.end(), extra.begin(), extra.end());
    for (const auto& [name, value] : settings)
      if (rbd_config_set(config_, name.c_str(), value.c_str(), &err_) != RBD_OK) Fail("config", err_);
    if (rbd_cluster_get(config_, &cluster_, &err_) != RBD_OK) Fail("cluster", err_);
    if (rbd_user_open(cluster_, ns.c_str(), nullptr, &user_, &err_) != RBD_OK) Fail("open user " + ns, err_);
  }
  ~Session() {
    rbd_user_close(&user_);
    rbd_cluster_unref(&cluster_);
    rbd_config_free(&config_);
  }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  Guid CreateMailbox(const std::string& name) {
    Guid guid = RandomGuid();
    if (rbd_create_mailbox(user_, name.c_str(), guid.data(), 0, "", &err_) != RBD_OK)
      Fail("create mailbox " + name, err_);
    return guid;
  }

  MailboxPtr Open(const Guid& guid) {
    rbd_index* mailbox = nullptr;
    if (rbd_index_open(user_, guid.data(), &mailbox, &err_) != RBD_OK) Fail("open mailbox", err_);
    return MailboxPtr(mailbox);
  }

 private:
  rbd_config* config_ = nullptr;
  rbd_cluster* cluster_ = nullptr;
  rbd_user* user_ = nullptr;
  rbd_error err_{};
};

uint32_t AppendOne(rbd_index* mailbox, const std::string& body) {
  rbd_new_message msg = NewMessage(body);
  uint32_t uid = 0;
  rbd_error err{};
  if (rbd_index_append(mailbox, &msg, 1, &uid, &err) != RBD_OK) Fail("append", err);
  return uid;
}

void UpdateFlags(rbd_index* mailbox, uint32_t uid, bool add, uint8_t flags) {
  rbd_flag_update update{};
  (add ? update.add_flags : update.remove_flags) = flags;
  uint32_t* conflicts = nullptr;
  size_t conflict_count = 0;
  uint64_t modseq = 0;
  rbd_error err{};
  if (rbd_index_update_flags(mailbox, &uid, 1, &update, &conflicts, &conflict_count, &modseq, &err) != RBD_OK)
    Fail("update flags", err);
  rbd_uids_free(&conflicts);
}

rbd_index_status GetStatus(rbd_index* mailbox) {
  rbd_index_status status{};
  rbd_error err{};
  if (rbd_index_get_status(mailbox, &status, &err) != RBD_OK) Fail("mailbox status", err);
  return status;
}

// Checks where the body of `uid` went, so a setting that did not take effect
// cannot pass unnoticed as a figure.
void ExpectInline(rbd_index* mailbox, uint32_t uid, bool want_inline, const std::string& run) {
  rbd_records* records = nullptr;
  rbd_error err{};
  if (rbd_index_lookup_records(mailbox, &uid, 1, &records, &err) != RBD_OK) Fail("lookup", err);
  bool found = records->count == 1;
  bool is_inline = found && records->records[0].inline_body != 0;
  rbd_records_free(&records);
  if (!found) Fail(run + ": UID " + std::to_string(uid) + " not found");
  if (is_inline != want_inline)
    Fail(run + ": body of UID " + std::to_string(uid) + (is_inline ? " is" : " is not") + " inline");
}

// ---------------------------------------------------------------------------
// Librados outside the core: OSD op counters (how many RADOS ops one core
// operation costs) and removal of the bench's namespaces. Connects as client.admin when
// RBD_TEST_ADMIN_KEYRING is set (perf counters need it), else as the core's user without counters.

struct OsdCounters {
  double ops = 0, reads = 0, writes = 0, rmw = 0;
  double read_lat = 0, write_lat = 0, rmw_lat = 0;  // seconds, summed

  OsdCounters operator-(const OsdCounters& o) const {
    return {ops - o.ops,           reads - o.reads,         writes - o.writes,  rmw - o.rmw,
            read_lat - o.read_lat, write_lat - o.write_lat, rmw_lat - o.rmw_lat};
  }
  OsdCounters& operator+=(const OsdCounters& o) {
    ops += o.ops, reads += o.reads, writes += o.writes, rmw += o.rmw;
    read_lat += o.read_lat, write_lat += o.write_lat, rmw_lat += o.rmw_lat;
    return *this;
  }
};

class RadosLink {
 public:
  RadosLink() {
    const char* admin_keyring = std::getenv("RBD_TEST_ADMIN_KEYRING");
    admin_ = admin_keyring != nullptr && *admin_keyring != '\0';
    std::string name = admin_ ? "client.admin" : "client." + Env("RBD_TEST_CEPH_USER");
    if (rados_.init2(name.c_str(), "ceph", 0) < 0) Fail("librados init");
    if (rados_.conf_read_file(Env("RBD_TEST_CEPH_CONF").c_str()) < 0) Fail("librados: cannot read ceph.conf");
    if (admin_) rados_.conf_set("keyring", admin_keyring);
    rados_.conf_set("rados_mon_op_timeout", "20");
    rados_.conf_set("rados_osd_op_timeout", "20");
    int r = rados_.connect();
    if (r < 0) Fail("librados connect as " + name + ": " + std::strerror(-r));
    if (admin_) ListOsds();
  }
  ~RadosLink() { rados_.shutdown(); }

  bool has_counters() const { return !osds_.empty(); }

  OsdCounters Counters() {
    OsdCounters total;
    for (int id : osds_) {
      librados::bufferlist in, out;
      std::string status;
      if (rados_.osd_command(id, R"({"prefix": "perf dump"})", in, &out, &status) < 0) continue;
      total += Parse(out.to_str());
    }
    return total;
  }

  // Removes every object in namespace `ns` of `pool`; returns how many.
  size_t RemoveNamespace(const std::string& pool, const std::string& ns) {
    librados::IoCtx io;
    if (rados_.ioctx_create(pool.c_str(), io) < 0) Fail("open pool " + pool);
    io.set_namespace(ns);
    std::vector<std::string> oids;
    for (auto it = io.nobjects_begin(); it != io.nobjects_end(); ++it) oids.push_back(it->get_oid());
    // Removals in flight at once: enough to keep the OSD busy.
    constexpr size_t kWindow = 32;
    std::vector<std::unique_ptr<librados::AioCompletion>> window;
    for (size_t i = 0; i < oids.size(); i++) {
      window.emplace_back(librados::Rados::aio_create_completion());
      io.aio_remove(oids[i], window.back().get());
      if (window.size() == kWindow || i + 1 == oids.size()) {
        for (auto& c : window) c->wait_for_complete();
        window.clear();
      }
    }
    return oids.size();
  }

 private:
  void ListOsds() {
    librados::bufferlist in, out;
    std::string status;
    if (rados_.mon_command(R"({"prefix": "osd ls", "format": "json"})", in, &out, &status) < 0) return;
    std::string text = out.to_str();
    for (char& c : text)
      if (!std::isdigit(static_cast<unsigned char>(c))) c = ' ';
    std::istringstream ids(text);
    for (int id; ids >> id;) osds_.push_back(id);
  }

  // The number after `"key":` at or after `from`; -1 when absent.
  static double Number(const std::string& json, size_t from, const std::string& key, size_t* end = nullptr) {
    size_t at = json.find("\"" + key + "\":", from);
    if (at == std::string::npos) return -1;
    at += key.size() + 3;
    char* stop = nullptr;
    double v = std::strtod(json.c_str() + at, &stop);
    if (end != nullptr) *end = stop - json.c_str();
    return v;
  }

  static double LatencySum(const std::string& json, size_t from, const std::string& key) {
    size_t at = json.find("\"" + key + "\":", from);
    return at == std::string::npos ? 0 : Number(json, at, "sum");
  }

  // Sections come sorted by name, and "objecter" (which has its own op_r
  // and op_w) sorts before "osd": search from the "osd" section on.
  static OsdCounters Parse(const std::string& json) {
    OsdCounters c;
    size_t osd = json.find("\"osd\":");
    if (osd == std::string::npos) return c;
    c.ops = Number(json, osd, "op");
    c.reads = Number(json, osd, "op_r");
    c.writes = Number(json, osd, "op_w");
    c.rmw = Number(json, osd, "op_rw");
    c.read_lat = LatencySum(json, osd, "op_r_latency");
    c.write_lat = LatencySum(json, osd, "op_w_latency");
    c.rmw_lat = LatencySum(json, osd, "op_rw_latency");
    return c;
  }

  librados::Rados rados_;
  bool admin_ = false;
  std::vector<int> osds_;
};

// ---------------------------------------------------------------------------
// CPU accounting. On a small host the client processes and the OSD share
// the same cores, so a rate can be bound by CPU rather than by the disk.

// CPU seconds used so far by the cluster's OSDs, when the cluster is the
// local one that ceph-dev-cluster started (its pid files are in
// RBD_TEST_CEPH_DIR); -1 otherwise.
double OsdCpuSeconds() {
  const char* dir = std::getenv("RBD_TEST_CEPH_DIR");
  if (dir == nullptr || *dir == '\0') return -1;
  double total = -1;
  for (int id = 0;; id++) {
    std::ifstream pid_file(std::string(dir) + "/osd." + std::to_string(id) + ".pid");
    long pid = 0;
    if (!(pid_file >> pid)) break;
    std::ifstream stat_file("/proc/" + std::to_string(pid) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
    // Fields after the command name, which may contain spaces: state is
    // field 3, utime and stime are fields 14 and 15.
    size_t paren = stat.rfind(')');
    if (paren == std::string::npos) continue;
    std::istringstream fields(stat.substr(paren + 2));
    std::string skip;
    for (int f = 3; f < 14; f++) fields >> skip;
    double utime = 0, stime = 0;
    if (!(fields >> utime >> stime)) continue;
    total = std::max(total, 0.0) + (utime + stime) / sysconf(_SC_CLK_TCK);
  }
  return total;
}

// Busy and total jiffies of all CPUs of the host (/proc/stat).
std::pair<double, double> HostCpu() {
  std::ifstream stat_file("/proc/stat");
  std::string cpu;
  stat_file >> cpu;
  double busy = 0, total = 0, v;
  for (int f = 0; f < 8 && stat_file >> v; f++) {
    total += v;
    if (f != 3 && f != 4) busy += v;  // idle, iowait
  }
  return {busy, total};
}

// ---------------------------------------------------------------------------
// Results

struct Measurement {
  size_t ops = 0;
  double seconds = 0;
  std::vector<double> latencies_us;
  double cpu_seconds = 0;       // client processes, summed
  double osd_cpu_seconds = -1;  // -1: unknown
  double host_busy = 0;         // fraction of all CPUs of the host
  OsdCounters osd;
  bool have_osd = false;
  // Concurrent streams: when the first and the last stream finished.
  double first_done_seconds = 0;

  double rate() const { return ops / seconds; }
};

// Measures `body` (which performs `ops` operations) with CPU time and OSD
// counters around it.
template <typename Body>
Measurement Measure(RadosLink* link, size_t ops, Body body) {
  Measurement run;
  run.ops = ops;
  OsdCounters before = link->has_counters() ? link->Counters() : OsdCounters{};
  double osd_cpu0 = OsdCpuSeconds();
  auto [busy0, total0] = HostCpu();
  double cpu0 = CpuSeconds();
  int64_t t0 = MonotonicNs();
  body(&run);
  if (run.seconds == 0) run.seconds = (MonotonicNs() - t0) / 1e9;
  run.cpu_seconds += CpuSeconds() - cpu0;
  auto [busy1, total1] = HostCpu();
  run.host_busy = total1 > total0 ? (busy1 - busy0) / (total1 - total0) : 0;
  if (osd_cpu0 >= 0) run.osd_cpu_seconds = OsdCpuSeconds() - osd_cpu0;
  if (link->has_counters()) {
    run.osd = link->Counters() - before;
    run.have_osd = true;
  }
  return run;
}

void PrintFigure(const std::string& label, double value, const char* unit, double raw, const char* raw_name) {
  std::printf("%-40s %9.0f %-6s", label.c_str(), value, unit);
  if (raw > 0) std::printf("  %5.2f x raw %s (%.0f)", value / raw, raw_name, raw);
  std::printf("\n");
}

void PrintDetail(const Measurement& run) {
  if (!run.latencies_us.empty()) {
    std::printf("    latency p50 %.2f ms  p99 %.2f ms  max %.2f ms", Percentile(run.latencies_us, 0.5) / 1000,
                Percentile(run.latencies_us, 0.99) / 1000, Percentile(run.latencies_us, 1.0) / 1000);
    if (run.first_done_seconds > 0)
      std::printf("   streams done after %.2f .. %.2f s", run.first_done_seconds, run.seconds);
    std::printf("\n");
  }
  std::printf("    cpu per op: client %.0f us", run.cpu_seconds * 1e6 / run.ops);
  if (run.osd_cpu_seconds >= 0) std::printf(", osd %.0f us", run.osd_cpu_seconds * 1e6 / run.ops);
  std::printf("; host busy %.0f%% of %ld cpus\n", run.host_busy * 100, sysconf(_SC_NPROCESSORS_ONLN));
  if (!run.have_osd) return;
  const OsdCounters& c = run.osd;
  auto ms = [](double sum, double n) { return n > 0 ? sum / n * 1000 : 0.0; };
  std::printf("    osd ops per op: %.2f (write %.2f, read-modify-write %.2f, read %.2f)", c.ops / run.ops,
              c.writes / run.ops, c.rmw / run.ops, c.reads / run.ops);
  std::printf("  osd latency ms: w %.2f rmw %.2f r %.2f\n", ms(c.write_lat, c.writes), ms(c.rmw_lat, c.rmw),
              ms(c.read_lat, c.reads));
}

// ---------------------------------------------------------------------------
// Single stream

Measurement AppendStream(RadosLink* link, rbd_index* mailbox, size_t n, size_t body_size,
                         uint32_t* last_uid) {
  const std::string body = MakeBody(body_size);
  for (int i = 0; i < kWarmupAppends; i++) AppendOne(mailbox, body);
  return Measure(link, n, [&](Measurement* run) {
    run->latencies_us.reserve(n);
    for (size_t i = 0; i < n; i++) {
      int64_t t = MonotonicNs();
      *last_uid = AppendOne(mailbox, body);
      run->latencies_us.push_back((MonotonicNs() - t) / 1e3);
    }
  });
}

// ---------------------------------------------------------------------------
// Concurrent streams: one worker process each

struct Target {
  std::string ns;
  std::string mailbox_hex;
};

// Worker protocol: stdin is the start gate (the parent closes it to start
// every worker at once), stdout carries "ready", then
// "done END_NS CPU_SECONDS" and "lat US US ...".
int WorkerMain(int argc, char** argv) {
  std::string ns, mailbox_hex;
  size_t count = 0, size = 0;
  for (int i = 2; i < argc; i++) {
    std::string a = argv[i];
    if (a.rfind("--ns=", 0) == 0) ns = a.substr(5);
    if (a.rfind("--mailbox=", 0) == 0) mailbox_hex = a.substr(10);
    if (a.rfind("--count=", 0) == 0) count = std::stoul(a.substr(8));
    if (a.rfind("--size=", 0) == 0) size = std::stoul(a.substr(7));
  }
  if (ns.empty() || mailbox_hex.empty() || count == 0) Fail("worker: missing arguments");
  Session session(ns);
  MailboxPtr mailbox = session.Open(ParseGuid(mailbox_hex));
  GetStatus(mailbox.get());  // connects and reaches the OSD before the start
  const std::string body = MakeBody(size);
  std::printf("ready\n");
  std::fflush(stdout);
  char c;
  while (read(STDIN_FILENO, &c, 1) > 0) {
  }
  double cpu0 = CpuSeconds();
  std::vector<double> latencies;
  latencies.reserve(count);
  for (size_t i = 0; i < count; i++) {
    int64_t t = MonotonicNs();
    AppendOne(mailbox.get(), body);
    latencies.push_back((MonotonicNs() - t) / 1e3);
  }
  std::printf("done %lld %.6f\nlat", static_cast<long long>(MonotonicNs()), CpuSeconds() - cpu0);
  for (double l : latencies) std::printf(" %.0f", l);
  std::printf("\n");
  return 0;
}

std::string SelfPath() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) Fail("readlink /proc/self/exe");
  return std::string(buf, n);
}

struct WorkerProcess {
  pid_t pid = -1;
  FILE* out = nullptr;
};

std::string ReadLine(const WorkerProcess& w) {
  char* line = nullptr;
  size_t cap = 0;
  ssize_t n = getline(&line, &cap, w.out);
  std::string s = n > 0 ? std::string(line, n) : "";
  std::free(line);
  if (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

Measurement AppendStreams(RadosLink* link, const std::vector<Target>& targets, size_t n, size_t body_size) {
  const std::string self = SelfPath();
  int gate[2];
  if (pipe2(gate, O_CLOEXEC) != 0) Fail(std::string("pipe: ") + std::strerror(errno));
  std::vector<WorkerProcess> workers;
  for (const Target& t : targets) {
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) Fail(std::string("pipe: ") + std::strerror(errno));
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, gate[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    std::vector<std::string> args = {self,
                                     "--worker",
                                     "--ns=" + t.ns,
                                     "--mailbox=" + t.mailbox_hex,
                                     "--count=" + std::to_string(n),
                                     "--size=" + std::to_string(body_size)};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    WorkerProcess w;
    int r = posix_spawn(&w.pid, self.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(out[1]);
    if (r != 0) Fail("spawn " + self + ": " + std::strerror(r));
    w.out = fdopen(out[0], "r");
    workers.push_back(w);
  }
  close(gate[0]);
  // A failed worker has printed why on stderr; the others must not go on.
  auto fail = [&](const std::string& what) {
    for (const WorkerProcess& w : workers) kill(w.pid, SIGKILL);
    Fail(what);
  };
  for (const WorkerProcess& w : workers)
    if (ReadLine(w) != "ready") fail("a worker failed before the start");

  Measurement result = Measure(link, n * workers.size(), [&](Measurement* run) {
    int64_t start = MonotonicNs();
    close(gate[1]);
    int64_t end = start, first_end = INT64_MAX;
    for (const WorkerProcess& w : workers) {
      long long done_ns = 0;
      double cpu = 0;
      if (std::sscanf(ReadLine(w).c_str(), "done %lld %lf", &done_ns, &cpu) != 2) fail("a worker failed");
      end = std::max<int64_t>(end, done_ns);
      first_end = std::min<int64_t>(first_end, done_ns);
      run->cpu_seconds += cpu;
      std::string lat_line = ReadLine(w);
      if (lat_line.rfind("lat", 0) != 0) fail("a worker sent no latencies");
      std::istringstream lat(lat_line.substr(3));
      for (double l; lat >> l;) run->latencies_us.push_back(l);
    }
    run->seconds = (end - start) / 1e9;
    run->first_done_seconds = (first_end - start) / 1e9;
  });
  for (WorkerProcess& w : workers) {
    int status = 0;
    waitpid(w.pid, &status, 0);
    fclose(w.out);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      Fail("a worker exited with status " + std::to_string(status));
  }
  return result;
}

// ---------------------------------------------------------------------------

class Bench {
 public:
  explicit Bench(const Options& options) : options_(options) {}

  void Run() {
    std::printf("core_bench: %s, pools %s / %s%s\n", Env("RBD_TEST_CEPH_CONF").c_str(),
                Env("RBD_TEST_POOL").c_str(), Env("RBD_TEST_INDEX_POOL").c_str(),
                options_.quick ? ", --quick (N / 10)" : "");
    if (link_.has_counters()) {
      // The OSD logs a write that failed its guard (-ECANCELED) without
      // counting it as an op; the core then re-reads the state.
      std::printf(
          "OSD counters do not count guarded writes that lost a race: each lost race\n"
          "shows as one extra read. A notify after each change counts as a read.\n");
    } else {
      std::printf("(no OSD counters: RBD_TEST_ADMIN_KEYRING is not set)\n");
    }
    std::printf("\n");
    SingleStream();
    ManyStreams();
    LargeMailbox();
    Summary();
    if (!options_.keep) Cleanup();
  }

 private:
  size_t N(size_t n) const { return options_.quick ? std::max<size_t>(n / 10, 1) : n; }

  std::string NewNamespace() {
    namespaces_.push_back(RandomNamespace());
    return namespaces_.back();
  }

  void SingleStream() {
    uint32_t uid = 0;
    {
      Session session(NewNamespace());
      MailboxPtr mailbox = session.Open(session.CreateMailbox("INBOX"));
      append_4k_ = AppendStream(&link_, mailbox.get(), N(2000), 4096, &uid);
      ExpectInline(mailbox.get(), uid, true, "4KiB inline");
      PrintFigure("append 1 stream 4KiB inline", append_4k_.rate(), "ops/s", options_.raw_t1, "t1");
      PrintDetail(append_4k_);

      // ADD then REMOVE \Seen on UIDs 1, 1, 2, 2, ...: every call changes one record.
      size_t n = N(2000);
      flags_ = Measure(&link_, n, [&](Measurement* run) {
        for (size_t i = 0; i < n; i++) {
          int64_t t = MonotonicNs();
          UpdateFlags(mailbox.get(), static_cast<uint32_t>(i / 2 + 1), i % 2 == 0, RBD_FLAG_SEEN);
          run->latencies_us.push_back((MonotonicNs() - t) / 1e3);
        }
      });
    }
    {
      Session session(NewNamespace(), {{"rbd_inline_max", "0"}});
      MailboxPtr mailbox = session.Open(session.CreateMailbox("INBOX"));
      append_4k_body_ = AppendStream(&link_, mailbox.get(), N(2000), 4096, &uid);
      ExpectInline(mailbox.get(), uid, false, "4KiB with rbd_inline_max=0");
      PrintFigure("append 1 stream 4KiB body object", append_4k_body_.rate(), "ops/s", options_.raw_t1, "t1");
      PrintDetail(append_4k_body_);
      std::printf("    inline / body object: %.2f x\n", append_4k_.rate() / append_4k_body_.rate());
    }
    {
      Session session(NewNamespace());
      MailboxPtr mailbox = session.Open(session.CreateMailbox("INBOX"));
      append_64k_ = AppendStream(&link_, mailbox.get(), N(1000), 65536, &uid);
      ExpectInline(mailbox.get(), uid, false, "64KiB");
      PrintFigure("append 1 stream 64KiB", append_64k_.rate(), "ops/s", options_.raw_t1, "t1");
      PrintDetail(append_64k_);
    }
    PrintFigure("flag update 1 stream", flags_.rate(), "ops/s", options_.raw_t1, "t1");
    PrintDetail(flags_);
    std::printf("\n");
  }

  void ManyStreams() {
    // 16 users, each appending to its own INBOX.
    auto own_mailboxes = [&] {
      std::vector<Target> targets;
      for (int i = 0; i < kStreams; i++) {
        std::string ns = NewNamespace();
        Session session(ns);
        targets.push_back({ns, Hex(session.CreateMailbox("INBOX").data(), RBD_GUID_SIZE)});
      }
      return targets;
    };
    streams_4k_ = AppendStreams(&link_, own_mailboxes(), N(300), 4096);
    PrintFigure("append 16 streams 4KiB, 16 mailboxes", streams_4k_.rate(), "ops/s", options_.raw_t16, "t16");
    PrintDetail(streams_4k_);
    streams_64k_ = AppendStreams(&link_, own_mailboxes(), N(150), 65536);
    PrintFigure("append 16 streams 64KiB, 16 mailboxes", streams_64k_.rate(), "ops/s", options_.raw_t16,
                "t16");
    PrintDetail(streams_64k_);

    // Contention: every stream races for the same index object.
    std::string ns = NewNamespace();
    Guid shared;
    {
      Session session(ns);
      shared = session.CreateMailbox("INBOX");
    }
    std::vector<Target> targets(kStreams, Target{ns, Hex(shared.data(), shared.size())});
    contended_ = AppendStreams(&link_, targets, N(300), 4096);
    PrintFigure("append 16 streams 4KiB, ONE mailbox", contended_.rate(), "ops/s", options_.raw_t16, "t16");
    PrintDetail(contended_);
    {
      Session session(ns);
      MailboxPtr mailbox = session.Open(shared);
      rbd_index_status status = GetStatus(mailbox.get());
      if (status.messages != kStreams * N(300) || status.uidnext != status.messages + 1)
        Fail("contended mailbox has " + std::to_string(status.messages) + " messages, UIDNEXT " +
             std::to_string(status.uidnext));
    }
    std::printf("\n");
  }

  void LargeMailbox() {
    const size_t total = N(100000), batch = 1000, changes = 100;
    Session session(NewNamespace());
    MailboxPtr mailbox = session.Open(session.CreateMailbox("INBOX"));
    const std::string body = MakeBody(200);
    Measurement build = Measure(&link_, total, [&](Measurement*) {
      std::vector<rbd_new_message> messages;
      std::vector<uint32_t> uids(batch);
      rbd_error err{};
      for (size_t done = 0; done < total; done += messages.size()) {
        messages.clear();
        for (size_t i = 0; i < std::min(batch, total - done); i++) messages.push_back(NewMessage(body));
        if (rbd_index_append(mailbox.get(), messages.data(), messages.size(), uids.data(), &err) != RBD_OK)
          Fail("batch append", err);
      }
    });
    PrintFigure("build: append batches of 1000, 200 B", build.rate(), "msgs/s", 0, "");
    std::printf("    client cpu %.1f us/message\n", build.cpu_seconds * 1e6 / build.ops);

    const uint64_t since = GetStatus(mailbox.get()).highest_modseq;
    std::set<uint32_t> picked;
    std::uniform_int_distribution<uint32_t> any_uid(1, static_cast<uint32_t>(total));
    while (picked.size() < std::min(changes, total)) picked.insert(any_uid(Rng()));
    for (uint32_t uid : picked) UpdateFlags(mailbox.get(), uid, true, RBD_FLAG_SEEN);

    std::vector<double> sync_ms;
    for (int i = 0; i < 5; i++) {
      rbd_changes* ch = nullptr;
      rbd_error err{};
      int64_t t = MonotonicNs();
      if (rbd_index_changes(mailbox.get(), since, &ch, &err) != RBD_OK) Fail("changes", err);
      sync_ms.push_back((MonotonicNs() - t) / 1e6);
      size_t changed = 0, expunged = 0;
      for (size_t op = 0; op < ch->op_count; op++) {
        changed += ch->ops[op].appended_count + ch->ops[op].updated_count;
        expunged += ch->ops[op].expunged_count;
      }
      rbd_changes_free(&ch);
      if (changed != picked.size() || expunged != 0)
        Fail("changes since MODSEQ " + std::to_string(since) + ": " + std::to_string(changed) + " changed, " +
             std::to_string(expunged) + " expunged; expected " + std::to_string(picked.size()) + " changed");
    }
    sync_ms_ = Median(sync_ms);
    std::printf("%-40s %9.2f ms      (median of 5; %zu of %zu records, exact)\n",
                "incremental sync: 100 changes", sync_ms_, picked.size(), total);

    std::vector<double> list_ms;
    const size_t page = 10000;
    for (int i = 0; i < 3; i++) {
      size_t listed = 0;
      uint32_t after = 0;
      int64_t t = MonotonicNs();
      for (;;) {
        rbd_records* records = nullptr;
        rbd_error err{};
        if (rbd_index_list_records(mailbox.get(), after, page, &records, &err) != RBD_OK) Fail("list", err);
        size_t count = records->count;
        if (count > 0) after = records->records[count - 1].uid;
        listed += count;
        rbd_records_free(&records);
        if (count < page) break;
      }
      list_ms.push_back((MonotonicNs() - t) / 1e6);
      if (listed != total)
        Fail("listed " + std::to_string(listed) + " of " + std::to_string(total) + " records");
    }
    list_ms_ = Median(list_ms);
    list_rate_ = total / (list_ms_ / 1000);
    std::printf("%-40s %9.0f ms      (median of 3) %.0f records/s\n", "full listing, pages of 10000",
                list_ms_, list_rate_);
    std::printf("\n");
  }

  void Goal(const char* what, const Measurement& run, double raw, double goal) {
    std::printf("  %-48s %7.0f ops/s", what, run.rate());
    if (raw > 0)
      std::printf("  %5.2f x raw (goal %.1f: %s)", run.rate() / raw, goal,
                  run.rate() >= goal * raw ? "met" : "MISSED");
    std::printf("\n");
  }

  void Summary() {
    std::printf("summary (raw rados bench 4KiB: t1 %.0f, t16 %.0f IOPS)\n", options_.raw_t1,
                options_.raw_t16);
    Goal("1 stream 4KiB APPEND vs raw t1", append_4k_, options_.raw_t1, kSingleStreamGoal);
    Goal("16 streams 4KiB APPEND vs raw t16", streams_4k_, options_.raw_t16, kManyStreamGoal);
    Goal("16 streams 4KiB APPEND, one mailbox vs raw t16", contended_, options_.raw_t16, kManyStreamGoal);
    std::printf("  inline bodies: %.2f x the rate of body object + index op (4KiB, 1 stream)\n",
                append_4k_.rate() / append_4k_body_.rate());
    std::printf("  64KiB APPEND: %.0f ops/s 1 stream, %.0f ops/s 16 streams\n", append_64k_.rate(),
                streams_64k_.rate());
    std::printf("  flag updates %.0f ops/s; sync of 100 changes in 100k %.2f ms; full list %.0f ms\n",
                flags_.rate(), sync_ms_, list_ms_);
  }

  void Cleanup() {
    size_t removed = 0;
    for (const std::string& ns : namespaces_) {
      removed += link_.RemoveNamespace(Env("RBD_TEST_POOL"), ns);
      if (Env("RBD_TEST_INDEX_POOL") != Env("RBD_TEST_POOL"))
        removed += link_.RemoveNamespace(Env("RBD_TEST_INDEX_POOL"), ns);
    }
    std::printf("\nremoved %zu objects in %zu bench namespaces\n", removed, namespaces_.size());
  }

  Options options_;
  RadosLink link_;
  std::vector<std::string> namespaces_;
  Measurement append_4k_, append_4k_body_, append_64k_, flags_, streams_4k_, streams_64k_, contended_;
  double sync_ms_ = 0, list_ms_ = 0, list_rate_ = 0;
};

double ParseRate(const std::string& arg, const std::string& flag) {
  char* end = nullptr;
  double v = std::strtod(arg.c_str() + flag.size(), &end);
  if (end == arg.c_str() + flag.size() || *end != '\0' || v < 0) Fail("bad value in " + arg);
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--worker") {
    int rc = WorkerMain(argc, argv);
    rbd_shutdown();
    return rc;
  }
  Options options;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a.rfind("--raw-t1=", 0) == 0) {
      options.raw_t1 = ParseRate(a, "--raw-t1=");
    } else if (a.rfind("--raw-t16=", 0) == 0) {
      options.raw_t16 = ParseRate(a, "--raw-t16=");
    } else if (a == "--quick") {
      options.quick = true;
    } else if (a == "--keep") {
      options.keep = true;
    } else if (a == "-h" || a == "--help") {
      std::printf(
          "usage: core_bench [--raw-t1=IOPS] [--raw-t16=IOPS] [--quick] [--keep]\n"
          "  Benchmarks the storage core through its C ABI on the cluster named by\n"
          "  RBD_TEST_CEPH_CONF, RBD_TEST_CEPH_USER, RBD_TEST_POOL, RBD_TEST_INDEX_POOL\n"
          "  (and RBD_TEST_ADMIN_KEYRING for OSD op counters). Normally run by bench/run-core.\n"
          "  --raw-t1/--raw-t16  rados bench 4KiB write IOPS at 1 and 16 in flight\n"
          "  --quick             a tenth of every N (checks the bench, not the core)\n"
          "  --keep              leave the bench's namespaces in the pools\n");
      return 0;
    } else {
      Fail("unknown argument " + a + " (see --help)");
    }
  }
  Bench(options).Run();
  rbd_shutdown();
  return 0;
}
