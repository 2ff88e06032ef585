#include "keys.h"

#include <cstdio>

namespace rbd::keys {

namespace {

template <typename T>
std::optional<T> ParseFixedDecimal(std::string_view digits, size_t width) {
  if (digits.size() != width) return std::nullopt;
  T v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<T>(c - '0');
  }
  return v;
}

bool ConsumePrefix(std::string_view* s, std::string_view prefix) {
  if (s->substr(0, prefix.size()) != prefix) return false;
  s->remove_prefix(prefix.size());
  return true;
}

std::string NumberSuffix(uint32_t n) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), ".%06u", n);
  return buf;
}

// "<32 hex>" (kind `whole`) or "<32 hex>.<6 digits>" (kind `numbered`),
// the names of index and body objects after their prefix.
void ParseGuidName(std::string_view name, ObjectKind whole, ObjectKind numbered, ParsedObject* p) {
  auto g = Guid::FromHex(name.substr(0, 32));
  if (!g) return;
  if (name.size() == 32) {
    p->kind = whole;
    p->guid = *g;
  } else if (name.size() == 39 && name[32] == '.') {
    if (auto n = ParseFixedDecimal<uint32_t>(name.substr(33), 6)) {
      p->kind = numbered;
      p->guid = *g;
      p->chunk = *n;
    }
  }
}

std::optional<uint32_t> ParseUidKey(std::string_view key, std::string_view prefix) {
  if (!ConsumePrefix(&key, prefix)) return std::nullopt;
  auto v = ParseFixedDecimal<uint64_t>(key, 10);
  if (!v || *v > UINT32_MAX) return std::nullopt;
  return static_cast<uint32_t>(*v);
}

}  // namespace

std::string IndexObject(const Guid& mailbox) { return "i." + mailbox.Hex(); }
std::string BodyObject(const Guid& mail) { return "m." + mail.Hex(); }

std::string IndexShardObject(const Guid& mailbox, uint32_t n) {
  return IndexObject(mailbox) + NumberSuffix(n);
}

std::string ChunkObject(const Guid& mail, uint32_t chunk) { return BodyObject(mail) + NumberSuffix(chunk); }

std::string LeaseObject(std::string_view name) { return "l." + std::string(name); }

ParsedObject ParseObject(std::string_view name) {
  ParsedObject p;
  if (name == kRoot) {
    p.kind = ObjectKind::kRoot;
  } else if (name == kDict) {
    p.kind = ObjectKind::kDict;
  } else if (ConsumePrefix(&name, "l.")) {
    p.kind = ObjectKind::kLease;
  } else if (ConsumePrefix(&name, "i.")) {
    ParseGuidName(name, ObjectKind::kIndex, ObjectKind::kIndexShard, &p);
  } else if (ConsumePrefix(&name, "m.")) {
    ParseGuidName(name, ObjectKind::kBody, ObjectKind::kChunk, &p);
  }
  return p;
}

std::string RecordKey(uint32_t uid) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "u.%010u", uid);
  return buf;
}

std::string InlineBodyKey(uint32_t uid) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "b.%010u", uid);
  return buf;
}

std::string ChangeKey(uint64_t modseq) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "c.%020llu", static_cast<unsigned long long>(modseq));
  return buf;
}

std::string ReleasedBodyKey(uint32_t uid) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "x.%010u", uid);
  return buf;
}

std::string KeywordKey(std::string_view name) { return kKeywordPrefix + std::string(name); }

std::string TombstoneKey(uint32_t uid) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "t.%010u", uid);
  return buf;
}

std::optional<uint32_t> ParseRecordKey(std::string_view key) { return ParseUidKey(key, kRecordPrefix); }

std::optional<uint32_t> ParseInlineBodyKey(std::string_view key) {
  return ParseUidKey(key, kInlineBodyPrefix);
}

std::optional<uint32_t> ParseTombstoneKey(std::string_view key) { return ParseUidKey(key, kTombstonePrefix); }

std::optional<uint32_t> ParseReleasedBodyKey(std::string_view key) {
  return ParseUidKey(key, kReleasedBodyPrefix);
}

std::optional<uint64_t> ParseChangeKey(std::string_view key) {
  if (!ConsumePrefix(&key, kChangePrefix)) return std::nullopt;
  // 20 digits can exceed UINT64_MAX only past 18446744073709551615.
  if (key.size() == 20 && key > "18446744073709551615") return std::nullopt;
  return ParseFixedDecimal<uint64_t>(key, 20);
}

std::string MailboxKey(std::string_view name) { return kMailboxPrefix + std::string(name); }
std::string SubscriptionKey(std::string_view name) { return kSubscriptionPrefix + std::string(name); }

}  // namespace rbd::keys
