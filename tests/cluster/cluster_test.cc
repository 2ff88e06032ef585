// The storage core against a real Ceph cluster (scripts/ceph-dev-cluster).
// Every test runs in a fresh RADOS namespace.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <list>
#include <map>
#include <rados/librados.hpp>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>

#include "keys.h"
#include "record_codec.h"
#include "test_env.h"

namespace rbdtest {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

class MailboxIndexTest : public UserFixture {
 protected:
  // Writes `body` as body object `guid` through the streaming writer, in
  // pieces of `piece` bytes.
  void StreamBody(const uint8_t* guid, const std::string& body, size_t piece) {
    rbd_body_writer* writer = nullptr;
    ASSERT_EQ(rbd_body_writer_open(user_, guid, &writer, &err_), RBD_OK);
    for (size_t off = 0; off < body.size(); off += piece)
      ASSERT_EQ(rbd_body_writer_write(writer, body.data() + off, std::min(piece, body.size() - off), &err_),
                RBD_OK);
    ASSERT_EQ(rbd_body_writer_finish(writer, nullptr, &err_), RBD_OK) << err_.message;
    rbd_body_writer_free(&writer);
  }

  // Appends one record naming the stored body `guid` of `size` bytes;
  // `referenced`: the append owns the writer's reference. Its UID.
  uint32_t AppendStored(rbd_index* mailbox, const uint8_t* guid, uint64_t size, bool referenced) {
    rbd_new_message msg{};
    std::memcpy(msg.guid, guid, RBD_GUID_SIZE);
    msg.stored = 1;
    msg.referenced = referenced ? 1 : 0;
    msg.physical_size = size;
    uint32_t uid = 0;
    EXPECT_EQ(rbd_index_append(mailbox, &msg, 1, &uid, &err_), RBD_OK) << err_.message;
    return uid;
  }

  // A new message of `body` (which must outlive it) with a random GUID.
  static rbd_new_message NewMessage(const std::string& body) {
    rbd_new_message msg{};
    RandomGuid(msg.guid);
    msg.body = body.data();
    msg.body_size = msg.physical_size = msg.virtual_size = body.size();
    return msg;
  }

  // Polls `reader` for up to 10 s until it counts `messages`; the count
  // last seen.
  uint32_t WaitForMessages(rbd_index* reader, uint32_t messages) {
    rbd_index_status seen{};
    for (int i = 0; i < 100; i++) {
      EXPECT_EQ(rbd_index_get_status(reader, &seen, &err_), RBD_OK) << err_.message;
      if (seen.messages == messages) break;
      std::this_thread::sleep_for(milliseconds(100));
    }
    return seen.messages;
  }

  // Mailbox `mbox` through a user handle of its own (*user_r), opened in a
  // command that began now (*started: move it on to begin the next one),
  // and the state the open read.
  rbd_index* OpenInCommand(const std::string& mbox, struct timeval* started, rbd_user** user_r,
                           rbd_index_status* status_r) {
    gettimeofday(started, nullptr);
    rbd_index* m = OpenWithClock(mbox, started, user_r);
    if (m != nullptr) rbd_index_last_status(m, status_r);
    return m;
  }

  // INBOX with three messages appended through *writer_r, and another
  // session's handle on it opened in a command (OpenInCommand).
  rbd_index* ThreeMessagesAndASession(rbd_index** writer_r, struct timeval* started, rbd_user** user_r,
                                      rbd_index_status* status_r) {
    const std::string mbox = CreateMailbox("INBOX");
    *writer_r = OpenMailbox(mbox);
    for (int i = 0; i < 3; i++) AppendOne(*writer_r, "msg " + std::to_string(i));
    return OpenInCommand(mbox, started, user_r, status_r);
  }

  uint32_t AppendOne(rbd_index* mailbox, const std::string& body, uint8_t flags = 0,
                     uint8_t guid_out[RBD_GUID_SIZE] = nullptr) {
    rbd_new_message msg{};
    RandomGuid(msg.guid);
    if (guid_out != nullptr) std::memcpy(guid_out, msg.guid, RBD_GUID_SIZE);
    msg.body = body.data();
    msg.body_size = body.size();
    msg.flags = flags;
    msg.received_date = 1700000000;
    msg.physical_size = body.size();
    msg.virtual_size = body.size() + 10;
    uint32_t uid = 0;
    EXPECT_EQ(rbd_index_append(mailbox, &msg, 1, &uid, &err_), RBD_OK) << err_.message;
    return uid;
  }

  // Adds and removes system flags of one message; the conflicts are dropped.
  rbd_code UpdateFlags(rbd_index* mailbox, uint32_t uid, uint8_t add, uint8_t remove) {
    rbd_flag_update update{};
    update.add_flags = add;
    update.remove_flags = remove;
    uint32_t* conflicts = nullptr;
    size_t nconflicts = 0;
    uint64_t modseq = 0;
    rbd_code code =
        rbd_index_update_flags(mailbox, &uid, 1, &update, &conflicts, &nconflicts, &modseq, &err_);
    rbd_uids_free(&conflicts);
    return code;
  }

  std::string ReadBody(rbd_index* mailbox, uint32_t uid, uint64_t offset = 0, uint64_t length = 0) {
    rbd_records* recs = nullptr;
    EXPECT_EQ(rbd_index_lookup_records(mailbox, &uid, 1, &recs, &err_), RBD_OK);
    if (recs == nullptr || recs->count != 1) return "<missing>";
    std::string out = ReadRecordBody(mailbox, recs->records[0], offset, length);
    rbd_records_free(&recs);
    return out;
  }

  // The body of a record as read earlier (a session's view keeps it).
  std::string ReadRecordBody(rbd_index* mailbox, const rbd_record& rec, uint64_t offset = 0,
                             uint64_t length = 0) {
    rbd_buffer* buf = nullptr;
    rbd_code r = rbd_index_read_body(mailbox, &rec, offset, length, &buf, &err_);
    if (r != RBD_OK) return std::string("<") + rbd_code_name(r) + ">";
    std::string out(static_cast<char*>(buf->data), buf->size);
    rbd_buffer_free(&buf);
    return out;
  }

  librados::IoCtx AdminIo(const std::string& pool) {
    EXPECT_EQ(rados_.init2("client.admin", "ceph", 0), 0);
    EXPECT_EQ(rados_.conf_read_file(Env("RBD_TEST_CEPH_CONF").c_str()), 0);
    EXPECT_EQ(rados_.connect(), 0);
    librados::IoCtx io;
    EXPECT_EQ(rados_.ioctx_create(pool.c_str(), io), 0);
    io.set_namespace(ns_);
    return io;
  }

  // The index pool, as client.admin, in the test's namespace.
  librados::IoCtx IndexIo() {
    librados::IoCtx index_io;
    AdminIo(Env("RBD_TEST_POOL"));
    EXPECT_EQ(rados_.ioctx_create(Env("RBD_TEST_INDEX_POOL").c_str(), index_io), 0);
    index_io.set_namespace(ns_);
    return index_io;
  }

  // Expects check to find exactly one problem, of `kind`, whose detail
  // says `says`, and --repair to repair it; returns its body GUID (hex).
  std::string ExpectOneProblemRepaired(rbd_problem_kind kind, const std::string& says) {
    std::string body;
    for (int repair = 0; repair <= 1; repair++) {
      rbd_problems* problems = nullptr;
      if (rbd_user_check(user_, repair, 0, &problems, &err_) != RBD_OK) {
        ADD_FAILURE() << "check: " << err_.message;
        return body;
      }
      EXPECT_EQ(problems->count, 1u);
      if (problems->count == 1) {
        const rbd_problem& p = problems->problems[0];
        EXPECT_EQ(p.kind, kind);
        EXPECT_NE(std::string(p.detail).find(says), std::string::npos) << p.detail;
        EXPECT_EQ(p.repaired != 0, repair == 1) << p.detail;
        body = Hex(p.body_guid);
      }
      rbd_problems_free(&problems);
    }
    return body;
  }

  // Expects check (no repair) to find no problem.
  void ExpectCheckClean(uint32_t grace_seconds = 0) {
    rbd_problems* problems = nullptr;
    ASSERT_EQ(rbd_user_check(user_, 0, grace_seconds, &problems, &err_), RBD_OK) << err_.message;
    EXPECT_EQ(problems->count, 0u) << (problems->count ? problems->problems[0].detail : "");
    rbd_problems_free(&problems);
  }

  // Rewrites the state of mailbox `guid_hex` as `edit` says, behind the
  // core's back (a fault, or counters a repair wrote from a stale listing).
  void EditState(const std::string& guid_hex, const std::function<void(rbd::MailboxState*)>& edit) {
    librados::IoCtx index_io = IndexIo();
    librados::bufferlist raw, edited;
    ASSERT_GT(index_io.getxattr("i." + guid_hex, rbd::keys::kStateAttr, raw), 0);
    rbd::MailboxState state;
    ASSERT_TRUE(rbd::Decode(raw.to_str(), &state).ok());
    edit(&state);
    edited.append(rbd::Encode(state));
    ASSERT_EQ(index_io.setxattr("i." + guid_hex, rbd::keys::kStateAttr, edited), 0);
  }

  void TearDown() override {
    UserFixture::TearDown();
    rados_.shutdown();
  }

  librados::Rados rados_;
};

std::string Big(size_t size, char seed) {
  std::string s(size, ' ');
  for (size_t i = 0; i < size; i++) s[i] = static_cast<char>('a' + (i * 7 + seed) % 26);
  return s;
}

TEST_F(MailboxIndexTest, ConcurrentAppendsGetUniqueIncreasingUids) {
  const std::string mbox = CreateMailbox("INBOX");
  constexpr int kWorkers = 8, kEach = 500;
  std::vector<std::unique_ptr<Worker>> workers;
  auto start = steady_clock::now();
  for (int w = 0; w < kWorkers; w++)
    workers.push_back(std::make_unique<Worker>(
        ns_, std::vector<std::string>{"append", mbox, std::to_string(kEach), std::to_string(w)}));
  std::map<uint32_t, std::string> uid_to_guid;
  for (auto& w : workers) {
    uint32_t last = 0;
    for (const std::string& line : w->ReadAll()) {
      std::istringstream in(line);
      uint32_t uid;
      std::string guid;
      in >> uid >> guid;
      EXPECT_GT(uid, last) << "UIDs of one writer must increase in commit order";
      last = uid;
      EXPECT_TRUE(uid_to_guid.emplace(uid, guid).second) << "UID " << uid << " handed out twice";
    }
    EXPECT_EQ(w->Wait(), 0);
  }
  double secs = std::chrono::duration<double>(steady_clock::now() - start).count();
  std::printf("[ info ] %d appends from %d processes in %.1f s (%.0f/s)\n", kWorkers * kEach, kWorkers, secs,
              kWorkers * kEach / secs);
  ASSERT_EQ(uid_to_guid.size(), size_t{kWorkers * kEach});

  rbd_index* mailbox = OpenMailbox(mbox);
  rbd_index_status st{};
  ASSERT_EQ(rbd_index_get_status(mailbox, &st, &err_), RBD_OK);
  EXPECT_EQ(st.messages, uint32_t{kWorkers * kEach});
  EXPECT_EQ(st.uidnext, uint32_t{kWorkers * kEach + 1});
  // One MODSEQ per committed append, starting from 1 at creation.
  EXPECT_EQ(st.highest_modseq, uint64_t{kWorkers * kEach + 1});

  rbd_records* holder = nullptr;
  auto records = Records(mailbox, &holder);
  ASSERT_EQ(records.size(), uid_to_guid.size());
  uint64_t total_size = 0, last_modseq = 0;
  std::set<std::string> guids;
  for (size_t i = 0; i < records.size(); i++) {
    EXPECT_EQ(records[i].uid, i + 1);
    EXPECT_EQ(Hex(records[i].guid), uid_to_guid[records[i].uid]);
    EXPECT_GT(records[i].modseq, last_modseq) << "MODSEQ must grow with UID";
    last_modseq = records[i].modseq;
    guids.insert(Hex(records[i].guid));
    total_size += records[i].physical_size;
  }
  EXPECT_EQ(guids.size(), records.size()) << "every message present exactly once";
  EXPECT_EQ(st.physical_size, total_size);
  rbd_records_free(&holder);
  rbd_index_close(&mailbox);
}

// RFC 3501 \Recent across nodes: sessions on any node claim while others
// append; every UID is claimed exactly once, and only UIDs that existed.
TEST_F(MailboxIndexTest, ConcurrentRecentClaimsPartitionTheUids) {
  const std::string mbox = CreateMailbox("INBOX");
  constexpr int kClaimers = 4, kAppends = 200;
  const uint32_t until = kAppends + 1;
  Worker appender(ns_, {"append", mbox, std::to_string(kAppends), "a"});
  std::vector<std::unique_ptr<Worker>> claimers;
  for (int w = 0; w < kClaimers; w++)
    claimers.push_back(
        std::make_unique<Worker>(ns_, std::vector<std::string>{"claim-recent", mbox, std::to_string(until)}));
  EXPECT_EQ(appender.ReadAll().size(), size_t{kAppends});
  EXPECT_EQ(appender.Wait(), 0);
  std::map<uint32_t, int> claimed_by;
  int claimers_with_claims = 0;
  for (int w = 0; w < kClaimers; w++) {
    std::vector<std::string> lines = claimers[w]->ReadAll();
    ASSERT_FALSE(lines.empty());
    EXPECT_EQ(lines.back(), "done");
    lines.pop_back();
    claimers_with_claims += lines.empty() ? 0 : 1;
    uint32_t last_end = 0;
    for (const std::string& line : lines) {
      std::istringstream in(line);
      uint32_t first = 0, end = 0;
      in >> first >> end;
      EXPECT_LT(first, end) << line;
      EXPECT_GE(first, last_end) << "one claimer's claims must grow";
      last_end = end;
      for (uint32_t uid = first; uid < end; uid++) {
        auto [it, fresh] = claimed_by.emplace(uid, w);
        EXPECT_TRUE(fresh) << "UID " << uid << " claimed by " << it->second << " and " << w;
      }
    }
    EXPECT_EQ(claimers[w]->Wait(), 0);
  }
  std::printf("[ info ] %d of %d claimers claimed something\n", claimers_with_claims, kClaimers);
  ASSERT_EQ(claimed_by.size(), size_t{kAppends});
  EXPECT_EQ(claimed_by.begin()->first, 1u);
  EXPECT_EQ(claimed_by.rbegin()->first, uint32_t{kAppends});

  rbd_index* mailbox = OpenMailbox(mbox);
  rbd_index_status st{};
  ASSERT_EQ(rbd_index_get_status(mailbox, &st, &err_), RBD_OK);
  EXPECT_EQ(st.first_recent_uid, until);
  // Nothing new: the claim is empty and writes nothing (HIGHESTMODSEQ and
  // the state stay).
  uint32_t first = 0, end = 0;
  ASSERT_EQ(rbd_index_claim_recent(mailbox, st.uidnext, &first, &end, &err_), RBD_OK);
  EXPECT_EQ(first, until);
  EXPECT_EQ(end, until);
  // A claim never reaches past what the caller has seen, nor past UIDNEXT.
  AppendOne(mailbox, "one");
  AppendOne(mailbox, "two");
  ASSERT_EQ(rbd_index_claim_recent(mailbox, until + 1, &first, &end, &err_), RBD_OK);
  EXPECT_EQ(first, until);
  EXPECT_EQ(end, until + 1);
  ASSERT_EQ(rbd_index_claim_recent(mailbox, until + 100, &first, &end, &err_), RBD_OK);
  EXPECT_EQ(first, until + 1);
  EXPECT_EQ(end, until + 2);
  rbd_index_status after{};
  ASSERT_EQ(rbd_index_get_status(mailbox, &after, &err_), RBD_OK);
  EXPECT_EQ(after.first_recent_uid, until + 2);
  EXPECT_EQ(after.highest_modseq, st.highest_modseq + 2) << "claims take no MODSEQ";
  // A handle whose last state is older than the caller's UIDNEXT (another
  // handle appended since) still claims what is there.
  rbd_index* other = OpenMailbox(mbox);
  AppendOne(other, "three");
  ASSERT_EQ(rbd_index_claim_recent(mailbox, until + 3, &first, &end, &err_), RBD_OK);
  EXPECT_EQ(first, until + 2);
  EXPECT_EQ(end, until + 3);
  rbd_index_close(&other);
  rbd_index_close(&mailbox);
}

// A claim whose write timed out must not take UIDs that another claim from
// the same state took (fault soak, seed 4242: a message \Recent in two
// sessions). Both claims write the same bytes; with the OSD stopped, the
// patient one's write reaches it first and is applied, the impatient one's
// fails its guard after its session gave up waiting, and the read-back
// finds the bytes it would have written.
TEST_F(MailboxIndexTest, AClaimWhoseOutcomeIsUnknownTakesNothing) {
  const std::string mbox = CreateMailbox("INBOX");
  rbd_index* patient = OpenMailbox(mbox);
  AppendOne(patient, "one");
  AppendOne(patient, "two");
  rbd_index_status st{};
  ASSERT_EQ(rbd_index_get_status(patient, &st, &err_), RBD_OK);
  // The same connection (so the OSD sees the two writes in the order they
  // were sent), and a command 2 s from its deadline.
  struct timeval started;
  gettimeofday(&started, nullptr);
  rbd_user* impatient_user = nullptr;
  rbd_index* impatient = OpenWithClock(mbox, &started, &impatient_user);
  ASSERT_NE(impatient, nullptr);
  rbd_index_status seen{};
  ASSERT_EQ(rbd_index_get_status(impatient, &seen, &err_), RBD_OK);

  uint32_t patient_first = 0, patient_end = 0, first = 0, end = 0;
  rbd_error patient_err{};
  rbd_code patient_rc = RBD_OK;
  {
    StoppedOsds osds;
    std::thread patient_claim([&] {
      patient_rc = rbd_index_claim_recent(patient, st.uidnext, &patient_first, &patient_end, &patient_err);
    });
    std::this_thread::sleep_for(milliseconds(300));
    gettimeofday(&started, nullptr);
    started.tv_sec -= 18;  // of rbd_op_timeout 20s
    std::thread resume([&] {
      std::this_thread::sleep_for(milliseconds(1500));
      osds.Resume();
    });
    EXPECT_EQ(rbd_index_claim_recent(impatient, st.uidnext, &first, &end, &err_), RBD_OK) << err_.message;
    resume.join();
    patient_claim.join();
  }
  ASSERT_EQ(patient_rc, RBD_OK) << patient_err.message;
  EXPECT_EQ(patient_first, 1u);
  EXPECT_EQ(patient_end, 3u);
  EXPECT_EQ(first, end) << "the impatient claim took [" << first << ", " << end << ") too";
  rbd_index_status after{};
  ASSERT_EQ(rbd_index_get_status(patient, &after, &err_), RBD_OK);
  EXPECT_EQ(after.first_recent_uid, 3u);
  rbd_index_close(&impatient);
  rbd_user_close(&impatient_user);
  rbd_index_close(&patient);
}

// A write the caller was told failed can still be applied: the OSD runs
// what it held when it resumes (fault soak, seed 1206: a STORE answered
// NO [UNAVAILABLE] whose flag then showed). The next call on that mailbox
// finds it applied and undoes it, so that the failure becomes true.
TEST_F(MailboxIndexTest, AnAppendAnsweredFailedThatTookEffectIsExpungedByTheNextCall) {
  const std::string mbox = CreateMailbox("INBOX");
  rbd_index* reader = OpenMailbox(mbox);
  AppendOne(reader, "before");
  struct timeval started;
  gettimeofday(&started, nullptr);
  rbd_user* impatient_user = nullptr;
  rbd_index* impatient = OpenWithClock(mbox, &started, &impatient_user);
  ASSERT_NE(impatient, nullptr);
  rbd_index_status before{};
  ASSERT_EQ(rbd_index_get_status(impatient, &before, &err_), RBD_OK);  // so the append needs no read

  const std::string body = "appended while the OSD was stopped";
  rbd_new_message msg = NewMessage(body);
  uint32_t uid = 0;
  {
    StoppedOsds osds;
    started.tv_sec -= 18;  // 2 s left of rbd_op_timeout 20s
    EXPECT_EQ(rbd_index_append(impatient, &msg, 1, &uid, &err_), RBD_ERR_UNKNOWN) << err_.message;
  }
  ASSERT_EQ(WaitForMessages(reader, 2), 2u) << "the OSD did not apply the append it held: nothing to undo";
  rbd_index_status seen{};

  gettimeofday(&started, nullptr);  // the session's next command
  rbd_changes* changes = nullptr;
  ASSERT_EQ(rbd_index_changes(impatient, before.highest_modseq, &changes, &err_), RBD_OK) << err_.message;
  ASSERT_EQ(changes->op_count, 2u) << "the append and its undo";
  EXPECT_EQ(changes->ops[0].modseq, before.highest_modseq + 1);
  EXPECT_EQ(changes->ops[1].expunged_count, 1u);
  EXPECT_EQ(changes->status.messages, 1u);
  rbd_changes_free(&changes);
  rbd_settled settled[2];
  ASSERT_EQ(rbd_user_drain_settled(impatient_user, settled, 2), 1u);
  EXPECT_EQ(settled[0].outcome, RBD_SETTLED_UNDONE);
  EXPECT_EQ(settled[0].modseq, before.highest_modseq + 1);
  EXPECT_EQ(Hex(settled[0].mailbox_guid), mbox);
  rbd_user_settle(impatient_user);
  EXPECT_EQ(rbd_user_drain_settled(impatient_user, settled, 2), 0u) << "settled twice";
  ASSERT_EQ(rbd_index_get_status(reader, &seen, &err_), RBD_OK);
  EXPECT_EQ(seen.messages, 1u);
  rbd_index_close(&impatient);
  rbd_user_close(&impatient_user);
  rbd_index_close(&reader);
}

// A session that ends while the cluster still cannot say whether its
// append took effect hands the change over (rbd_user_take_unsettled); the
// next process of the user adds it back and undoes the append once the
// cluster answers.
TEST_F(MailboxIndexTest, AChangeKeptAtTheEndOfASessionIsSettledByTheNextOne) {
  const std::string mbox = CreateMailbox("INBOX");
  rbd_index* reader = OpenMailbox(mbox);
  AppendOne(reader, "before");
  struct timeval started;
  gettimeofday(&started, nullptr);
  rbd_user* first_user = nullptr;
  rbd_index* first = OpenWithClock(mbox, &started, &first_user);
  ASSERT_NE(first, nullptr);
  rbd_index_status before{};
  ASSERT_EQ(rbd_index_get_status(first, &before, &err_), RBD_OK);

  const std::string body = "appended as the session ended";
  rbd_new_message msg = NewMessage(body);
  uint32_t uid = 0;
  rbd_buffer* kept = nullptr;
  rbd_settled settled[2];
  {
    StoppedOsds osds;
    started.tv_sec -= 18;  // 2 s left of rbd_op_timeout 20s
    EXPECT_EQ(rbd_index_append(first, &msg, 1, &uid, &err_), RBD_ERR_UNKNOWN) << err_.message;
    rbd_user_settle(first_user);  // reads nothing: the last op timed out
    rbd_user_take_unsettled(first_user, &kept);
    ASSERT_NE(kept, nullptr);
    ASSERT_EQ(rbd_user_drain_settled(first_user, settled, 2), 1u);
    EXPECT_EQ(settled[0].outcome, RBD_SETTLED_KEPT);
  }
  rbd_index_close(&first);
  rbd_user_close(&first_user);
  ASSERT_EQ(WaitForMessages(reader, 2), 2u) << "the OSD did not apply the append it held: nothing to undo";
  rbd_index_status seen{};

  gettimeofday(&started, nullptr);
  rbd_user* next_user = nullptr;
  rbd_index* next = OpenWithClock(mbox, &started, &next_user);
  ASSERT_NE(next, nullptr);
  ASSERT_EQ(rbd_user_add_unsettled(next_user, kept->data, kept->size, &err_), RBD_OK) << err_.message;
  rbd_buffer_free(&kept);
  rbd_user_settle(next_user);
  ASSERT_EQ(rbd_user_drain_settled(next_user, settled, 2), 1u);
  EXPECT_EQ(settled[0].outcome, RBD_SETTLED_UNDONE);
  EXPECT_EQ(settled[0].modseq, before.highest_modseq + 1);
  ASSERT_EQ(rbd_index_get_status(reader, &seen, &err_), RBD_OK);
  EXPECT_EQ(seen.messages, 1u);
  rbd_user_take_unsettled(next_user, &kept);
  EXPECT_EQ(kept, nullptr) << "settled, yet kept again";
  EXPECT_EQ(rbd_user_add_unsettled(next_user, "garbage", 7, &err_), RBD_ERR_CORRUPT);
  rbd_index_close(&next);
  rbd_user_close(&next_user);
  rbd_index_close(&reader);
}

// A command whose time ran out (an earlier op of it waited to the deadline)
// sends no more ops: a write it did not send cannot have taken effect, so
// it is answered "unavailable", not "unknown", and leaves nothing to settle.
TEST_F(MailboxIndexTest, AWriteOfACommandOutOfTimeIsNotSentAndNeedsNoSettling) {
  const std::string mbox = CreateMailbox("INBOX");
  struct timeval started;
  gettimeofday(&started, nullptr);
  rbd_user* late_user = nullptr;
  rbd_index* late = OpenWithClock(mbox, &started, &late_user);
  ASSERT_NE(late, nullptr);
  rbd_index_status before{};
  ASSERT_EQ(rbd_index_get_status(late, &before, &err_), RBD_OK);

  const std::string body = "never sent";
  rbd_new_message msg = NewMessage(body);
  uint32_t uid = 0;
  {
    // Were the write sent, no read-back could settle it while the OSD is
    // stopped: it would be kept as unknown.
    StoppedOsds osds;
    started.tv_sec -= 21;  // rbd_op_timeout is 20s
    EXPECT_EQ(rbd_index_append(late, &msg, 1, &uid, &err_), RBD_ERR_UNAVAILABLE) << err_.message;
  }

  gettimeofday(&started, nullptr);  // the session's next command
  rbd_index_status after{};
  ASSERT_EQ(rbd_index_get_status(late, &after, &err_), RBD_OK) << err_.message;
  EXPECT_EQ(after.messages, before.messages);
  EXPECT_EQ(after.highest_modseq, before.highest_modseq);
  rbd_user_settle(late_user);
  rbd_settled settled[1];
  EXPECT_EQ(rbd_user_drain_settled(late_user, settled, 1), 0u) << "an op never sent was kept to settle";
  rbd_index_close(&late);
  rbd_user_close(&late_user);
}

// Quota subtracts what a session expunged: of two handles expunging the
// same message, exactly one is told it removed it (the second's guarded op
// is retried against the first's state).
TEST_F(MailboxIndexTest, OverlappingExpungesReportEachMessageOnce) {
  const std::string mbox = CreateMailbox("INBOX");
  rbd_index* first = OpenMailbox(mbox);
  rbd_index* second = OpenMailbox(mbox);
  for (int i = 0; i < 3; i++) AppendOne(first, "msg " + std::to_string(i));
  rbd_index_status st{};
  ASSERT_EQ(rbd_index_get_status(second, &st, &err_), RBD_OK);  // state before the expunge

  const uint32_t one_two[] = {1, 2}, two_three_four[] = {2, 3, 4};
  uint32_t removed[3] = {};
  size_t n = 0;
  ASSERT_EQ(rbd_index_expunge(first, one_two, 2, removed, &n, &err_), RBD_OK) << err_.message;
  EXPECT_EQ(std::vector<uint32_t>(removed, removed + n), (std::vector<uint32_t>{1, 2}));
  ASSERT_EQ(rbd_index_expunge(second, two_three_four, 3, removed, &n, &err_), RBD_OK) << err_.message;
  EXPECT_EQ(std::vector<uint32_t>(removed, removed + n), (std::vector<uint32_t>{3}));
  ASSERT_EQ(rbd_index_expunge(first, one_two, 2, removed, &n, &err_), RBD_OK) << err_.message;
  EXPECT_EQ(n, 0u);
  rbd_index_close(&first);
  rbd_index_close(&second);
}

TEST_F(MailboxIndexTest, RacingFlagUpdatesLoseNothing) {
  const std::string mbox = CreateMailbox("INBOX");
  rbd_index* mailbox = OpenMailbox(mbox);
  constexpr uint32_t kMessages = 60;
  for (uint32_t i = 0; i < kMessages; i++) AppendOne(mailbox, "m" + std::to_string(i));
  Worker seen(ns_, {"add-flag", mbox, std::to_string(RBD_FLAG_SEEN), std::to_string(kMessages)});
  Worker flagged(ns_, {"add-flag", mbox, std::to_string(RBD_FLAG_FLAGGED), std::to_string(kMessages)});
  EXPECT_EQ(seen.ReadAll(), std::vector<std::string>{"done"});
  EXPECT_EQ(flagged.ReadAll(), std::vector<std::string>{"done"});
  EXPECT_EQ(seen.Wait(), 0);
  EXPECT_EQ(flagged.Wait(), 0);
  rbd_records* holder = nullptr;
  for (const rbd_record& r : Records(mailbox, &holder))
    EXPECT_EQ(r.flags, RBD_FLAG_SEEN | RBD_FLAG_FLAGGED) << "UID " << r.uid;
  rbd_records_free(&holder);
  rbd_index_close(&mailbox);
}

TEST_F(MailboxIndexTest, UnchangedSinceConflictsAreReportedNotOverwritten) {
  const std::string mbox = CreateMailbox("INBOX");
  rbd_index* mailbox = OpenMailbox(mbox);
  AppendOne(mailbox, "contended");
  constexpr int kEach = 150;
  Worker a(ns_, {"keyword-race", mbox, "1", std::to_string(kEach), "a"});
  Worker b(ns_, {"keyword-race", mbox, "1", std::to_string(kEach), "b"});
  std::set<std::string> applied;
  int conflicts = 0;
  for (auto* w : {&a, &b}) {
    const std::string name = w == &a ? "a" : "b";
    for (const std::string& line : w->ReadAll()) {
      std::istringstream in(line);
      std::string result, i;
      in >> result >> i;
      if (result == "ok") applied.insert(name + "-" + i);
      if (result == "conflict") conflicts++;
    }
    EXPECT_EQ(w->Wait(), 0);
  }
  // The keywords on the message are exactly the updates reported applied:
  // none lost, none of the conflicting ones written.
  rbd_records* holder = nullptr;
  rbd_index_status st{};
  const char* const* names = nullptr;
  size_t nnames = 0;
  ASSERT_EQ(rbd_index_list_all(mailbox, 0, &holder, &st, &names, &nnames, &err_), RBD_OK);
  ASSERT_EQ(holder->count, 1u);
  std::set<std::string> present;
  for (size_t k = 0; k < holder->records[0].keyword_count; k++)
    present.insert(holder->records[0].keywords[k]);
  EXPECT_EQ(present, applied);
  EXPECT_EQ(applied.size() + conflicts, size_t{2 * kEach});
  std::printf("[ info ] %zu applied, %d UNCHANGEDSINCE conflicts\n", applied.size(), conflicts);
  rbd_records_free(&holder);
  rbd_index_close(&mailbox);
}

TEST_F(MailboxIndexTest, SubtreeRenameRacingCreateKeepsRootConsistent) {
  CreateMailbox("Work");
  CreateMailbox("Work/existing");
  constexpr int kRenames = 20, kCreates = 40;
  Worker renamer(ns_, {"rename-loop", "Work", "Moved", std::to_string(kRenames)});
  Worker creator(ns_, {"create-loop", "Work", std::to_string(kCreates), "/"});
  auto renames = renamer.ReadAll();
  std::map<std::string, std::string> created;  // child -> guid
  for (const std::string& line : creator.ReadAll()) {
    std::istringstream in(line);
    std::string result, child, guid;
    in >> result >> child >> guid;
    if (result == "ok") created[child] = guid;
  }
  EXPECT_EQ(renamer.Wait(), 0);
  EXPECT_EQ(creator.Wait(), 0);
  for (const std::string& r : renames) EXPECT_EQ(r.substr(0, 2), "ok") << r;

  rbd_mailbox_entries* list = nullptr;
  ASSERT_EQ(rbd_list_mailboxes(user_, &list, &err_), RBD_OK);
  std::map<std::string, int> children;
  int roots = 0;
  std::set<std::string> guids;
  for (size_t i = 0; i < list->count; i++) {
    std::string name = list->entries[i].name;
    EXPECT_TRUE(guids.insert(Hex(list->entries[i].guid)).second) << "GUID listed twice: " << name;
    if (name == "Work" || name == "Moved") roots++;
    rbd_index* m = OpenMailbox(Hex(list->entries[i].guid));
    EXPECT_NE(m, nullptr) << name << " has no index";
    if (m != nullptr) rbd_index_close(&m);
    for (const std::string parent : {"Work/", "Moved/"}) {
      if (name.rfind(parent, 0) == 0) {
        std::string child = name.substr(parent.size());
        children[child]++;
        if (created.count(child)) {
          EXPECT_EQ(Hex(list->entries[i].guid), created[child]);
        }
      }
    }
  }
  rbd_mailbox_entries_free(&list);
  EXPECT_EQ(roots, 1) << "the renamed subtree's root exists exactly once";
  EXPECT_EQ(children["existing"], 1);
  for (const auto& [child, guid] : created) EXPECT_EQ(children[child], 1) << child;
  EXPECT_EQ(children.size(), created.size() + 1) << "no mailbox appeared that nobody created";
}

TEST_F(MailboxIndexTest, LeaseIsTakenOverOnlyAfterTheHolderExpires) {
  if (!WorkersRunTheCore()) GTEST_SKIP() << "the service releases a dead client's lease (next test)";
  constexpr uint32_t kLeaseMs = 3000;
  Worker holder(ns_, {"hold-lease", "maint", std::to_string(kLeaseMs)});
  std::string line;
  ASSERT_TRUE(holder.ReadLine(&line, std::chrono::seconds(30)));
  ASSERT_EQ(line.substr(0, 5), "held ");
  int64_t acquired_ns = std::stoll(line.substr(5));
  holder.Kill();
  holder.Wait();
  rbd_lease* lease = nullptr;
  int busy = 0;
  int64_t taken_ns = 0;
  for (int i = 0; i < 200 && lease == nullptr; i++) {
    rbd_code r = rbd_lease_acquire(user_, "maint", 5000, &lease, &err_);
    if (r == RBD_OK) {
      taken_ns = NowNs();
      break;
    }
    ASSERT_EQ(r, RBD_ERR_BUSY) << err_.message;
    busy++;
    std::this_thread::sleep_for(milliseconds(100));
  }
  ASSERT_NE(lease, nullptr) << "lease never expired";
  double waited = (taken_ns - acquired_ns) / 1e9;
  std::printf("[ info ] lease taken over %.2f s after the SIGKILLed holder acquired it\n", waited);
  EXPECT_GT(busy, 0);
  EXPECT_GE(waited, kLeaseMs / 1000.0);
  EXPECT_LT(waited, kLeaseMs / 1000.0 + 5);
  // Renewal keeps it; a second taker is refused while it is held.
  EXPECT_EQ(rbd_lease_renew(lease, &err_), RBD_OK) << err_.message;
  rbd_lease* second = nullptr;
  EXPECT_EQ(rbd_lease_acquire(user_, "maint", 5000, &second, &err_), RBD_ERR_BUSY);
  rbd_lease_release(&lease);
  EXPECT_EQ(rbd_lease_acquire(user_, "maint", 5000, &second, &err_), RBD_OK) << err_.message;
  rbd_lease_release(&second);
}

// A client that dies holding a lease (a killed doveadm gc) leaves it in the
// service, whose session ends with the client's connection: the lease is
// released then, not at its expiry. A call still running is not cut short:
// the session ends, and releases, only after it returns.
TEST_F(MailboxIndexTest, TheServiceReleasesTheLeaseOfAClientThatDied) {
  if (WorkersRunTheCore())
    GTEST_SKIP() << "a process of its own keeps its lease until it expires (previous test)";
  constexpr uint32_t kLeaseMs = 30000;
  Worker holder(ns_, {"hold-lease", "maint", std::to_string(kLeaseMs)});
  std::string line;
  ASSERT_TRUE(holder.ReadLine(&line, std::chrono::seconds(30)));
  ASSERT_EQ(line.substr(0, 5), "held ");
  rbd_lease* lease = nullptr;
  EXPECT_EQ(rbd_lease_acquire(user_, "maint", 5000, &lease, &err_), RBD_ERR_BUSY);
  holder.Kill();
  holder.Wait();
  for (int i = 0; i < 50 && lease == nullptr; i++) {
    if (rbd_lease_acquire(user_, "maint", 5000, &lease, &err_) != RBD_OK)
      std::this_thread::sleep_for(milliseconds(100));
  }
  ASSERT_NE(lease, nullptr) << "the dead client's lease was not released within 5 s: " << err_.message;
  rbd_lease_release(&lease);
}

// Where a namespace is a system user's name, the service serves it only to
// that user's processes: "root" and "daemon" are refused to a client running
// as nobody, which may still open its own namespace and one no system user
// has (virtual users share one uid and cannot be told apart).
TEST_F(MailboxIndexTest, TheServiceServesASystemUsersNamespaceOnlyToThatUser) {
  if (WorkersRunTheCore()) GTEST_SKIP() << "only the service sees its clients' uids";
  const std::string nobody = std::to_string(65534);
  auto open_as = [&](const std::string& ns) {
    Worker client(ns_, {"open-as", nobody, ns});
    std::string line;
    EXPECT_TRUE(client.ReadLine(&line, std::chrono::seconds(30))) << ns;
    EXPECT_EQ(client.Wait(), 0);
    return line;
  };
  for (const char* other : {"root", "daemon"}) {
    const std::string line = open_as(other);
    EXPECT_EQ(line.rfind("err permission denied rbd service: namespace '", 0), 0u) << line;
    EXPECT_NE(line.find("not served to uid 65534"), std::string::npos) << line;
  }
  EXPECT_EQ(open_as("nobody"), "ok");
  EXPECT_EQ(open_as(ns_), "ok");
}

TEST_F(MailboxIndexTest, NotifyAfterCommitWakesTheWatcherFd) {
  const std::string mbox = CreateMailbox("INBOX");
  rbd_index* mailbox = OpenMailbox(mbox);
  rbd_watch* watch = nullptr;
  ASSERT_EQ(rbd_watch_open(mailbox, &watch, &err_), RBD_OK) << err_.message;
  constexpr int kAppends = 20;
  Worker writer(ns_, {"append-timed", mbox, std::to_string(kAppends), "150"});
  std::vector<double> latencies_ms;
  std::string line;
  while (writer.ReadLine(&line, std::chrono::seconds(30))) {
    int64_t before_commit = std::stoll(line.substr(2));
    struct pollfd p = {rbd_watch_fd(watch), POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 5000), 1) << "no notify within 5 s";
    latencies_ms.push_back((NowNs() - before_commit) / 1e6);
    unsigned bits = rbd_watch_consume(watch);
    EXPECT_TRUE(bits & RBD_WATCH_CHANGED);
  }
  EXPECT_EQ(writer.Wait(), 0);
  ASSERT_EQ(latencies_ms.size(), size_t{kAppends});
  std::sort(latencies_ms.begin(), latencies_ms.end());
  std::printf("[ info ] commit-to-wake latency: p50 %.2f ms, max %.2f ms (incl. the append itself)\n",
              latencies_ms[kAppends / 2], latencies_ms.back());
  // Consuming clears the fd.
  struct pollfd p = {rbd_watch_fd(watch), POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 0), 0);
  rbd_watch_close(&watch);
  rbd_index_close(&mailbox);
}

// The inotify events (IN_MODIFY) of one file within `ms`, as imap-hibernate
// waits for them.
class FileWrites {
 public:
  explicit FileWrites(const std::string& path) : fd_(inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) {
    EXPECT_GE(inotify_add_watch(fd_, path.c_str(), IN_MODIFY), 0);
  }
  ~FileWrites() { close(fd_); }
  // Whether the file was written within `ms` (and forgets what was seen).
  bool Within(int ms) {
    struct pollfd p = {fd_, POLLIN, 0};
    if (poll(&p, 1, ms) != 1) return false;
    char buf[4096];
    while (read(fd_, buf, sizeof(buf)) > 0) {
    }
    return true;
  }

 private:
  int fd_;
};

TEST_F(MailboxIndexTest, ALingeringWatchWritesItsFileAtEveryChangeAndOnceAtItsEnd) {
  const std::string mbox = CreateMailbox("INBOX");
  rbd_index* mailbox = OpenMailbox(mbox);
  char path[] = "/tmp/rbd-linger-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  FileWrites writes(path);
  rbd_watch* watch = nullptr;
  ASSERT_EQ(rbd_watch_open(mailbox, &watch, &err_), RBD_OK) << err_.message;
  // The session's process goes (imap-hibernate holds the client): its
  // watch goes on without it.
  rbd_watch_close_lingering(&watch, fd, 3);
  EXPECT_FALSE(writes.Within(300)) << "written with no change";
  AppendOne(mailbox, "Subject: one\r\n\r\none\r\n");
  EXPECT_TRUE(writes.Within(5000)) << "a change did not write the file";
  AppendOne(mailbox, "Subject: two\r\n\r\ntwo\r\n");
  EXPECT_TRUE(writes.Within(5000));
  // At its end it writes once more (the client wakes and watches anew),
  // and then never again.
  EXPECT_TRUE(writes.Within(6000)) << "no write at the end of the linger";
  AppendOne(mailbox, "Subject: three\r\n\r\nthree\r\n");
  EXPECT_FALSE(writes.Within(1000)) << "written after the linger ended";
  unlink(path);
  rbd_index_close(&mailbox);
}

TEST_F(MailboxIndexTest, WatchesOfOneMailboxShareOneRadosWatchAndEachHearsEveryChange) {
  const std::string mbox = CreateMailbox("INBOX");
  rbd_index* mailbox = OpenMailbox(mbox);
  librados::IoCtx index_io = AdminIo(Env("RBD_TEST_INDEX_POOL"));
  auto watchers = [&] {
    std::list<obj_watch_t> list;
    EXPECT_EQ(index_io.list_watchers("i." + mbox, &list), 0);
    return list.size();
  };
  // Three sessions of the node watch the mailbox: one RADOS watch.
  std::vector<rbd_watch*> watches(3, nullptr);
  for (rbd_watch*& w : watches) ASSERT_EQ(rbd_watch_open(mailbox, &w, &err_), RBD_OK) << err_.message;
  EXPECT_EQ(watchers(), 1u);
  auto all_hear = [&](const std::vector<rbd_watch*>& ws) {
    for (rbd_watch* w : ws) {
      struct pollfd p = {rbd_watch_fd(w), POLLIN, 0};
      EXPECT_EQ(poll(&p, 1, 5000), 1) << "a subscriber missed the change";
      EXPECT_TRUE(rbd_watch_consume(w) & RBD_WATCH_CHANGED);
    }
  };
  AppendOne(mailbox, "Subject: one\r\n\r\none\r\n");
  all_hear(watches);
  // One session ends: the others still hear, through the same watch.
  rbd_watch_close(&watches[0]);
  watches.erase(watches.begin());
  AppendOne(mailbox, "Subject: two\r\n\r\ntwo\r\n");
  all_hear(watches);
  EXPECT_EQ(watchers(), 1u);
  // The last one ends it (in the background).
  for (rbd_watch*& w : watches) rbd_watch_close(&w);
  for (int i = 0; i < 100 && watchers() != 0; i++) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(watchers(), 0u);
  // A new session watches anew.
  rbd_watch* again = nullptr;
  ASSERT_EQ(rbd_watch_open(mailbox, &again, &err_), RBD_OK) << err_.message;
  EXPECT_EQ(watchers(), 1u);
  AppendOne(mailbox, "Subject: three\r\n\r\nthree\r\n");
  all_hear({again});
  rbd_watch_close(&again);
  rbd_index_close(&mailbox);
}

// The RADOS ops `user` waited for since the last call.
size_t OpsSince(rbd_user* user) {
  rbd_op_record records[64];
  uint64_t dropped = 0;
  size_t n = 0, got;
  while ((got = rbd_user_drain_ops(user, records, 64, &dropped)) > 0) n += got;
  return n;
}

// Counts the notifies of one object, as a watcher that never said so would.
class CountingWatch : public librados::WatchCtx2 {
 public:
  explicit CountingWatch(librados::IoCtx* io) : io_(io) {}
  void handle_notify(uint64_t notify_id, uint64_t cookie, uint64_t, librados::bufferlist&) override {
    notifies++;
    librados::bufferlist none;
    io_->notify_ack(oid, notify_id, cookie, none);
  }
  void handle_error(uint64_t, int) override {}
  std::string oid;
  std::atomic<int> notifies{0};

 private:
  librados::IoCtx* io_;
};

TEST_F(MailboxIndexTest, WritesNotifyOnlyWhileTheMailboxIsSaidToBeWatched) {
  librados::IoCtx index_io = AdminIo(Env("RBD_TEST_INDEX_POOL"));
  const std::string mbox = CreateMailbox("INBOX");
  CountingWatch counter(&index_io);
  counter.oid = "i." + mbox;
  uint64_t handle = 0;
  ASSERT_EQ(index_io.watch2(counter.oid, &handle, &counter), 0);
  auto watched_until = [&] {
    librados::bufferlist raw;
    EXPECT_GT(index_io.getxattr(counter.oid, rbd::keys::kStateAttr, raw), 0);
    rbd::MailboxState state;
    EXPECT_TRUE(rbd::Decode(raw.to_str(), &state).ok());
    return static_cast<int64_t>(state.watched_until) - static_cast<int64_t>(std::time(nullptr));
  };
  auto heard = [&](int n) {
    for (int i = 0; i < 50 && counter.notifies < n; i++) std::this_thread::sleep_for(milliseconds(100));
    std::this_thread::sleep_for(milliseconds(300));  // and no more
    return counter.notifies.load();
  };
  rbd_index* writer = OpenMailbox(mbox);
  AppendOne(writer, "nobody watches");
  EXPECT_EQ(heard(0), 0) << "no session said it watches";

  rbd_index* session = OpenMailbox(mbox);
  rbd_watch* watch = nullptr;
  ASSERT_EQ(rbd_watch_open(session, &watch, &err_), RBD_OK) << err_.message;
  EXPECT_GE(watched_until(), RBD_WATCHED_SECS - 60);
  AppendOne(writer, "watched");
  EXPECT_EQ(heard(1), 1);

  // Said long ago (as if the time had passed): writers stop telling, until
  // a session that reads the state says so again.
  librados::bufferlist raw;
  ASSERT_GT(index_io.getxattr(counter.oid, rbd::keys::kStateAttr, raw), 0);
  rbd::MailboxState state;
  ASSERT_TRUE(rbd::Decode(raw.to_str(), &state).ok());
  state.watched_until = static_cast<uint64_t>(std::time(nullptr)) - 1;
  raw.clear();
  raw.append(rbd::Encode(state));
  ASSERT_EQ(index_io.setxattr(counter.oid, rbd::keys::kStateAttr, raw), 0);
  AppendOne(writer, "expired");
  EXPECT_EQ(heard(1), 1);
  rbd_index* renewer = OpenMailbox(mbox);
  ASSERT_EQ(rbd_index_keep_watched(renewer, 60, &err_), RBD_OK) << err_.message;
  EXPECT_GE(watched_until(), 110) << "twice as long as asked";
  OpsSince(user_);
  ASSERT_EQ(rbd_index_keep_watched(renewer, 60, &err_), RBD_OK);
  EXPECT_EQ(OpsSince(user_), 0u) << "said already: no I/O";
  AppendOne(writer, "watched again");
  EXPECT_EQ(heard(2), 2);
  rbd_watch_close(&watch);
  rbd_index_close(&renewer);
  rbd_index_close(&session);
  rbd_index_close(&writer);
  index_io.unwatch2(handle);
}

TEST_F(MailboxIndexTest, TheSyncOfTheCommandThatOpenedAMailboxReadsNothingMore) {
  // STATUS and SELECT open the mailbox (reading its state) and sync it in
  // one command: a cache at that state needs no second read.
  const std::string mbox = CreateMailbox("INBOX");
  rbd_index* writer = OpenMailbox(mbox);
  AppendOne(writer, "one");
  struct timeval started;
  rbd_user* user = nullptr;
  rbd_index_status status;
  rbd_index* m = OpenInCommand(mbox, &started, &user, &status);
  ASSERT_NE(m, nullptr);
  OpsSince(user);
  rbd_changes* changes = nullptr;
  ASSERT_EQ(rbd_index_changes(m, status.highest_modseq, &changes, &err_), RBD_OK) << err_.message;
  EXPECT_EQ(changes->op_count, 0u);
  EXPECT_EQ(changes->status.highest_modseq, status.highest_modseq);
  rbd_changes_free(&changes);
  EXPECT_EQ(OpsSince(user), 0u);

  // A change made meanwhile counts as after the command...
  AppendOne(writer, "two");
  ASSERT_EQ(rbd_index_changes(m, status.highest_modseq, &changes, &err_), RBD_OK);
  EXPECT_EQ(changes->op_count, 0u);
  rbd_changes_free(&changes);
  // ...and a cache elsewhere is read for as usual.
  ASSERT_EQ(rbd_index_changes(m, status.highest_modseq - 1, &changes, &err_), RBD_OK);
  EXPECT_EQ(OpsSince(user), 1u);
  rbd_changes_free(&changes);

  // The next command reads, and sees it.
  gettimeofday(&started, nullptr);
  started.tv_usec += 1;
  ASSERT_EQ(rbd_index_changes(m, status.highest_modseq, &changes, &err_), RBD_OK);
  EXPECT_EQ(changes->op_count, 1u);
  EXPECT_EQ(OpsSince(user), 1u);
  rbd_changes_free(&changes);
  rbd_index_close(&m);
  rbd_user_close(&user);

  // Without a command clock (doveadm) every sync reads.
  OpsSince(user_);
  rbd_index* plain = OpenMailbox(mbox);
  rbd_index_last_status(plain, &status);
  ASSERT_EQ(rbd_index_changes(plain, status.highest_modseq, &changes, &err_), RBD_OK);
  rbd_changes_free(&changes);
  EXPECT_EQ(OpsSince(user_), 2u) << "the open and the sync";
  rbd_index_close(&plain);
  rbd_index_close(&writer);
}

TEST_F(MailboxIndexTest, AnAppendClaimingRecentClaimsWhatItAddsAndWhatNobodyHadInOneOp) {
  const std::string mbox = CreateMailbox("INBOX");
  rbd_index* writer = OpenMailbox(mbox);
  AppendOne(writer, "one");
  AppendOne(writer, "two");
  struct timeval started;
  rbd_user* session = nullptr;
  rbd_index_status status;
  rbd_index* m = OpenInCommand(mbox, &started, &session, &status);
  ASSERT_NE(m, nullptr);
  const std::string body = "three";
  rbd_new_message msg = NewMessage(body);
  uint32_t uid = 0, first = 0, end = 0;
  OpsSince(session);
  ASSERT_EQ(rbd_index_append_claiming(m, &msg, 1, &uid, &first, &end, &err_), RBD_OK) << err_.message;
  EXPECT_EQ(OpsSince(session), 1u) << "the append and its claim: one op";
  EXPECT_EQ(uid, 3u);
  EXPECT_EQ(first, 1u) << "older messages nobody had claimed";
  EXPECT_EQ(end, 4u);
  ASSERT_EQ(rbd_index_get_status(writer, &status, &err_), RBD_OK);
  EXPECT_EQ(status.first_recent_uid, 4u);
  EXPECT_EQ(status.recent_counted, 1);
  EXPECT_EQ(status.recent_messages, 0u);

  AppendOne(writer, "four");  // a lost race: planned again, and claimed
  RandomGuid(msg.guid);
  ASSERT_EQ(rbd_index_append_claiming(m, &msg, 1, &uid, &first, &end, &err_), RBD_OK) << err_.message;
  EXPECT_EQ(first, 4u);
  EXPECT_EQ(end, 6u);
  EXPECT_EQ(rbd_index_claim_recent(m, 6, &first, &end, &err_), RBD_OK);
  EXPECT_EQ(first, end) << "nothing left to claim";
  rbd_index_close(&m);
  rbd_user_close(&session);
  rbd_index_close(&writer);
}

// The flags of `uid` as `mailbox` reads them now; 0xff when it is gone.
uint8_t FlagsOf(rbd_index* mailbox, uint32_t uid) {
  rbd_records* recs = nullptr;
  rbd_error err{};
  EXPECT_EQ(rbd_index_lookup_records(mailbox, &uid, 1, &recs, &err), RBD_OK) << err.message;
  const uint8_t flags = recs != nullptr && recs->count == 1 ? recs->records[0].flags : 0xff;
  rbd_records_free(&recs);
  return flags;
}

TEST_F(MailboxIndexTest, AStoreOrExpungeFromRecordsItKnowsReadsNothingAndLosesNoOtherChange) {
  rbd_index* writer = nullptr;
  struct timeval started;
  rbd_user* session = nullptr;
  rbd_index_status status;
  rbd_index* m = ThreeMessagesAndASession(&writer, &started, &session, &status);
  ASSERT_NE(m, nullptr);
  auto store = [&](rbd_index* on, uint32_t uid, uint8_t add, uint8_t remove) {
    started.tv_usec += 1;  // a command of its own
    OpsSince(session);
    EXPECT_EQ(UpdateFlags(on, uid, add, remove), RBD_OK) << err_.message;
    return OpsSince(session);
  };

  EXPECT_EQ(store(m, 1, RBD_FLAG_SEEN, 0), 2u) << "a record not known yet: read, then write";
  EXPECT_EQ(store(m, 1, RBD_FLAG_FLAGGED, 0), 1u) << "the record its own op wrote: the write alone";
  EXPECT_EQ(store(m, 2, RBD_FLAG_DELETED, 0), 2u);
  started.tv_usec += 1;
  OpsSince(session);
  uint32_t two = 2, removed[1];
  size_t nremoved = 0;
  ASSERT_EQ(rbd_index_expunge(m, &two, 1, removed, &nremoved, &err_), RBD_OK) << err_.message;
  EXPECT_EQ(nremoved, 1u);
  EXPECT_EQ(OpsSince(session), 1u) << "an expunge of a known record (its body inline)";

  // Another node's change: the guard fails, the op reads and keeps it.
  store(writer, 1, RBD_FLAG_ANSWERED, 0);
  EXPECT_EQ(store(m, 1, 0, RBD_FLAG_SEEN), 3u) << "the refused write, the read, the write";
  EXPECT_EQ(FlagsOf(writer, 1), RBD_FLAG_FLAGGED | RBD_FLAG_ANSWERED);

  // Another node's change the session's sync read: the records follow it.
  rbd_index_last_status(m, &status);
  store(writer, 1, RBD_FLAG_DRAFT, 0);
  store(writer, 3, RBD_FLAG_SEEN, 0);
  started.tv_usec += 1;
  rbd_changes* changes = nullptr;
  ASSERT_EQ(rbd_index_changes(m, status.highest_modseq, &changes, &err_), RBD_OK) << err_.message;
  EXPECT_EQ(changes->op_count, 2u);
  rbd_changes_free(&changes);
  EXPECT_EQ(store(m, 1, RBD_FLAG_SEEN, 0), 1u);
  EXPECT_EQ(FlagsOf(writer, 1), RBD_FLAG_FLAGGED | RBD_FLAG_ANSWERED | RBD_FLAG_DRAFT | RBD_FLAG_SEEN);

  // Expunged elsewhere and heard of: never written back.
  rbd_index_last_status(m, &status);
  uint32_t one = 1;
  ASSERT_EQ(rbd_index_expunge(writer, &one, 1, removed, &nremoved, &err_), RBD_OK);
  started.tv_usec += 1;
  ASSERT_EQ(rbd_index_changes(m, status.highest_modseq, &changes, &err_), RBD_OK);
  rbd_changes_free(&changes);
  EXPECT_EQ(store(m, 1, RBD_FLAG_FLAGGED, 0), 1u) << "read, and nothing to write";
  EXPECT_EQ(FlagsOf(writer, 1), 0xff);
  rbd_index_close(&m);
  rbd_user_close(&session);
  rbd_index_close(&writer);
}

TEST_F(MailboxIndexTest, TheSyncAfterAHandlesOwnOpsReadsNothingMore) {
  // A STORE, EXPUNGE or APPEND ends with a sync of the cache it started
  // from: when this handle's ops of the command are all that happened
  // since, the sync learns them from the handle, not from a read.
  rbd_index* writer = nullptr;
  struct timeval started;
  rbd_user* user = nullptr;
  rbd_index_status cache;
  rbd_index* m = ThreeMessagesAndASession(&writer, &started, &user, &cache);
  ASSERT_NE(m, nullptr);

  uint32_t one = 1, two = 2;
  rbd_flag_update seen{};
  seen.add_flags = RBD_FLAG_SEEN;
  uint32_t* conflicts = nullptr;
  size_t nconflicts = 0;
  uint64_t first = 0;
  ASSERT_EQ(rbd_index_update_flags(m, &one, 1, &seen, &conflicts, &nconflicts, &first, &err_), RBD_OK);
  uint32_t expunged[1];
  size_t nexpunged = 0;
  ASSERT_EQ(rbd_index_expunge(m, &two, 1, expunged, &nexpunged, &err_), RBD_OK);
  ASSERT_EQ(nexpunged, 1u);
  OpsSince(user);
  rbd_changes* changes = nullptr;
  ASSERT_EQ(rbd_index_changes(m, cache.highest_modseq, &changes, &err_), RBD_OK) << err_.message;
  EXPECT_EQ(OpsSince(user), 0u);
  ASSERT_EQ(changes->op_count, 2u);
  EXPECT_EQ(changes->ops[0].modseq, first);
  ASSERT_EQ(changes->ops[0].updated_count, 1u);
  EXPECT_EQ(changes->ops[0].updated[0].uid, 1u);
  ASSERT_EQ(changes->ops[1].expunged_count, 1u);
  EXPECT_EQ(changes->ops[1].expunged[0], 2u);
  EXPECT_EQ(changes->status.highest_modseq, changes->ops[1].modseq);
  EXPECT_EQ(changes->status.messages, 2u);
  rbd_changes_free(&changes);
  // From between the two ops: the second alone.
  ASSERT_EQ(rbd_index_changes(m, first, &changes, &err_), RBD_OK);
  EXPECT_EQ(OpsSince(user), 0u);
  ASSERT_EQ(changes->op_count, 1u);
  EXPECT_EQ(changes->ops[0].expunged_count, 1u);
  rbd_changes_free(&changes);

  // Another writer's op in between: the chain starts again after it, and a
  // cache from before it reads the log.
  rbd_index_last_status(m, &cache);
  const uint32_t three = AppendOne(writer, "from elsewhere");
  ASSERT_EQ(rbd_index_update_flags(m, &one, 1, &seen, &conflicts, &nconflicts, &first, &err_), RBD_OK);
  rbd_flag_update flagged{};
  flagged.add_flags = RBD_FLAG_FLAGGED;
  ASSERT_EQ(rbd_index_update_flags(m, &one, 1, &flagged, &conflicts, &nconflicts, &first, &err_), RBD_OK);
  OpsSince(user);
  ASSERT_EQ(rbd_index_changes(m, cache.highest_modseq, &changes, &err_), RBD_OK);
  EXPECT_EQ(OpsSince(user), 1u);
  ASSERT_EQ(changes->op_count, 2u) << "the append and the \\Flagged (\\Seen was set already)";
  ASSERT_EQ(changes->ops[0].appended_count, 1u);
  EXPECT_EQ(changes->ops[0].appended[0].uid, three);
  EXPECT_EQ(changes->ops[1].modseq, first);
  rbd_changes_free(&changes);

  // The next command reads.
  rbd_index_last_status(m, &cache);
  started.tv_usec += 1;
  ASSERT_EQ(rbd_index_update_flags(m, &one, 1, &seen, &conflicts, &nconflicts, &first, &err_), RBD_OK);
  EXPECT_EQ(first, 0u) << "nothing changed";
  OpsSince(user);
  started.tv_usec += 1;
  ASSERT_EQ(rbd_index_changes(m, cache.highest_modseq, &changes, &err_), RBD_OK);
  EXPECT_EQ(OpsSince(user), 1u);
  EXPECT_EQ(changes->op_count, 0u);
  rbd_changes_free(&changes);
  rbd_index_close(&m);
  rbd_user_close(&user);
  rbd_index_close(&writer);
}

// Registering a watch is an op of the command that asks for it (IDLE,
// NOTIFY): while the OSD is away it ends by the command's deadline, like
// every other op; a blocking registration held an IDLE for a whole
// rbd_op_timeout of its own. A registration the OSD answers later is
// ended in the background.
TEST_F(MailboxIndexTest, AWatchEndsByItsCommandsDeadline) {
  const std::string mbox = CreateMailbox("INBOX");
  struct timeval started;
  gettimeofday(&started, nullptr);
  rbd_user* idle_user = nullptr;
  rbd_index* idle = OpenWithClock(mbox, &started, &idle_user);
  ASSERT_NE(idle, nullptr);
  rbd_watch* watch = nullptr;
  {
    StoppedOsds osds;
    gettimeofday(&started, nullptr);
    started.tv_sec -= 19;  // 1 s left of rbd_op_timeout 20s
    const auto asked = steady_clock::now();
    EXPECT_EQ(rbd_watch_open(idle, &watch, &err_), RBD_ERR_UNAVAILABLE) << err_.message;
    const double waited = std::chrono::duration<double>(steady_clock::now() - asked).count();
    EXPECT_LT(waited, 3.0) << "the registration outlived its command";
    EXPECT_EQ(watch, nullptr);
  }
  // With the command's time used up, the watch is not even asked for.
  EXPECT_EQ(rbd_watch_open(idle, &watch, &err_), RBD_ERR_UNAVAILABLE);
  EXPECT_NE(std::string(err_.message).find("not sent"), std::string::npos) << err_.message;

  // The late registration is ended once the OSD has answered it.
  librados::IoCtx index_io = IndexIo();
  std::list<obj_watch_t> watchers;
  for (int i = 0; i < 100; i++) {
    watchers.clear();
    ASSERT_EQ(index_io.list_watchers("i." + mbox, &watchers), 0);
    if (watchers.empty()) break;
    std::this_thread::sleep_for(milliseconds(100));
  }
  EXPECT_TRUE(watchers.empty()) << watchers.size() << " watch(es) left behind";

  // The session's next command watches as usual.
  gettimeofday(&started, nullptr);
  ASSERT_EQ(rbd_watch_open(idle, &watch, &err_), RBD_OK) << err_.message;
  rbd_index* writer = OpenMailbox(mbox);
  AppendOne(writer, "wakes the watcher");
  struct pollfd p = {rbd_watch_fd(watch), POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 5000), 1) << "no notify within 5 s";
  rbd_watch_close(&watch);
  rbd_index_close(&writer);
  rbd_index_close(&idle);
  rbd_user_close(&idle_user);
}

TEST_F(MailboxIndexTest, EveryCommittedListChangeWakesTheListWatcherFd) {
  rbd_watch* watch = nullptr;
  // No list yet: the caller polls until a first mailbox creates it.
  EXPECT_EQ(rbd_watch_open_list(user_, &watch, &err_), RBD_ERR_NOT_FOUND);
  CreateMailbox("INBOX");
  ASSERT_EQ(rbd_watch_open_list(user_, &watch, &err_), RBD_OK) << err_.message;
  auto woken = [&] {
    struct pollfd p = {rbd_watch_fd(watch), POLLIN, 0};
    if (poll(&p, 1, 5000) != 1) return false;
    return (rbd_watch_consume(watch) & RBD_WATCH_CHANGED) != 0;
  };
  CreateMailbox("a");
  EXPECT_TRUE(woken()) << "create";
  ASSERT_EQ(rbd_set_subscribed(user_, "a", 1, &err_), RBD_OK);
  EXPECT_TRUE(woken()) << "subscribe";
  ASSERT_EQ(rbd_rename_mailbox(user_, "a", "b", '/', &err_), RBD_OK);
  EXPECT_TRUE(woken()) << "rename";
  ASSERT_EQ(rbd_delete_mailbox(user_, "b", &err_), RBD_OK);
  EXPECT_TRUE(woken()) << "delete";
  // A refused change commits nothing and wakes nobody.
  EXPECT_EQ(rbd_rename_mailbox(user_, "nope", "x", '/', &err_), RBD_ERR_NOT_FOUND);
  struct pollfd p = {rbd_watch_fd(watch), POLLIN, 0};
  EXPECT_EQ(poll(&p, 1, 200), 0);
  rbd_watch_close(&watch);
}

TEST_F(MailboxIndexTest, ChangesSinceModseqReportChangedAndExpunged) {
  const std::string mbox = CreateMailbox("INBOX");
  rbd_index* mailbox = OpenMailbox(mbox);
  for (int i = 0; i < 5; i++) AppendOne(mailbox, "msg " + std::to_string(i));
  rbd_index_status st{};
  ASSERT_EQ(rbd_index_get_status(mailbox, &st, &err_), RBD_OK);
  const uint64_t seen = st.highest_modseq;

  uint32_t two = 2, four_five[] = {4, 5};
  rbd_flag_update update{};
  update.add_flags = RBD_FLAG_SEEN;
  uint32_t* conflicts = nullptr;
  size_t nconflicts = 0;
  uint64_t modseq = 0;
  ASSERT_EQ(rbd_index_update_flags(mailbox, &two, 1, &update, &conflicts, &nconflicts, &modseq, &err_),
            RBD_OK);
  EXPECT_EQ(modseq, seen + 1);
  size_t expunged = 0;
  ASSERT_EQ(rbd_index_expunge(mailbox, four_five, 2, nullptr, &expunged, &err_), RBD_OK);
  EXPECT_EQ(expunged, 2u);
  uint32_t six = AppendOne(mailbox, "msg 6");
  EXPECT_EQ(six, 6u);

  // One entry per op, each with what a replay of that op needs.
  rbd_changes* changes = nullptr;
  ASSERT_EQ(rbd_index_changes(mailbox, seen, &changes, &err_), RBD_OK) << err_.message;
  ASSERT_EQ(changes->op_count, 3u);
  const rbd_change& flagged = changes->ops[0];
  EXPECT_EQ(flagged.modseq, seen + 1);
  ASSERT_EQ(flagged.updated_count, 1u);
  EXPECT_EQ(flagged.updated[0].uid, 2u);
  EXPECT_EQ(flagged.updated[0].flags, RBD_FLAG_SEEN);
  EXPECT_EQ(flagged.appended_count + flagged.expunged_count, 0u);
  const rbd_change& expunge = changes->ops[1];
  EXPECT_EQ(expunge.modseq, seen + 2);
  EXPECT_EQ(std::vector<uint32_t>(expunge.expunged, expunge.expunged + expunge.expunged_count),
            (std::vector<uint32_t>{4, 5}));
  const rbd_change& append = changes->ops[2];
  EXPECT_EQ(append.modseq, seen + 3);
  ASSERT_EQ(append.appended_count, 1u);
  EXPECT_EQ(append.appended[0].uid, 6u);
  EXPECT_EQ(append.appended[0].modseq, seen + 3);
  EXPECT_EQ(append.appended[0].physical_size, std::string("msg 6").size());
  EXPECT_EQ(changes->status.highest_modseq, seen + 3);
  EXPECT_EQ(changes->status.messages, 4u);
  rbd_changes_free(&changes);

  // Nothing since the newest MODSEQ.
  ASSERT_EQ(rbd_index_changes(mailbox, seen + 3, &changes, &err_), RBD_OK);
  EXPECT_EQ(changes->op_count, 0u);
  rbd_changes_free(&changes);

  // After a trim, a reader behind the trim point must resync.
  ASSERT_EQ(rbd_index_trim_log(mailbox, seen + 1, &err_), RBD_OK) << err_.message;
  EXPECT_EQ(rbd_index_changes(mailbox, seen, &changes, &err_), RBD_ERR_RESYNC);
  ASSERT_EQ(rbd_index_changes(mailbox, seen + 1, &changes, &err_), RBD_OK);
  ASSERT_EQ(changes->op_count, 2u);
  EXPECT_EQ(changes->ops[0].expunged_count, 2u);
  rbd_changes_free(&changes);
  ASSERT_EQ(rbd_index_get_status(mailbox, &st, &err_), RBD_OK);
  EXPECT_EQ(st.highest_modseq, seen + 3) << "trimming is not a change clients see";
  rbd_index_close(&mailbox);
}

// A node that caught up from behind the log floor counted some messages
// above their MODSEQ; a touch gives them one new MODSEQ everywhere and
// changes nothing else.
TEST_F(MailboxIndexTest, TouchGivesExistingMessagesOneNewModseqAndNothingElse) {
  const std::string mbox = CreateMailbox("INBOX");
  rbd_index* mailbox = OpenMailbox(mbox);
  for (int i = 0; i < 3; i++) AppendOne(mailbox, "msg " + std::to_string(i), i == 2 ? RBD_FLAG_SEEN : 0);
  rbd_index_status st{};
  ASSERT_EQ(rbd_index_get_status(mailbox, &st, &err_), RBD_OK);
  const uint64_t before = st.highest_modseq;

  const uint32_t uids[] = {2, 3, 99};
  uint64_t modseq = 0;
  ASSERT_EQ(rbd_index_touch(mailbox, uids, 3, before + 4, &modseq, &err_), RBD_OK) << err_.message;
  EXPECT_EQ(modseq, before + 4) << "at least the MODSEQ asked for";
  rbd_records* holder = nullptr;
  std::map<uint32_t, std::pair<uint8_t, uint64_t>> seen;
  for (const rbd_record& r : Records(mailbox, &holder)) seen[r.uid] = {r.flags, r.modseq};
  rbd_records_free(&holder);
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_LT(seen[1].second, before + 1) << "not asked for";
  EXPECT_EQ(seen[2], std::make_pair(uint8_t{0}, before + 4));
  EXPECT_EQ(seen[3], std::make_pair(uint8_t{RBD_FLAG_SEEN}, before + 4));

  // One replayable op naming the touched messages as they are.
  rbd_changes* changes = nullptr;
  ASSERT_EQ(rbd_index_changes(mailbox, before, &changes, &err_), RBD_OK) << err_.message;
  ASSERT_EQ(changes->op_count, 1u);
  const rbd_change& touch = changes->ops[0];
  EXPECT_EQ(touch.modseq, before + 4);
  ASSERT_EQ(touch.updated_count, 2u);
  EXPECT_EQ(touch.updated[0].uid, 2u);
  EXPECT_EQ(touch.updated[1].uid, 3u);
  EXPECT_EQ(touch.updated[1].flags, RBD_FLAG_SEEN);
  EXPECT_EQ(touch.appended_count + touch.expunged_count, 0u);
  rbd_changes_free(&changes);

  // Without a MODSEQ asked for: the next one. None that exists: nothing.
  ASSERT_EQ(rbd_index_touch(mailbox, uids, 1, 0, &modseq, &err_), RBD_OK);
  EXPECT_EQ(modseq, before + 5);
  ASSERT_EQ(rbd_index_touch(mailbox, uids + 2, 1, 0, &modseq, &err_), RBD_OK);
  EXPECT_EQ(modseq, 0u);
  ASSERT_EQ(rbd_index_get_status(mailbox, &st, &err_), RBD_OK);
  EXPECT_EQ(st.highest_modseq, before + 5);
  rbd_index_close(&mailbox);
}

// Dovecot counts MODSEQs per transaction-log record; an op must advance
// HIGHESTMODSEQ by the records its replay writes (see rbd-storage.h).
// A message as a node's cache would hold it.
struct CachedMessage {
  uint8_t flags = 0;
  std::set<std::string> keywords;
  uint64_t modseq = 0;
  bool operator==(const CachedMessage& o) const {
    return flags == o.flags && keywords == o.keywords && modseq == o.modseq;
  }
};
using Cache = std::map<uint32_t, CachedMessage>;

std::set<std::string> KeywordNames(const char* const* names, size_t count) {
  EXPECT_EQ(names[count], nullptr) << "keyword names not NULL-terminated";
  return std::set<std::string>(names, names + count);
}

// Every record of the mailbox at one state, read 4 records per op so that
// writers race the listing: the core brings what it listed before a
// writer's commit forward. Counts in *overtaken the listings a commit
// landed in (the state moved between the read before and the listing's).
Cache ListAll(rbd_index* mailbox, uint64_t* highest_modseq, int* overtaken) {
  rbd_error err{};
  rbd_index_status before{}, st{};
  EXPECT_EQ(rbd_index_get_status(mailbox, &before, &err), RBD_OK) << err.message;
  rbd_records* recs = nullptr;
  const char* const* names = nullptr;
  size_t name_count = 0;
  Cache cache;
  EXPECT_EQ(rbd_index_list_all(mailbox, 4, &recs, &st, &names, &name_count, &err), RBD_OK) << err.message;
  if (recs == nullptr) return cache;
  for (size_t i = 0; i < recs->count; i++) {
    const rbd_record& rec = recs->records[i];
    EXPECT_LE(rec.modseq, st.highest_modseq) << "a record newer than its state";
    cache[rec.uid] = {rec.flags, KeywordNames(rec.keywords, rec.keyword_count), rec.modseq};
    for (const std::string& k : cache[rec.uid].keywords)
      EXPECT_NE(std::find(names, names + name_count, k), names + name_count) << k << " is not defined";
  }
  rbd_records_free(&recs);
  EXPECT_EQ(cache.size(), st.messages) << "records of different states";
  if (st.highest_modseq != before.highest_modseq) (*overtaken)++;
  *highest_modseq = st.highest_modseq;
  return cache;
}

// Brings `cache` forward by the ops of one snapshot up to MODSEQ `up_to`,
// checking that each op stays within it.
void Replay(const rbd_changes* changes, uint64_t since, Cache* cache, uint64_t up_to = UINT64_MAX) {
  uint64_t last = since;
  for (size_t i = 0; i < changes->op_count && changes->ops[i].modseq <= up_to; i++) {
    const rbd_change& op = changes->ops[i];
    EXPECT_GT(op.modseq, last) << "ops out of order";
    EXPECT_LE(op.modseq, changes->status.highest_modseq) << "an op above the snapshot's HIGHESTMODSEQ";
    last = op.modseq;
    for (size_t j = 0; j < op.appended_count; j++) {
      const rbd_record& rec = op.appended[j];
      EXPECT_EQ(rec.modseq, op.modseq);
      (*cache)[rec.uid] = {rec.flags, KeywordNames(rec.keywords, rec.keyword_count), op.modseq};
    }
    for (size_t j = 0; j < op.updated_count; j++) {
      const rbd_flag_state& u = op.updated[j];
      (*cache)[u.uid] = {u.flags, KeywordNames(u.keywords, u.keyword_count), op.modseq};
    }
    for (size_t j = 0; j < op.expunged_count; j++) cache->erase(op.expunged[j]);
  }
}

class ConcurrentReadsTest : public MailboxIndexTest {
 protected:
  // Change reads and listings racing writers (processes) that commit with
  // `settings` (RBD_TEST_SETTINGS): every read must be one state.
  void RaceReadsAgainstWriters(const std::string& settings);
  // The sealed shards of mailbox `guid_hex`.
  uint32_t SealedShards(const std::string& guid_hex) {
    librados::bufferlist raw;
    rbd::MailboxState state;
    EXPECT_GT(IndexIo().getxattr("i." + guid_hex, rbd::keys::kStateAttr, raw), 0);
    EXPECT_TRUE(rbd::Decode(raw.to_str(), &state).ok());
    return state.sealed_shards;
  }
};

TEST_F(ConcurrentReadsTest, ChangesAndListingsAreOneStateUnderConcurrentWriters) {
  RaceReadsAgainstWriters("");
}

// The same with shards of 4 UIDs: the writers seal the 20 unsharded
// records (convert on write) and their own, and fold overrides and
// tombstones while the listings read the index object and the shards.
TEST_F(ConcurrentReadsTest, ListingsMergeShardsThatWritersSealAndFoldMeanwhile) {
  RaceReadsAgainstWriters("rbd_shard_uids=4");
}

void ConcurrentReadsTest::RaceReadsAgainstWriters(const std::string& settings) {
  const std::string mbox = CreateMailbox("INBOX");
  rbd_index* mailbox = OpenMailbox(mbox);
  for (int i = 0; i < 20; i++) AppendOne(mailbox, "m" + std::to_string(i));
  uint64_t since = 0;
  int overtaken = 0;
  const Cache start = ListAll(mailbox, &since, &overtaken);
  ASSERT_EQ(start.size(), 20u);

  // New keywords (the table grows), flags, appends, all at once.
  setenv("RBD_TEST_SETTINGS", settings.c_str(), 1);
  std::vector<std::unique_ptr<Worker>> workers;
  workers.push_back(
      std::make_unique<Worker>(ns_, std::vector<std::string>{"keyword-race", mbox, "3", "60", "a"}));
  workers.push_back(
      std::make_unique<Worker>(ns_, std::vector<std::string>{"keyword-race", mbox, "7", "60", "b"}));
  workers.push_back(std::make_unique<Worker>(
      ns_, std::vector<std::string>{"add-flag", mbox, std::to_string(RBD_FLAG_SEEN), "20"}));
  workers.push_back(std::make_unique<Worker>(ns_, std::vector<std::string>{"append", mbox, "40", "w"}));
  unsetenv("RBD_TEST_SETTINGS");
  // Reads race the writers at least until the last append is in.
  int reads = 0;
  const auto deadline = steady_clock::now() + std::chrono::seconds(60);
  for (uint32_t messages = 0; (messages < 60 || reads < 50) && steady_clock::now() < deadline; reads++) {
    rbd_changes* changes = nullptr;
    ASSERT_EQ(rbd_index_changes(mailbox, since, &changes, &err_), RBD_OK) << err_.message;
    Cache replayed = start;
    Replay(changes, since, &replayed);
    messages = changes->status.messages;
    EXPECT_EQ(replayed.size(), messages) << "ops and state of different snapshots";
    rbd_changes_free(&changes);
    if (reads % 5 == 0) {
      // A listing the writers raced is the mailbox at its MODSEQ.
      uint64_t listed_at = 0;
      const Cache listed = ListAll(mailbox, &listed_at, &overtaken);
      rbd_changes* log = nullptr;
      ASSERT_EQ(rbd_index_changes(mailbox, since, &log, &err_), RBD_OK) << err_.message;
      Cache expected = start;
      Replay(log, since, &expected, listed_at);
      rbd_changes_free(&log);
      EXPECT_TRUE(listed == expected) << "a listing differs from the log at its MODSEQ " << listed_at;
    }
  }
  EXPECT_GT(overtaken, 0) << "no writer raced a listing: the test proved nothing";
  size_t applied_on_3 = 0;  // keyword updates not lost to a racing flag update
  for (auto& w : workers) {
    for (const std::string& line : w->ReadAll())
      if (w == workers.front() && line.rfind("ok ", 0) == 0) applied_on_3++;
    EXPECT_EQ(w->Wait(), 0);
  }

  // Replaying every op from the first snapshot gives exactly the last one.
  rbd_changes* changes = nullptr;
  ASSERT_EQ(rbd_index_changes(mailbox, since, &changes, &err_), RBD_OK) << err_.message;
  Cache replayed = start;
  Replay(changes, since, &replayed);
  uint64_t highest = 0;
  const Cache end = ListAll(mailbox, &highest, &overtaken);
  EXPECT_EQ(changes->status.highest_modseq, highest);
  EXPECT_EQ(replayed.size(), 60u);
  EXPECT_TRUE(replayed == end) << "replay of the log differs from the records";
  EXPECT_EQ(end.at(3).keywords.size(), applied_on_3);
  EXPECT_GT(applied_on_3, 0u);
  rbd_changes_free(&changes);
  const uint32_t shards = SealedShards(mbox);
  if (!settings.empty()) {
    EXPECT_GE(shards, 12u) << "60 UIDs in shards of 4 leave at most two unsealed";
  }
  std::printf("[ info ] %d change reads, %d listings overtaken by a writer, %u shards\n", reads, overtaken,
              shards);
  rbd_index_close(&mailbox);
}

// The omap keys of object `oid` with `prefix`, read behind the core's back.
std::set<std::string> OmapKeys(librados::IoCtx& io, const std::string& oid, const char* prefix) {
  std::set<std::string> keys, page;
  std::string after = prefix;
  for (bool more = true; more;) {
    page.clear();
    if (io.omap_get_keys2(oid, after, 1000, &page, &more) < 0 || page.empty()) break;
    after = *page.rbegin();
    for (const std::string& key : page)
      if (key.rfind(prefix, 0) == 0) keys.insert(key);
  }
  return keys;
}

std::set<std::string> UidKeys(const char* prefix, std::initializer_list<uint32_t> uids) {
  std::set<std::string> keys;
  for (uint32_t uid : uids) keys.insert(prefix + rbd::keys::RecordKey(uid).substr(2));
  return keys;
}

TEST_F(ConcurrentReadsTest, OldUidsLiveInShardsAndEveryReadFindsThemThere) {
  Reopen({{"rbd_shard_uids", "4"}});
  const std::string mbox = CreateMailbox("INBOX");
  rbd_index* mailbox = OpenMailbox(mbox);
  for (uint32_t i = 1; i <= 30; i++) ASSERT_EQ(AppendOne(mailbox, "m" + std::to_string(i)), i);
  // UIDNEXT 31 is two shards past [20, 24), not yet past [24, 28).
  ASSERT_EQ(SealedShards(mbox), 6u);
  librados::IoCtx io = IndexIo();
  const std::string index = "i." + mbox;
  EXPECT_EQ(OmapKeys(io, index, "u."), UidKeys("u.", {24, 25, 26, 27, 28, 29, 30}));
  EXPECT_EQ(OmapKeys(io, index + ".000001", "u."), UidKeys("u.", {4, 5, 6, 7}));
  EXPECT_EQ(OmapKeys(io, index + ".000001", "b."), UidKeys("b.", {4, 5, 6, 7}));
  EXPECT_EQ(OmapKeys(io, index + ".000000", "u."), UidKeys("u.", {1, 2, 3}));
  for (uint32_t uid : {1u, 6u, 23u, 24u, 30u}) EXPECT_EQ(ReadBody(mailbox, uid), "m" + std::to_string(uid));

  // A flag change of a sealed message overrides it in the index object, an
  // expunge of one leaves a tombstone; unsealed ones change in place.
  uint64_t before = 0;
  int overtaken = 0;
  Cache expected = ListAll(mailbox, &before, &overtaken);
  ASSERT_EQ(expected.size(), 30u);
  const uint32_t flag_uids[] = {2, 25};
  rbd_flag_update seen{};
  seen.add_flags = RBD_FLAG_SEEN;
  uint32_t* conflicts = nullptr;
  size_t conflict_count = 0;
  uint64_t modseq = 0;
  ASSERT_EQ(rbd_index_update_flags(mailbox, flag_uids, 2, &seen, &conflicts, &conflict_count, &modseq, &err_),
            RBD_OK);
  rbd_uids_free(&conflicts);
  const uint32_t expunge_uids[] = {5, 26};
  size_t expunged = 0;
  ASSERT_EQ(rbd_index_expunge(mailbox, expunge_uids, 2, nullptr, &expunged, &err_), RBD_OK);
  ASSERT_EQ(expunged, 2u);
  rbd_changes* changes = nullptr;
  ASSERT_EQ(rbd_index_changes(mailbox, before, &changes, &err_), RBD_OK) << err_.message;
  Replay(changes, before, &expected);
  rbd_changes_free(&changes);
  uint64_t now = 0;
  const Cache listed = ListAll(mailbox, &now, &overtaken);
  EXPECT_TRUE(listed == expected) << "a listing differs from the log";
  EXPECT_EQ(listed.at(2).flags, RBD_FLAG_SEEN);
  EXPECT_EQ(listed.count(5), 0u);
  rbd_records* holder = nullptr;
  std::vector<uint32_t> uids;
  for (const rbd_record& r : Records(mailbox, &holder)) uids.push_back(r.uid);
  rbd_records_free(&holder);
  EXPECT_EQ(uids.size(), 28u);
  EXPECT_TRUE(std::is_sorted(uids.begin(), uids.end()));
  EXPECT_EQ(std::count(uids.begin(), uids.end(), 5u), 0);
  // Shards of 4 fold as soon as two keys of sealed UIDs pile up at an even
  // HIGHESTMODSEQ: a few commits later the index object holds none.
  for (uint32_t i = 31; i <= 34; i++) AppendOne(mailbox, "m" + std::to_string(i));
  for (const char* prefix : {"u.", "t."})
    for (const std::string& key : OmapKeys(io, index, prefix))
      EXPECT_GE(key, prefix + rbd::keys::RecordKey(28).substr(2)) << "left unfolded";
  EXPECT_EQ(OmapKeys(io, index + ".000001", "u."), UidKeys("u.", {4, 6, 7}));
  EXPECT_EQ(ReadBody(mailbox, 2), "m2");
  EXPECT_EQ(ReadBody(mailbox, 7), "m7");
  uint64_t last = 0;
  Cache folded = ListAll(mailbox, &last, &overtaken);
  EXPECT_EQ(folded.size(), 32u);
  EXPECT_EQ(folded.at(2).flags, RBD_FLAG_SEEN);
  EXPECT_EQ(folded.count(5), 0u);

  rbd_index_keys counts{};
  ASSERT_EQ(rbd_index_count_keys(mailbox, &counts, &err_), RBD_OK);
  EXPECT_EQ(counts.shards, 7u);
  EXPECT_LE(counts.largest_shard_keys, 8u) << "4 records and 4 inline bodies";
  ExpectCheckClean();
  rbd_index_close(&mailbox);

  ASSERT_EQ(rbd_delete_mailbox(user_, "INBOX", &err_), RBD_OK) << err_.message;
  EXPECT_EQ(OmapKeys(io, index + ".000001", "u.").size(), 0u);
  uint64_t size = 0;
  time_t mtime = 0;
  for (int n = 0; n < 7; n++)
    EXPECT_EQ(io.stat(index + ".00000" + std::to_string(n), &size, &mtime), -ENOENT) << "shard " << n;
}

TEST_F(ConcurrentReadsTest, AnUnshardedMailboxIsShardedAsItIsWritten) {
  Reopen({{"rbd_shard_uids", "0"}});
  const std::string mbox = CreateMailbox("INBOX");
  rbd_index* mailbox = OpenMailbox(mbox);
  for (uint32_t i = 1; i <= 20; i++) AppendOne(mailbox, "m" + std::to_string(i), i % 2 ? RBD_FLAG_SEEN : 0);
  EXPECT_EQ(SealedShards(mbox), 0u);
  uint64_t modseq = 0;
  int overtaken = 0;
  const Cache unsharded = ListAll(mailbox, &modseq, &overtaken);
  rbd_index_close(&mailbox);

  // With shards of 4, UIDNEXT 22 is two shards past four of them: each
  // commit seals one while any is due.
  Reopen({{"rbd_shard_uids", "4"}});
  mailbox = OpenMailbox(mbox);
  const uint32_t sealed_after[] = {1, 2, 3, 4, 5, 5};
  for (uint32_t uid = 21; uid <= 26; uid++) {
    EXPECT_EQ(AppendOne(mailbox, "m" + std::to_string(uid)), uid);
    EXPECT_EQ(SealedShards(mbox), sealed_after[uid - 21]) << "after UID " << uid;
  }
  uint64_t now = 0;
  Cache listed = ListAll(mailbox, &now, &overtaken);
  EXPECT_EQ(listed.size(), 26u);
  for (uint32_t uid = 21; uid <= 26; uid++) listed.erase(uid);
  for (auto& [uid, msg] : listed) EXPECT_TRUE(msg == unsharded.at(uid)) << "UID " << uid << " changed";
  EXPECT_EQ(listed.size(), 20u);
  for (uint32_t uid : {1u, 9u, 16u, 17u}) EXPECT_EQ(ReadBody(mailbox, uid), "m" + std::to_string(uid));
  librados::IoCtx io = IndexIo();
  EXPECT_EQ(OmapKeys(io, "i." + mbox + ".000004", "u."), UidKeys("u.", {16, 17, 18, 19}));
  EXPECT_EQ(OmapKeys(io, "i." + mbox, "u."), UidKeys("u.", {20, 21, 22, 23, 24, 25, 26}));
  rbd_index_close(&mailbox);
}

// The change-log keys of mailbox `guid_hex` and its floor, read behind the
// core's back.
std::vector<uint64_t> LogModseqs(librados::IoCtx& index_io, const std::string& guid_hex, uint64_t* floor) {
  librados::bufferlist raw;
  rbd::MailboxState state;
  EXPECT_GT(index_io.getxattr("i." + guid_hex, rbd::keys::kStateAttr, raw), 0);
  EXPECT_TRUE(rbd::Decode(raw.to_str(), &state).ok());
  *floor = state.log_floor;
  std::vector<uint64_t> modseqs;
  std::string after = rbd::keys::kChangePrefix;
  for (bool more = true; more;) {
    std::map<std::string, librados::bufferlist> page;
    EXPECT_EQ(index_io.omap_get_vals2("i." + guid_hex, after, rbd::keys::kChangePrefix, 1000, &page, &more),
              0);
    if (page.empty()) break;
    after = page.rbegin()->first;
    for (const auto& entry : page) modseqs.push_back(*rbd::keys::ParseChangeKey(entry.first));
  }
  return modseqs;
}

TEST_F(MailboxIndexTest, ChangeLogTrimsItselfToItsWindowByCount) {
  Reopen({{"rbd_changelog_max_entries", "10"}});
  const std::string mbox = CreateMailbox("INBOX");
  rbd_index* mailbox = OpenMailbox(mbox);
  for (int i = 0; i < 25; i++) AppendOne(mailbox, "m" + std::to_string(i));
  // A keyword op takes several MODSEQs, one entry.
  const char* keywords[] = {"k1", "k2", "k3"};
  rbd_flag_update update{};
  update.add_keywords = keywords;
  update.add_keyword_count = 3;
  uint32_t uid = 3, *conflicts = nullptr;
  size_t nconflicts = 0;
  uint64_t modseq = 0;
  ASSERT_EQ(rbd_index_update_flags(mailbox, &uid, 1, &update, &conflicts, &nconflicts, &modseq, &err_),
            RBD_OK);
  rbd_uids_free(&conflicts);
  for (int i = 0; i < 5; i++) AppendOne(mailbox, "n" + std::to_string(i));
  rbd_index_status st{};
  ASSERT_EQ(rbd_index_get_status(mailbox, &st, &err_), RBD_OK);
  EXPECT_EQ(st.log_floor_modseq, st.highest_modseq - 10);

  uint64_t floor = 0;
  librados::IoCtx index_io = AdminIo(Env("RBD_TEST_INDEX_POOL"));
  const std::vector<uint64_t> modseqs = LogModseqs(index_io, mbox, &floor);
  EXPECT_EQ(floor, st.log_floor_modseq);
  ASSERT_FALSE(modseqs.empty());
  EXPECT_GT(modseqs.front(), floor) << "an entry below the floor is left";
  EXPECT_EQ(modseqs.back(), st.highest_modseq);
  EXPECT_LE(modseqs.size(), 10u);

  // Behind the floor: resync; at it: every op since.
  rbd_changes* changes = nullptr;
  EXPECT_EQ(rbd_index_changes(mailbox, floor - 1, &changes, &err_), RBD_ERR_RESYNC);
  ASSERT_EQ(rbd_index_changes(mailbox, floor, &changes, &err_), RBD_OK) << err_.message;
  EXPECT_EQ(changes->op_count, modseqs.size());
  rbd_changes_free(&changes);

  // An explicit trim cuts further, and is not a change clients see.
  ASSERT_EQ(rbd_index_trim_log(mailbox, st.highest_modseq - 2, &err_), RBD_OK) << err_.message;
  EXPECT_EQ(LogModseqs(index_io, mbox, &floor).size(), 2u);
  EXPECT_EQ(floor, st.highest_modseq - 2);
  rbd_index_status after{};
  ASSERT_EQ(rbd_index_get_status(mailbox, &after, &err_), RBD_OK);
  EXPECT_EQ(after.highest_modseq, st.highest_modseq);
  rbd_index_close(&mailbox);
}

TEST_F(MailboxIndexTest, ChangeLogTrimsItselfByAge) {
  Reopen({{"rbd_changelog_max_entries", "0"}, {"rbd_changelog_max_age", "2s"}});
  const std::string mbox = CreateMailbox("INBOX");
  rbd_index* mailbox = OpenMailbox(mbox);
  for (int i = 0; i < 5; i++) AppendOne(mailbox, "old " + std::to_string(i));
  uint64_t floor = 0;
  librados::IoCtx index_io = AdminIo(Env("RBD_TEST_INDEX_POOL"));
  EXPECT_EQ(LogModseqs(index_io, mbox, &floor).size(), 5u) << "nothing is old yet";
  std::this_thread::sleep_for(std::chrono::milliseconds(3500));
  AppendOne(mailbox, "new");
  rbd_index_status st{};
  ASSERT_EQ(rbd_index_get_status(mailbox, &st, &err_), RBD_OK);
  EXPECT_EQ(LogModseqs(index_io, mbox, &floor), std::vector<uint64_t>{st.highest_modseq})
      << "entries older than rbd_changelog_max_age are left";
  EXPECT_EQ(floor, st.highest_modseq - 1);
  rbd_index_close(&mailbox);
}

// A log written before trimming existed (or under a wider window) shrinks
// by at most 512 MODSEQs per commit, so no single op grows large.
TEST_F(MailboxIndexTest, AnOldLongLogShrinksAStepPerCommit) {
  Reopen({{"rbd_changelog_max_entries", "0"}, {"rbd_changelog_max_age", "0"}});
  const std::string mbox = CreateMailbox("INBOX");
  rbd_index* mailbox = OpenMailbox(mbox);
  AppendOne(mailbox, "m");
  rbd_flag_update flag{};
  uint32_t uid = 1, *conflicts = nullptr;
  size_t nconflicts = 0;
  uint64_t modseq = 0;
  for (int i = 0; i < 1199; i++) {
    flag.add_flags = i % 2 == 0 ? RBD_FLAG_SEEN : 0;
    flag.remove_flags = i % 2 == 0 ? 0 : RBD_FLAG_SEEN;
    ASSERT_EQ(rbd_index_update_flags(mailbox, &uid, 1, &flag, &conflicts, &nconflicts, &modseq, &err_),
              RBD_OK);
    rbd_uids_free(&conflicts);
  }
  uint64_t floor = 0;
  librados::IoCtx index_io = AdminIo(Env("RBD_TEST_INDEX_POOL"));
  ASSERT_EQ(LogModseqs(index_io, mbox, &floor).size(), 1200u);
  rbd_index_close(&mailbox);

  Reopen({{"rbd_changelog_max_entries", "10"}});
  mailbox = OpenMailbox(mbox);
  std::vector<size_t> lengths;
  for (int i = 0; i < 3; i++) {
    AppendOne(mailbox, "n" + std::to_string(i));
    lengths.push_back(LogModseqs(index_io, mbox, &floor).size());
  }
  // MODSEQs 1..512 went first, of which 1 (the new mailbox's) has no entry.
  EXPECT_EQ(lengths, (std::vector<size_t>{1201 - 511, 1202 - 1023, 10}));
  rbd_index_close(&mailbox);
}

// Writers in several processes commit (each commit trims the log) while a
// reader follows the mailbox as a node's cache does: replaying the log when
// it reaches back far enough, listing every record when it does not. Every
// step must land on exactly the snapshot it read, the log must never
// outgrow its window, and the end must equal the records.
TEST_F(MailboxIndexTest, TrimmingUnderConcurrentWritersKeepsEveryReaderExact) {
  constexpr int kWindow = 16;
  Reopen({{"rbd_changelog_max_entries", std::to_string(kWindow)}});
  const std::string mbox = CreateMailbox("INBOX");
  rbd_index* mailbox = OpenMailbox(mbox);
  for (int i = 0; i < 20; i++) AppendOne(mailbox, "m" + std::to_string(i));
  setenv("RBD_TEST_SETTINGS", ("rbd_changelog_max_entries=" + std::to_string(kWindow)).c_str(), 1);
  std::vector<std::unique_ptr<Worker>> workers;
  workers.push_back(
      std::make_unique<Worker>(ns_, std::vector<std::string>{"keyword-race", mbox, "3", "150", "a"}));
  workers.push_back(std::make_unique<Worker>(
      ns_, std::vector<std::string>{"add-flag", mbox, std::to_string(RBD_FLAG_SEEN), "20"}));
  workers.push_back(std::make_unique<Worker>(ns_, std::vector<std::string>{"append", mbox, "150", "w"}));
  workers.push_back(std::make_unique<Worker>(ns_, std::vector<std::string>{"append", mbox, "150", "v"}));
  unsetenv("RBD_TEST_SETTINGS");
  librados::IoCtx index_io = AdminIo(Env("RBD_TEST_INDEX_POOL"));

  int overtaken = 0, replays = 0, resyncs = 0;
  uint64_t since = 0;
  Cache cache = ListAll(mailbox, &since, &overtaken);
  const auto deadline = steady_clock::now() + std::chrono::seconds(90);
  uint32_t messages = 0;
  for (int round = 0; (messages < 320 || round < 40) && steady_clock::now() < deadline; round++) {
    rbd_changes* changes = nullptr;
    rbd_code r = rbd_index_changes(mailbox, since, &changes, &err_);
    if (r == RBD_OK) {
      EXPECT_GE(since, changes->status.log_floor_modseq);
      Replay(changes, since, &cache);
      since = changes->status.highest_modseq;
      messages = changes->status.messages;
      EXPECT_EQ(cache.size(), messages) << "ops and state of different snapshots";
      rbd_changes_free(&changes);
      replays++;
    } else {
      ASSERT_EQ(r, RBD_ERR_RESYNC) << err_.message;
      cache = ListAll(mailbox, &since, &overtaken);
      resyncs++;
    }
    uint64_t floor = 0;
    const std::vector<uint64_t> modseqs = LogModseqs(index_io, mbox, &floor);
    EXPECT_LE(modseqs.size(), static_cast<size_t>(kWindow)) << "the log outgrew its window";
    if (!modseqs.empty()) {
      EXPECT_GT(modseqs.front(), floor);
    }
    // A reader that falls behind the window (here, by sleeping) resyncs.
    if (round % 3 == 2) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (auto& w : workers) {
    w->ReadAll();
    EXPECT_EQ(w->Wait(), 0);
  }
  rbd_changes* changes = nullptr;
  rbd_code r = rbd_index_changes(mailbox, since, &changes, &err_);
  if (r == RBD_OK) {
    Replay(changes, since, &cache);
    rbd_changes_free(&changes);
  } else {
    ASSERT_EQ(r, RBD_ERR_RESYNC);
    cache = ListAll(mailbox, &since, &overtaken);
  }
  uint64_t highest = 0;
  const Cache end = ListAll(mailbox, &highest, &overtaken);
  EXPECT_EQ(end.size(), 320u);
  EXPECT_TRUE(cache == end) << "the reader's cache differs from the records";
  EXPECT_GT(replays, 0);
  EXPECT_GT(resyncs, 0) << "no reader fell behind the window: the test proved nothing";
  std::printf("[ info ] %d replays, %d resyncs, %d listings overtaken\n", replays, resyncs, overtaken);
  rbd_index_close(&mailbox);
}

// The snapshot's keyword table: every name defined, in the order first set.
std::vector<std::string> SnapshotKeywords(rbd_index* mailbox, rbd_index_status* st) {
  rbd_records* recs = nullptr;
  const char* const* names = nullptr;
  size_t count = 0;
  rbd_error err{};
  EXPECT_EQ(rbd_index_list_all(mailbox, 0, &recs, st, &names, &count, &err), RBD_OK);
  std::vector<std::string> out(names, names + count);
  rbd_records_free(&recs);
  return out;
}

std::vector<std::string> RecordKeywords(rbd_index* mailbox, uint32_t uid) {
  rbd_records* recs = nullptr;
  rbd_error err{};
  EXPECT_EQ(rbd_index_lookup_records(mailbox, &uid, 1, &recs, &err), RBD_OK);
  std::vector<std::string> out;
  if (recs != nullptr && recs->count == 1)
    out.assign(recs->records[0].keywords, recs->records[0].keywords + recs->records[0].keyword_count);
  rbd_records_free(&recs);
  return out;
}

TEST_F(MailboxIndexTest, KeywordsLiveInTheirRecordsAndStayDefinedInTheOrderFirstSet) {
  const std::string mbox = CreateMailbox("INBOX");
  rbd_index* mailbox = OpenMailbox(mbox);
  const std::string body = "Subject: k\r\n\r\nk\r\n";
  auto append = [&](std::vector<const char*> keywords) {
    rbd_new_message msg{};
    RandomGuid(msg.guid);
    msg.body = body.data();
    msg.body_size = body.size();
    msg.keywords = keywords.data();
    msg.keyword_count = keywords.size();
    uint32_t uid = 0;
    EXPECT_EQ(rbd_index_append(mailbox, &msg, 1, &uid, &err_), RBD_OK) << err_.message;
    return uid;
  };
  auto update = [&](uint32_t uid, std::vector<const char*> add, std::vector<const char*> remove) {
    rbd_flag_update u{};
    u.add_keywords = add.data();
    u.add_keyword_count = add.size();
    u.remove_keywords = remove.data();
    u.remove_keyword_count = remove.size();
    uint32_t* conflicts = nullptr;
    size_t nconflicts = 0;
    uint64_t modseq = 0;
    ASSERT_EQ(rbd_index_update_flags(mailbox, &uid, 1, &u, &conflicts, &nconflicts, &modseq, &err_), RBD_OK);
    free(conflicts);
  };
  const uint32_t one = append({"zz", "yy"});
  const uint32_t two = append({"aa", "yy"});
  update(one, {"mm"}, {"zz", "never-set"});
  rbd_index_status st{};
  EXPECT_EQ(SnapshotKeywords(mailbox, &st), (std::vector<std::string>{"zz", "yy", "aa", "mm"}))
      << "in the order first set (within one op, as named); a removed keyword stays defined, "
         "one only removed is never defined";
  EXPECT_EQ(st.keyword_count, 4u);
  EXPECT_EQ(RecordKeywords(mailbox, one), (std::vector<std::string>{"mm", "yy"}));
  EXPECT_EQ(RecordKeywords(mailbox, two), (std::vector<std::string>{"aa", "yy"}));

  // What every op compares and rewrites does not grow with the names.
  librados::IoCtx index_io = IndexIo();
  librados::bufferlist before, after;
  ASSERT_GT(index_io.getxattr("i." + mbox, rbd::keys::kStateAttr, before), 0);
  std::vector<std::string> many;
  for (int i = 0; i < 500; i++) many.push_back("keyword-" + std::to_string(i));
  std::vector<const char*> many_names;
  for (const std::string& k : many) many_names.push_back(k.c_str());
  update(two, many_names, {});
  ASSERT_GT(index_io.getxattr("i." + mbox, rbd::keys::kStateAttr, after), 0);
  EXPECT_EQ(after.length(), before.length());
  EXPECT_EQ(RecordKeywords(mailbox, one), (std::vector<std::string>{"mm", "yy"}));
  EXPECT_EQ(SnapshotKeywords(mailbox, &st).size(), 504u);
  rbd_index_close(&mailbox);
}

TEST_F(MailboxIndexTest, RecordsOfAnOlderWriterResolveTheirKeywordIds) {
  const std::string mbox = CreateMailbox("INBOX");
  rbd_index* mailbox = OpenMailbox(mbox);
  const uint32_t uid = AppendOne(mailbox, "old");
  // As a writer before keywords were names left them: a table in the
  // state, ids in the record.
  EditState(mbox, [](rbd::MailboxState* s) { s->legacy_keywords = {"$Old", "Legacy", "unused"}; });
  librados::IoCtx index_io = IndexIo();
  std::map<std::string, librados::bufferlist> values;
  ASSERT_EQ(index_io.omap_get_vals_by_keys("i." + mbox, {rbd::keys::RecordKey(uid)}, &values), 0);
  rbd::MessageRecord rec;
  ASSERT_TRUE(rbd::Decode(values.begin()->second.to_str(), &rec).ok());
  rec.legacy_keyword_ids = {1, 0};
  values.begin()->second.clear();
  values.begin()->second.append(rbd::Encode(rec));
  ASSERT_EQ(index_io.omap_set("i." + mbox, values), 0);

  rbd_index_close(&mailbox);
  mailbox = OpenMailbox(mbox);
  EXPECT_EQ(RecordKeywords(mailbox, uid), (std::vector<std::string>{"$Old", "Legacy"}));
  rbd_index_status st{};
  EXPECT_EQ(SnapshotKeywords(mailbox, &st), (std::vector<std::string>{"$Old", "Legacy", "unused"}));
  rbd_flag_update u{};
  const char* add[] = {"new", "unused"};
  u.add_keywords = add;
  u.add_keyword_count = 2;
  uint32_t* conflicts = nullptr;
  size_t nconflicts = 0;
  uint64_t modseq = 0;
  ASSERT_EQ(rbd_index_update_flags(mailbox, &uid, 1, &u, &conflicts, &nconflicts, &modseq, &err_), RBD_OK);
  free(conflicts);
  EXPECT_EQ(RecordKeywords(mailbox, uid), (std::vector<std::string>{"$Old", "Legacy", "new", "unused"}));
  EXPECT_EQ(SnapshotKeywords(mailbox, &st), (std::vector<std::string>{"$Old", "Legacy", "unused", "new"}))
      << "a legacy name is not defined twice";
  EXPECT_EQ(st.keyword_count, 4u);
  rbd_index_close(&mailbox);
}

TEST_F(MailboxIndexTest, ModseqAdvancesByTheRecordsAReplayWrites) {
  rbd_index* mailbox = OpenMailbox(CreateMailbox("INBOX"));
  rbd_index_status st{};
  ASSERT_EQ(rbd_index_get_status(mailbox, &st, &err_), RBD_OK);
  uint64_t modseq = st.highest_modseq;
  auto expect_step = [&](uint64_t step, const char* what) {
    ASSERT_EQ(rbd_index_get_status(mailbox, &st, &err_), RBD_OK);
    EXPECT_EQ(st.highest_modseq, modseq + step) << what;
    modseq = st.highest_modseq;
  };
  const char* two[] = {"$Work", "$Home"};
  rbd_new_message msgs[3] = {};
  const std::string body = "Subject: k\r\n\r\nk\r\n";
  for (auto& m : msgs) {
    RandomGuid(m.guid);
    m.body = body.data();
    m.body_size = body.size();
    m.keywords = two;
    m.keyword_count = 2;
  }
  uint32_t uids[3];
  ASSERT_EQ(rbd_index_append(mailbox, msgs, 3, uids, &err_), RBD_OK);
  expect_step(1 + 2, "append of 3 messages with 2 distinct keywords");

  uint32_t* conflicts = nullptr;
  size_t nconflicts = 0;
  uint64_t op_modseq = 0;
  rbd_flag_update update{};
  update.add_flags = RBD_FLAG_SEEN;
  const char* home[] = {"$Home"};
  update.remove_keywords = home;
  update.remove_keyword_count = 1;
  ASSERT_EQ(rbd_index_update_flags(mailbox, uids, 3, &update, &conflicts, &nconflicts, &op_modseq, &err_),
            RBD_OK);
  expect_step(1 + 1, "\\Seen added and one keyword removed");
  EXPECT_EQ(op_modseq, modseq);

  rbd_flag_update again{};
  again.add_flags = RBD_FLAG_SEEN;
  ASSERT_EQ(rbd_index_update_flags(mailbox, uids, 3, &again, &conflicts, &nconflicts, &op_modseq, &err_),
            RBD_OK);
  expect_step(0, "a change that changes nothing");
  EXPECT_EQ(op_modseq, 0u) << "no op, so no MODSEQ of its own";

  size_t n = 0;
  ASSERT_EQ(rbd_index_expunge(mailbox, uids, 2, nullptr, &n, &err_), RBD_OK);
  expect_step(1, "expunge");
  rbd_index_close(&mailbox);
}

// A transaction's flag changes (each with its own UIDs) are one guarded op:
// all take effect or none, with one MODSEQ for the records their union
// writes, and one change-log entry. Conflicts are those of every change.
TEST_F(MailboxIndexTest, TheFlagChangesOfATransactionAreOneOp) {
  const std::string mbox = CreateMailbox("INBOX");
  rbd_index* mailbox = OpenMailbox(mbox);
  const uint32_t seen = AppendOne(mailbox, "seen", RBD_FLAG_SEEN);
  const uint32_t flagged = AppendOne(mailbox, "flagged", RBD_FLAG_FLAGGED);
  const uint32_t plain = AppendOne(mailbox, "plain");
  rbd_index_status before{};
  ASSERT_EQ(rbd_index_get_status(mailbox, &before, &err_), RBD_OK);

  // STORE 1:3 FLAGS (\Draft $Work), as Dovecot hands it over: a different
  // removal for each message, and an older UNCHANGEDSINCE for the last.
  const char* work[] = {"$Work"};
  rbd_flag_change changes[3] = {};
  changes[0].uids = &seen;
  changes[0].uid_count = 1;
  changes[0].update.add_flags = RBD_FLAG_DRAFT;
  changes[0].update.remove_flags = RBD_FLAG_SEEN;
  changes[0].update.add_keywords = work;
  changes[0].update.add_keyword_count = 1;
  changes[1] = changes[0];
  changes[1].uids = &flagged;
  changes[1].update.remove_flags = RBD_FLAG_FLAGGED;
  changes[2] = changes[0];
  changes[2].uids = &plain;
  changes[2].update.remove_flags = 0;
  changes[2].update.unchanged_since = 1;
  uint32_t* conflicts = nullptr;
  size_t nconflicts = 0;
  uint64_t modseq = 0;
  ASSERT_EQ(rbd_index_update_flags_of(mailbox, changes, 3, &conflicts, &nconflicts, &modseq, &err_), RBD_OK)
      << err_.message;
  ASSERT_EQ(nconflicts, 1u);
  EXPECT_EQ(conflicts[0], plain);
  rbd_uids_free(&conflicts);
  EXPECT_EQ(modseq, before.highest_modseq + 2) << "one flag record and one keyword record";

  rbd_changes* ops = nullptr;
  ASSERT_EQ(rbd_index_changes(mailbox, before.highest_modseq, &ops, &err_), RBD_OK) << err_.message;
  ASSERT_EQ(ops->op_count, 1u);
  ASSERT_EQ(ops->ops[0].updated_count, 2u);
  for (size_t i = 0; i < 2; i++) {
    EXPECT_EQ(ops->ops[0].updated[i].flags, RBD_FLAG_DRAFT);
    ASSERT_EQ(ops->ops[0].updated[i].keyword_count, 1u);
    EXPECT_STREQ(ops->ops[0].updated[i].keywords[0], "$Work");
  }
  rbd_changes_free(&ops);
  rbd_index_close(&mailbox);
}

TEST_F(MailboxIndexTest, CopySharesStoredBodiesAndExpungeReleasesThem) {
  Reopen({{"rbd_inline_max", "1k"}});

  rbd_index* inbox = OpenMailbox(CreateMailbox("INBOX"));
  rbd_index* archive = OpenMailbox(CreateMailbox("Archive"));
  const std::string big = Big(5000, 1), small = "Subject: small\r\n\r\nhi\r\n";
  uint8_t big_guid[RBD_GUID_SIZE];
  uint32_t big_uid = AppendOne(inbox, big, RBD_FLAG_FLAGGED, big_guid);
  uint32_t small_uid = AppendOne(inbox, small);

  librados::IoCtx mail = AdminIo(Env("RBD_TEST_POOL"));
  std::set<std::string> before;
  for (auto it = mail.nobjects_begin(); it != mail.nobjects_end(); ++it) before.insert(it->get_oid());
  EXPECT_EQ(before, std::set<std::string>{"m." + Hex(big_guid)})
      << "only the large body is a separate object";

  uint32_t src[] = {big_uid, small_uid, 99};
  uint32_t dest[3];
  ASSERT_EQ(rbd_index_copy(inbox, src, 3, archive, nullptr, dest, &err_), RBD_OK) << err_.message;
  EXPECT_EQ(dest[0], 1u);
  EXPECT_EQ(dest[1], 2u);
  EXPECT_EQ(dest[2], 0u) << "a UID that does not exist is not copied";
  std::set<std::string> after;
  for (auto it = mail.nobjects_begin(); it != mail.nobjects_end(); ++it) after.insert(it->get_oid());
  EXPECT_EQ(after, before) << "COPY must not upload a body";
  rbd_body_info info{};
  ASSERT_EQ(rbd_body_stat(user_, big_guid, &info, &err_), RBD_OK);
  EXPECT_EQ(info.references, 2u);
  EXPECT_EQ(ReadBody(archive, 1), big);
  EXPECT_EQ(ReadBody(archive, 2), small);
  rbd_records* recs = nullptr;
  uint32_t one = 1;
  ASSERT_EQ(rbd_index_lookup_records(archive, &one, 1, &recs, &err_), RBD_OK);
  EXPECT_EQ(recs->records[0].flags, RBD_FLAG_FLAGGED) << "COPY keeps flags";
  rbd_records_free(&recs);

  size_t n = 0;
  ASSERT_EQ(rbd_index_expunge(inbox, &big_uid, 1, nullptr, &n, &err_), RBD_OK);
  ASSERT_EQ(rbd_body_stat(user_, big_guid, &info, &err_), RBD_OK);
  EXPECT_EQ(info.references, 1u);
  EXPECT_EQ(ReadBody(archive, 1), big);
  ASSERT_EQ(rbd_index_expunge(archive, &one, 1, nullptr, &n, &err_), RBD_OK);
  ASSERT_EQ(rbd_body_stat(user_, big_guid, &info, &err_), RBD_OK) << "only gc removes a body";
  EXPECT_EQ(info.references, 0u);
  rbd_index_close(&inbox);
  rbd_index_close(&archive);
}

// A session may still show a message another node expunged: its body,
// stored or inline, stays readable until gc finds it unreferenced for the
// grace period; a new reference in between takes it back.
TEST_F(MailboxIndexTest, ExpungedBodiesStayUntilGcReclaimsThemUnreferencedAfterTheGrace) {
  Reopen({{"rbd_inline_max", "1k"}});
  rbd_index* inbox = OpenMailbox(CreateMailbox("INBOX"));
  rbd_index* archive = OpenMailbox(CreateMailbox("Archive"));
  const std::string big = Big(5000, 2), rescued = Big(6000, 3), small = "Subject: small\r\n\r\nhi\r\n";
  uint8_t big_guid[RBD_GUID_SIZE], rescued_guid[RBD_GUID_SIZE];
  uint32_t uids[] = {AppendOne(inbox, big, 0, big_guid), AppendOne(inbox, small),
                     AppendOne(inbox, rescued, 0, rescued_guid)};
  // What a session's view keeps of the messages (rbd-mail.c reads with it).
  rbd_records* shown = nullptr;
  ASSERT_EQ(rbd_index_lookup_records(inbox, uids, 3, &shown, &err_), RBD_OK);
  ASSERT_EQ(shown->count, 3u);
  ASSERT_TRUE(shown->records[1].inline_body);
  auto read = [&](const rbd_record& rec) { return ReadRecordBody(inbox, rec); };

  size_t n = 0;
  ASSERT_EQ(rbd_index_expunge(inbox, uids, 3, nullptr, &n, &err_), RBD_OK);
  ASSERT_EQ(n, 3u);
  rbd_body_info info{};
  ASSERT_EQ(rbd_body_stat(user_, big_guid, &info, &err_), RBD_OK) << "Expunge keeps the body";
  EXPECT_EQ(info.references, 0u);
  EXPECT_EQ(read(shown->records[0]), big);
  EXPECT_EQ(read(shown->records[1]), small) << "the inline body stays too";

  rbd_gc_stats stats{};
  ASSERT_EQ(rbd_user_gc(user_, 3600, &stats, &err_), RBD_OK) << err_.message;
  EXPECT_EQ(stats.bodies_reclaimed, 0u) << "never within the grace period";
  EXPECT_EQ(stats.bodies_in_grace, 3u) << "two stored, one inline";
  EXPECT_EQ(read(shown->records[0]), big);
  EXPECT_EQ(read(shown->records[1]), small);

  // A COPY by the session that still shows the message references the
  // released body again.
  auto copy = [&](const rbd_record& rec) {
    rbd_copy_override over{};
    over.shown = &rec;
    uint32_t dest = 0;
    EXPECT_EQ(rbd_index_copy(inbox, &rec.uid, 1, archive, &over, &dest, &err_), RBD_OK) << err_.message;
    return dest;
  };
  const uint32_t copy_uid = copy(shown->records[2]);
  ASSERT_NE(copy_uid, 0u);
  ASSERT_EQ(rbd_body_stat(user_, rescued_guid, &info, &err_), RBD_OK);
  EXPECT_EQ(info.references, 1u);
  rbd_copy_override unshown{};
  uint32_t dest = 0;
  ASSERT_EQ(rbd_index_copy(inbox, &uids[0], 1, archive, &unshown, &dest, &err_), RBD_OK);
  EXPECT_EQ(dest, 0u) << "without what the session shows, an expunged message is not copied";

  ASSERT_EQ(rbd_user_gc(user_, 0, &stats, &err_), RBD_OK) << err_.message;
  EXPECT_EQ(stats.bodies_reclaimed, 2u) << "the big and the inline body";
  EXPECT_EQ(rbd_body_stat(user_, big_guid, &info, &err_), RBD_ERR_NOT_FOUND);
  EXPECT_EQ(read(shown->records[0]), "<not found>");
  EXPECT_EQ(read(shown->records[1]), "<not found>");
  EXPECT_EQ(ReadBody(archive, copy_uid), rescued) << "a rescued body is never reclaimed";

  // Once gc has removed a body, a copy is an expunged message rather than
  // a record without a body.
  EXPECT_EQ(copy(shown->records[0]), 0u);
  EXPECT_EQ(copy(shown->records[1]), 0u);
  rbd_new_message again{};
  std::memcpy(again.guid, big_guid, RBD_GUID_SIZE);
  again.stored = 1;
  EXPECT_EQ(rbd_index_append(archive, &again, 1, &dest, &err_), RBD_ERR_NOT_FOUND);
  rbd_records_free(&shown);
  rbd_index_close(&inbox);
  rbd_index_close(&archive);
}

TEST_F(MailboxIndexTest, ReferencesOfManyBodiesChangeTogether) {
  Reopen({{"rbd_inline_max", "0"}});
  rbd_index* inbox = OpenMailbox(CreateMailbox("INBOX"));
  rbd_index* archive = OpenMailbox(CreateMailbox("Archive"));
  constexpr int kBodies = 25;
  std::vector<std::array<uint8_t, RBD_GUID_SIZE>> guids(kBodies);
  std::vector<uint32_t> uids;
  for (auto& g : guids) uids.push_back(AppendOne(inbox, "Subject: many\r\n\r\nbody\r\n", 0, g.data()));
  std::vector<uint32_t> copied(kBodies);
  ASSERT_EQ(rbd_index_copy(inbox, uids.data(), kBodies, archive, nullptr, copied.data(), &err_), RBD_OK)
      << err_.message;
  rbd_body_info info{};
  for (auto& g : guids) {
    ASSERT_EQ(rbd_body_stat(user_, g.data(), &info, &err_), RBD_OK);
    EXPECT_EQ(info.references, 2u);
  }
  size_t n = 0;
  ASSERT_EQ(rbd_index_expunge(inbox, uids.data(), kBodies, nullptr, &n, &err_), RBD_OK);
  for (auto& g : guids) {
    ASSERT_EQ(rbd_body_stat(user_, g.data(), &info, &err_), RBD_OK);
    EXPECT_EQ(info.references, 1u);
  }
  ASSERT_EQ(rbd_index_expunge(archive, copied.data(), kBodies, nullptr, &n, &err_), RBD_OK);
  for (auto& g : guids) {
    ASSERT_EQ(rbd_body_stat(user_, g.data(), &info, &err_), RBD_OK) << "released, left to gc";
    EXPECT_EQ(info.references, 0u);
  }
  rbd_index_close(&inbox);
  rbd_index_close(&archive);
}

TEST_F(MailboxIndexTest, LargeBodiesAreStripedAndReadByRange) {
  Reopen({{"rbd_stripe_size", "64k"}});
  rbd_index* inbox = OpenMailbox(CreateMailbox("INBOX"));
  const std::string body = Big(300 * 1024 + 17, 3);
  uint8_t guid[RBD_GUID_SIZE];
  uint32_t uid = AppendOne(inbox, body, 0, guid);
  rbd_body_info info{};
  ASSERT_EQ(rbd_body_stat(user_, guid, &info, &err_), RBD_OK);
  EXPECT_EQ(info.chunks, 5u);
  EXPECT_EQ(info.size, body.size());
  EXPECT_EQ(ReadBody(inbox, uid), body);
  for (auto [off, len] : std::vector<std::pair<uint64_t, uint64_t>>{
           {0, 10}, {65530, 20}, {65536, 65536}, {100000, 150000}, {300 * 1024, 100}, {body.size() - 5, 0}}) {
    EXPECT_EQ(ReadBody(inbox, uid, off, len), body.substr(off, len == 0 ? std::string::npos : len))
        << "range " << off << "+" << len;
  }
  EXPECT_EQ(ReadBody(inbox, uid, body.size() + 10, 5), "");

  // A streamed body lands the same way.
  uint8_t streamed[RBD_GUID_SIZE];
  RandomGuid(streamed);
  ASSERT_NO_FATAL_FAILURE(StreamBody(streamed, body, 10000));
  const uint32_t uid2 = AppendStored(inbox, streamed, body.size(), false);
  EXPECT_EQ(ReadBody(inbox, uid2), body);
  ASSERT_EQ(rbd_body_stat(user_, streamed, &info, &err_), RBD_OK);
  EXPECT_EQ(info.references, 2u) << "writer's reference plus the append's";
  rbd_index_close(&inbox);
}

// One batch (a FETCH's prefetch) reads inline bodies from the index while
// its stored ones, one object or chunked, are on their way; each body comes
// back in its place, and one the index does not have fails alone.
TEST_F(MailboxIndexTest, ABatchReadsInlineAndStoredBodiesTogether) {
  Reopen({{"rbd_inline_max", "4k"}, {"rbd_stripe_size", "64k"}});
  rbd_index* inbox = OpenMailbox(CreateMailbox("INBOX"));
  const std::vector<std::string> bodies = {Big(100, 1), Big(10 * 1024, 2), Big(200 * 1024 + 3, 3),
                                           Big(300, 4)};
  for (const std::string& body : bodies) AppendOne(inbox, body);
  rbd_records* holder = nullptr;
  std::vector<rbd_record> records = Records(inbox, &holder);
  ASSERT_EQ(records.size(), bodies.size());
  EXPECT_TRUE(records[0].inline_body && !records[1].inline_body && !records[2].inline_body);
  rbd_record missing = records[3];
  missing.uid = 999;
  records.insert(records.begin() + 2, missing);

  std::vector<rbd_buffer*> read(records.size());
  EXPECT_EQ(rbd_index_read_bodies(inbox, records.data(), records.size(), read.data(), &err_),
            RBD_ERR_NOT_FOUND);
  EXPECT_EQ(read[2], nullptr) << "UID 999 has no body";
  read.erase(read.begin() + 2);
  for (size_t i = 0; i < bodies.size(); i++) {
    ASSERT_NE(read[i], nullptr) << "body " << i << ": " << err_.message;
    EXPECT_EQ(std::string(static_cast<const char*>(read[i]->data), read[i]->size), bodies[i]) << "body " << i;
    rbd_buffer_free(&read[i]);
  }
  rbd_records_free(&holder);
  rbd_index_close(&inbox);
}

// A body streamed with bounded memory is published by its head, owned by
// the record that names it (one reference, not two), and read by range
// through a reader that touches only the chunks a range covers.
TEST_F(MailboxIndexTest, StreamedBodiesAreOwnedByTheirRecordAndReadByRange) {
  Reopen({{"rbd_stripe_size", "64k"}});
  rbd_index* inbox = OpenMailbox(CreateMailbox("INBOX"));
  const std::string body = Big(5 * 1024 * 1024 + 99, 5);  // 1 MiB pieces across 64k chunks
  uint8_t guid[RBD_GUID_SIZE];
  RandomGuid(guid);
  ASSERT_NO_FATAL_FAILURE(StreamBody(guid, body, 300000));
  uint32_t uid = AppendStored(inbox, guid, body.size(), true);
  ASSERT_NE(uid, 0u);
  rbd_body_info info{};
  ASSERT_EQ(rbd_body_stat(user_, guid, &info, &err_), RBD_OK);
  EXPECT_EQ(info.references, 1u) << "the writer's reference is the record's";
  EXPECT_EQ(info.size, body.size());
  EXPECT_EQ(info.chunks, (body.size() + 65535) / 65536);
  size_t n = 0;
  ASSERT_EQ(rbd_index_expunge(inbox, &uid, 1, nullptr, &n, &err_), RBD_OK);
  ASSERT_EQ(rbd_body_stat(user_, guid, &info, &err_), RBD_OK);
  EXPECT_EQ(info.references, 0u) << "released by the expunge, left to gc";

  uint32_t again = AppendOne(inbox, body);
  rbd_records* recs = nullptr;
  ASSERT_EQ(rbd_index_lookup_records(inbox, &again, 1, &recs, &err_), RBD_OK);
  rbd_body_reader* reader = nullptr;
  uint64_t size = 0;
  ASSERT_EQ(rbd_body_reader_open(inbox, &recs->records[0], &reader, &size, &err_), RBD_OK) << err_.message;
  EXPECT_EQ(size, body.size());
  std::string buf(200000, '\0');
  for (auto [off, len] : std::vector<std::pair<uint64_t, size_t>>{
           {0, 10}, {65530, 20}, {3 * 65536, 65536}, {100000, 200000}, {body.size() - 7, 7}}) {
    size_t got = 0;
    ASSERT_EQ(rbd_body_reader_read(reader, off, buf.data(), len, &got, &err_), RBD_OK) << err_.message;
    EXPECT_EQ(buf.substr(0, got), body.substr(off, len)) << "range " << off << "+" << len;
  }
  size_t got = 1;
  ASSERT_EQ(rbd_body_reader_read(reader, body.size(), buf.data(), 10, &got, &err_), RBD_OK);
  EXPECT_EQ(got, 0u) << "nothing past the end";
  std::string whole;
  for (uint64_t off = 0; off < size; off += got) {
    ASSERT_EQ(rbd_body_reader_read(reader, off, buf.data(), buf.size(), &got, &err_), RBD_OK) << err_.message;
    whole.append(buf.data(), got);
  }
  EXPECT_EQ(whole, body);
  rbd_body_reader_free(&reader);

  // A read front to back is checked at its end: a flipped byte in a chunk
  // fails the last read.
  librados::IoCtx mail = AdminIo(Env("RBD_TEST_POOL"));
  librados::bufferlist flipped;
  flipped.append("#");
  ASSERT_EQ(mail.write("m." + Hex(recs->records[0].guid) + ".000007", flipped, 1, 5), 0);
  ASSERT_EQ(rbd_body_reader_open(inbox, &recs->records[0], &reader, &size, &err_), RBD_OK);
  rbd_code last = RBD_OK;
  for (uint64_t off = 0; off < size && last == RBD_OK; off += got)
    last = rbd_body_reader_read(reader, off, buf.data(), buf.size(), &got, &err_);
  EXPECT_EQ(last, RBD_ERR_CORRUPT);
  rbd_body_reader_free(&reader);
  rbd_records_free(&recs);
  rbd_index_close(&inbox);
}

TEST_F(MailboxIndexTest, CorruptedBodiesAreDetected) {
  Reopen({{"rbd_inline_max", "0"}});
  rbd_index* inbox = OpenMailbox(CreateMailbox("INBOX"));
  uint8_t guid[RBD_GUID_SIZE];
  uint32_t uid = AppendOne(inbox, "Subject: x\r\n\r\nintact\r\n", 0, guid);
  librados::IoCtx mail = AdminIo(Env("RBD_TEST_POOL"));
  librados::bufferlist flipped;
  flipped.append("I");
  ASSERT_EQ(mail.write("m." + Hex(guid), flipped, 1, 14), 0);
  EXPECT_EQ(ReadBody(inbox, uid), "<corrupt>");
  rbd_index_close(&inbox);
}

TEST_F(MailboxIndexTest, MailboxListOperations) {
  std::string inbox = CreateMailbox("INBOX");
  uint8_t guid[RBD_GUID_SIZE];
  RandomGuid(guid);
  EXPECT_EQ(rbd_create_mailbox(user_, "INBOX", guid, 0, "", &err_), RBD_ERR_EXISTS);
  CreateMailbox("Sent");
  ASSERT_EQ(rbd_set_special_use(user_, "Sent", "\\Sent", &err_), RBD_OK);
  ASSERT_EQ(rbd_set_subscribed(user_, "Sent", 1, &err_), RBD_OK);
  ASSERT_EQ(rbd_set_subscribed(user_, "Ghost", 1, &err_), RBD_OK);
  CreateMailbox("a");
  CreateMailbox("a/b");
  CreateMailbox("a/b/c");
  CreateMailbox("ab");
  ASSERT_EQ(rbd_set_subscribed(user_, "a/b", 1, &err_), RBD_OK);
  EXPECT_EQ(rbd_rename_mailbox(user_, "a", "ab", '/', &err_), RBD_ERR_EXISTS);
  EXPECT_EQ(rbd_rename_mailbox(user_, "a", "a/b/x", '/', &err_), RBD_ERR_INVALID);
  EXPECT_EQ(rbd_rename_mailbox(user_, "nope", "x", '/', &err_), RBD_ERR_NOT_FOUND);
  ASSERT_EQ(rbd_rename_mailbox(user_, "a", "z", '/', &err_), RBD_OK) << err_.message;
  ASSERT_EQ(rbd_delete_mailbox(user_, "Sent", &err_), RBD_OK);
  EXPECT_EQ(rbd_delete_mailbox(user_, "Sent", &err_), RBD_ERR_NOT_FOUND);

  rbd_mailbox_entries* list = nullptr;
  ASSERT_EQ(rbd_list_mailboxes(user_, &list, &err_), RBD_OK);
  std::vector<std::string> names;
  for (size_t i = 0; i < list->count; i++) {
    const auto& e = list->entries[i];
    names.push_back(std::string(e.name) + (e.subscribed ? "+" : "") + (e.nonexistent ? "?" : ""));
  }
  rbd_mailbox_entries_free(&list);
  EXPECT_EQ(names, (std::vector<std::string>{"Ghost+?", "INBOX", "Sent+?", "ab", "z", "z/b+", "z/b/c"}));
  EXPECT_EQ(rbd_lookup_mailbox(user_, "INBOX", guid, &err_), RBD_OK);
  EXPECT_EQ(Hex(guid), inbox);
}

// RFC 3501: a mailbox re-created under an old name restarts its UIDs, so
// it must get a different UIDVALIDITY even within the same second.
TEST_F(MailboxIndexTest, RecreatedMailboxGetsANewUidValidity) {
  std::set<uint32_t> seen;
  for (int i = 0; i < 3; i++) {
    rbd_index* m = OpenMailbox(CreateMailbox("Again"));
    rbd_index_status st{};
    ASSERT_EQ(rbd_index_get_status(m, &st, &err_), RBD_OK);
    EXPECT_TRUE(seen.insert(st.uidvalidity).second) << "UIDVALIDITY " << st.uidvalidity << " reused";
    rbd_index_close(&m);
    ASSERT_EQ(rbd_delete_mailbox(user_, "Again", &err_), RBD_OK);
  }
}

TEST_F(MailboxIndexTest, GcReclaimsUnpublishedBodiesOnlyAfterGrace) {
  Reopen({{"rbd_inline_max", "0"}});
  rbd_index* inbox = OpenMailbox(CreateMailbox("INBOX"));
  uint8_t published[RBD_GUID_SIZE];
  AppendOne(inbox, "Subject: kept\r\n\r\nkept\r\n", 0, published);
  // A crash between the body write and the index op: a body no record names.
  uint8_t orphan[RBD_GUID_SIZE];
  RandomGuid(orphan);
  const std::string body = "Subject: orphan\r\n\r\nlost\r\n";
  ASSERT_EQ(rbd_body_write(user_, orphan, body.data(), body.size(), nullptr, &err_), RBD_OK);

  constexpr uint32_t kGrace = 3;
  rbd_gc_stats stats{};
  ASSERT_EQ(rbd_user_gc(user_, kGrace, &stats, &err_), RBD_OK) << err_.message;
  EXPECT_EQ(stats.bodies_scanned, 2u);
  EXPECT_EQ(stats.bodies_reclaimed, 0u) << "never before the grace period";
  EXPECT_EQ(stats.bodies_in_grace, 1u);
  rbd_body_info info{};
  EXPECT_EQ(rbd_body_stat(user_, orphan, &info, &err_), RBD_OK);

  std::this_thread::sleep_for(std::chrono::seconds(kGrace + 1));
  ASSERT_EQ(rbd_user_gc(user_, kGrace, &stats, &err_), RBD_OK) << err_.message;
  EXPECT_EQ(stats.bodies_reclaimed, 1u);
  EXPECT_EQ(rbd_body_stat(user_, orphan, &info, &err_), RBD_ERR_NOT_FOUND);
  EXPECT_EQ(rbd_body_stat(user_, published, &info, &err_), RBD_OK) << "a referenced body is never reclaimed";
  ASSERT_EQ(rbd_user_gc(user_, 0, &stats, &err_), RBD_OK);
  EXPECT_EQ(rbd_body_stat(user_, published, &info, &err_), RBD_OK);
  EXPECT_EQ(ReadBody(inbox, 1), "Subject: kept\r\n\r\nkept\r\n");

  // gc holds the user's gc lease: a second collector is refused meanwhile.
  rbd_lease* lease = nullptr;
  ASSERT_EQ(rbd_lease_acquire(user_, "gc", 10000, &lease, &err_), RBD_OK);
  EXPECT_EQ(rbd_user_gc(user_, 0, &stats, &err_), RBD_ERR_BUSY);
  rbd_lease_release(&lease);
  rbd_index_close(&inbox);
}

TEST_F(MailboxIndexTest, CheckFindsEachInjectedFaultAndRepairFixesIt) {
  Reopen({{"rbd_inline_max", "0"}});
  const std::string guid_hex = CreateMailbox("INBOX");
  rbd_index* inbox = OpenMailbox(guid_hex);
  uint8_t kept[RBD_GUID_SIZE], lost[RBD_GUID_SIZE];
  AppendOne(inbox, "Subject: kept\r\n\r\nkept\r\n", 0, kept);
  const uint32_t lost_uid = AppendOne(inbox, "Subject: lost\r\n\r\nlost body\r\n", 0, lost);
  // A healthy user has no problems.
  ExpectCheckClean();

  // Fault 1: the body of UID 2 is gone.
  librados::IoCtx mail_io = AdminIo(Env("RBD_TEST_POOL"));
  ASSERT_EQ(mail_io.remove("m." + Hex(lost)), 0);
  // Fault 2: a body no record references.
  uint8_t orphan[RBD_GUID_SIZE];
  RandomGuid(orphan);
  const std::string body = "Subject: orphan\r\n\r\nnobody\r\n";
  ASSERT_EQ(rbd_body_write(user_, orphan, body.data(), body.size(), nullptr, &err_), RBD_OK);
  // Fault 3: the message count says 7.
  librados::IoCtx index_io;
  ASSERT_EQ(rados_.ioctx_create(Env("RBD_TEST_INDEX_POOL").c_str(), index_io), 0);
  index_io.set_namespace(ns_);
  const std::string oid = "i." + guid_hex;
  librados::bufferlist raw;
  ASSERT_GT(index_io.getxattr(oid, rbd::keys::kStateAttr, raw), 0);
  rbd::MailboxState state;
  ASSERT_TRUE(rbd::Decode(raw.to_str(), &state).ok());
  state.messages = 7;
  librados::bufferlist bad;
  bad.append(rbd::Encode(state));
  ASSERT_EQ(index_io.setxattr(oid, rbd::keys::kStateAttr, bad), 0);

  rbd_problems* problems = nullptr;
  ASSERT_EQ(rbd_user_check(user_, 0, 0, &problems, &err_), RBD_OK) << err_.message;
  std::map<rbd_problem_kind, const rbd_problem*> found;
  for (size_t i = 0; i < problems->count; i++) found[problems->problems[i].kind] = &problems->problems[i];
  ASSERT_EQ(problems->count, 3u);
  ASSERT_TRUE(found.count(RBD_PROBLEM_MISSING_BODY));
  EXPECT_EQ(found[RBD_PROBLEM_MISSING_BODY]->uid, lost_uid);
  EXPECT_EQ(Hex(found[RBD_PROBLEM_MISSING_BODY]->body_guid), Hex(lost));
  ASSERT_TRUE(found.count(RBD_PROBLEM_UNREFERENCED_BODY));
  EXPECT_EQ(Hex(found[RBD_PROBLEM_UNREFERENCED_BODY]->body_guid), Hex(orphan));
  ASSERT_TRUE(found.count(RBD_PROBLEM_WRONG_COUNTERS));
  EXPECT_NE(std::string(found[RBD_PROBLEM_WRONG_COUNTERS]->detail).find("messages 7"), std::string::npos)
      << found[RBD_PROBLEM_WRONG_COUNTERS]->detail;
  for (const auto& [kind, p] : found) EXPECT_FALSE(p->repaired) << "check alone repairs nothing";
  rbd_problems_free(&problems);

  ASSERT_EQ(rbd_user_check(user_, 1, 0, &problems, &err_), RBD_OK) << err_.message;
  EXPECT_EQ(problems->count, 3u);
  for (size_t i = 0; i < problems->count; i++)
    EXPECT_TRUE(problems->problems[i].repaired) << problems->problems[i].detail;
  rbd_problems_free(&problems);

  ExpectCheckClean();
  rbd_index_status st{};
  ASSERT_EQ(rbd_index_get_status(inbox, &st, &err_), RBD_OK);
  EXPECT_EQ(st.messages, 1u);
  EXPECT_EQ(st.uidnext, lost_uid + 1) << "UIDs are never reused";
  rbd_body_info info{};
  EXPECT_EQ(rbd_body_stat(user_, orphan, &info, &err_), RBD_ERR_NOT_FOUND);
  EXPECT_EQ(ReadBody(inbox, 1), "Subject: kept\r\n\r\nkept\r\n");
  rbd_index_close(&inbox);
}

// A streamed or striped write that crashed before its head object leaves
// chunks no listing of bodies shows: check must report them (gc removes
// them) once they are older than the grace period, and repair reclaims them.
TEST_F(MailboxIndexTest, CheckFindsChunksOfABodyWhoseHeadWasNeverWritten) {
  uint8_t guid[RBD_GUID_SIZE];
  RandomGuid(guid);
  librados::IoCtx mail_io = AdminIo(Env("RBD_TEST_POOL"));
  librados::bufferlist chunk;
  chunk.append(Big(4096, 5));
  for (uint32_t n = 1; n <= 3; n++)
    ASSERT_EQ(mail_io.write_full(rbd::keys::ChunkObject(rbd::Guid::FromBytes(guid), n), chunk), 0);

  // Young chunks are a write in flight.
  ExpectCheckClean(3600);

  EXPECT_EQ(ExpectOneProblemRepaired(RBD_PROBLEM_UNREFERENCED_BODY, "3 chunk objects and no head"),
            Hex(guid));
  std::set<std::string> left;
  for (auto it = mail_io.nobjects_begin(); it != mail_io.nobjects_end(); ++it) left.insert(it->get_oid());
  EXPECT_EQ(left, std::set<std::string>{});
  ExpectCheckClean();
}

// Counters are what a repair writes (from a listing); they must never
// decide that a mailbox is empty: a UIDVALIDITY or GUID change with a
// record left would hand a client UIDs it cached under the old one.
TEST_F(MailboxIndexTest, UidValidityAndGuidChangeOnlyWhenNoRecordExistsWhateverTheCounters) {
  const std::string guid_hex = CreateMailbox("INBOX");
  rbd_index* m = OpenMailbox(guid_hex);
  AppendOne(m, "Subject: kept\r\n\r\nkept\r\n");
  rbd::MailboxState state;
  EditState(guid_hex, [&](rbd::MailboxState* s) {
    s->messages = 0;
    s->virtual_size = s->physical_size = 0;
    state = *s;
  });

  rbd_index_close(&m);
  m = OpenMailbox(guid_hex);
  EXPECT_EQ(rbd_index_update_state(m, state.uidvalidity + 1, 0, 0, &err_), RBD_ERR_INVALID);
  uint8_t other[RBD_GUID_SIZE];
  RandomGuid(other);
  EXPECT_EQ(rbd_change_mailbox_guid(user_, "INBOX", other, &err_), RBD_ERR_INVALID);
  rbd_index_status st{};
  ASSERT_EQ(rbd_index_get_status(m, &st, &err_), RBD_OK);
  EXPECT_EQ(st.uidvalidity, state.uidvalidity);
  rbd_index_close(&m);
}

// dsync may set a UIDVALIDITY from another server, above anything this user
// had: a mailbox created later (the same one deleted and created again)
// must still get a new value.
TEST_F(MailboxIndexTest, UidValiditySetByUpdateStateIsNeverGivenToALaterMailbox) {
  rbd_index* m = OpenMailbox(CreateMailbox("Synced"));
  const uint32_t set = static_cast<uint32_t>(std::time(nullptr)) + 100000;
  ASSERT_EQ(rbd_index_update_state(m, set, 0, 0, &err_), RBD_OK) << err_.message;
  rbd_index_close(&m);
  ASSERT_EQ(rbd_delete_mailbox(user_, "Synced", &err_), RBD_OK);
  m = OpenMailbox(CreateMailbox("Synced"));
  rbd_index_status st{};
  ASSERT_EQ(rbd_index_get_status(m, &st, &err_), RBD_OK);
  EXPECT_GT(st.uidvalidity, set);
  rbd_index_close(&m);
}

// A body copied (or moved) on before its first mailbox was deleted is
// referenced by a record: it is not lost, and no rebuild brings the
// deleted mailbox back as Recovered/<guid>.
TEST_F(MailboxIndexTest, RebuildLeavesBodiesThatRecordsReferenceAndDeletedMailboxesAlone) {
  Reopen({{"rbd_inline_max", "0"}});
  rbd_index* first = OpenMailbox(CreateMailbox("First"));
  rbd_index* kept = OpenMailbox(CreateMailbox("Kept"));
  uint8_t copied[RBD_GUID_SIZE], moved[RBD_GUID_SIZE], only[RBD_GUID_SIZE];
  const uint32_t copied_uid = AppendOne(first, "Subject: copied\r\n\r\ncopied\r\n", 0, copied);
  const uint32_t moved_uid = AppendOne(first, "Subject: moved\r\n\r\nmoved\r\n", 0, moved);
  AppendOne(first, "Subject: only\r\n\r\nonly here\r\n", 0, only);
  uint32_t src[] = {copied_uid, moved_uid}, dest[2];
  ASSERT_EQ(rbd_index_copy(first, src, 2, kept, nullptr, dest, &err_), RBD_OK) << err_.message;
  size_t n = 0;
  ASSERT_EQ(rbd_index_expunge(first, &moved_uid, 1, nullptr, &n, &err_), RBD_OK);
  rbd_index_close(&first);
  rbd_index_close(&kept);
  ASSERT_EQ(rbd_delete_mailbox(user_, "First", &err_), RBD_OK);

  rbd_rebuild_stats stats{};
  ASSERT_EQ(rbd_user_rebuild(user_, &stats, &err_), RBD_OK) << err_.message;
  EXPECT_EQ(stats.mailboxes_recreated, 0u);
  EXPECT_EQ(stats.messages_recovered, 0u);
  rbd_body_info info{};
  ASSERT_EQ(rbd_body_stat(user_, copied, &info, &err_), RBD_OK);
  EXPECT_EQ(info.references, 1u) << "no duplicate took a reference";
  ASSERT_EQ(rbd_body_stat(user_, moved, &info, &err_), RBD_OK);
  EXPECT_EQ(info.references, 1u);
  rbd_mailbox_entries* list = nullptr;
  ASSERT_EQ(rbd_list_mailboxes(user_, &list, &err_), RBD_OK);
  ASSERT_EQ(list->count, 1u);
  EXPECT_STREQ(list->entries[0].name, "Kept");
  rbd_mailbox_entries_free(&list);
}

// A command that finds one listed mailbox without its index recreates that
// one only, and never one a delete unlisted meanwhile (here: a delete that
// stopped between removing the index and dropping the references).
TEST_F(MailboxIndexTest, RebuildOfOneMailboxRecreatesOnlyItAndOnlyWhileListed) {
  Reopen({{"rbd_inline_max", "0"}});
  const std::string lost_hex = CreateMailbox("Lost"), other_hex = CreateMailbox("Other"),
                    deleted_hex = CreateMailbox("Deleted");
  for (const std::string& hex : {lost_hex, other_hex, deleted_hex}) {
    rbd_index* m = OpenMailbox(hex);
    AppendOne(m, "Subject: " + hex + "\r\n\r\nbody\r\n");
    rbd_index_close(&m);
  }
  librados::IoCtx index_io;
  AdminIo(Env("RBD_TEST_POOL"));
  ASSERT_EQ(rados_.ioctx_create(Env("RBD_TEST_INDEX_POOL").c_str(), index_io), 0);
  index_io.set_namespace(ns_);
  for (const std::string& hex : {lost_hex, other_hex, deleted_hex}) ASSERT_EQ(index_io.remove("i." + hex), 0);
  ASSERT_EQ(rbd_delete_mailbox(user_, "Deleted", &err_), RBD_OK);

  uint8_t guid[RBD_GUID_SIZE];
  rbd_rebuild_stats stats{};
  ParseHex(deleted_hex, guid);
  EXPECT_EQ(rbd_mailbox_rebuild(user_, guid, &stats, &err_), RBD_ERR_NOT_FOUND);
  ParseHex(lost_hex, guid);
  ASSERT_EQ(rbd_mailbox_rebuild(user_, guid, &stats, &err_), RBD_OK) << err_.message;
  EXPECT_EQ(stats.mailboxes_recreated, 1u);
  EXPECT_EQ(stats.messages_recovered, 1u);
  rbd_index* m = nullptr;
  ASSERT_EQ(rbd_index_open(user_, guid, &m, &err_), RBD_OK);
  rbd_index_close(&m);
  ParseHex(other_hex, guid);
  EXPECT_EQ(rbd_index_open(user_, guid, &m, &err_), RBD_ERR_NOT_FOUND) << "not asked for";
  ParseHex(deleted_hex, guid);
  EXPECT_EQ(rbd_index_open(user_, guid, &m, &err_), RBD_ERR_NOT_FOUND) << "a delete stays a delete";
  rbd_mailbox_entries* list = nullptr;
  ASSERT_EQ(rbd_list_mailboxes(user_, &list, &err_), RBD_OK);
  std::set<std::string> names;
  for (size_t i = 0; i < list->count; i++) names.insert(list->entries[i].name);
  rbd_mailbox_entries_free(&list);
  EXPECT_EQ(names, (std::set<std::string>{"Lost", "Other"}));
}

// A worker held in gdb at one exact point of a maintenance op, for races
// that must land there: the op after `ignore` others of the kinds given
// (librados entry points) pauses it until Release(). The access probe each
// process sends once per pool (Cluster::CheckAccess, object rbd.probe) is
// not counted. Lines the worker prints come through as usual; "PAUSED"
// marks the hold.
class HeldWorker {
 public:
  // The IoCtx::aio_operate overloads every RADOS op of the core goes
  // through (Account::Operate).
  static constexpr const char* kWriteOp = "ObjectWriteOperation*)";
  static constexpr const char* kReadOp = "ObjectReadOperation*, ceph::buffer::v15_2_0::list*)";

  HeldWorker(const std::string& ns, const std::vector<std::string>& args, const std::vector<const char*>& ops,
             int ignore)
      : dir_("/tmp/rbd-held-" + ns + "-" + std::to_string(NowNs())), go_(dir_ + "/go") {
    EXPECT_EQ(mkdir(dir_.c_str(), 0700), 0);
    const std::string string_ref =
        "std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> > const&";
    std::ofstream script(dir_ + "/gdb.cmds");
    script << "set pagination off\nset breakpoint pending on\nset $hits = 0\n";
    for (size_t i = 0; i < ops.size(); i++) {
      script << "break librados::v14_2_0::IoCtx::aio_operate(" << string_ref
             << ", librados::v14_2_0::AioCompletion*, librados::v14_2_0::" << ops[i] << "\n";
      // The object name is the first argument after `this` (%rsi); a
      // std::string starts with its data pointer.
      script << "commands " << i + 1 << "\nsilent\nif !$_streq(*(char**)$rsi, \"rbd.probe\")\n"
             << "set $hits = $hits + 1\nif $hits == " << ignore + 1
             << "\necho \\nPAUSED\\n\nshell while [ ! -e " << go_
             << " ]; do sleep 0.05; done\nend\nend\ncontinue\nend\n";
    }
    script << "run\n";
    script.close();
    worker_ = std::make_unique<Worker>(
        ns, args, std::vector<std::string>{"gdb", "-q", "-nx", "-batch", "-x", dir_ + "/gdb.cmds", "--args"});
  }
  ~HeldWorker() {
    Release();
    worker_.reset();
    std::remove(go_.c_str());
    std::remove((dir_ + "/gdb.cmds").c_str());
    rmdir(dir_.c_str());
  }
  // Waits for the first hold; false if the worker never got there.
  bool WaitHeld() {
    std::string line;
    while (line != "PAUSED")
      if (!worker_->ReadLine(&line, milliseconds(60000))) return false;
    return true;
  }
  // Lets it go on, at once past every later breakpoint.
  void Release() { std::ofstream(go_) << "go\n"; }
  // The next line the worker prints that starts with `prefix`.
  bool ReadUntil(const std::string& prefix, std::string* line, std::vector<std::string>* others = nullptr) {
    for (;;) {
      if (!worker_->ReadLine(line, milliseconds(60000))) return false;
      if (line->rfind(prefix, 0) == 0) return true;
      if (others != nullptr) others->push_back(*line);
    }
  }

 private:
  std::string dir_, go_;
  std::unique_ptr<Worker> worker_;
};

// A delete lists the mailbox's records, then removes its index. A session
// that opened the mailbox before the delete unlisted it (on another node)
// may append in between: gdb holds the deleting process exactly there (at
// its second write op, the first unlists the name), and the delete must
// still drop the references of what was appended, not leave them to gc.
TEST_F(MailboxIndexTest, DeleteRacingAnAppendDropsTheReferencesOfWhatWasAppended) {
  if (std::system("command -v gdb >/dev/null 2>&1") != 0) GTEST_SKIP() << "needs gdb";
  if (!WorkersRunTheCore()) GTEST_SKIP() << "holds a worker at its own RADOS op: the service runs the core";
  Reopen({{"rbd_inline_max", "0"}});
  const std::string hex = CreateMailbox("Doomed");
  rbd_index* doomed = OpenMailbox(hex);
  uint8_t before[RBD_GUID_SIZE], during[RBD_GUID_SIZE];
  AppendOne(doomed, "Subject: before\r\n\r\nbefore\r\n", 0, before);

  // The first write op unlists the name; the second removes the index.
  HeldWorker deleter(ns_, {"delete", "Doomed"}, {HeldWorker::kWriteOp}, 1);
  ASSERT_TRUE(deleter.WaitHeld()) << "never paused";
  AppendOne(doomed, "Subject: during\r\n\r\nduring\r\n", 0, during);
  deleter.Release();
  std::string line;
  ASSERT_TRUE(deleter.ReadUntil("deleted", &line)) << "never deleted";

  rbd_body_info info{};
  ASSERT_EQ(rbd_body_stat(user_, before, &info, &err_), RBD_OK);
  EXPECT_EQ(info.references, 0u);
  ASSERT_EQ(rbd_body_stat(user_, during, &info, &err_), RBD_OK);
  EXPECT_EQ(info.references, 0u) << "the appended message's reference leaked";
  rbd_index_close(&doomed);
  uint8_t guid[RBD_GUID_SIZE];
  ParseHex(hex, guid);
  EXPECT_EQ(rbd_index_open(user_, guid, &doomed, &err_), RBD_ERR_NOT_FOUND);
}

// check lists the bodies before the records: a message appended in between
// names a body the listing lacks. gdb holds a `check --repair` right after
// the body listing (at its first read op); the message appended then must
// not be reported missing, let alone expunged.
TEST_F(MailboxIndexTest, CheckRepairNeverExpungesAMessageAppendedDuringIt) {
  if (std::system("command -v gdb >/dev/null 2>&1") != 0) GTEST_SKIP() << "needs gdb";
  if (!WorkersRunTheCore()) GTEST_SKIP() << "holds a worker at its own RADOS op: the service runs the core";
  Reopen({{"rbd_inline_max", "0"}});
  rbd_index* inbox = OpenMailbox(CreateMailbox("INBOX"));
  AppendOne(inbox, "Subject: before\r\n\r\nbefore\r\n");

  HeldWorker checker(ns_, {"check-repair"}, {HeldWorker::kReadOp}, 0);
  ASSERT_TRUE(checker.WaitHeld()) << "never paused";
  const uint32_t during = AppendOne(inbox, "Subject: during\r\n\r\nduring\r\n");
  checker.Release();
  std::string line;
  std::vector<std::string> problems;
  ASSERT_TRUE(checker.ReadUntil("checked ", &line, &problems)) << "never finished";
  problems.erase(std::remove_if(problems.begin(), problems.end(),
                                [](const std::string& l) { return l.rfind("problem ", 0) != 0; }),
                 problems.end());
  EXPECT_EQ(problems, std::vector<std::string>{});
  EXPECT_EQ(line, "checked 0");
  EXPECT_EQ(ReadBody(inbox, during), "Subject: during\r\n\r\nduring\r\n");
  rbd_index_close(&inbox);
}

// STATUS UNSEEN comes from the state's \Seen count: every op that adds,
// removes or changes a message keeps it, in the same guarded op. A state
// of a writer from before the count has none until check --repair counts.
TEST_F(MailboxIndexTest, StateCountsSeenThroughEveryChangeAndRepairStartsTheCount) {
  const std::string guid_hex = CreateMailbox("INBOX");
  rbd_index* inbox = OpenMailbox(guid_hex);
  const uint32_t read = AppendOne(inbox, "Subject: a\r\n\r\na\r\n", RBD_FLAG_SEEN);
  const uint32_t unread = AppendOne(inbox, "Subject: b\r\n\r\nb\r\n");
  const uint32_t flagged = AppendOne(inbox, "Subject: c\r\n\r\nc\r\n", RBD_FLAG_SEEN | RBD_FLAG_FLAGGED);
  auto status = [&] {
    rbd_index_status st{};
    EXPECT_EQ(rbd_index_get_status(inbox, &st, &err_), RBD_OK) << err_.message;
    return std::make_tuple(st.messages, st.seen_counted, st.seen_messages);
  };
  EXPECT_EQ(status(), std::make_tuple(3u, uint8_t{1}, 2u));

  // One op: \Seen off the first, on the second, \Flagged (no \Seen
  // change) on the third.
  rbd_flag_change changes[3]{};
  changes[0].uids = &read;
  changes[0].uid_count = 1;
  changes[0].update.remove_flags = RBD_FLAG_SEEN;
  changes[1].uids = &unread;
  changes[1].uid_count = 1;
  changes[1].update.add_flags = RBD_FLAG_SEEN;
  changes[2].uids = &flagged;
  changes[2].uid_count = 1;
  changes[2].update.remove_flags = RBD_FLAG_FLAGGED;
  uint32_t* conflicts = nullptr;
  size_t nconflicts = 0;
  uint64_t modseq = 0;
  ASSERT_EQ(rbd_index_update_flags_of(inbox, changes, 3, &conflicts, &nconflicts, &modseq, &err_), RBD_OK);
  rbd_uids_free(&conflicts);
  EXPECT_EQ(status(), std::make_tuple(3u, uint8_t{1}, 2u));
  // Setting \Seen where it is set changes nothing.
  ASSERT_EQ(
      rbd_index_update_flags(inbox, &unread, 1, &changes[1].update, &conflicts, &nconflicts, &modseq, &err_),
      RBD_OK);
  rbd_uids_free(&conflicts);
  EXPECT_EQ(status(), std::make_tuple(3u, uint8_t{1}, 2u));
  size_t nexpunged = 0;
  ASSERT_EQ(rbd_index_expunge(inbox, &flagged, 1, nullptr, &nexpunged, &err_), RBD_OK);
  EXPECT_EQ(status(), std::make_tuple(2u, uint8_t{1}, 1u));

  ExpectCheckClean();

  EditState(guid_hex, [](rbd::MailboxState* s) { s->seen_counted = false; });
  AppendOne(inbox, "Subject: d\r\n\r\nd\r\n", RBD_FLAG_SEEN);
  EXPECT_EQ(status(), std::make_tuple(3u, uint8_t{0}, 0u)) << "an uncounted state stays uncounted";
  ExpectOneProblemRepaired(RBD_PROBLEM_WRONG_COUNTERS, "seen not counted");
  EXPECT_EQ(status(), std::make_tuple(3u, uint8_t{1}, 2u));
  rbd_index_close(&inbox);
}

// STATUS RECENT comes from the state's count of messages at or above the
// first recent UID: appends and expunges keep it; a claim that stops short
// of UIDNEXT leaves it uncounted until a claim reaches UIDNEXT (0 again).
TEST_F(MailboxIndexTest, StateCountsRecentThroughEveryClaimWhoseRestIsInTheIndexObject) {
  Reopen({{"rbd_shard_uids", "4"}});
  const std::string guid_hex = CreateMailbox("INBOX");
  rbd_index* inbox = OpenMailbox(guid_hex);
  auto append = [&](int n) { return AppendOne(inbox, "Subject: " + std::to_string(n) + "\r\n\r\nx\r\n"); };
  for (int i = 1; i <= 3; i++) append(i);
  auto recent = [&] {
    rbd_index_status st{};
    EXPECT_EQ(rbd_index_get_status(inbox, &st, &err_), RBD_OK) << err_.message;
    return std::make_pair(st.recent_counted, st.recent_messages);
  };
  EXPECT_EQ(recent(), std::make_pair(uint8_t{1}, 3u));
  uint32_t first = 0, end = 0;
  // A session behind the appends claims UIDs 1 and 2 of 1..3: UID 3 is
  // counted from its record.
  ASSERT_EQ(rbd_index_claim_recent(inbox, 3, &first, &end, &err_), RBD_OK);
  EXPECT_EQ(recent(), std::make_pair(uint8_t{1}, 1u));
  append(4);
  EXPECT_EQ(recent(), std::make_pair(uint8_t{1}, 2u));
  ASSERT_EQ(rbd_index_claim_recent(inbox, 5, &first, &end, &err_), RBD_OK);
  EXPECT_EQ(std::make_pair(first, end), std::make_pair(3u, 5u));
  EXPECT_EQ(recent(), std::make_pair(uint8_t{1}, 0u));
  const uint32_t five = append(5);
  append(6);
  size_t nexpunged = 0;
  ASSERT_EQ(rbd_index_expunge(inbox, &five, 1, nullptr, &nexpunged, &err_), RBD_OK);
  EXPECT_EQ(recent(), std::make_pair(uint8_t{1}, 1u));

  // Once UIDs 1..7 are sealed in shards, a claim that stops among them
  // leaves the count unknown, until a claim reaches UIDNEXT.
  for (int i = 7; i <= 12; i++) append(i);
  rbd_index_status st{};
  ASSERT_EQ(rbd_index_get_status(inbox, &st, &err_), RBD_OK);
  ASSERT_EQ(st.uidnext, 13u);
  ASSERT_EQ(rbd_index_claim_recent(inbox, 7, &first, &end, &err_), RBD_OK);
  EXPECT_EQ(std::make_pair(first, end), std::make_pair(5u, 7u));
  EXPECT_EQ(recent().first, 0u);
  append(13);
  EXPECT_EQ(recent().first, 0u) << "uncounted until a claim reaches UIDNEXT";
  ASSERT_EQ(rbd_index_claim_recent(inbox, 14, &first, &end, &err_), RBD_OK);
  EXPECT_EQ(recent(), std::make_pair(uint8_t{1}, 0u));
  append(14);

  ExpectCheckClean();
  EditState(guid_hex, [](rbd::MailboxState* s) { s->recent_messages = 4; });
  ExpectOneProblemRepaired(RBD_PROBLEM_WRONG_COUNTERS, "recent 4");
  EXPECT_EQ(recent(), std::make_pair(uint8_t{1}, 1u));
  rbd_index_close(&inbox);
}

// check --repair rewrites counters from a listing: a message appended
// between that listing and the write (gdb holds the repair at its write)
// must count, so the counters end equal to the records, not to the listing.
TEST_F(MailboxIndexTest, CheckRepairWritesCountersOnlyUnderTheStateItCounted) {
  if (std::system("command -v gdb >/dev/null 2>&1") != 0) GTEST_SKIP() << "needs gdb";
  if (!WorkersRunTheCore()) GTEST_SKIP() << "holds a worker at its own RADOS op: the service runs the core";
  Reopen({{"rbd_inline_max", "0"}});
  const std::string guid_hex = CreateMailbox("INBOX");
  rbd_index* inbox = OpenMailbox(guid_hex);
  AppendOne(inbox, "Subject: before\r\n\r\nbefore\r\n");
  EditState(guid_hex, [](rbd::MailboxState* s) { s->messages = 7; });

  HeldWorker repair(ns_, {"check-repair"}, {HeldWorker::kWriteOp}, 0);
  ASSERT_TRUE(repair.WaitHeld()) << "never paused";
  AppendOne(inbox, "Subject: during\r\n\r\nduring\r\n");
  repair.Release();
  std::string line;
  ASSERT_TRUE(repair.ReadUntil("checked ", &line)) << "never finished";

  rbd_index_status st{};
  ASSERT_EQ(rbd_index_get_status(inbox, &st, &err_), RBD_OK);
  EXPECT_EQ(st.messages, 2u) << "counters written from a listing the append overtook";
  ExpectCheckClean(3600);
  rbd_index_close(&inbox);
}

// librados' client threads: a second connection would add about a dozen.
int ThreadCount() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  return -1;
}

// A port nothing listens on: bound, never listened to, then closed.
int UnusedPort() {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  close(s);
  return ntohs(a.sin_port);
}

TEST(Unreachable, ConnectAndOpsFailWithTimeoutWithinTheOpTimeout) {
  char dir[] = "/tmp/rbd-unreachable-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string conf = std::string(dir) + "/ceph.conf";
  std::ofstream(conf) << "[global]\nmon_host = v2:127.0.0.1:" << UnusedPort()
                      << "\nauth_client_required = cephx\n"
                      << "keyring = " << Env("RBD_TEST_KEYRING") << "\n";
  rbd_config* config = NewConfig({{"rbd_ceph_conf", conf}, {"rbd_op_timeout", "2s"}});
  rbd_cluster* cluster = nullptr;
  rbd_error err{};
  ASSERT_EQ(rbd_cluster_get(config, &cluster, &err), RBD_OK);
  for (int attempt = 0; attempt < 2; attempt++) {
    auto start = steady_clock::now();
    rbd_user* user = nullptr;
    rbd_code r = rbd_user_open(cluster, "nobody", nullptr, &user, &err);
    double secs = std::chrono::duration<double>(steady_clock::now() - start).count();
    EXPECT_EQ(r, RBD_ERR_UNAVAILABLE) << err.message;
    std::printf("[ info ] unreachable cluster: %s after %.2f s (%s)\n", rbd_code_name(r), secs, err.message);
    EXPECT_LT(secs, 2.0 + 3.0) << "must fail within the op timeout (plus librados' tick)";
  }
  rbd_cluster_unref(&cluster);
  rbd_config_free(&config);
  std::remove(conf.c_str());
  rmdir(dir);
}

TEST(Unreachable, MissingKeyringIsNamed) {
  char dir[] = "/tmp/rbd-keyring-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string conf = std::string(dir) + "/ceph.conf";
  const std::string keyring = std::string(dir) + "/no-such.keyring";
  std::ifstream original(Env("RBD_TEST_CEPH_CONF"));
  std::ofstream out(conf);
  std::string line;
  while (std::getline(original, line))
    if (line.find("keyring") == std::string::npos) out << line << "\n";
  out << "[client.dovecot]\nkeyring = " << keyring << "\n";
  out.close();
  rbd_config* config = NewConfig({{"rbd_ceph_conf", conf}, {"rbd_op_timeout", "5s"}});
  rbd_cluster* cluster = nullptr;
  rbd_error err{};
  ASSERT_EQ(rbd_cluster_get(config, &cluster, &err), RBD_OK);
  EXPECT_EQ(rbd_cluster_connect(cluster, &err), RBD_ERR_PERMISSION);
  EXPECT_NE(std::string(err.message).find(keyring), std::string::npos) << err.message;
  rbd_cluster_unref(&cluster);
  rbd_config_free(&config);
  std::remove(conf.c_str());
  rmdir(dir);
}

TEST(Cluster, HandlesSharingAConnectionKeepTheirOwnSettings) {
  rbd_config* inline_on = NewConfig();
  rbd_config* inline_off = NewConfig({{"rbd_inline_max", "0"}});
  rbd_config* bad_pool = NewConfig({{"rbd_pool", "no-such-pool"}});
  rbd_cluster *a = nullptr, *b = nullptr, *c = nullptr;
  rbd_error err{};
  ASSERT_EQ(rbd_cluster_get(inline_on, &a, &err), RBD_OK);
  ASSERT_EQ(rbd_cluster_get(inline_off, &b, &err), RBD_OK);
  ASSERT_EQ(rbd_cluster_get(bad_pool, &c, &err), RBD_OK);
  const std::string ns = RandomNamespace();
  rbd_user *ua = nullptr, *ub = nullptr, *uc = nullptr;
  ASSERT_EQ(rbd_user_open(a, ns.c_str(), nullptr, &ua, &err), RBD_OK) << err.message;
  ASSERT_EQ(rbd_user_open(b, ns.c_str(), nullptr, &ub, &err), RBD_OK) << err.message;
  EXPECT_EQ(rbd_user_open(c, ns.c_str(), nullptr, &uc, &err), RBD_ERR_INVALID);
  EXPECT_NE(std::string(err.message).find("rbd_pool"), std::string::npos) << err.message;

  uint8_t guid[RBD_GUID_SIZE];
  RandomGuid(guid);
  ASSERT_EQ(rbd_create_mailbox(ua, "INBOX", guid, 0, "", &err), RBD_OK);
  const std::string body = "Subject: s\r\n\r\nsmall\r\n";
  for (rbd_user* u : {ua, ub}) {
    rbd_index* m = nullptr;
    ASSERT_EQ(rbd_index_open(u, guid, &m, &err), RBD_OK);
    rbd_new_message msg{};
    RandomGuid(msg.guid);
    msg.body = body.data();
    msg.body_size = body.size();
    uint32_t uid = 0;
    ASSERT_EQ(rbd_index_append(m, &msg, 1, &uid, &err), RBD_OK) << err.message;
    rbd_records* recs = nullptr;
    ASSERT_EQ(rbd_index_lookup_records(m, &uid, 1, &recs, &err), RBD_OK);
    EXPECT_EQ(recs->records[0].inline_body, u == ua ? 1 : 0) << "rbd_inline_max of the handle's own config";
    rbd_records_free(&recs);
    rbd_index_close(&m);
  }
  rbd_user_close(&ua);
  rbd_user_close(&ub);
  for (rbd_cluster** k : {&a, &b, &c}) rbd_cluster_unref(k);
  for (rbd_config** k : {&inline_on, &inline_off, &bad_pool}) rbd_config_free(k);
}

// imap with service_count > 1, LMTP and doveadm -A serve user after user
// in one process: dropping every handle must not drop the connection.
TEST(Cluster, ConnectionOutlivesItsLastHandle) {
  rbd_config* config = NewConfig({{"rbd_op_timeout", "19s"}});
  rbd_error err{};
  rbd_cluster* cluster = nullptr;
  rbd_user* user = nullptr;
  ASSERT_EQ(rbd_cluster_get(config, &cluster, &err), RBD_OK);
  ASSERT_EQ(rbd_user_open(cluster, "first", nullptr, &user, &err), RBD_OK) << err.message;
  rbd_user_close(&user);
  rbd_cluster_unref(&cluster);
  int connected = ThreadCount();
  ASSERT_EQ(rbd_cluster_get(config, &cluster, &err), RBD_OK);
  auto start = steady_clock::now();
  ASSERT_EQ(rbd_user_open(cluster, "second", nullptr, &user, &err), RBD_OK) << err.message;
  double ms = std::chrono::duration<double, std::milli>(steady_clock::now() - start).count();
  EXPECT_EQ(ThreadCount(), connected) << "a second librados instance was started";
  std::printf("[ info ] next user on the kept connection opened in %.2f ms\n", ms);
  rbd_user_close(&user);
  rbd_cluster_unref(&cluster);
  rbd_config_free(&config);
}

TEST(Cluster, OneConnectionIsSharedByEveryUser) {
  rbd_config* a = NewConfig();
  rbd_config* b = NewConfig({{"rbd_namespace", "other"}});
  rbd_cluster *ca = nullptr, *cb = nullptr;
  rbd_error err{};
  ASSERT_EQ(rbd_cluster_get(a, &ca, &err), RBD_OK);
  ASSERT_EQ(rbd_cluster_get(b, &cb, &err), RBD_OK);
  rbd_user *u1 = nullptr, *u2 = nullptr;
  ASSERT_EQ(rbd_user_open(ca, "user1", nullptr, &u1, &err), RBD_OK) << err.message;
  ASSERT_EQ(rbd_user_open(cb, "user2", nullptr, &u2, &err), RBD_OK) << err.message;
  // Count librados client threads: a second connection would double them.
  int before = ThreadCount();
  rbd_user* u3 = nullptr;
  ASSERT_EQ(rbd_user_open(ca, "user3", nullptr, &u3, &err), RBD_OK);
  EXPECT_EQ(ThreadCount(), before);
  rbd_user_close(&u1);
  rbd_user_close(&u2);
  rbd_user_close(&u3);
  rbd_cluster_unref(&ca);
  rbd_cluster_unref(&cb);
  rbd_config_free(&a);
  rbd_config_free(&b);
}

TEST(Cluster, FirstOpenChecksAccessWithinTheCommandsDeadline) {
  // The access probe of a user's first open is part of the command that
  // opened it (a SELECT, an APPEND): after a slow connect it gets what the
  // command has left, not an op timeout of its own.
  rbd_config* config = NewConfig({{"rbd_op_timeout", "5s"}});
  rbd_cluster* cluster = nullptr;
  rbd_error err{};
  ASSERT_EQ(rbd_cluster_get(config, &cluster, &err), RBD_OK);
  struct timeval used_up;
  gettimeofday(&used_up, nullptr);
  used_up.tv_sec -= 5;
  rbd_user* user = nullptr;
  const auto start = steady_clock::now();
  EXPECT_EQ(rbd_user_open(cluster, RandomNamespace().c_str(), &used_up, &user, &err), RBD_ERR_UNAVAILABLE);
  EXPECT_LT(steady_clock::now() - start, milliseconds(500)) << "the probe waited past the deadline";
  // With the command's time ahead of it the same open succeeds.
  struct timeval now;
  gettimeofday(&now, nullptr);
  ASSERT_EQ(rbd_user_open(cluster, RandomNamespace().c_str(), &now, &user, &err), RBD_OK) << err.message;
  rbd_user_close(&user);
  rbd_cluster_unref(&cluster);
  rbd_config_free(&config);
}

// ---- Migration: what dsync asks of a mailbox beside its messages ----------

TEST_F(MailboxIndexTest, AppendGivesWantedUidsAtOrAboveUidnext) {
  rbd_index* m = OpenMailbox(CreateMailbox("INBOX"));
  const std::string body = "Subject: u\r\n\r\nu\r\n";
  rbd_new_message msgs[3] = {};
  for (rbd_new_message& msg : msgs) {
    RandomGuid(msg.guid);
    msg.body = body.data();
    msg.body_size = body.size();
  }
  msgs[0].uid = 5;
  msgs[1].uid = 3;
  uint32_t uids[3] = {};
  ASSERT_EQ(rbd_index_append(m, msgs, 3, uids, &err_), RBD_OK) << err_.message;
  // The one without a wanted UID follows the highest UID given.
  EXPECT_EQ(std::vector<uint32_t>(uids, uids + 3), (std::vector<uint32_t>{5, 3, 6}));
  // Below UIDNEXT a UID may have been used before: the next one instead.
  msgs[0].uid = 4;
  ASSERT_EQ(rbd_index_append(m, msgs, 1, uids, &err_), RBD_OK);
  EXPECT_EQ(uids[0], 7u);
  rbd_records* holder = nullptr;
  std::vector<uint32_t> listed;
  for (const rbd_record& r : Records(m, &holder)) listed.push_back(r.uid);
  rbd_records_free(&holder);
  EXPECT_EQ(listed, (std::vector<uint32_t>{3, 5, 6, 7}));
  rbd_index_status st{};
  ASSERT_EQ(rbd_index_get_status(m, &st, &err_), RBD_OK);
  EXPECT_EQ(st.uidnext, 8u);
  EXPECT_EQ(st.messages, 4u);
  rbd_index_close(&m);
}

TEST_F(MailboxIndexTest, GuidTextAndWantedUidTravelWithACopy) {
  rbd_index* src = OpenMailbox(CreateMailbox("INBOX"));
  rbd_index* dst = OpenMailbox(CreateMailbox("Archive"));
  const std::string body = "Subject: maildir\r\n\r\nfrom Maildir\r\n";
  rbd_new_message msg{};
  RandomGuid(msg.guid);
  msg.body = body.data();
  msg.body_size = body.size();
  msg.guid_text = "1700000000.M1P2.host,S=33,W=35";
  uint32_t uid = 0;
  ASSERT_EQ(rbd_index_append(src, &msg, 1, &uid, &err_), RBD_OK) << err_.message;
  rbd_copy_override over{};
  over.uid = 40;
  uint32_t copied = 0;
  ASSERT_EQ(rbd_index_copy(src, &uid, 1, dst, &over, &copied, &err_), RBD_OK) << err_.message;
  EXPECT_EQ(copied, 40u);
  for (rbd_index* m : {src, dst}) {
    rbd_records* holder = nullptr;
    std::vector<rbd_record> recs = Records(m, &holder);
    ASSERT_EQ(recs.size(), 1u);
    ASSERT_NE(recs[0].guid_text, nullptr);
    EXPECT_STREQ(recs[0].guid_text, "1700000000.M1P2.host,S=33,W=35");
    EXPECT_EQ(Hex(recs[0].guid), Hex(msg.guid));
    rbd_records_free(&holder);
  }
  rbd_index_close(&src);
  rbd_index_close(&dst);
}

TEST_F(MailboxIndexTest, UpdateStateSetsUidValidityOnlyWhileEmptyAndNeverLowersCounters) {
  rbd_index* m = OpenMailbox(CreateMailbox("INBOX"));
  ASSERT_EQ(rbd_index_update_state(m, 1234, 10, 100, &err_), RBD_OK) << err_.message;
  ASSERT_EQ(rbd_index_update_state(m, 0, 5, 50, &err_), RBD_OK);
  rbd_index_status st{};
  ASSERT_EQ(rbd_index_get_status(m, &st, &err_), RBD_OK);
  EXPECT_EQ(st.uidvalidity, 1234u);
  EXPECT_EQ(st.uidnext, 10u);
  EXPECT_EQ(st.highest_modseq, 100u);
  EXPECT_EQ(AppendOne(m, "Subject: x\r\n\r\nx\r\n"), 10u);
  EXPECT_EQ(rbd_index_update_state(m, 999, 0, 0, &err_), RBD_ERR_INVALID);
  ASSERT_EQ(rbd_index_update_state(m, 1234, 0, 0, &err_), RBD_OK);
  ASSERT_EQ(rbd_index_get_status(m, &st, &err_), RBD_OK);
  EXPECT_EQ(st.uidvalidity, 1234u);
  EXPECT_EQ(st.highest_modseq, 101u);
  // A node that synced before the raise reads it as a change like any other.
  rbd_changes* changes = nullptr;
  ASSERT_EQ(rbd_index_changes(m, 1, &changes, &err_), RBD_OK);
  ASSERT_EQ(changes->op_count, 2u);
  EXPECT_EQ(changes->ops[0].modseq, 100u);
  EXPECT_EQ(changes->ops[0].appended_count + changes->ops[0].updated_count + changes->ops[0].expunged_count,
            0u);
  EXPECT_EQ(changes->ops[1].modseq, 101u);
  EXPECT_EQ(changes->ops[1].appended_count, 1u);
  EXPECT_EQ(changes->status.highest_modseq, 101u);
  rbd_changes_free(&changes);
  rbd_index_close(&m);
}

TEST_F(MailboxIndexTest, ChangeMailboxGuidMovesAnEmptyMailboxOnly) {
  uint8_t old_guid[RBD_GUID_SIZE], new_guid[RBD_GUID_SIZE], found[RBD_GUID_SIZE];
  RandomGuid(old_guid);
  RandomGuid(new_guid);
  ASSERT_EQ(rbd_create_mailbox(user_, "INBOX", old_guid, 77, "", &err_), RBD_OK);
  rbd_index* m = OpenMailbox(Hex(old_guid));
  ASSERT_EQ(rbd_index_update_state(m, 0, 5, 9, &err_), RBD_OK);
  rbd_index_close(&m);
  ASSERT_EQ(rbd_set_subscribed(user_, "INBOX", 1, &err_), RBD_OK);

  ASSERT_EQ(rbd_change_mailbox_guid(user_, "INBOX", new_guid, &err_), RBD_OK) << err_.message;
  ASSERT_EQ(rbd_lookup_mailbox(user_, "INBOX", found, &err_), RBD_OK);
  EXPECT_EQ(Hex(found), Hex(new_guid));
  EXPECT_EQ(rbd_index_open(user_, old_guid, &m, &err_), RBD_ERR_NOT_FOUND);
  m = OpenMailbox(Hex(new_guid));
  rbd_index_status st{};
  ASSERT_EQ(rbd_index_get_status(m, &st, &err_), RBD_OK);
  EXPECT_EQ(st.uidvalidity, 77u);
  EXPECT_EQ(st.uidnext, 5u);
  EXPECT_EQ(st.highest_modseq, 9u);
  EXPECT_EQ(AppendOne(m, "Subject: y\r\n\r\ny\r\n"), 5u);
  rbd_index_close(&m);
  rbd_mailbox_entries* list = nullptr;
  ASSERT_EQ(rbd_list_mailboxes(user_, &list, &err_), RBD_OK);
  ASSERT_EQ(list->count, 1u);
  EXPECT_EQ(list->entries[0].subscribed, 1);
  rbd_mailbox_entries_free(&list);

  EXPECT_EQ(rbd_change_mailbox_guid(user_, "INBOX", old_guid, &err_), RBD_ERR_INVALID);
  EXPECT_EQ(rbd_change_mailbox_guid(user_, "INBOX", new_guid, &err_), RBD_OK);
  EXPECT_EQ(rbd_change_mailbox_guid(user_, "Nope", old_guid, &err_), RBD_ERR_NOT_FOUND);
}

// Opens `name` by name: its GUID in hex, or "" when it does not exist; the
// RADOS ops it took in *ops.
std::string OpenByName(rbd_user* user, const std::string& name, size_t* ops) {
  OpsSince(user);
  uint8_t guid[RBD_GUID_SIZE];
  rbd_index* m = nullptr;
  rbd_error err{};
  rbd_code code = rbd_index_open_name(user, name.c_str(), guid, &m, &err);
  *ops = OpsSince(user);
  EXPECT_TRUE(code == RBD_OK || code == RBD_ERR_NOT_FOUND) << err.message;
  if (code != RBD_OK) return "";
  rbd_index_close(&m);
  return Hex(guid);
}

TEST_F(MailboxIndexTest, AMailboxOpensByNameInOneReadWhileItsStateNamesIt) {
  librados::IoCtx index_io = AdminIo(Env("RBD_TEST_INDEX_POOL"));
  auto state_of = [&](const std::string& guid_hex) {
    librados::bufferlist raw;
    EXPECT_GT(index_io.getxattr("i." + guid_hex, rbd::keys::kStateAttr, raw), 0);
    rbd::MailboxState state;
    EXPECT_TRUE(rbd::Decode(raw.to_str(), &state).ok());
    return state;
  };
  auto set_state = [&](const std::string& guid_hex, const rbd::MailboxState& state) {
    librados::bufferlist raw;
    raw.append(rbd::Encode(state));
    ASSERT_EQ(index_io.setxattr("i." + guid_hex, rbd::keys::kStateAttr, raw), 0);
  };
  size_t ops = 0;
  const std::string a = CreateMailbox("A");
  EXPECT_EQ(state_of(a).name, "A") << "a new mailbox is named at its creation";
  EXPECT_EQ(OpenByName(user_, "A", &ops), a);
  EXPECT_EQ(OpenByName(user_, "A", &ops), a);
  EXPECT_EQ(ops, 1u) << "a name looked up before: the state alone";

  // A rename marks the state before it moves the name, and names it after.
  ASSERT_EQ(rbd_rename_mailbox(user_, "A", "B", '/', &err_), RBD_OK) << err_.message;
  EXPECT_EQ(state_of(a).name, "B");
  EXPECT_EQ(state_of(a).name_pending, 0u);
  EXPECT_EQ(OpenByName(user_, "A", &ops), "") << "the hint leads to a state named otherwise";
  EXPECT_EQ(OpenByName(user_, "B", &ops), a);
  EXPECT_EQ(OpenByName(user_, "B", &ops), a);
  EXPECT_EQ(ops, 1u);

  // A state written before names were kept gets its name from the first
  // open that reads the list; the next open reads the state alone.
  rbd::MailboxState state = state_of(a);
  state.name.clear();
  set_state(a, state);
  EXPECT_EQ(OpenByName(user_, "B", &ops), a);
  EXPECT_EQ(state_of(a).name, "B");
  EXPECT_EQ(OpenByName(user_, "B", &ops), a);
  EXPECT_EQ(ops, 1u);

  // A mark left by an operation that never finished: the list decides,
  // every time, and no reader names the mailbox over the mark.
  state = state_of(a);
  state.name.clear();
  state.name_pending = 42;
  set_state(a, state);
  EXPECT_EQ(OpenByName(user_, "B", &ops), a);
  EXPECT_EQ(OpenByName(user_, "B", &ops), a);
  EXPECT_EQ(ops, 2u) << "the state and the list";
  EXPECT_EQ(state_of(a).name_pending, 42u);
  // The next rename replaces the mark with its own and settles it.
  ASSERT_EQ(rbd_rename_mailbox(user_, "B", "C", '/', &err_), RBD_OK) << err_.message;
  EXPECT_EQ(state_of(a).name, "C");
  EXPECT_EQ(state_of(a).name_pending, 0u);

  // A whole subtree moves, each mailbox named anew.
  const std::string child = CreateMailbox("C/child");
  EXPECT_EQ(OpenByName(user_, "C/child", &ops), child);
  ASSERT_EQ(rbd_rename_mailbox(user_, "C", "D", '/', &err_), RBD_OK) << err_.message;
  EXPECT_EQ(state_of(child).name, "D/child");
  EXPECT_EQ(OpenByName(user_, "C/child", &ops), "");
  EXPECT_EQ(OpenByName(user_, "D/child", &ops), child);

  // A deleted mailbox, and a new one under its name.
  ASSERT_EQ(rbd_delete_mailbox(user_, "D/child", &err_), RBD_OK) << err_.message;
  EXPECT_EQ(OpenByName(user_, "D/child", &ops), "");
  const std::string again = CreateMailbox("D/child");
  EXPECT_EQ(OpenByName(user_, "D/child", &ops), again);

  // A GUID change names the new index, and the old one is gone.
  uint8_t moved[RBD_GUID_SIZE];
  RandomGuid(moved);
  ASSERT_EQ(rbd_change_mailbox_guid(user_, "D/child", moved, &err_), RBD_OK) << err_.message;
  EXPECT_EQ(OpenByName(user_, "D/child", &ops), Hex(moved));
  EXPECT_EQ(state_of(Hex(moved)).name, "D/child");
  EXPECT_EQ(OpenByName(user_, "D/child", &ops), Hex(moved));
  EXPECT_EQ(ops, 1u);

  // A session's name check: the state its command read names the mailbox.
  struct timeval started;
  rbd_user* session = nullptr;
  rbd_index_status status;
  rbd_index* m = OpenInCommand(Hex(moved), &started, &session, &status);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(rbd_index_named(m, "D/child"), 1);
  EXPECT_EQ(rbd_index_named(m, "D"), 0);
  // Renamed since the command read it: the next command must look again.
  ASSERT_EQ(rbd_rename_mailbox(user_, "D/child", "E", '/', &err_), RBD_OK) << err_.message;
  started.tv_usec += 1;
  EXPECT_EQ(rbd_index_named(m, "D/child"), 0) << "a state of an earlier command";
  rbd_index_close(&m);
  rbd_user_close(&session);
  // Without a command clock (doveadm) nothing is of "this command".
  rbd_index* plain = OpenMailbox(Hex(moved));
  EXPECT_EQ(rbd_index_named(plain, "E"), 0);
  rbd_index_close(&plain);
}

TEST_F(MailboxIndexTest, WritesBoundToANameApplyOnlyWhileTheListGivesItThatName) {
  librados::IoCtx index_io = AdminIo(Env("RBD_TEST_INDEX_POOL"));
  const std::string a = CreateMailbox("A");
  struct timeval started;
  rbd_user* session = nullptr;
  rbd_index_status status;
  rbd_index* m = OpenInCommand(a, &started, &session, &status);
  ASSERT_NE(m, nullptr);
  rbd_index_guard_name(m, "A");
  auto next_command = [&] { started.tv_usec += 1; };
  uint32_t uid = 0, expunged[1];
  size_t nexpunged = 0;
  bool flagged = false;
  auto store = [&] {  // a change every time: \Flagged on, then off
    rbd_code code =
        flagged ? UpdateFlags(m, uid, 0, RBD_FLAG_FLAGGED) : UpdateFlags(m, uid, RBD_FLAG_FLAGGED, 0);
    if (code == RBD_OK) flagged = !flagged;
    return code;
  };
  const std::string body = "Subject: x\r\n\r\nx\r\n";
  rbd_new_message msg = NewMessage(body);

  // The state each write is guarded by names the mailbox: no list read.
  uid = AppendOne(m, body);
  next_command();
  OpsSince(session);
  ASSERT_EQ(store(), RBD_OK) << err_.message;
  EXPECT_EQ(OpsSince(session), 1u) << "the guarded write alone (its append wrote the record)";

  // Renamed by another node: every write fails, and writes nothing.
  ASSERT_EQ(rbd_rename_mailbox(user_, "A", "B", '/', &err_), RBD_OK) << err_.message;
  next_command();
  rbd_index_status before{};
  ASSERT_EQ(rbd_index_get_status(m, &before, &err_), RBD_OK);
  EXPECT_EQ(store(), RBD_ERR_NOT_FOUND);
  RandomGuid(msg.guid);
  EXPECT_EQ(rbd_index_append(m, &msg, 1, &uid, &err_), RBD_ERR_NOT_FOUND);
  EXPECT_EQ(rbd_index_expunge(m, &uid, 1, expunged, &nexpunged, &err_), RBD_ERR_NOT_FOUND);
  EXPECT_NE(std::string(err_.message).find("A was renamed or deleted"), std::string::npos) << err_.message;
  rbd_index_status after{};
  ASSERT_EQ(rbd_index_get_status(m, &after, &err_), RBD_OK);
  EXPECT_EQ(after.highest_modseq, before.highest_modseq);
  EXPECT_EQ(after.messages, before.messages);

  // Back under its name, the same handle writes again, though the state it
  // last saw names the mailbox otherwise.
  ASSERT_EQ(rbd_rename_mailbox(user_, "B", "A", '/', &err_), RBD_OK) << err_.message;
  next_command();
  ASSERT_EQ(store(), RBD_OK) << err_.message;
  RandomGuid(msg.guid);
  ASSERT_EQ(rbd_rename_mailbox(user_, "A", "B", '/', &err_), RBD_OK) << err_.message;
  ASSERT_EQ(rbd_index_get_status(m, &before, &err_), RBD_OK);
  ASSERT_EQ(rbd_rename_mailbox(user_, "B", "A", '/', &err_), RBD_OK) << err_.message;
  next_command();
  EXPECT_EQ(rbd_index_append(m, &msg, 1, &uid, &err_), RBD_OK) << err_.message;

  // A state that names no mailbox (a rename in flight, or one that never
  // finished) leaves it to the list: one read per command.
  librados::bufferlist raw;
  ASSERT_GT(index_io.getxattr("i." + a, rbd::keys::kStateAttr, raw), 0);
  rbd::MailboxState state;
  ASSERT_TRUE(rbd::Decode(raw.to_str(), &state).ok());
  state.name.clear();
  state.name_pending = 42;
  raw.clear();
  raw.append(rbd::Encode(state));
  ASSERT_EQ(index_io.setxattr("i." + a, rbd::keys::kStateAttr, raw), 0);
  next_command();
  OpsSince(session);
  ASSERT_EQ(store(), RBD_OK) << err_.message;
  ASSERT_EQ(store(), RBD_OK) << err_.message;
  EXPECT_EQ(OpsSince(session), 5u)
      << "a write refused (the mark is new), the read, the list once, two writes";
  // ...which then may no longer give it that name.
  ASSERT_EQ(rbd_rename_mailbox(user_, "A", "C", '/', &err_), RBD_OK) << err_.message;
  raw.clear();
  ASSERT_GT(index_io.getxattr("i." + a, rbd::keys::kStateAttr, raw), 0);
  ASSERT_TRUE(rbd::Decode(raw.to_str(), &state).ok());
  state.name.clear();
  state.name_pending = 43;
  raw.clear();
  raw.append(rbd::Encode(state));
  ASSERT_EQ(index_io.setxattr("i." + a, rbd::keys::kStateAttr, raw), 0);
  EXPECT_NE(CreateMailbox("A"), a);
  next_command();
  EXPECT_EQ(store(), RBD_ERR_NOT_FOUND) << "the name leads to another mailbox";
  rbd_index_close(&m);
  rbd_user_close(&session);
}

// Ceph's logger makes a pipe on stderr non-blocking, and with it stdout when
// both are one pipe (`doveadm fetch ... 2>&1 | less`): Dovecot then drops
// the output a slow reader has not taken yet.
TEST(Cluster, ConnectingLeavesStderrBlocking) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const int saved = dup(STDERR_FILENO);
  ASSERT_GE(dup2(fds[1], STDERR_FILENO), 0);
  rbd_config* config = NewConfig({{"rbd_op_timeout", "17s"}});
  rbd_error err{};
  rbd_cluster* cluster = nullptr;
  rbd_code connected = rbd_cluster_get(config, &cluster, &err);
  if (connected == RBD_OK) connected = rbd_cluster_connect(cluster, &err);
  const int flags = fcntl(STDERR_FILENO, F_GETFL);
  dup2(saved, STDERR_FILENO);
  for (int fd : {saved, fds[0], fds[1]}) close(fd);
  ASSERT_EQ(connected, RBD_OK) << err.message;
  EXPECT_EQ(flags & O_NONBLOCK, 0);
  rbd_cluster_unref(&cluster);
  rbd_config_free(&config);
}

}  // namespace
}  // namespace rbdtest
