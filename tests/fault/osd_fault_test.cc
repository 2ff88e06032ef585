// Fault injection on a 3-OSD cluster (size 3, min_size 2): an OSD SIGKILLed
// in the middle of a stream of appends. Run by scripts/test against a
// cluster of its own, since it restarts daemons.
#include <chrono>
#include <cstdlib>
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

}  // namespace
}  // namespace rbdtest
