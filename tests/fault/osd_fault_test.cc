// Fault injection on a 3-OSD cluster (size 3, min_size 2): an OSD SIGKILLed
// in the middle of a stream of appends, and a replica stalled under a flag
// change. Run by scripts/test against a cluster of its own, since it
// restarts daemons.
#include <signal.h>
#include <sys/time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "test_env.h"

namespace rbdtest {
namespace {

using std::chrono::steady_clock;

int ClusterScript(const std::string& args) {
  std::string cmd = std::string(RBD_SOURCE_DIR) + "/scripts/ceph-dev-cluster " + args + " >&2";
  return std::system(cmd.c_str());
}

// The OSDs that hold object `oid` of namespace `ns` in the index pool, the
// primary first (`ceph osd map`).
std::vector<int> ActingSet(const std::string& oid, const std::string& ns) {
  const std::string cmd = "ceph -c " + Env("RBD_TEST_CEPH_CONF") + " -k " + Env("RBD_TEST_ADMIN_KEYRING") +
                          " -n client.admin osd map " + Env("RBD_TEST_INDEX_POOL") + " " + oid + " " + ns +
                          " -f json";
  std::string json;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[512];
    for (size_t n; (n = fread(buf, 1, sizeof(buf), p)) > 0;) json.append(buf, n);
    pclose(p);
  }
  std::vector<int> acting;
  size_t at = json.find("\"acting\":[");
  if (at == std::string::npos) return acting;
  std::istringstream in(json.substr(at + 10));
  for (int id; in >> id;) {
    acting.push_back(id);
    if (in.get() != ',') break;
  }
  at = json.find("\"acting_primary\":");
  if (at != std::string::npos) {
    int primary = std::atoi(json.c_str() + at + 17);
    std::stable_partition(acting.begin(), acting.end(), [&](int id) { return id == primary; });
  }
  return acting;
}

pid_t OsdPid(int id) {
  std::ifstream file(Env("RBD_TEST_CEPH_DIR") + "/run/osd." + std::to_string(id) + ".pid");
  pid_t pid = 0;
  file >> pid;
  return pid;
}

class OsdFaultTest : public UserFixture {
 protected:
  // Reads every record and body: all must be there and intact.
  void ExpectAll(rbd_index* mailbox, const std::map<uint32_t, std::string>& acked, const char* when) {
    rbd_records* holder = nullptr;
    std::vector<rbd_record> records = Records(mailbox, &holder);
    std::map<uint32_t, const rbd_record*> by_uid;
    for (const rbd_record& r : records) by_uid[r.uid] = &r;
    std::vector<rbd_record> wanted;
    for (const auto& [uid, guid] : acked) {
      auto it = by_uid.find(uid);
      if (it == by_uid.end()) {
        ADD_FAILURE() << when << ": acknowledged UID " << uid << " is missing";
        continue;
      }
      EXPECT_EQ(Hex(it->second->guid), guid) << when << ": UID " << uid;
      wanted.push_back(*it->second);
    }
    std::vector<rbd_buffer*> bodies(wanted.size());
    EXPECT_EQ(rbd_index_read_bodies(mailbox, wanted.data(), wanted.size(), bodies.data(), &err_), RBD_OK)
        << when << ": " << err_.message;
    for (size_t i = 0; i < wanted.size(); i++) {
      ASSERT_NE(bodies[i], nullptr) << when << ": body of UID " << wanted[i].uid;
      std::string body(static_cast<char*>(bodies[i]->data), bodies[i]->size);
      EXPECT_NE(body.find("Subject: f-"), std::string::npos) << when << ": UID " << wanted[i].uid;
      rbd_buffer_free(&bodies[i]);
    }
    rbd_records_free(&holder);
  }
};

TEST_F(OsdFaultTest, KilledOsdLosesNoAcknowledgedAppend) {
  const std::string dir = Env("RBD_TEST_CEPH_DIR");
  const std::string mbox = CreateMailbox("INBOX");
  rbd_index* mailbox = OpenMailbox(mbox);
  constexpr int kAppends = 400;
  // 6 KiB bodies, so half the stream is inline and half goes to m.<guid>.
  Worker writer(ns_, {"append", mbox, std::to_string(kAppends), "f", "6000", "10"});
  std::map<uint32_t, std::string> acked;
  auto read_acks = [&](size_t until) {
    std::string line;
    while (acked.size() < until && writer.ReadLine(&line, std::chrono::seconds(60))) {
      std::istringstream in(line);
      uint32_t uid;
      std::string guid;
      in >> uid >> guid;
      acked[uid] = guid;
    }
  };
  read_acks(60);
  ASSERT_EQ(acked.size(), 60u);

  ASSERT_EQ(ClusterScript("kill-osd " + dir + " 1"), 0);
  auto killed = steady_clock::now();
  read_acks(120);
  std::printf("[ info ] appends continued with osd.1 down: %zu acknowledged %.1f s after the kill\n",
              acked.size(), std::chrono::duration<double>(steady_clock::now() - killed).count());
  ExpectAll(mailbox, acked, "osd.1 down");

  ASSERT_EQ(ClusterScript("start-osd " + dir + " 1"), 0);
  read_acks(kAppends);
  EXPECT_EQ(writer.Wait(), 0);
  ASSERT_EQ(acked.size(), size_t{kAppends});
  auto restarted = steady_clock::now();
  ASSERT_EQ(ClusterScript("wait-clean " + dir + " 120"), 0) << "cluster did not return to active+clean";
  std::printf("[ info ] active+clean %.1f s after the stream ended\n",
              std::chrono::duration<double>(steady_clock::now() - restarted).count());
  ExpectAll(mailbox, acked, "after recovery");
  rbd_index_status st{};
  ASSERT_EQ(rbd_index_get_status(mailbox, &st, &err_), RBD_OK);
  EXPECT_EQ(st.messages, uint32_t{kAppends});
  EXPECT_EQ(st.uidnext, uint32_t{kAppends + 1});
  rbd_index_close(&mailbox);
}

// How a production cluster applies a write after its caller gave up: the
// primary ran the op, but a replica does not answer, so the op commits only
// once the replica is back (or marked down and the PG peered without it),
// and the read-back waits behind it. The caller hears "unknown" (the client
// NO [UNAVAILABLE]); the next call on the mailbox finds the change applied
// and restores the flags.
TEST_F(OsdFaultTest, AFlagChangeAnsweredFailedThatTookEffectIsUndone) {
  const std::string mbox = CreateMailbox("INBOX");
  rbd_index* reader = OpenMailbox(mbox);
  rbd_new_message msg{};
  RandomGuid(msg.guid);
  const std::string body = "Subject: f-flags\r\n\r\nbody\r\n";
  msg.body = body.data();
  msg.body_size = msg.physical_size = msg.virtual_size = body.size();
  msg.flags = RBD_FLAG_SEEN;
  uint32_t uid = 0;
  ASSERT_EQ(rbd_index_append(reader, &msg, 1, &uid, &err_), RBD_OK) << err_.message;

  const std::vector<int> acting = ActingSet("i." + mbox, ns_);
  ASSERT_EQ(acting.size(), 3u) << "acting set of i." << mbox;
  const pid_t replica = OsdPid(acting[1]);
  ASSERT_GT(replica, 0);

  struct timeval started;
  gettimeofday(&started, nullptr);
  rbd_user* impatient_user = nullptr;
  rbd_index* impatient = OpenWithClock(mbox, &started, &impatient_user);
  ASSERT_NE(impatient, nullptr);
  rbd_flag_update update{};
  update.add_flags = RBD_FLAG_FLAGGED;
  update.remove_flags = RBD_FLAG_SEEN;
  uint32_t* conflicts = nullptr;
  size_t conflict_count = 0;
  uint64_t modseq = 0;
  // Stalled for less than osd_heartbeat_grace: the replica is never marked
  // down, so nothing but its return commits the op.
  ASSERT_EQ(kill(replica, SIGSTOP), 0);
  gettimeofday(&started, nullptr);
  started.tv_sec -= 18;  // 2 s left of rbd_op_timeout 20s
  rbd_code rc =
      rbd_index_update_flags(impatient, &uid, 1, &update, &conflicts, &conflict_count, &modseq, &err_);
  kill(replica, SIGCONT);
  ASSERT_EQ(rc, RBD_ERR_UNKNOWN) << err_.message;

  rbd_records* holder = nullptr;
  std::vector<rbd_record> records;
  for (int i = 0; i < 100; i++) {
    records = Records(reader, &holder);
    if (records.size() == 1 && (records[0].flags & RBD_FLAG_FLAGGED) != 0) break;
    rbd_records_free(&holder);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_NE(holder, nullptr) << "the flag change was never applied: nothing to undo";
  const uint64_t applied_modseq = records[0].modseq;
  rbd_records_free(&holder);

  gettimeofday(&started, nullptr);  // the session's next command
  rbd_changes* changes = nullptr;
  ASSERT_EQ(rbd_index_changes(impatient, applied_modseq, &changes, &err_), RBD_OK) << err_.message;
  EXPECT_EQ(changes->op_count, 1u) << "the undo";
  rbd_changes_free(&changes);
  records = Records(reader, &holder);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].flags, RBD_FLAG_SEEN) << "flags restored";
  EXPECT_GT(records[0].modseq, applied_modseq) << "the undo is a change of its own";
  rbd_records_free(&holder);
  rbd_index_status st{};
  ASSERT_EQ(rbd_index_get_status(reader, &st, &err_), RBD_OK) << err_.message;
  EXPECT_EQ(st.seen_messages, 1u) << "the undo counts the \\Seen it restores";
  rbd_settled settled[2];
  ASSERT_EQ(rbd_user_drain_settled(impatient_user, settled, 2), 1u);
  EXPECT_EQ(settled[0].outcome, RBD_SETTLED_UNDONE);
  EXPECT_EQ(settled[0].modseq, applied_modseq);
  rbd_index_close(&impatient);
  rbd_user_close(&impatient_user);
  rbd_index_close(&reader);
}

}  // namespace
}  // namespace rbdtest
