#include "guid.h"

#include <cstring>
#include <random>

namespace rbd {

Guid Guid::FromBytes(const uint8_t* p) {
  Guid g;
  std::memcpy(g.bytes.data(), p, g.bytes.size());
  return g;
}

std::optional<Guid> Guid::FromHex(std::string_view hex) {
  if (hex.size() != 32) return std::nullopt;
  Guid g;
  for (size_t i = 0; i < 32; i++) {
    char c = hex[i];
    int v;
    if (c >= '0' && c <= '9') {
      v = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      v = c - 'a' + 10;
    } else {
      return std::nullopt;
    }
    g.bytes[i / 2] = static_cast<uint8_t>((g.bytes[i / 2] << 4) | v);
  }
  return g;
}

Guid Guid::Random() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  Guid g;
  for (size_t i = 0; i < g.bytes.size(); i += 8) {
    uint64_t v = rng();
    std::memcpy(&g.bytes[i], &v, 8);
  }
  return g;
}

std::string Guid::Hex() const {
  static const char kDigits[] = "0123456789abcdef";
  std::string s(32, '0');
  for (size_t i = 0; i < bytes.size(); i++) {
    s[2 * i] = kDigits[bytes[i] >> 4];
    s[2 * i + 1] = kDigits[bytes[i] & 0xf];
  }
  return s;
}

bool Guid::IsZero() const {
  for (uint8_t b : bytes)
    if (b != 0) return false;
  return true;
}

}  // namespace rbd
