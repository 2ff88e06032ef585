#include "config.h"

#include <gtest/gtest.h>

namespace rbd {
namespace {

TEST(Config, DurationsAndSizesParse) {
  uint64_t v;
  EXPECT_TRUE(ParseDurationMs("30s", &v));
  EXPECT_EQ(v, 30000u);
  EXPECT_TRUE(ParseDurationMs("30 secs", &v));
  EXPECT_EQ(v, 30000u);
  EXPECT_TRUE(ParseDurationMs("500ms", &v));
  EXPECT_EQ(v, 500u);
  EXPECT_TRUE(ParseDurationMs("2m", &v));
  EXPECT_EQ(v, 120000u);
  EXPECT_TRUE(ParseDurationMs("30d", &v));
  EXPECT_EQ(v, 30u * 24 * 3600 * 1000);
  EXPECT_TRUE(ParseDurationMs("7", &v));
  EXPECT_EQ(v, 7000u);
  EXPECT_FALSE(ParseDurationMs("fast", &v));
  EXPECT_FALSE(ParseDurationMs("10 parsecs", &v));
  EXPECT_FALSE(ParseDurationMs("99999999999999999999s", &v));

  EXPECT_TRUE(ParseSize("4k", &v));
  EXPECT_EQ(v, 4096u);
  EXPECT_TRUE(ParseSize("4 KiB", &v));
  EXPECT_EQ(v, 4096u);
  EXPECT_TRUE(ParseSize("16M", &v));
  EXPECT_EQ(v, 16u << 20);
  EXPECT_TRUE(ParseSize("123", &v));
  EXPECT_EQ(v, 123u);
  EXPECT_FALSE(ParseSize("-1", &v));
  EXPECT_FALSE(ParseSize("4x", &v));
}

TEST(Config, SettingsApply) {
  Config c;
  ASSERT_TRUE(c.Set("rbd_pool", "mail").ok());
  ASSERT_TRUE(c.Set("rbd_ceph_user", "client.dovecot").ok());
  ASSERT_TRUE(c.Set("rbd_op_timeout", "2s").ok());
  ASSERT_TRUE(c.Set("rbd_inline_max", "16k").ok());
  EXPECT_EQ(c.max_message_size, 0u) << "not set: the plugin takes Dovecot's limit";
  ASSERT_TRUE(c.Set("rbd_max_message_size", "50M").ok());
  EXPECT_EQ(c.max_message_size, 50u * 1024 * 1024);
  EXPECT_EQ(c.pool, "mail");
  EXPECT_EQ(c.IndexPool(), "mail");
  EXPECT_EQ(c.ceph_user, "dovecot");
  EXPECT_EQ(c.op_timeout_ms, 2000u);
  ASSERT_TRUE(c.Set("rbd_changelog_max_entries", "0").ok());
  EXPECT_EQ(c.changelog_max_entries, 0u);
  ASSERT_TRUE(c.Set("rbd_shard_uids", "0").ok());
  EXPECT_EQ(c.shard_uids, 0u);
  ASSERT_TRUE(c.Set("rbd_changelog_max_age", "7d").ok());
  EXPECT_EQ(c.changelog_max_age_seconds, 7u * 24 * 3600);
  EXPECT_EQ(c.inline_max, 16384u);
  ASSERT_TRUE(c.Set("rbd_index_pool", "mail-index").ok());
  EXPECT_EQ(c.IndexPool(), "mail-index");
  EXPECT_TRUE(c.Validate().ok());
}

// A broken setting must stop start-up with a message naming it.
TEST(Config, ErrorsNameTheSetting) {
  Config c;
  struct Case {
    const char* name;
    const char* value;
  } cases[] = {
      {"rbd_op_timeout", "soon"},
      {"rbd_op_timeout", "0"},
      {"rbd_inline_max", "lots"},
      {"rbd_inline_max", "2G"},
      {"rbd_stripe_size", "1k"},
      {"rbd_pool", ""},
      {"rbd_ceph_conf", " "},
      {"rbd_ceph_user", ""},
      {"rbd_gc_grace", "later"},
      {"rbd_max_message_size", "0"},
      {"rbd_max_message_size", "huge"},
      {"rbd_changelog_max_entries", "10k"},
      {"rbd_shard_uids", "2"},
      {"rbd_shard_uids", "8k"},
      {"rbd_shard_uids", "2000000"},
      {"rbd_changelog_max_age", "500ms"},
      {"rbd_changelog_max_age", "soon"},
  };
  for (const Case& k : cases) {
    Status s = c.Set(k.name, k.value);
    EXPECT_EQ(s.code(), Code::kInvalid) << k.name << "=" << k.value;
    EXPECT_EQ(s.message().rfind(k.name, 0), 0u) << s.message();
  }
  Status s = c.Set("rbd_poool", "mail");
  EXPECT_EQ(s.code(), Code::kInvalid);
  EXPECT_EQ(s.message(), "rbd_poool: unknown setting");
}

TEST(Config, ValidateNamesTheMissingSetting) {
  Config c;
  Status s = c.Validate();
  EXPECT_EQ(s.code(), Code::kInvalid);
  EXPECT_EQ(s.message().rfind("rbd_pool:", 0), 0u) << s.message();
  ASSERT_TRUE(c.Set("rbd_pool", "mail").ok());
  ASSERT_TRUE(c.Set("rbd_stripe_size", "64k").ok());
  ASSERT_TRUE(c.Set("rbd_inline_max", "64k").ok());
  s = c.Validate();
  EXPECT_EQ(s.message().rfind("rbd_inline_max:", 0), 0u) << s.message();
}

TEST(Config, ConnectionKeySeparatesClusters) {
  Config a, b;
  a.pool = "x";
  b.pool = "y";
  // Pools do not matter: one connection serves every pool.
  EXPECT_EQ(a.ConnectionKey(), b.ConnectionKey());
  b.ceph_user = "other";
  EXPECT_NE(a.ConnectionKey(), b.ConnectionKey());
}

}  // namespace
}  // namespace rbd
