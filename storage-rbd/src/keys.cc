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

std::optional<uint32_t> ParseUidKey(std::string_view key, std::string_view prefix) {
  if (!ConsumePrefix(&key, prefix)) return std::nullopt;
  auto v = ParseFixedDecimal<uint64_t>(key, 10);
  if (!v || *v > UINT32_MAX) return std::nullopt;
  return static_cast<uint32_t>(*v);
}

}  // namespace

std::string IndexObject(const Guid& mailbox) { return "i." + mailbox.Hex(); }
std::string BodyObject(const Guid& mail) { return "m." + mail.Hex(); }

std::string ChunkObject(const Guid& mail, uint32_t chunk) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), ".%06u", chunk);
  return BodyObject(mail) + buf;
}

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
    if (auto g = Guid::FromHex(name)) {
      p.kind = ObjectKind::kIndex;
      p.guid = *g;
    }
  } else if (ConsumePrefix(&name, "m.")) {
    if (auto g = Guid::FromHex(name.substr(0, 32))) {
      if (name.size() == 32) {
        p.kind = ObjectKind::kBody;
        p.guid = *g;
      } else if (name.size() == 39 && name[32] == '.') {
        if (auto n = ParseFixedDecimal<uint32_t>(name.substr(33), 6)) {
          p.kind = ObjectKind::kChunk;
          p.guid = *g;
          p.chunk = *n;
        }
      }
    }
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

std::optional<uint32_t> ParseRecordKey(std::string_view key) { return ParseUidKey(key, kRecordPrefix); }

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
