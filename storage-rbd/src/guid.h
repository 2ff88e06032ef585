// Guid: the 128-bit identity of a mailbox or a message body.
#ifndef STORAGE_RBD_GUID_H_
#define STORAGE_RBD_GUID_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace rbd {

struct Guid {
  std::array<uint8_t, 16> bytes{};

  static Guid FromBytes(const uint8_t* p);
  // 32 lowercase hex digits; nullopt for anything else.
  static std::optional<Guid> FromHex(std::string_view hex);
  static Guid Random();

  std::string Hex() const;
  bool IsZero() const;
  bool operator==(const Guid& o) const { return bytes == o.bytes; }
  bool operator!=(const Guid& o) const { return bytes != o.bytes; }
  bool operator<(const Guid& o) const { return bytes < o.bytes; }
};

}  // namespace rbd

#endif  // STORAGE_RBD_GUID_H_
