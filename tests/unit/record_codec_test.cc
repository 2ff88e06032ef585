#include "record_codec.h"

#include <gtest/gtest.h>

#include <string>

#include "unsettled.h"

namespace rbd {
namespace {

MessageRecord SampleRecord() {
  MessageRecord r;
  r.uid = 42;
  r.guid = *Guid::FromHex("00112233445566778899aabbccddeeff");
  r.flags = 0x09;
  r.keywords = {"$Forwarded", "Junk", "kw"};
  r.modseq = 1234567890123ULL;
  r.received_date = 1700000000;
  r.save_date = -5;
  r.physical_size = 4096;
  r.virtual_size = 4180;
  r.pop3_uidl = "UID42-1700000000";
  r.inline_body = true;
  r.guid_text = "1700000000.M1P2.host,S=4096,W=4180";
  return r;
}

// An entry naming UIDs only, as every writer writes them.
ChangeEntry UidsOnly(std::vector<UidRange> changed, std::vector<UidRange> expunged) {
  ChangeEntry c;
  c.changed = std::move(changed);
  c.expunged = std::move(expunged);
  return c;
}

template <typename T>
T RoundTrip(const T& in) {
  T out;
  Status s = Decode(Encode(in), &out);
  EXPECT_TRUE(s.ok()) << s.message();
  return out;
}

TEST(RecordCodec, MessageRecordRoundTrips) {
  EXPECT_EQ(RoundTrip(SampleRecord()), SampleRecord());
  MessageRecord minimal;
  minimal.uid = 1;
  EXPECT_EQ(RoundTrip(minimal), minimal);
}

TEST(RecordCodec, MailboxStateRoundTrips) {
  MailboxState s;
  s.uidvalidity = 1700000000;
  s.uidnext = 501;
  s.highest_modseq = 9000;
  s.messages = 500;
  s.virtual_size = 1ULL << 40;
  s.physical_size = 123;
  s.log_floor = 17;
  s.legacy_keywords = {"$Forwarded", "", "Junk", std::string(300, 'k')};
  s.keyword_count = 70000;
  s.first_recent_uid = 480;
  s.log_marks = {{18, 1700000000}, {4000, 1700300000}};
  s.seen_messages = 77;
  s.recent_messages = 21;
  s.shard_uids = 8192;
  s.sealed_shards = 3;
  s.watched_until = 1700001800;
  EXPECT_EQ(RoundTrip(s), s);
  EXPECT_EQ(s.SealedBelow(), 3u * 8192);
}

// A plugin that predates shards decodes only type 2 and skips fields it
// does not know: a sharded state has a type of its own, so such a node
// fails on the mailbox instead of listing it without its sealed records.
TEST(RecordCodec, AShardedStateHasARecordTypeOfItsOwn) {
  MailboxState s;
  s.uidvalidity = 1;
  s.uidnext = 100;
  EXPECT_EQ(Encode(s)[0], static_cast<char>(RecordType::kMailboxState));
  s.shard_uids = 16;
  EXPECT_EQ(Encode(s)[0], static_cast<char>(RecordType::kMailboxState)) << "a size alone seals nothing";
  s.sealed_shards = 2;
  std::string bytes = Encode(s);
  EXPECT_EQ(bytes[0], static_cast<char>(RecordType::kShardedMailboxState));
  EXPECT_EQ(RoundTrip(s), s);
  bytes[0] = static_cast<char>(RecordType::kMailboxState);
  MailboxState out;
  EXPECT_EQ(Decode(bytes, &out).code(), Code::kCorrupt);
}

TEST(RecordCodec, MailboxStateOfAWriterBeforeTheCountsDecodesUncounted) {
  MailboxState s;
  s.messages = 3;
  s.seen_counted = s.recent_counted = false;  // so they are not written, as such a writer did
  MailboxState out = RoundTrip(s);
  EXPECT_FALSE(out.seen_counted);
  EXPECT_EQ(out.seen_messages, 0u);
  EXPECT_FALSE(out.recent_counted);
  s.seen_counted = s.recent_counted = true;
  out = RoundTrip(s);
  EXPECT_TRUE(out.seen_counted);
  EXPECT_TRUE(out.recent_counted);
}

TEST(RecordCodec, StateCountersFollowMessagesAndTheirSeenFlag) {
  MessageRecord seen = SampleRecord(), unseen = SampleRecord();
  seen.flags = kSeenFlag | 0x02;
  unseen.flags = 0x02;
  MailboxState s;
  s.CountAdded(seen);
  s.CountAdded(unseen);
  s.CountAdded(unseen);
  EXPECT_EQ(s.messages, 3u);
  EXPECT_EQ(s.seen_messages, 1u);
  EXPECT_EQ(s.physical_size, 3 * seen.physical_size);
  s.CountFlags(unseen.flags, unseen.flags | kSeenFlag);
  s.CountFlags(0x01, 0x03);  // no \Seen either side
  EXPECT_EQ(s.seen_messages, 2u);
  s.CountRemoved(seen);
  s.CountRemoved(unseen);
  EXPECT_EQ(s.messages, 1u);
  EXPECT_EQ(s.seen_messages, 1u);
  EXPECT_EQ(s.virtual_size, seen.virtual_size);

  // Recent: every message at or above the first recent UID.
  MailboxState r;
  r.uidnext = 10;
  r.first_recent_uid = 5;
  MessageRecord old_one = unseen, new_one = unseen;
  old_one.uid = 4;
  new_one.uid = 7;
  r.CountAdded(old_one);
  r.CountAdded(new_one);
  EXPECT_EQ(r.recent_messages, 1u);
  r.CountRemoved(old_one);
  EXPECT_EQ(r.recent_messages, 1u);
  r.CountAdded(old_one);
  r.ClaimRecentTo(8);  // short of UIDNEXT: which remain is not known
  EXPECT_FALSE(r.recent_counted);
  EXPECT_EQ(r.first_recent_uid, 8u);
  r.ClaimRecentTo(10);  // every UID given: none remains
  EXPECT_TRUE(r.recent_counted);
  EXPECT_EQ(r.recent_messages, 0u);

  MailboxState uncounted;
  uncounted.seen_counted = false;
  uncounted.CountAdded(seen);
  uncounted.CountFlags(0, kSeenFlag);
  EXPECT_EQ(uncounted.messages, 1u);
  EXPECT_EQ(uncounted.seen_messages, 0u);
}

TEST(RecordCodec, ChangeLogMarksOutOfOrderAreRejected) {
  MailboxState s;
  s.log_marks = {{40, 1700300000}, {18, 1700000000}};
  MailboxState out;
  EXPECT_EQ(Decode(Encode(s), &out).code(), Code::kCorrupt);
}

TEST(RecordCodec, MailboxStateWithoutFirstRecentUidDecodesAsAllClaimed) {
  MailboxState s;
  s.uidnext = 501;
  s.first_recent_uid = 480;
  s.seen_counted = s.recent_counted = false;  // a writer from before the first recent UID had no counts
  std::string bytes = Encode(s);
  // The first recent UID is the last field (tag, 4-byte length, 4 bytes):
  // cut it off as a writer from before it existed would have.
  constexpr size_t kField = 1 + 4 + 4;
  ASSERT_EQ(static_cast<uint8_t>(bytes[bytes.size() - kField]), 9);
  bytes.resize(bytes.size() - kField);
  const uint32_t payload = static_cast<uint32_t>(bytes.size() - 6);
  for (int i = 0; i < 4; i++) bytes[2 + i] = static_cast<char>(payload >> (8 * i));
  MailboxState out;
  ASSERT_TRUE(Decode(bytes, &out).ok());
  EXPECT_EQ(out.uidnext, 501u);
  EXPECT_EQ(out.first_recent_uid, 501u);
}

TEST(RecordCodec, OtherRecordsRoundTrip) {
  ChangeEntry c = UidsOnly({{1, 5}, {9, 9}}, {{2, 2}});
  EXPECT_EQ(RoundTrip(c), c);
  MailboxEntry e{*Guid::FromHex("ffeeddccbbaa99887766554433221100"), "\\Sent \\Archive"};
  EXPECT_EQ(RoundTrip(e), e);
  EXPECT_EQ(RoundTrip(RootState{77, 1700000001}), (RootState{77, 1700000001}));
  BodyMeta m;
  m.size = 10 * 1024 * 1024 + 1;
  m.xxh3 = 0xdeadbeefcafef00dULL;
  m.chunk_size = 4 * 1024 * 1024;
  m.chunks = 3;
  m.received_date = 1;
  EXPECT_EQ(RoundTrip(m), m);
  EXPECT_EQ(RoundTrip(BodyRef{3, 1700000000}), (BodyRef{3, 1700000000}));
  InlineBody b{99, std::string("Subject: x\r\n\r\n\0body", 20)};
  EXPECT_EQ(RoundTrip(b), b);
}

ChangeEntry ReplayableAppend() {
  ChangeEntry c;
  MessageRecord a = SampleRecord();
  MessageRecord b = SampleRecord();
  b.uid = 43;
  b.keywords.clear();
  b.pop3_uidl.clear();
  b.inline_body = false;
  c.appended = {a, b};
  c.changed = {{42, 43}};
  c.replayable = true;
  return c;
}

TEST(RecordCodec, ReplayableChangeEntriesRoundTrip) {
  EXPECT_EQ(RoundTrip(ReplayableAppend()), ReplayableAppend());
  ChangeEntry defines = ReplayableAppend();
  defines.defined = {"Junk", "$Forwarded"};  // as first set, not sorted
  EXPECT_EQ(RoundTrip(defines), defines);
  ChangeEntry flags;
  flags.replayable = true;
  flags.updated = {{3, 0x08, {}, {}}, {4, 0x01, {"$Junk", "b"}, {}}, {9, 0, {"a"}, {}}};
  flags.changed = {{3, 4}, {9, 9}};
  EXPECT_EQ(RoundTrip(flags), flags);
  // An older writer's updates name keyword ids.
  flags.updated = {{3, 0x08, {}, {}}, {4, 0x01, {}, {0, 5}}, {9, 0, {}, {2}}};
  EXPECT_EQ(RoundTrip(flags), flags);
  ChangeEntry expunge;
  expunge.replayable = true;
  expunge.expunged = {{7, 8}};
  EXPECT_EQ(RoundTrip(expunge), expunge);
  ChangeEntry raise;  // an op that only raised HIGHESTMODSEQ
  raise.replayable = true;
  EXPECT_EQ(RoundTrip(raise), raise);
}

TEST(RecordCodec, OlderChangeEntriesAreNotReplayable) {
  ChangeEntry old = UidsOnly({{1, 2}}, {});
  ChangeEntry out = RoundTrip(old);
  EXPECT_FALSE(out.replayable);
  EXPECT_TRUE(out.appended.empty());
  EXPECT_EQ(out.changed, old.changed);
}

TEST(RecordCodec, ReplayableChangeEntriesRejectInconsistentData) {
  ChangeEntry out;
  ChangeEntry c = ReplayableAppend();
  c.changed = {{42, 44}};  // names a UID the data lacks
  EXPECT_EQ(Decode(Encode(c), &out).code(), Code::kCorrupt);
  c = ReplayableAppend();
  c.updated = {{42, 0, {}, {}}};  // the same UID appended and updated
  EXPECT_EQ(Decode(Encode(c), &out).code(), Code::kCorrupt);
  c = ReplayableAppend();
  std::swap(c.appended[0], c.appended[1]);  // not ascending
  EXPECT_EQ(Decode(Encode(c), &out).code(), Code::kCorrupt);
  c = ReplayableAppend();
  c.expunged = {{50, 50}};  // changes and expunges in one op
  EXPECT_EQ(Decode(Encode(c), &out).code(), Code::kCorrupt);
  c = ReplayableAppend();
  c.appended[1].uid = 0;  // a nested record that does not decode
  c.changed = {{42, 42}};
  EXPECT_EQ(Decode(Encode(c), &out).code(), Code::kCorrupt);
}

TEST(RecordCodec, ReplayableChangeEntryRejectsEveryTruncationAndBadKeywordLength) {
  ChangeEntry names;
  names.replayable = true;
  names.updated = {{4, 0x01, {"ab", "c"}, {}}};
  names.changed = {{4, 4}};
  const std::string encoded = Encode(names);
  ChangeEntry out;
  for (size_t len = 0; len < encoded.size(); len++)
    EXPECT_EQ(Decode(encoded.substr(0, len), &out).code(), Code::kCorrupt) << "length " << len;
  // The byte length of the names is the 4 bytes before them (4 + 2 + 4 + 1).
  std::string bad = encoded;
  bad[bad.size() - 15] = 12;
  EXPECT_EQ(Decode(bad, &out).code(), Code::kCorrupt);
  bad[bad.size() - 15] = 10;  // covers the names, but the last one's length does not fit
  bad[bad.size() - 5] = 2;
  EXPECT_EQ(Decode(bad, &out).code(), Code::kCorrupt);
}

TEST(RecordCodec, OlderReplayableChangeEntryRejectsEveryTruncationAndBadKeywordCount) {
  ChangeEntry flags;
  flags.replayable = true;
  flags.updated = {{4, 0x01, {}, {0, 5}}};
  flags.changed = {{4, 4}};
  const std::string bytes = Encode(flags);
  ChangeEntry out;
  for (size_t len = 0; len < bytes.size(); len++)
    EXPECT_EQ(Decode(bytes.substr(0, len), &out).code(), Code::kCorrupt) << "length " << len;
  // The keyword count is the 4 bytes before the two ids at the end.
  std::string bad = bytes;
  bad[bad.size() - 12] = 3;
  EXPECT_EQ(Decode(bad, &out).code(), Code::kCorrupt);
}

TEST(RecordCodec, RecordsOfOlderWritersKeepTheirKeywordIds) {
  MessageRecord r = SampleRecord();
  r.keywords.clear();
  r.legacy_keyword_ids = {0, 3, 7};
  EXPECT_EQ(RoundTrip(r), r);
}

TEST(RecordCodec, KeywordEntryRoundTrips) {
  KeywordEntry k{1234567890123ULL, 7};
  EXPECT_EQ(RoundTrip(k), k);
  KeywordEntry out;
  EXPECT_EQ(Decode(Encode(SampleRecord()), &out).code(), Code::kCorrupt);
}

TEST(RecordCodec, ToRangesMergesAndSorts) {
  std::vector<UidRange> expected = {{1, 3}, {5, 5}, {7, 8}};
  EXPECT_EQ(ToRanges({8, 2, 1, 5, 3, 7, 3}), expected);
  EXPECT_TRUE(ToRanges({}).empty());
}

TEST(RecordCodec, UnknownFieldsAreSkipped) {
  std::string bytes = Encode(SampleRecord());
  // A field a newer writer added: tag 200, 3 bytes.
  bytes += std::string(
      "\xc8\x03\x00\x00\x00"
      "xyz",
      8);
  bytes[2] = static_cast<char>(bytes[2] + 8);  // payload length
  MessageRecord out;
  ASSERT_TRUE(Decode(bytes, &out).ok());
  EXPECT_EQ(out, SampleRecord());
}

// Every way a stored value can be damaged must decode to Corrupt.
TEST(RecordCodec, EveryTruncationIsCorrupt) {
  const std::string bytes = Encode(SampleRecord());
  for (size_t len = 0; len < bytes.size(); len++) {
    MessageRecord out;
    Status s = Decode(std::string_view(bytes.data(), len), &out);
    EXPECT_EQ(s.code(), Code::kCorrupt) << "length " << len;
  }
}

TEST(RecordCodec, MalformedInputIsCorrupt) {
  MessageRecord out;
  EXPECT_EQ(Decode("", &out).code(), Code::kCorrupt);
  // Wrong record type.
  EXPECT_EQ(Decode(Encode(RootState{1}), &out).code(), Code::kCorrupt);
  // Future format version.
  std::string bytes = Encode(SampleRecord());
  bytes[1] = 2;
  EXPECT_EQ(Decode(bytes, &out).code(), Code::kCorrupt);
  // Payload length disagreeing with the bytes present.
  bytes = Encode(SampleRecord());
  bytes[2] = static_cast<char>(bytes[2] + 1);
  EXPECT_EQ(Decode(bytes, &out).code(), Code::kCorrupt);
  // A field length pointing past the end (first field's length byte).
  bytes = Encode(SampleRecord());
  bytes[7] = '\xff';
  EXPECT_EQ(Decode(bytes, &out).code(), Code::kCorrupt);
  // A fixed-width field with the wrong width: UID with 3 bytes.
  std::string bad(
      "\x01\x01\x08\x00\x00\x00"
      "\x01\x03\x00\x00\x00"
      "abc",
      14);
  EXPECT_EQ(Decode(bad, &out).code(), Code::kCorrupt);
  // A duplicated field (the 9-byte UID field again).
  bytes = Encode(SampleRecord()) + Encode(SampleRecord()).substr(6, 9);
  bytes[2] = static_cast<char>(bytes[2] + 9);
  EXPECT_EQ(Decode(bytes, &out).code(), Code::kCorrupt);
  // Missing required fields.
  EXPECT_EQ(Decode(std::string("\x01\x01\x00\x00\x00\x00", 6), &out).code(), Code::kCorrupt);
}

TEST(RecordCodec, SemanticChecksRejectImpossibleValues) {
  MessageRecord r = SampleRecord();
  r.uid = 0;
  MessageRecord out;
  EXPECT_EQ(Decode(Encode(r), &out).code(), Code::kCorrupt);

  MailboxState s;
  s.uidnext = 0;
  MailboxState s_out;
  EXPECT_EQ(Decode(Encode(s), &s_out).code(), Code::kCorrupt);
  s.uidnext = 10;
  s.first_recent_uid = 11;  // no message above UIDNEXT can be recent
  EXPECT_EQ(Decode(Encode(s), &s_out).code(), Code::kCorrupt);
  s.first_recent_uid = 0;
  EXPECT_EQ(Decode(Encode(s), &s_out).code(), Code::kCorrupt);
  s.first_recent_uid = 10;
  EXPECT_TRUE(Decode(Encode(s), &s_out).ok());

  ChangeEntry c = UidsOnly({{5, 4}}, {});
  ChangeEntry c_out;
  EXPECT_EQ(Decode(Encode(c), &c_out).code(), Code::kCorrupt);

  BodyMeta m;
  m.size = 100;
  m.chunk_size = 10;
  m.chunks = 3;  // 100 bytes cannot be 3 chunks of 10
  BodyMeta m_out;
  EXPECT_EQ(Decode(Encode(m), &m_out).code(), Code::kCorrupt);
  m.chunks = 0;
  EXPECT_EQ(Decode(Encode(m), &m_out).code(), Code::kCorrupt);
  m.chunks = 10;
  EXPECT_TRUE(Decode(Encode(m), &m_out).ok());
}

TEST(RecordCodec, BooleanFieldRejectsOtherValues) {
  MessageRecord r = SampleRecord();
  std::string bytes = Encode(r);
  // The inline flag is the last field: tag 11, length 1, value 1.
  ASSERT_EQ(bytes.back(), '\x01');
  bytes.back() = '\x02';
  MessageRecord out;
  EXPECT_EQ(Decode(bytes, &out).code(), Code::kCorrupt);
}

// What one process hands the next: several changes, bytes that are not
// text included, back whole and in order; a cut inside a change is an
// error, not fewer changes.
TEST(RecordCodec, UnsettledChangesRoundTripAndDetectTruncation) {
  UnsettledChange append;
  append.mailbox = *Guid::FromHex("00112233445566778899aabbccddeeff");
  append.modseq = 77;
  append.state = std::string("st\0ate", 6);
  append.entry = "entry";
  append.appended = {5, 6};
  UnsettledChange flags;
  flags.mailbox = *Guid::FromHex("ffeeddccbbaa99887766554433221100");
  flags.modseq = 78;
  flags.state = "s2";
  flags.entry = "e2";
  flags.before = {{"u.1", Encode(SampleRecord())}, {"u.2", std::string("\0", 1)}};
  const std::string bytes = EncodeAll({append, flags});

  std::vector<UnsettledChange> out;
  ASSERT_TRUE(DecodeAll(bytes, &out).ok());
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].mailbox, append.mailbox);
  EXPECT_EQ(out[0].modseq, 77u);
  EXPECT_EQ(out[0].state, append.state);
  EXPECT_EQ(out[0].entry, "entry");
  EXPECT_EQ(out[0].appended, append.appended);
  EXPECT_TRUE(out[0].before.empty());
  EXPECT_EQ(out[1].modseq, 78u);
  EXPECT_EQ(out[1].before, flags.before);
  EXPECT_TRUE(out[1].appended.empty());

  const size_t boundary = Encode(append).size();
  for (size_t cut = 1; cut < bytes.size(); cut++) {
    if (cut == boundary) continue;  // a shorter list, as written whole by its writer
    EXPECT_EQ(DecodeAll(bytes.substr(0, cut), &out).code(), Code::kCorrupt) << "cut at " << cut;
  }
  EXPECT_TRUE(DecodeAll("", &out).ok());
  EXPECT_TRUE(out.empty());
}

}  // namespace
}  // namespace rbd
