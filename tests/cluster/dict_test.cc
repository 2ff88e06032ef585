// The dictionary store (rbd_dict_store_*) against a real cluster: what the
// Dovecot dict driver "rbd" relies on. Every test runs in a fresh namespace;
// tests of the shared namespace ("") use keys named after it.
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "test_env.h"

namespace rbdtest {
namespace {

using Entries = std::vector<std::pair<std::string, std::string>>;

struct Change {
  rbd_dict_op op;
  std::string key;
  std::string value;
  int64_t diff;
};

Change Set(const std::string& key, const std::string& value) { return {RBD_DICT_SET, key, value, 0}; }
Change Unset(const std::string& key) { return {RBD_DICT_UNSET, key, "", 0}; }
Change Inc(const std::string& key, int64_t diff) { return {RBD_DICT_INC, key, "", diff}; }

class DictStoreTest : public UserFixture {
 protected:
  void SetUp() override {
    UserFixture::SetUp();
    ASSERT_EQ(rbd_dict_store_open(cluster_, ns_.c_str(), nullptr, &store_, &err_), RBD_OK) << err_.message;
  }
  void TearDown() override {
    if (store_ != nullptr) rbd_dict_store_close(&store_);
    UserFixture::TearDown();
  }

  // Commits and returns the code; *missed receives inc_missed_r.
  rbd_code Commit(rbd_dict_store* store, const std::vector<Change>& changes, int* missed = nullptr) {
    std::vector<rbd_dict_change> c;
    for (const Change& ch : changes)
      c.push_back(
          {ch.op, ch.key.c_str(), ch.op == RBD_DICT_SET ? ch.value.c_str() : nullptr, ch.diff, 0, nullptr});
    int m = -1;
    rbd_code r = rbd_dict_store_commit(store, c.data(), c.size(), &m, &err_);
    if (missed != nullptr) *missed = m;
    return r;
  }
  rbd_code Commit(const std::vector<Change>& changes, int* missed = nullptr) {
    return Commit(store_, changes, missed);
  }

  // The value, or "<missing>"; any other failure fails the test.
  std::string Get(rbd_dict_store* store, const std::string& key) {
    rbd_buffer* value = nullptr;
    rbd_code r = rbd_dict_store_lookup(store, key.c_str(), &value, &err_);
    if (r == RBD_ERR_NOT_FOUND) return "<missing>";
    EXPECT_EQ(r, RBD_OK) << err_.message;
    if (r != RBD_OK) return "<error>";
    std::string s(static_cast<const char*>(value->data), value->size);
    rbd_buffer_free(&value);
    return s;
  }
  std::string Get(const std::string& key) { return Get(store_, key); }

  // Every entry under `prefix`, paging with `page`; `pages` counts calls.
  Entries ListAll(const std::string& prefix, size_t page, int* pages = nullptr) {
    Entries out;
    std::string after;
    for (int calls = 1;; calls++) {
      rbd_dict_entries* entries = nullptr;
      EXPECT_EQ(rbd_dict_store_list(store_, prefix.c_str(), after.c_str(), page, &entries, &err_), RBD_OK)
          << err_.message;
      if (entries == nullptr) return out;
      for (size_t i = 0; i < entries->count; i++)
        out.emplace_back(entries->entries[i].key, entries->entries[i].value);
      bool more = entries->more != 0;
      if (entries->count > 0) after = entries->entries[entries->count - 1].key;
      rbd_dict_entries_free(&entries);
      if (!more) {
        if (pages != nullptr) *pages = calls;
        return out;
      }
    }
  }

  rbd_dict_store* store_ = nullptr;
};

TEST_F(DictStoreTest, NothingIsFoundBeforeTheFirstCommit) {
  EXPECT_EQ(Get("priv/quota/storage"), "<missing>");
  EXPECT_EQ(ListAll("priv/", 100), Entries{});
}

TEST_F(DictStoreTest, SetThenLookupThenUnset) {
  ASSERT_EQ(Commit({Set("priv/a", "1"), Set("priv/b", "two words"), Set("priv/empty", "")}), RBD_OK)
      << err_.message;
  EXPECT_EQ(Get("priv/a"), "1");
  EXPECT_EQ(Get("priv/b"), "two words");
  EXPECT_EQ(Get("priv/empty"), "");
  EXPECT_EQ(Get("priv/c"), "<missing>");
  ASSERT_EQ(Commit({Unset("priv/a"), Unset("priv/never-set")}), RBD_OK) << err_.message;
  EXPECT_EQ(Get("priv/a"), "<missing>");
  EXPECT_EQ(ListAll("priv/", 100), (Entries{{"priv/b", "two words"}, {"priv/empty", ""}}));
}

TEST_F(DictStoreTest, UnsetOnlyCommitOfAnEmptyDictSucceeds) {
  int missed = -1;
  ASSERT_EQ(Commit({Unset("priv/x")}, &missed), RBD_OK) << err_.message;
  EXPECT_EQ(missed, 0);
  EXPECT_EQ(Get("priv/x"), "<missing>");
}

TEST_F(DictStoreTest, ChangesOfOneCommitApplyInOrder) {
  ASSERT_EQ(Commit({Set("priv/k", "40")}), RBD_OK) << err_.message;
  // Dovecot's quota recalculation unsets, then sets, in one transaction.
  int missed = -1;
  ASSERT_EQ(Commit({Unset("priv/k"), Set("priv/k", "5"), Inc("priv/k", 2), Set("priv/gone", "x"),
                    Unset("priv/gone"), Inc("priv/k", -10)},
                   &missed),
            RBD_OK)
      << err_.message;
  EXPECT_EQ(missed, 0);
  EXPECT_EQ(Get("priv/k"), "-3");
  EXPECT_EQ(Get("priv/gone"), "<missing>");
}

TEST_F(DictStoreTest, GuardedChangeAppliesOnlyOverTheValueItWasComputedFrom) {
  // A read-modify-write (an ACL entry, plugin/rbd-acl.c): the change names
  // the value it was computed from, NULL for "did not exist".
  auto guarded = [](rbd_dict_op op, const char* key, const char* value, const char* expected) {
    rbd_dict_change c{};
    c.op = op;
    c.key = key;
    c.value = value;
    c.guarded = 1;
    c.expected = expected;
    return c;
  };
  auto commit = [&](std::vector<rbd_dict_change> changes) {
    int missed = -1;
    return rbd_dict_store_commit(store_, changes.data(), changes.size(), &missed, &err_);
  };
  const char* key = "rbd.acl/g/user=a";
  // Before the object exists.
  ASSERT_EQ(commit({guarded(RBD_DICT_SET, key, "lr", nullptr)}), RBD_OK) << err_.message;
  EXPECT_EQ(Get(key), "lr");
  // Computed from "missing", but it exists now: nothing of the commit applies.
  rbd_dict_change other{};
  other.op = RBD_DICT_SET;
  other.key = "rbd.acl/g/user=b";
  other.value = "l";
  EXPECT_EQ(commit({guarded(RBD_DICT_SET, key, "lrw", nullptr), other}), RBD_ERR_CONFLICT);
  EXPECT_EQ(Get(key), "lr");
  EXPECT_EQ(Get("rbd.acl/g/user=b"), "<missing>");
  ASSERT_EQ(commit({guarded(RBD_DICT_SET, key, "lrw", "lr")}), RBD_OK) << err_.message;
  EXPECT_EQ(Get(key), "lrw");
  EXPECT_EQ(commit({guarded(RBD_DICT_UNSET, key, nullptr, "lr")}), RBD_ERR_CONFLICT);
  EXPECT_EQ(Get(key), "lrw");
  ASSERT_EQ(commit({guarded(RBD_DICT_UNSET, key, nullptr, "lrw")}), RBD_OK) << err_.message;
  EXPECT_EQ(Get(key), "<missing>");
}

TEST_F(DictStoreTest, IncrementOfAMissingKeyChangesNothingButTheRestApplies) {
  int missed = -1;
  ASSERT_EQ(Commit({Inc("priv/quota/messages", 1), Set("priv/other", "v")}, &missed), RBD_OK) << err_.message;
  EXPECT_EQ(missed, 1);
  EXPECT_EQ(Get("priv/quota/messages"), "<missing>");
  EXPECT_EQ(Get("priv/other"), "v");
  // Unset earlier in the same commit: missing again at the increment.
  ASSERT_EQ(Commit({Set("priv/n", "1"), Unset("priv/n"), Inc("priv/n", 1)}, &missed), RBD_OK);
  EXPECT_EQ(missed, 1);
  EXPECT_EQ(Get("priv/n"), "<missing>");
}

TEST_F(DictStoreTest, IncrementWithNoObjectAtAllWritesNothing) {
  int missed = -1;
  ASSERT_EQ(Commit({Inc("priv/quota/storage", 100)}, &missed), RBD_OK) << err_.message;
  EXPECT_EQ(missed, 1);
  EXPECT_EQ(ListAll("", 100), Entries{});
}

TEST_F(DictStoreTest, IncrementOfANonIntegerFailsAndAppliesNothing) {
  ASSERT_EQ(Commit({Set("priv/text", "12abc"), Set("priv/big", "9223372036854775800")}), RBD_OK);
  EXPECT_EQ(Commit({Set("priv/w", "1"), Inc("priv/text", 1)}), RBD_ERR_INVALID);
  EXPECT_NE(std::string(err_.message).find("priv/text"), std::string::npos) << err_.message;
  EXPECT_EQ(Commit({Set("priv/w", "1"), Inc("priv/big", 8)}), RBD_ERR_INVALID);
  EXPECT_EQ(Get("priv/w"), "<missing>");
  EXPECT_EQ(Get("priv/text"), "12abc");
  EXPECT_EQ(Get("priv/big"), "9223372036854775800");
  ASSERT_EQ(Commit({Inc("priv/big", 7)}), RBD_OK);
  EXPECT_EQ(Get("priv/big"), "9223372036854775807");
}

TEST_F(DictStoreTest, ListingReturnsOnlyThePrefixInKeyOrderAcrossPages) {
  constexpr int kKeys = 2500;
  std::vector<Change> changes = {Set("priv/o", "before"), Set("priv/q", "after"),
                                 Set("shared/p/x", "other half")};
  Entries want;
  for (int i = 0; i < kKeys; i++) {
    char key[32];
    std::snprintf(key, sizeof(key), "priv/p/%05d", i);
    changes.push_back(Set(key, std::to_string(i)));
    want.emplace_back(key, std::to_string(i));
  }
  ASSERT_EQ(Commit(changes), RBD_OK) << err_.message;
  int pages = 0;
  EXPECT_EQ(ListAll("priv/p/", 1000, &pages), want);
  EXPECT_EQ(pages, 3);
  const Entries tens(want.begin() + 100, want.begin() + 110);
  EXPECT_EQ(ListAll("priv/p/0010", 1000), tens);
  EXPECT_EQ(ListAll("priv/p/02499", 1), (Entries{{"priv/p/02499", "2499"}}));
  EXPECT_EQ(ListAll("priv/r", 1000), Entries{});
  EXPECT_EQ(ListAll("shared/", 1000), (Entries{{"shared/p/x", "other half"}}));
}

TEST_F(DictStoreTest, EachNamespaceHasItsOwnDictionary) {
  rbd_dict_store* shared = nullptr;
  rbd_dict_store* other = nullptr;
  const std::string other_ns = ns_ + "-other";
  ASSERT_EQ(rbd_dict_store_open(cluster_, "", nullptr, &shared, &err_), RBD_OK) << err_.message;
  ASSERT_EQ(rbd_dict_store_open(cluster_, other_ns.c_str(), nullptr, &other, &err_), RBD_OK) << err_.message;
  const std::string shared_key = "shared/test/" + ns_;
  ASSERT_EQ(Commit({Set("priv/who", "me")}), RBD_OK);
  ASSERT_EQ(Commit(other, {Set("priv/who", "other")}), RBD_OK);
  ASSERT_EQ(Commit(shared, {Set(shared_key, "everyone")}), RBD_OK);
  EXPECT_EQ(Get("priv/who"), "me");
  EXPECT_EQ(Get(other, "priv/who"), "other");
  EXPECT_EQ(Get(shared, "priv/who"), "<missing>");
  EXPECT_EQ(Get(shared, shared_key), "everyone");
  EXPECT_EQ(Get(shared_key), "<missing>");
  ASSERT_EQ(Commit(shared, {Unset(shared_key)}), RBD_OK);
  rbd_dict_store_close(&other);
  rbd_dict_store_close(&shared);
}

TEST_F(DictStoreTest, AdoptCopiesTheEntriesOfTheNamespacesMailboxesOnce) {
  rbd_dict_store* legacy = nullptr;
  ASSERT_EQ(rbd_dict_store_open(cluster_, "", nullptr, &legacy, &err_), RBD_OK) << err_.message;
  const std::string prefix = "adopt-" + ns_ + "/";
  const std::string mine = CreateMailbox("mine");
  const std::string elsewhere = "0123456789abcdef0123456789abcdef";
  ASSERT_EQ(
      Commit(legacy, {Set(prefix + mine + "/comment", "kept"), Set(prefix + mine + "/a/b", "deep"),
                      Set(prefix + elsewhere + "/comment", "not mine"), Set(prefix + mine, "no slash")}),
      RBD_OK);
  ASSERT_EQ(rbd_dict_store_adopt(store_, "", prefix.c_str(), &err_), RBD_OK) << err_.message;
  EXPECT_EQ(ListAll(prefix, 100),
            (Entries{{prefix + mine + "/a/b", "deep"}, {prefix + mine + "/comment", "kept"}}));

  // Once adopted, the copy is the user's own: the legacy entries are
  // neither read again nor changed.
  ASSERT_EQ(Commit({Unset(prefix + mine + "/comment")}), RBD_OK);
  ASSERT_EQ(Commit(legacy, {Set(prefix + mine + "/new", "late")}), RBD_OK);
  ASSERT_EQ(rbd_dict_store_adopt(store_, "", prefix.c_str(), &err_), RBD_OK) << err_.message;
  EXPECT_EQ(ListAll(prefix, 100), (Entries{{prefix + mine + "/a/b", "deep"}}));
  EXPECT_EQ(Get(legacy, prefix + mine + "/comment"), "kept");
  ASSERT_EQ(Commit(legacy, {Unset(prefix + mine + "/comment"), Unset(prefix + mine + "/a/b"),
                            Unset(prefix + mine + "/new"), Unset(prefix + mine),
                            Unset(prefix + elsewhere + "/comment")}),
            RBD_OK);
  rbd_dict_store_close(&legacy);
}

TEST_F(DictStoreTest, ConcurrentIncrementsFromManyProcessesLoseNothing) {
  constexpr int kWorkers = 6, kEach = 150;
  ASSERT_EQ(Commit({Set("priv/n", "0"), Set("priv/n.2", "1000")}), RBD_OK) << err_.message;
  std::vector<std::unique_ptr<Worker>> workers;
  for (int w = 0; w < kWorkers; w++)
    workers.push_back(
        std::make_unique<Worker>(ns_, std::vector<std::string>{"dict-inc", "priv/n", std::to_string(kEach)}));
  for (auto& w : workers) {
    EXPECT_EQ(w->ReadAll(), std::vector<std::string>{"done 0"});
    EXPECT_EQ(w->Wait(), 0);
  }
  EXPECT_EQ(Get("priv/n"), std::to_string(kWorkers * kEach));
  EXPECT_EQ(Get("priv/n.2"), std::to_string(1000 + 2 * kWorkers * kEach));
}

// An unreachable cluster is a failure to report, never an empty dictionary.
TEST(DictStoreUnreachable, OpenFailsUnavailableWithinTheOpTimeout) {
  char dir[] = "/tmp/rbd-dict-unreachable-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string conf = std::string(dir) + "/ceph.conf";
  // Port 1: nothing listens there, every connect is refused.
  std::ofstream(conf) << "[global]\nmon_host = v2:127.0.0.1:1\nauth_client_required = cephx\n"
                      << "keyring = " << Env("RBD_TEST_KEYRING") << "\n";
  rbd_config* config = NewConfig({{"rbd_ceph_conf", conf}, {"rbd_op_timeout", "2s"}});
  rbd_cluster* cluster = nullptr;
  rbd_error err{};
  ASSERT_EQ(rbd_cluster_get(config, &cluster, &err), RBD_OK) << err.message;
  auto start = std::chrono::steady_clock::now();
  rbd_dict_store* store = nullptr;
  EXPECT_EQ(rbd_dict_store_open(cluster, "nobody", nullptr, &store, &err), RBD_ERR_UNAVAILABLE)
      << err.message;
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(secs, 2.0 + 3.0) << "must fail within the op timeout (plus librados' tick)";
  rbd_cluster_unref(&cluster);
  rbd_config_free(&config);
  std::remove(conf.c_str());
  rmdir(dir);
}

// A command's dictionary calls end by its one deadline, like its other
// RADOS waits: with the OSD stopped and 1 s left of rbd_op_timeout (20 s
// in these tests), a lookup, a listing and a commit all fail within that
// second (each waited the whole op timeout before).
TEST_F(DictStoreTest, CallsOfOneCommandEndByItsDeadline) {
  ASSERT_EQ(Commit({Set("priv/k", "v")}), RBD_OK) << err_.message;
  struct timeval started;
  gettimeofday(&started, nullptr);
  started.tv_sec -= 19;
  rbd_dict_store* timed = nullptr;
  ASSERT_EQ(rbd_dict_store_open(cluster_, ns_.c_str(), &started, &timed, &err_), RBD_OK) << err_.message;
  const auto begin = std::chrono::steady_clock::now();
  {
    StoppedOsds osds;
    rbd_buffer* value = nullptr;
    EXPECT_EQ(rbd_dict_store_lookup(timed, "priv/k", &value, &err_), RBD_ERR_UNAVAILABLE) << err_.message;
    rbd_dict_entries* entries = nullptr;
    EXPECT_EQ(rbd_dict_store_list(timed, "priv/", "", 10, &entries, &err_), RBD_ERR_UNAVAILABLE)
        << err_.message;
    // Sent after the deadline the lookup waited out, a write is not sent
    // at all: it cannot have taken effect.
    EXPECT_EQ(Commit(timed, {Set("priv/k", "w")}), RBD_ERR_UNAVAILABLE) << err_.message;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
    EXPECT_LT(seconds, 2.0) << "three calls of one command took " << seconds << " s";

    // A write that was sent and timed out may still be applied: its
    // outcome is unknown.
    gettimeofday(&started, nullptr);
    started.tv_sec -= 19;
    EXPECT_EQ(Commit(timed, {Set("priv/k", "w")}), RBD_ERR_UNKNOWN) << err_.message;
  }
  rbd_dict_store_close(&timed);
}

}  // namespace
}  // namespace rbdtest
