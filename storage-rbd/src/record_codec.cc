#include "record_codec.h"

#include <algorithm>
#include <cstring>

#include "unsettled.h"

namespace rbd {

namespace {

// Upper bounds that keep a corrupt length from turning into a huge
// allocation before the buffer-size check would catch it.
constexpr uint32_t kMaxListItems = 1u << 24;
// Type, version, and a payload length that makes any truncation detectable
// (a cut at a field boundary would otherwise decode as a shorter record).
constexpr size_t kHeaderSize = 6;

void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; i++) out->push_back(static_cast<char>(v >> (8 * i)));
}

void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; i++) out->push_back(static_cast<char>(v >> (8 * i)));
}

uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= static_cast<uint32_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}

uint64_t GetU64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= static_cast<uint64_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}

// A string list: each string is a 4-byte length and its bytes.
std::string PutStrings(const std::vector<std::string>& v) {
  std::string b;
  for (const std::string& s : v) {
    PutU32(&b, static_cast<uint32_t>(s.size()));
    b.append(s);
  }
  return b;
}

bool ParseStrings(std::string_view in, std::vector<std::string>* v) {
  v->clear();
  while (!in.empty()) {
    if (in.size() < 4 || v->size() >= kMaxListItems) return false;
    uint32_t len = GetU32(in.data());
    in.remove_prefix(4);
    if (len > in.size()) return false;
    v->emplace_back(in.substr(0, len));
    in.remove_prefix(len);
  }
  return true;
}

class Encoder {
 public:
  explicit Encoder(RecordType type) {
    out_.push_back(static_cast<char>(type));
    out_.push_back(static_cast<char>(kFormatVersion));
    PutU32(&out_, 0);  // payload length, set by Finish()
  }

  void Bytes(uint8_t tag, std::string_view v) {
    out_.push_back(static_cast<char>(tag));
    PutU32(&out_, static_cast<uint32_t>(v.size()));
    out_.append(v);
  }
  void U8(uint8_t tag, uint8_t v) { Bytes(tag, std::string_view(reinterpret_cast<char*>(&v), 1)); }
  void U32(uint8_t tag, uint32_t v) {
    std::string b;
    PutU32(&b, v);
    Bytes(tag, b);
  }
  void U64(uint8_t tag, uint64_t v) {
    std::string b;
    PutU64(&b, v);
    Bytes(tag, b);
  }
  void I64(uint8_t tag, int64_t v) { U64(tag, static_cast<uint64_t>(v)); }
  void GuidField(uint8_t tag, const Guid& g) {
    Bytes(tag, std::string_view(reinterpret_cast<const char*>(g.bytes.data()), g.bytes.size()));
  }
  void U32List(uint8_t tag, const std::vector<uint32_t>& v) {
    std::string b;
    for (uint32_t x : v) PutU32(&b, x);
    Bytes(tag, b);
  }
  void RangeList(uint8_t tag, const std::vector<UidRange>& v) {
    std::string b;
    for (const UidRange& r : v) {
      PutU32(&b, r.first);
      PutU32(&b, r.last);
    }
    Bytes(tag, b);
  }
  void MarkList(uint8_t tag, const std::vector<LogMark>& v) {
    std::string b;
    for (const LogMark& m : v) {
      PutU64(&b, m.modseq);
      PutU64(&b, static_cast<uint64_t>(m.time));
    }
    Bytes(tag, b);
  }
  void StringList(uint8_t tag, const std::vector<std::string>& v) { Bytes(tag, PutStrings(v)); }

  std::string Finish() {
    uint32_t payload = static_cast<uint32_t>(out_.size() - kHeaderSize);
    for (int i = 0; i < 4; i++) out_[2 + i] = static_cast<char>(payload >> (8 * i));
    return std::move(out_);
  }

 private:
  std::string out_;
};

struct Field {
  uint8_t tag = 0;
  std::string_view value;
};

class Decoder {
 public:
  Decoder(std::string_view in, RecordType type, const char* what) : in_(in), what_(what) {
    if (in_.size() < kHeaderSize) {
      status_ = Fail("truncated header");
    } else if (static_cast<uint8_t>(in_[0]) != static_cast<uint8_t>(type)) {
      status_ = Fail("wrong record type " + std::to_string(static_cast<uint8_t>(in_[0])));
    } else if (static_cast<uint8_t>(in_[1]) != kFormatVersion) {
      status_ = Fail("unsupported format version " + std::to_string(static_cast<uint8_t>(in_[1])));
    } else if (GetU32(in_.data() + 2) != in_.size() - kHeaderSize) {
      status_ = Fail("payload length " + std::to_string(GetU32(in_.data() + 2)) + " does not match the " +
                     std::to_string(in_.size() - kHeaderSize) + " bytes present");
    } else {
      in_.remove_prefix(kHeaderSize);
    }
  }

  // Returns the next field, or false at the end or on error (see status()).
  bool Next(Field* f) {
    if (!status_.ok() || in_.empty()) return false;
    if (in_.size() < 5) {
      status_ = Fail("truncated field header");
      return false;
    }
    f->tag = static_cast<uint8_t>(in_[0]);
    uint32_t len = GetU32(in_.data() + 1);
    in_.remove_prefix(5);
    if (len > in_.size()) {
      status_ = Fail("field " + std::to_string(f->tag) + " length " + std::to_string(len) +
                     " exceeds the remaining " + std::to_string(in_.size()) + " bytes");
      return false;
    }
    f->value = in_.substr(0, len);
    in_.remove_prefix(len);
    if (seen_[f->tag]) {
      status_ = Fail("duplicate field " + std::to_string(f->tag));
      return false;
    }
    seen_[f->tag] = true;
    return true;
  }

  bool Has(uint8_t tag) const { return seen_[tag]; }

  void U8(const Field& f, uint8_t* v) {
    if (Expect(f, 1)) *v = static_cast<uint8_t>(f.value[0]);
  }
  void Bool(const Field& f, bool* v) {
    uint8_t b = 0;
    U8(f, &b);
    if (b > 1) status_ = Fail("field " + std::to_string(f.tag) + " is not a boolean");
    *v = b == 1;
  }
  void U32(const Field& f, uint32_t* v) {
    if (Expect(f, 4)) *v = GetU32(f.value.data());
  }
  void U64(const Field& f, uint64_t* v) {
    if (Expect(f, 8)) *v = GetU64(f.value.data());
  }
  void I64(const Field& f, int64_t* v) {
    uint64_t u = 0;
    U64(f, &u);
    *v = static_cast<int64_t>(u);
  }
  void GuidField(const Field& f, Guid* g) {
    if (Expect(f, 16)) std::memcpy(g->bytes.data(), f.value.data(), 16);
  }
  void U32List(const Field& f, std::vector<uint32_t>* v) {
    if (f.value.size() % 4 != 0) {
      status_ = Fail("field " + std::to_string(f.tag) + " is not a list of 32-bit values");
      return;
    }
    v->clear();
    for (size_t i = 0; i < f.value.size(); i += 4) v->push_back(GetU32(f.value.data() + i));
  }
  void RangeList(const Field& f, std::vector<UidRange>* v) {
    if (f.value.size() % 8 != 0) {
      status_ = Fail("field " + std::to_string(f.tag) + " is not a list of UID ranges");
      return;
    }
    v->clear();
    for (size_t i = 0; i < f.value.size(); i += 8) {
      UidRange r{GetU32(f.value.data() + i), GetU32(f.value.data() + i + 4)};
      if (r.first == 0 || r.first > r.last) {
        status_ = Fail("invalid UID range " + std::to_string(r.first) + ":" + std::to_string(r.last));
        return;
      }
      v->push_back(r);
    }
  }
  // Strictly ascending MODSEQs.
  void MarkList(const Field& f, std::vector<LogMark>* v) {
    if (f.value.size() % 16 != 0 || f.value.size() / 16 > kMaxListItems) {
      status_ = Fail("field " + std::to_string(f.tag) + " is not a list of change-log marks");
      return;
    }
    v->clear();
    for (size_t i = 0; i < f.value.size(); i += 16) {
      LogMark m{GetU64(f.value.data() + i), static_cast<int64_t>(GetU64(f.value.data() + i + 8))};
      if (!v->empty() && m.modseq <= v->back().modseq) {
        status_ = Fail("change-log marks out of order");
        return;
      }
      v->push_back(m);
    }
  }
  void StringList(const Field& f, std::vector<std::string>* v) {
    if (!ParseStrings(f.value, v)) status_ = Fail("malformed string list in field " + std::to_string(f.tag));
  }

  // Call after the loop: reports errors and missing required fields.
  Status Finish(std::initializer_list<uint8_t> required) {
    if (!status_.ok()) return status_;
    for (uint8_t tag : required)
      if (!seen_[tag]) return Fail("missing required field " + std::to_string(tag));
    return Status::OK();
  }

 private:
  bool Expect(const Field& f, size_t size) {
    if (f.value.size() == size) return true;
    status_ = Fail("field " + std::to_string(f.tag) + " has length " + std::to_string(f.value.size()) +
                   ", expected " + std::to_string(size));
    return false;
  }
  Status Fail(const std::string& why) const { return Status::Corrupt(std::string(what_) + ": " + why); }

  std::string_view in_;
  const char* what_;
  Status status_;
  bool seen_[256] = {};
};

// Field tags, per record type. Never reuse a retired tag.
namespace msg {
enum : uint8_t {
  kUid = 1,
  kGuid,
  kFlags,
  kLegacyKeywords,  // ids into the state's legacy table (written before names)
  kModseq,
  kReceived,
  kSaved,
  kPsize,
  kVsize,
  kUidl,
  kInline,
  kGuidText,
  kKeywords
};
}
namespace state {
enum : uint8_t {
  kUidValidity = 1,
  kUidNext,
  kModseq,
  kMessages,
  kVsize,
  kPsize,
  kLogFloor,
  kLegacyKeywords,
  kFirstRecent,
  kLogMarks,
  kKeywordCount,
  kSeen,
  kRecent,
  kShardUids,
  kSealedShards,
  kName,
  kNamePending,
  kWatchedUntil
};
}
namespace change {
enum : uint8_t { kChanged = 1, kExpunged, kReplayable, kAppended, kLegacyUpdated, kUpdated, kDefined };
}
namespace entry {
enum : uint8_t { kGuid = 1, kSpecialUse };
}
namespace root {
enum : uint8_t { kVersion = 1, kLastUidValidity };
}
namespace meta {
enum : uint8_t { kSize = 1, kXxh3, kMailbox, kReceived, kSaved, kChunkSize, kChunks };
}
namespace ref {
enum : uint8_t { kCount = 1, kChanged };
}
namespace inl {
enum : uint8_t { kXxh3 = 1, kBytes };
}
namespace kw {
enum : uint8_t { kCreated = 1, kPosition };
}
namespace unsettled {
enum : uint8_t { kMailbox = 1, kModseq, kState, kEntry, kAppended, kBefore };
}

}  // namespace

bool MessageRecord::operator==(const MessageRecord& o) const {
  return uid == o.uid && guid == o.guid && flags == o.flags && keywords == o.keywords &&
         legacy_keyword_ids == o.legacy_keyword_ids && modseq == o.modseq &&
         received_date == o.received_date && save_date == o.save_date && physical_size == o.physical_size &&
         virtual_size == o.virtual_size && pop3_uidl == o.pop3_uidl && inline_body == o.inline_body &&
         guid_text == o.guid_text;
}

void MailboxState::CountAdded(const MessageRecord& r) {
  messages++;
  physical_size += r.physical_size;
  virtual_size += r.virtual_size;
  CountFlags(0, r.flags);
  if (r.uid >= first_recent_uid) recent_messages++;
}

void MailboxState::CountRemoved(const MessageRecord& r) {
  messages--;
  physical_size -= r.physical_size;
  virtual_size -= r.virtual_size;
  CountFlags(r.flags, 0);
  if (r.uid >= first_recent_uid && recent_messages > 0) recent_messages--;
}

void MailboxState::ClaimRecentTo(uint32_t end) {
  if (end == first_recent_uid) return;
  first_recent_uid = end;
  // Past every UID given: nothing is recent. Short of that, the messages
  // left are those in [end, UIDNEXT), which only the records know.
  recent_counted = end == uidnext;
  recent_messages = 0;
}

void MailboxState::CountFlags(uint8_t before, uint8_t after) {
  // An uncounted state keeps nothing (it is not written either): only a
  // count of the records can start it.
  if (!seen_counted || ((before ^ after) & kSeenFlag) == 0) return;
  if ((after & kSeenFlag) != 0) {
    seen_messages++;
  } else if (seen_messages > 0) {
    seen_messages--;
  }
}

bool MailboxState::operator==(const MailboxState& o) const {
  return uidvalidity == o.uidvalidity && uidnext == o.uidnext && highest_modseq == o.highest_modseq &&
         messages == o.messages && virtual_size == o.virtual_size && physical_size == o.physical_size &&
         log_floor == o.log_floor && legacy_keywords == o.legacy_keywords &&
         keyword_count == o.keyword_count && first_recent_uid == o.first_recent_uid &&
         log_marks == o.log_marks && seen_messages == o.seen_messages && seen_counted == o.seen_counted &&
         recent_messages == o.recent_messages && recent_counted == o.recent_counted &&
         shard_uids == o.shard_uids && sealed_shards == o.sealed_shards && name == o.name &&
         name_pending == o.name_pending && watched_until == o.watched_until;
}

bool ChangeEntry::operator==(const ChangeEntry& o) const {
  return changed == o.changed && expunged == o.expunged && replayable == o.replayable &&
         appended == o.appended && updated == o.updated && defined == o.defined;
}

bool MailboxEntry::operator==(const MailboxEntry& o) const {
  return guid == o.guid && special_use == o.special_use;
}

bool BodyMeta::operator==(const BodyMeta& o) const {
  return size == o.size && xxh3 == o.xxh3 && first_mailbox == o.first_mailbox &&
         received_date == o.received_date && save_date == o.save_date && chunk_size == o.chunk_size &&
         chunks == o.chunks;
}

std::vector<UidRange> ToRanges(std::vector<uint32_t> uids) {
  std::sort(uids.begin(), uids.end());
  std::vector<UidRange> out;
  for (uint32_t uid : uids) {
    if (!out.empty() && (out.back().last == uid || out.back().last + 1 == uid)) {
      out.back().last = uid;
    } else {
      out.push_back({uid, uid});
    }
  }
  return out;
}

std::string Encode(const MessageRecord& r) {
  Encoder e(RecordType::kMessage);
  e.U32(msg::kUid, r.uid);
  e.GuidField(msg::kGuid, r.guid);
  e.U8(msg::kFlags, r.flags);
  if (!r.keywords.empty()) e.StringList(msg::kKeywords, r.keywords);
  if (!r.legacy_keyword_ids.empty()) e.U32List(msg::kLegacyKeywords, r.legacy_keyword_ids);
  e.U64(msg::kModseq, r.modseq);
  e.I64(msg::kReceived, r.received_date);
  e.I64(msg::kSaved, r.save_date);
  e.U64(msg::kPsize, r.physical_size);
  e.U64(msg::kVsize, r.virtual_size);
  if (!r.pop3_uidl.empty()) e.Bytes(msg::kUidl, r.pop3_uidl);
  if (!r.guid_text.empty()) e.Bytes(msg::kGuidText, r.guid_text);
  if (r.inline_body) e.U8(msg::kInline, 1);
  return e.Finish();
}

Status Decode(std::string_view in, MessageRecord* out) {
  Decoder d(in, RecordType::kMessage, "message record");
  *out = MessageRecord();
  Field f;
  while (d.Next(&f)) {
    switch (f.tag) {
      case msg::kUid: d.U32(f, &out->uid); break;
      case msg::kGuid: d.GuidField(f, &out->guid); break;
      case msg::kFlags: d.U8(f, &out->flags); break;
      case msg::kKeywords: d.StringList(f, &out->keywords); break;
      case msg::kLegacyKeywords: d.U32List(f, &out->legacy_keyword_ids); break;
      case msg::kModseq: d.U64(f, &out->modseq); break;
      case msg::kReceived: d.I64(f, &out->received_date); break;
      case msg::kSaved: d.I64(f, &out->save_date); break;
      case msg::kPsize: d.U64(f, &out->physical_size); break;
      case msg::kVsize: d.U64(f, &out->virtual_size); break;
      case msg::kUidl: out->pop3_uidl = f.value; break;
      case msg::kInline: d.Bool(f, &out->inline_body); break;
      case msg::kGuidText: out->guid_text = f.value; break;
      default: break;  // a newer writer's field
    }
  }
  Status s = d.Finish({msg::kUid, msg::kGuid, msg::kModseq});
  if (s.ok() && out->uid == 0) return Status::Corrupt("message record: UID 0");
  return s;
}

std::string Encode(const MailboxState& s) {
  Encoder e(s.sealed_shards != 0 ? RecordType::kShardedMailboxState : RecordType::kMailboxState);
  e.U32(state::kUidValidity, s.uidvalidity);
  e.U32(state::kUidNext, s.uidnext);
  e.U64(state::kModseq, s.highest_modseq);
  e.U32(state::kMessages, s.messages);
  e.U64(state::kVsize, s.virtual_size);
  e.U64(state::kPsize, s.physical_size);
  e.U64(state::kLogFloor, s.log_floor);
  if (!s.legacy_keywords.empty()) e.StringList(state::kLegacyKeywords, s.legacy_keywords);
  e.U32(state::kFirstRecent, s.first_recent_uid);
  if (!s.log_marks.empty()) e.MarkList(state::kLogMarks, s.log_marks);
  if (s.keyword_count != 0) e.U32(state::kKeywordCount, s.keyword_count);
  if (s.seen_counted) e.U32(state::kSeen, s.seen_messages);
  if (s.recent_counted) e.U32(state::kRecent, s.recent_messages);
  if (s.shard_uids != 0) e.U32(state::kShardUids, s.shard_uids);
  if (s.sealed_shards != 0) e.U32(state::kSealedShards, s.sealed_shards);
  if (!s.name.empty()) e.Bytes(state::kName, s.name);
  if (s.name_pending != 0) e.U64(state::kNamePending, s.name_pending);
  if (s.watched_until != 0) e.U64(state::kWatchedUntil, s.watched_until);
  return e.Finish();
}

Status Decode(std::string_view in, MailboxState* out) {
  const bool sharded =
      !in.empty() && static_cast<uint8_t>(in[0]) == static_cast<uint8_t>(RecordType::kShardedMailboxState);
  Decoder d(in, sharded ? RecordType::kShardedMailboxState : RecordType::kMailboxState, "mailbox state");
  *out = MailboxState();
  Field f;
  while (d.Next(&f)) {
    switch (f.tag) {
      case state::kUidValidity: d.U32(f, &out->uidvalidity); break;
      case state::kUidNext: d.U32(f, &out->uidnext); break;
      case state::kModseq: d.U64(f, &out->highest_modseq); break;
      case state::kMessages: d.U32(f, &out->messages); break;
      case state::kVsize: d.U64(f, &out->virtual_size); break;
      case state::kPsize: d.U64(f, &out->physical_size); break;
      case state::kLogFloor: d.U64(f, &out->log_floor); break;
      case state::kLegacyKeywords: d.StringList(f, &out->legacy_keywords); break;
      case state::kFirstRecent: d.U32(f, &out->first_recent_uid); break;
      case state::kLogMarks: d.MarkList(f, &out->log_marks); break;
      case state::kKeywordCount: d.U32(f, &out->keyword_count); break;
      case state::kSeen: d.U32(f, &out->seen_messages); break;
      case state::kRecent: d.U32(f, &out->recent_messages); break;
      case state::kShardUids: d.U32(f, &out->shard_uids); break;
      case state::kSealedShards: d.U32(f, &out->sealed_shards); break;
      case state::kName: out->name = f.value; break;
      case state::kNamePending: d.U64(f, &out->name_pending); break;
      case state::kWatchedUntil: d.U64(f, &out->watched_until); break;
      default: break;
    }
  }
  Status s = d.Finish({state::kUidValidity, state::kUidNext, state::kModseq});
  if (s.ok() && out->uidnext == 0) return Status::Corrupt("mailbox state: UIDNEXT 0");
  out->seen_counted = d.Has(state::kSeen);
  out->recent_counted = d.Has(state::kRecent);
  if (s.ok() && !d.Has(state::kFirstRecent)) {
    // Written before the field existed: its messages count as claimed, so
    // an upgrade does not make every old message \Recent once more.
    out->first_recent_uid = out->uidnext;
  }
  if (s.ok() && (out->sealed_shards != 0) != sharded)
    return Status::Corrupt("mailbox state: sealed shards do not match its record type");
  if (s.ok() && out->sealed_shards != 0 && out->shard_uids == 0)
    return Status::Corrupt("mailbox state: sealed shards without a shard size");
  if (s.ok() && (out->first_recent_uid == 0 || out->first_recent_uid > out->uidnext))
    return Status::Corrupt("mailbox state: first recent UID " + std::to_string(out->first_recent_uid) +
                           " outside 1.." + std::to_string(out->uidnext));
  return s;
}

std::string Encode(const ChangeEntry& c) {
  Encoder e(RecordType::kChange);
  e.RangeList(change::kChanged, c.changed);
  e.RangeList(change::kExpunged, c.expunged);
  if (c.replayable) {
    e.U8(change::kReplayable, 1);
    // Each appended record is a whole encoded record behind its length.
    std::string appended;
    for (const MessageRecord& r : c.appended) {
      std::string one = Encode(r);
      PutU32(&appended, static_cast<uint32_t>(one.size()));
      appended.append(one);
    }
    e.Bytes(change::kAppended, appended);
    // Each update: UID, flags, the byte length of its keyword names and
    // the names as a string list. Updates decoded from an entry of an
    // older writer keep that entry's form (keyword count and ids).
    const bool legacy = std::any_of(c.updated.begin(), c.updated.end(),
                                    [](const FlagState& u) { return !u.legacy_keyword_ids.empty(); });
    std::string updated;
    for (const FlagState& u : c.updated) {
      PutU32(&updated, u.uid);
      updated.push_back(static_cast<char>(u.flags));
      if (legacy) {
        PutU32(&updated, static_cast<uint32_t>(u.legacy_keyword_ids.size()));
        for (uint32_t id : u.legacy_keyword_ids) PutU32(&updated, id);
      } else {
        std::string names = PutStrings(u.keywords);
        PutU32(&updated, static_cast<uint32_t>(names.size()));
        updated.append(names);
      }
    }
    e.Bytes(legacy ? change::kLegacyUpdated : change::kUpdated, updated);
    if (!c.defined.empty()) e.StringList(change::kDefined, c.defined);
  }
  return e.Finish();
}

namespace {

Status DecodeAppended(std::string_view in, std::vector<MessageRecord>* out) {
  while (!in.empty()) {
    if (in.size() < 4 || out->size() >= kMaxListItems) return Status::Corrupt("malformed appended records");
    uint32_t len = GetU32(in.data());
    in.remove_prefix(4);
    if (len > in.size()) return Status::Corrupt("appended record length exceeds the entry");
    MessageRecord r;
    Status s = Decode(in.substr(0, len), &r);
    if (!s.ok()) return s;
    out->push_back(std::move(r));
    in.remove_prefix(len);
  }
  return Status::OK();
}

// `legacy`: the updates of an entry written before keywords were names
// (keyword count, then keyword ids); else the byte length of the names and
// the names.
Status DecodeUpdated(std::string_view in, bool legacy, std::vector<FlagState>* out) {
  while (!in.empty()) {
    if (in.size() < 9 || out->size() >= kMaxListItems) return Status::Corrupt("malformed flag update");
    FlagState u;
    u.uid = GetU32(in.data());
    u.flags = static_cast<uint8_t>(in[4]);
    uint32_t count = GetU32(in.data() + 5);
    in.remove_prefix(9);
    if (u.uid == 0) return Status::Corrupt("flag update of UID 0");
    if (legacy) {
      if (count > in.size() / 4) return Status::Corrupt("keyword count exceeds the entry");
      for (uint32_t i = 0; i < count; i++) u.legacy_keyword_ids.push_back(GetU32(in.data() + 4 * i));
      in.remove_prefix(4 * size_t{count});
    } else {
      if (count > in.size() || !ParseStrings(in.substr(0, count), &u.keywords))
        return Status::Corrupt("malformed keyword names in a flag update");
      in.remove_prefix(count);
    }
    out->push_back(std::move(u));
  }
  return Status::OK();
}

// The UIDs an entry's data covers must be exactly its `changed` ranges,
// each once and ascending, so a replay and a reader of the ranges agree.
bool CoversChanged(const ChangeEntry& c) {
  std::vector<uint32_t> uids;
  for (const MessageRecord& r : c.appended) uids.push_back(r.uid);
  for (const FlagState& u : c.updated) uids.push_back(u.uid);
  if (!std::is_sorted(c.appended.begin(), c.appended.end(),
                      [](const auto& a, const auto& b) { return a.uid < b.uid; }) ||
      !std::is_sorted(c.updated.begin(), c.updated.end(),
                      [](const auto& a, const auto& b) { return a.uid < b.uid; }))
    return false;
  std::sort(uids.begin(), uids.end());
  if (std::adjacent_find(uids.begin(), uids.end()) != uids.end()) return false;
  return ToRanges(uids) == c.changed;
}

}  // namespace

Status Decode(std::string_view in, ChangeEntry* out) {
  Decoder d(in, RecordType::kChange, "change entry");
  *out = ChangeEntry();
  std::string_view appended, updated, legacy_updated;
  Field f;
  while (d.Next(&f)) {
    switch (f.tag) {
      case change::kChanged: d.RangeList(f, &out->changed); break;
      case change::kExpunged: d.RangeList(f, &out->expunged); break;
      case change::kReplayable: d.Bool(f, &out->replayable); break;
      case change::kAppended: appended = f.value; break;
      case change::kUpdated: updated = f.value; break;
      case change::kLegacyUpdated: legacy_updated = f.value; break;
      case change::kDefined: d.StringList(f, &out->defined); break;
      default: break;
    }
  }
  Status s = d.Finish({change::kChanged, change::kExpunged});
  if (!s.ok()) return s;
  if (!out->replayable) {
    if (d.Has(change::kReplayable) || d.Has(change::kAppended) || d.Has(change::kUpdated) ||
        d.Has(change::kLegacyUpdated) || d.Has(change::kDefined))
      return Status::Corrupt("change entry: op data without the replayable mark");
    return s;
  }
  const bool legacy = d.Has(change::kLegacyUpdated);
  if (!d.Has(change::kAppended) || legacy == d.Has(change::kUpdated))
    return Status::Corrupt("change entry: replayable entry without its op data");
  s = DecodeAppended(appended, &out->appended);
  if (s.ok()) s = DecodeUpdated(legacy ? legacy_updated : updated, legacy, &out->updated);
  if (!s.ok()) return Status::Corrupt("change entry: " + s.message());
  if (!out->changed.empty() && !out->expunged.empty())
    return Status::Corrupt("change entry: an op that both changes and expunges");
  if (!CoversChanged(*out)) return Status::Corrupt("change entry: op data does not match the changed UIDs");
  return s;
}

std::string Encode(const MailboxEntry& m) {
  Encoder e(RecordType::kMailboxEntry);
  e.GuidField(entry::kGuid, m.guid);
  if (!m.special_use.empty()) e.Bytes(entry::kSpecialUse, m.special_use);
  return e.Finish();
}

Status Decode(std::string_view in, MailboxEntry* out) {
  Decoder d(in, RecordType::kMailboxEntry, "mailbox entry");
  *out = MailboxEntry();
  Field f;
  while (d.Next(&f)) {
    switch (f.tag) {
      case entry::kGuid: d.GuidField(f, &out->guid); break;
      case entry::kSpecialUse: out->special_use = f.value; break;
      default: break;
    }
  }
  return d.Finish({entry::kGuid});
}

std::string Encode(const RootState& s) {
  Encoder e(RecordType::kRootState);
  e.U64(root::kVersion, s.version);
  e.U32(root::kLastUidValidity, s.last_uidvalidity);
  return e.Finish();
}

Status Decode(std::string_view in, RootState* out) {
  Decoder d(in, RecordType::kRootState, "root state");
  *out = RootState();
  Field f;
  while (d.Next(&f)) {
    switch (f.tag) {
      case root::kVersion: d.U64(f, &out->version); break;
      case root::kLastUidValidity: d.U32(f, &out->last_uidvalidity); break;
      default: break;
    }
  }
  return d.Finish({root::kVersion});
}

std::string Encode(const BodyMeta& m) {
  Encoder e(RecordType::kBodyMeta);
  e.U64(meta::kSize, m.size);
  e.U64(meta::kXxh3, m.xxh3);
  e.GuidField(meta::kMailbox, m.first_mailbox);
  e.I64(meta::kReceived, m.received_date);
  e.I64(meta::kSaved, m.save_date);
  e.U64(meta::kChunkSize, m.chunk_size);
  e.U32(meta::kChunks, m.chunks);
  return e.Finish();
}

Status Decode(std::string_view in, BodyMeta* out) {
  Decoder d(in, RecordType::kBodyMeta, "body metadata");
  *out = BodyMeta();
  Field f;
  while (d.Next(&f)) {
    switch (f.tag) {
      case meta::kSize: d.U64(f, &out->size); break;
      case meta::kXxh3: d.U64(f, &out->xxh3); break;
      case meta::kMailbox: d.GuidField(f, &out->first_mailbox); break;
      case meta::kReceived: d.I64(f, &out->received_date); break;
      case meta::kSaved: d.I64(f, &out->save_date); break;
      case meta::kChunkSize: d.U64(f, &out->chunk_size); break;
      case meta::kChunks: d.U32(f, &out->chunks); break;
      default: break;
    }
  }
  Status s = d.Finish({meta::kSize, meta::kXxh3, meta::kChunkSize, meta::kChunks});
  if (!s.ok()) return s;
  if (out->chunks == 0) return Status::Corrupt("body metadata: zero chunks");
  if (out->chunks > 1) {
    // The chunks must tile the body exactly: n-1 full chunks and a last
    // one of 1..chunk_size bytes.
    if (out->chunk_size == 0 || (out->chunks - 1) > out->size / out->chunk_size ||
        out->size <= (out->chunks - 1) * out->chunk_size ||
        out->size - (out->chunks - 1) * out->chunk_size > out->chunk_size)
      return Status::Corrupt("body metadata: chunk layout does not match the size");
  }
  return s;
}

std::string Encode(const BodyRef& r) {
  Encoder e(RecordType::kBodyRef);
  e.U32(ref::kCount, r.count);
  e.I64(ref::kChanged, r.changed);
  return e.Finish();
}

Status Decode(std::string_view in, BodyRef* out) {
  Decoder d(in, RecordType::kBodyRef, "body reference");
  *out = BodyRef();
  Field f;
  while (d.Next(&f)) {
    switch (f.tag) {
      case ref::kCount: d.U32(f, &out->count); break;
      case ref::kChanged: d.I64(f, &out->changed); break;
      default: break;
    }
  }
  return d.Finish({ref::kCount, ref::kChanged});
}

std::string Encode(const InlineBody& b) {
  Encoder e(RecordType::kInlineBody);
  e.U64(inl::kXxh3, b.xxh3);
  e.Bytes(inl::kBytes, b.bytes);
  return e.Finish();
}

Status Decode(std::string_view in, InlineBody* out) {
  Decoder d(in, RecordType::kInlineBody, "inline body");
  *out = InlineBody();
  Field f;
  while (d.Next(&f)) {
    switch (f.tag) {
      case inl::kXxh3: d.U64(f, &out->xxh3); break;
      case inl::kBytes: out->bytes = f.value; break;
      default: break;
    }
  }
  return d.Finish({inl::kXxh3, inl::kBytes});
}

std::string Encode(const KeywordEntry& k) {
  Encoder e(RecordType::kKeyword);
  e.U64(kw::kCreated, k.created);
  e.U32(kw::kPosition, k.position);
  return e.Finish();
}

Status Decode(std::string_view in, KeywordEntry* out) {
  Decoder d(in, RecordType::kKeyword, "keyword entry");
  *out = KeywordEntry();
  Field f;
  while (d.Next(&f)) {
    switch (f.tag) {
      case kw::kCreated: d.U64(f, &out->created); break;
      case kw::kPosition: d.U32(f, &out->position); break;
      default: break;
    }
  }
  return d.Finish({kw::kCreated, kw::kPosition});
}

std::string Encode(const UnsettledChange& c) {
  Encoder e(RecordType::kUnsettled);
  e.GuidField(unsettled::kMailbox, c.mailbox);
  e.U64(unsettled::kModseq, c.modseq);
  e.Bytes(unsettled::kState, c.state);
  e.Bytes(unsettled::kEntry, c.entry);
  e.U32List(unsettled::kAppended, c.appended);
  std::vector<std::string> before;
  for (const auto& [key, value] : c.before) {
    before.push_back(key);
    before.push_back(value);
  }
  e.StringList(unsettled::kBefore, before);
  return e.Finish();
}

Status Decode(std::string_view in, UnsettledChange* out) {
  Decoder d(in, RecordType::kUnsettled, "unsettled change");
  *out = UnsettledChange();
  std::vector<std::string> before;
  Field f;
  while (d.Next(&f)) {
    switch (f.tag) {
      case unsettled::kMailbox: d.GuidField(f, &out->mailbox); break;
      case unsettled::kModseq: d.U64(f, &out->modseq); break;
      case unsettled::kState: out->state = f.value; break;
      case unsettled::kEntry: out->entry = f.value; break;
      case unsettled::kAppended: d.U32List(f, &out->appended); break;
      case unsettled::kBefore: d.StringList(f, &before); break;
      default: break;
    }
  }
  Status s = d.Finish({unsettled::kMailbox, unsettled::kModseq, unsettled::kState, unsettled::kEntry});
  if (!s.ok()) return s;
  if (before.size() % 2 != 0) return Status::Corrupt("unsettled change: odd key/value list");
  for (size_t i = 0; i < before.size(); i += 2) out->before[before[i]] = before[i + 1];
  return Status::OK();
}

std::string EncodeAll(const std::vector<UnsettledChange>& changes) {
  std::string out;
  for (const UnsettledChange& c : changes) out += Encode(c);
  return out;
}

Status DecodeAll(std::string_view in, std::vector<UnsettledChange>* out) {
  out->clear();
  while (!in.empty()) {
    // Each record says how long it is (kHeaderSize, then the payload).
    if (in.size() < kHeaderSize) return Status::Corrupt("unsettled changes: truncated record header");
    const size_t size = kHeaderSize + GetU32(in.data() + 2);
    if (size > in.size()) return Status::Corrupt("unsettled changes: truncated record");
    UnsettledChange c;
    Status s = Decode(in.substr(0, size), &c);
    if (!s.ok()) return s;
    out->push_back(std::move(c));
    in.remove_prefix(size);
  }
  return Status::OK();
}

}  // namespace rbd
