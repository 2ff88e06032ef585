#include "keys.h"

#include <gtest/gtest.h>

namespace rbd {
namespace {

const Guid kGuid = *Guid::FromHex("0123456789abcdef0123456789abcdef");

TEST(Keys, UidKeysSortInNumericOrder) {
  EXPECT_EQ(keys::RecordKey(41), "u.0000000041");
  EXPECT_LT(keys::RecordKey(9), keys::RecordKey(10));
  EXPECT_LT(keys::RecordKey(4294967294u), keys::RecordKey(4294967295u));
  EXPECT_EQ(keys::ParseRecordKey(keys::RecordKey(4294967295u)), 4294967295u);
  EXPECT_FALSE(keys::ParseRecordKey("u.9999999999"));
  EXPECT_FALSE(keys::ParseRecordKey("u.41"));
  EXPECT_FALSE(keys::ParseRecordKey("b.0000000041"));
  EXPECT_EQ(keys::ReleasedBodyKey(41), "x.0000000041");
  EXPECT_EQ(keys::ParseReleasedBodyKey(keys::ReleasedBodyKey(4294967295u)), 4294967295u);
  EXPECT_FALSE(keys::ParseReleasedBodyKey(keys::RecordKey(41)));
}

TEST(Keys, ModseqKeysSortInNumericOrder) {
  EXPECT_EQ(keys::ChangeKey(7), "c.00000000000000000007");
  EXPECT_LT(keys::ChangeKey(99), keys::ChangeKey(100));
  EXPECT_EQ(keys::ParseChangeKey(keys::ChangeKey(UINT64_MAX)), UINT64_MAX);
  EXPECT_FALSE(keys::ParseChangeKey("c.99999999999999999999"));
  EXPECT_FALSE(keys::ParseChangeKey("c.12"));
}

TEST(Keys, RecordBodyAndLogKeysDoNotInterleave) {
  // Listings filter by prefix; the prefixes must be distinct and ordered.
  EXPECT_LT(keys::InlineBodyKey(UINT32_MAX), keys::ChangeKey(0));
  EXPECT_LT(keys::ChangeKey(UINT64_MAX), keys::RecordKey(0));
  EXPECT_LT(keys::RecordKey(UINT32_MAX), keys::ReleasedBodyKey(0));
}

TEST(Keys, ObjectNamesParseBack) {
  EXPECT_EQ(keys::IndexObject(kGuid), "i.0123456789abcdef0123456789abcdef");
  EXPECT_EQ(keys::BodyObject(kGuid), "m.0123456789abcdef0123456789abcdef");
  EXPECT_EQ(keys::ChunkObject(kGuid, 3), "m.0123456789abcdef0123456789abcdef.000003");

  auto idx = keys::ParseObject(keys::IndexObject(kGuid));
  EXPECT_EQ(idx.kind, keys::ObjectKind::kIndex);
  EXPECT_EQ(idx.guid, kGuid);
  auto body = keys::ParseObject(keys::BodyObject(kGuid));
  EXPECT_EQ(body.kind, keys::ObjectKind::kBody);
  auto chunk = keys::ParseObject(keys::ChunkObject(kGuid, 12));
  EXPECT_EQ(chunk.kind, keys::ObjectKind::kChunk);
  EXPECT_EQ(chunk.chunk, 12u);
  EXPECT_EQ(keys::IndexShardObject(kGuid, 7), "i.0123456789abcdef0123456789abcdef.000007");
  auto shard = keys::ParseObject(keys::IndexShardObject(kGuid, 7));
  EXPECT_EQ(shard.kind, keys::ObjectKind::kIndexShard);
  EXPECT_EQ(shard.guid, kGuid);
  EXPECT_EQ(shard.chunk, 7u);
  EXPECT_EQ(keys::ParseObject("r").kind, keys::ObjectKind::kRoot);
  EXPECT_EQ(keys::ParseObject(keys::kDict).kind, keys::ObjectKind::kDict);
  EXPECT_EQ(keys::ParseObject(keys::LeaseObject("gc")).kind, keys::ObjectKind::kLease);
  EXPECT_EQ(keys::ParseObject("m.xyz").kind, keys::ObjectKind::kOther);
  EXPECT_EQ(keys::ParseObject("i.0123456789ABCDEF0123456789abcdef").kind, keys::ObjectKind::kOther);
  EXPECT_EQ(keys::ParseObject("m.0123456789abcdef0123456789abcdef.12").kind, keys::ObjectKind::kOther);
  EXPECT_EQ(keys::ParseObject("i.0123456789abcdef0123456789abcdef.7").kind, keys::ObjectKind::kOther);
  EXPECT_EQ(keys::TombstoneKey(41), "t.0000000041");
  EXPECT_EQ(keys::ParseTombstoneKey("t.0000000041"), 41u);
  EXPECT_EQ(keys::ParseInlineBodyKey(keys::InlineBodyKey(9)), 9u);
  EXPECT_FALSE(keys::ParseTombstoneKey(keys::RecordKey(41)));
}

TEST(Keys, GuidHexRoundTrips) {
  EXPECT_EQ(Guid::FromHex(kGuid.Hex()), kGuid);
  EXPECT_FALSE(Guid::FromHex("0123"));
  EXPECT_NE(Guid::Random(), Guid::Random());
  EXPECT_TRUE(Guid().IsZero());
}

}  // namespace
}  // namespace rbd
