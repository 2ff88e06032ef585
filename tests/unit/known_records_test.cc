#include "known_records.h"

#include <gtest/gtest.h>

namespace rbd {
namespace {

MailboxState At(uint64_t modseq, uint32_t uidvalidity = 7) {
  MailboxState s;
  s.uidvalidity = uidvalidity;
  s.highest_modseq = modseq;
  return s;
}

MessageRecord Record(uint32_t uid, uint8_t flags, uint64_t modseq) {
  MessageRecord r;
  r.uid = uid;
  r.flags = flags;
  r.modseq = modseq;
  r.physical_size = 100 + uid;
  return r;
}

TEST(KnownRecords, AreCurrentOnlyAtTheStateTheyWereLearnedAt) {
  KnownRecords known;
  EXPECT_FALSE(known.CurrentAt(At(0)));
  known.Reset(At(10));
  EXPECT_TRUE(known.CurrentAt(At(10)));
  EXPECT_FALSE(known.CurrentAt(At(11)));
  EXPECT_FALSE(known.CurrentAt(At(10, 8))) << "another UIDVALIDITY";
  known.Forget();
  EXPECT_FALSE(known.CurrentAt(At(10)));
}

TEST(KnownRecords, FollowEveryOpOfTheLog) {
  KnownRecords known;
  known.Reset(At(10));
  known.Put(Record(1, 0, 5));
  known.Put(Record(2, 0, 6));
  known.Put(Record(3, 0, 7));
  known.Put(Record(4, 0, 8));
  EXPECT_FALSE(known.CanFollow(11, At(12))) << "a log that starts above them";
  ASSERT_TRUE(known.CanFollow(9, At(13)));

  ChangeEntry flags;  // \Seen on 1; 2 changed in a way the entry does not say
  flags.changed = {{1, 2}};
  flags.updated = {{1, 0x08, {"kw"}, {}}};
  known.Apply(9, flags);  // at or below them: in them already
  EXPECT_EQ(known.Find(1)->flags, 0);
  known.Apply(11, flags);
  EXPECT_EQ(known.Find(1)->flags, 0x08);
  EXPECT_EQ(known.Find(1)->keywords, std::vector<std::string>{"kw"});
  EXPECT_EQ(known.Find(1)->modseq, 11u);
  EXPECT_EQ(known.Find(1)->physical_size, 101u) << "what never changes stays";
  EXPECT_EQ(known.Find(2), nullptr);

  ChangeEntry expunge;
  expunge.expunged = {{3, 3}};
  known.Apply(12, expunge);
  EXPECT_EQ(known.Find(3), nullptr);

  ChangeEntry append;
  append.appended = {Record(5, 0x01, 13)};
  known.Apply(13, append);
  EXPECT_EQ(known.Find(5)->flags, 0x01);
  known.MoveTo(At(13));
  EXPECT_TRUE(known.CurrentAt(At(13)));
  EXPECT_NE(known.Find(4), nullptr);
}

TEST(KnownRecords, AnotherUidvalidityStartsOver) {
  KnownRecords known;
  known.Reset(At(10));
  known.Put(Record(1, 0, 5));
  known.MoveTo(At(10, 8));
  EXPECT_TRUE(known.CurrentAt(At(10, 8)));
  EXPECT_EQ(known.Find(1), nullptr);
}

TEST(KnownRecords, AreBounded) {
  KnownRecords known;
  known.Reset(At(1));
  for (uint32_t uid = 1; uid <= 5000; uid++) known.Put(Record(uid, 0, 1));
  EXPECT_EQ(known.Find(1), nullptr) << "forgotten at the bound";
  EXPECT_NE(known.Find(5000), nullptr);
  EXPECT_TRUE(known.CurrentAt(At(1)));
}

}  // namespace
}  // namespace rbd
