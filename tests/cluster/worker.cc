// rbd_test_worker: one process of a multi-process cluster test. Uses only
// the C ABI, prints one line per result so the test can check ordering.
//
//   append MAILBOX COUNT TAG [BODY_SIZE [GAP_MS]]
//                                          append one message at a time: "uid guid"
//   append-timed MAILBOX COUNT GAP_MS      "t NS" just before each append
//   add-flag MAILBOX FLAG LAST_UID         add FLAG to UIDs 1..LAST_UID one by one
//   keyword-race MAILBOX UID COUNT NAME    read MODSEQ, add keyword NAME-i with
//                                          UNCHANGEDSINCE: "ok i" or "conflict i"
//   rename-loop A B COUNT                  rename A->B, B->A, ...: "ok n" / "err n"
//   create-loop PARENT COUNT SEP           create PARENT<SEP>c<i>: "ok c<i>" / "err c<i>"
//   hold-lease NAME DURATION_MS            "held NS" (when it asked), then sleep
//                                          until killed
//   dict-inc KEY COUNT                     COUNT commits, each adding 1 to KEY
//                                          and 2 to KEY.2: "done MISSED"
//   delete NAME                            delete a mailbox: "deleted" / "err CODE"
//   check-repair                           check --repair (grace 1h): "problem DETAIL"
//                                          each, then "checked COUNT"
//   open-as UID NS                         as uid UID, open the user NS (not
//                                          RBD_TEST_NS): "ok" / "err CODE MESSAGE"
//
// RBD_TEST_SETTINGS="name=value;name=value" adds rbd_* settings.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "test_env.h"

using rbdtest::Hex;

namespace {

rbd_user* user = nullptr;
rbd_error err{};

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "worker: %s: %s (%s)\n", what, err.message, rbd_code_name(err.code));
  std::exit(2);
}

rbd_index* Open(const char* hex) {
  uint8_t guid[RBD_GUID_SIZE];
  rbdtest::ParseHex(hex, guid);
  rbd_index* mailbox = nullptr;
  if (rbd_index_open(user, guid, &mailbox, &err) != RBD_OK) Die("open mailbox");
  return mailbox;
}

void Print(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

int Append(rbd_index* mailbox, int count, const std::string& tag, size_t body_size, int gap_ms, bool timed) {
  for (int i = 0; i < count; i++) {
    std::string body =
        "From: worker-" + tag + "@example.com\r\nSubject: " + tag + "-" + std::to_string(i) + "\r\n\r\n";
    body.resize(std::max(body.size(), body_size), 'x');
    rbd_new_message msg{};
    rbdtest::RandomGuid(msg.guid);
    msg.body = body.data();
    msg.body_size = body.size();
    msg.received_date = time(nullptr);
    msg.save_date = msg.received_date;
    msg.physical_size = msg.virtual_size = body.size();
    uint32_t uid = 0;
    if (timed) Print("t " + std::to_string(rbdtest::NowNs()));
    if (rbd_index_append(mailbox, &msg, 1, &uid, &err) != RBD_OK) Die("append");
    if (!timed) Print(std::to_string(uid) + " " + Hex(msg.guid));
    if (gap_ms > 0) usleep(gap_ms * 1000);
  }
  return 0;
}

// Claims \Recent messages as a read-write session's syncs do (up to the
// UIDNEXT it read) until the mailbox reaches `until_uidnext`; prints each
// non-empty claim as "first end".
int ClaimRecent(rbd_index* mailbox, uint32_t until_uidnext) {
  for (;;) {
    rbd_index_status status{};
    if (rbd_index_get_status(mailbox, &status, &err) != RBD_OK) Die("status");
    uint32_t first = 0, end = 0;
    if (rbd_index_claim_recent(mailbox, status.uidnext, &first, &end, &err) != RBD_OK) Die("claim");
    if (first != end) Print(std::to_string(first) + " " + std::to_string(end));
    if (status.uidnext >= until_uidnext) break;
  }
  Print("done");
  return 0;
}

int AddFlag(rbd_index* mailbox, uint8_t flag, uint32_t last_uid) {
  for (uint32_t uid = 1; uid <= last_uid; uid++) {
    rbd_flag_update update{};
    update.add_flags = flag;
    uint32_t* conflicts = nullptr;
    size_t nconflicts = 0;
    uint64_t modseq = 0;
    if (rbd_index_update_flags(mailbox, &uid, 1, &update, &conflicts, &nconflicts, &modseq, &err) != RBD_OK)
      Die("update flags");
    rbd_uids_free(&conflicts);
  }
  Print("done");
  return 0;
}

int KeywordRace(rbd_index* mailbox, uint32_t uid, int count, const std::string& name) {
  for (int i = 0; i < count; i++) {
    rbd_records* records = nullptr;
    if (rbd_index_lookup_records(mailbox, &uid, 1, &records, &err) != RBD_OK || records->count != 1)
      Die("lookup");
    uint64_t seen = records->records[0].modseq;
    rbd_records_free(&records);
    std::string keyword = name + "-" + std::to_string(i);
    const char* keywords[] = {keyword.c_str()};
    rbd_flag_update update{};
    update.add_keywords = keywords;
    update.add_keyword_count = 1;
    update.unchanged_since = seen;
    uint32_t* conflicts = nullptr;
    size_t nconflicts = 0;
    uint64_t modseq = 0;
    if (rbd_index_update_flags(mailbox, &uid, 1, &update, &conflicts, &nconflicts, &modseq, &err) != RBD_OK)
      Die("update flags");
    Print((nconflicts == 0 ? "ok " : "conflict ") + std::to_string(i));
    rbd_uids_free(&conflicts);
  }
  return 0;
}

int RenameLoop(const std::string& a, const std::string& b, int count) {
  for (int i = 0; i < count; i++) {
    const std::string& from = i % 2 == 0 ? a : b;
    const std::string& to = i % 2 == 0 ? b : a;
    rbd_code r = rbd_rename_mailbox(user, from.c_str(), to.c_str(), '/', &err);
    Print((r == RBD_OK ? "ok " : "err ") + std::to_string(i));
  }
  return 0;
}

int CreateLoop(const std::string& parent, int count, char sep) {
  for (int i = 0; i < count; i++) {
    std::string child = "c" + std::to_string(i);
    uint8_t guid[RBD_GUID_SIZE];
    rbdtest::RandomGuid(guid);
    rbd_code r = rbd_create_mailbox(user, (parent + sep + child).c_str(), guid, 0, "", &err);
    Print((r == RBD_OK ? "ok " : "err ") + child + " " + Hex(guid));
  }
  return 0;
}

int HoldLease(const char* name, uint32_t duration_ms) {
  rbd_lease* lease = nullptr;
  // The time the request left: the OSD started the lease no earlier (its
  // clock is this machine's), so a takeover is at least DURATION after it.
  // The time of the answer could be a few ms after the OSD's start.
  const int64_t requested = rbdtest::NowNs();
  if (rbd_lease_acquire(user, name, duration_ms, &lease, &err) != RBD_OK) Die("acquire lease");
  Print("held " + std::to_string(requested));
  for (;;) pause();
}

int DictInc(rbd_cluster* cluster, const std::string& key, int count) {
  rbd_dict_store* store = nullptr;
  if (rbd_dict_store_open(cluster, std::getenv("RBD_TEST_NS"), nullptr, &store, &err) != RBD_OK)
    Die("open dict");
  const std::string twice = key + ".2";
  int missed_total = 0;
  for (int i = 0; i < count; i++) {
    rbd_dict_change changes[] = {{RBD_DICT_INC, key.c_str(), nullptr, 1, 0, nullptr},
                                 {RBD_DICT_INC, twice.c_str(), nullptr, 2, 0, nullptr}};
    int missed = 0;
    if (rbd_dict_store_commit(store, changes, 2, &missed, &err) != RBD_OK) Die("dict commit");
    missed_total += missed;
  }
  rbd_dict_store_close(&store);
  Print("done " + std::to_string(missed_total));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: rbd_test_worker COMMAND ARGS... (see worker.cc)\n");
    return 2;
  }
  std::vector<std::pair<std::string, std::string>> settings;
  if (const char* extra = std::getenv("RBD_TEST_SETTINGS")) {
    std::string rest = extra;
    while (!rest.empty()) {
      std::string one = rest.substr(0, rest.find(';'));
      rest.erase(0, std::min(rest.size(), one.size() + 1));
      size_t eq = one.find('=');
      if (eq != std::string::npos) settings.emplace_back(one.substr(0, eq), one.substr(eq + 1));
    }
  }
  rbd_config* config = rbdtest::NewConfig(settings);
  rbd_cluster* cluster = nullptr;
  if (rbd_cluster_get(config, &cluster, &err) != RBD_OK) Die("cluster");
  if (argc == 4 && std::strcmp(argv[1], "open-as") == 0) {
    const auto id = static_cast<uid_t>(std::stoul(argv[2]));
    if (setgid(id) != 0 || setuid(id) != 0) Die("setuid");
    rbd_code r = rbd_user_open(cluster, argv[3], nullptr, &user, &err);
    Print(r == RBD_OK ? std::string("ok") : std::string("err ") + rbd_code_name(r) + " " + err.message);
    return 0;
  }
  if (rbd_user_open(cluster, std::getenv("RBD_TEST_NS"), nullptr, &user, &err) != RBD_OK) Die("open user");
  std::string cmd = argv[1];
  std::vector<std::string> a(argv + 2, argv + argc);
  auto need = [&](size_t n) {
    if (a.size() < n) {
      std::fprintf(stderr, "worker: %s needs %zu arguments\n", cmd.c_str(), n);
      std::exit(2);
    }
  };
  int rc = 2;
  if (cmd == "append") {
    need(3);
    rc = Append(Open(a[0].c_str()), std::stoi(a[1]), a[2], a.size() > 3 ? std::stoul(a[3]) : 0,
                a.size() > 4 ? std::stoi(a[4]) : 0, false);
  } else if (cmd == "append-timed") {
    need(3);
    rc = Append(Open(a[0].c_str()), std::stoi(a[1]), "timed", 0, std::stoi(a[2]), true);
  } else if (cmd == "claim-recent") {
    need(2);
    rc = ClaimRecent(Open(a[0].c_str()), std::stoul(a[1]));
  } else if (cmd == "add-flag") {
    need(3);
    rc = AddFlag(Open(a[0].c_str()), static_cast<uint8_t>(std::stoi(a[1])), std::stoul(a[2]));
  } else if (cmd == "keyword-race") {
    need(4);
    rc = KeywordRace(Open(a[0].c_str()), std::stoul(a[1]), std::stoi(a[2]), a[3]);
  } else if (cmd == "rename-loop") {
    need(3);
    rc = RenameLoop(a[0], a[1], std::stoi(a[2]));
  } else if (cmd == "create-loop") {
    need(3);
    rc = CreateLoop(a[0], std::stoi(a[1]), a[2][0]);
  } else if (cmd == "hold-lease") {
    need(2);
    rc = HoldLease(a[0].c_str(), std::stoul(a[1]));
  } else if (cmd == "delete") {
    need(1);
    rbd_code r = rbd_delete_mailbox(user, a[0].c_str(), &err);
    Print(r == RBD_OK ? std::string("deleted") : std::string("err ") + rbd_code_name(r));
    rc = 0;
  } else if (cmd == "check-repair") {
    rbd_problems* problems = nullptr;
    if (rbd_user_check(user, 1, 3600, &problems, &err) != RBD_OK) Die("check");
    for (size_t i = 0; i < problems->count; i++)
      Print(std::string("problem ") + problems->problems[i].detail);
    Print("checked " + std::to_string(problems->count));
    rbd_problems_free(&problems);
    rc = 0;
  } else if (cmd == "dict-inc") {
    need(2);
    rc = DictInc(cluster, a[0], std::stoi(a[1]));
  } else {
    std::fprintf(stderr, "worker: unknown command %s\n", cmd.c_str());
  }
  rbd_user_close(&user);
  rbd_cluster_unref(&cluster);
  rbd_config_free(&config);
  rbd_shutdown();
  return rc;
}
