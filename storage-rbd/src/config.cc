#include "config.h"

#include <cctype>
#include <limits>

namespace rbd {

namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Splits "30 secs" into 30 and "secs"; false without leading digits or on
// overflow.
bool SplitNumber(std::string_view text, uint64_t* number, std::string* unit) {
  text = Trim(text);
  size_t i = 0;
  uint64_t n = 0;
  for (; i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])); i++) {
    uint64_t digit = text[i] - '0';
    if (n > (std::numeric_limits<uint64_t>::max() - digit) / 10) return false;
    n = n * 10 + digit;
  }
  if (i == 0) return false;
  unit->clear();
  for (char c : Trim(text.substr(i))) unit->push_back(std::tolower(static_cast<unsigned char>(c)));
  *number = n;
  return true;
}

bool Multiply(uint64_t n, uint64_t factor, uint64_t* out) {
  if (factor != 0 && n > std::numeric_limits<uint64_t>::max() / factor) return false;
  *out = n * factor;
  return true;
}

Status BadValue(std::string_view name, std::string_view value, std::string_view expected) {
  return Status::Invalid(std::string(name) + ": invalid value '" + std::string(value) + "' (" +
                         std::string(expected) + ")");
}

}  // namespace

bool ParseDurationMs(std::string_view text, uint64_t* ms) {
  uint64_t n;
  std::string unit;
  if (!SplitNumber(text, &n, &unit)) return false;
  uint64_t factor;
  if (unit.empty() || unit == "s" || unit == "sec" || unit == "secs" || unit == "second" ||
      unit == "seconds") {
    factor = 1000;
  } else if (unit == "ms" || unit == "msec" || unit == "msecs" || unit == "milliseconds") {
    factor = 1;
  } else if (unit == "m" || unit == "min" || unit == "mins" || unit == "minute" || unit == "minutes") {
    factor = 60 * 1000;
  } else if (unit == "h" || unit == "hour" || unit == "hours") {
    factor = 3600 * 1000;
  } else if (unit == "d" || unit == "day" || unit == "days") {
    factor = 24 * 3600 * 1000;
  } else {
    return false;
  }
  return Multiply(n, factor, ms);
}

bool ParseSize(std::string_view text, uint64_t* bytes) {
  uint64_t n;
  std::string unit;
  if (!SplitNumber(text, &n, &unit)) return false;
  if (unit.size() > 1 && unit.back() == 'b') unit.pop_back();
  if (unit.size() > 1 && unit.back() == 'i') unit.pop_back();
  uint64_t factor;
  if (unit.empty() || unit == "b") {
    factor = 1;
  } else if (unit == "k") {
    factor = 1ULL << 10;
  } else if (unit == "m") {
    factor = 1ULL << 20;
  } else if (unit == "g") {
    factor = 1ULL << 30;
  } else {
    return false;
  }
  return Multiply(n, factor, bytes);
}

Status Config::Set(std::string_view name, std::string_view value) {
  std::string_view v = Trim(value);
  uint64_t n;
  if (name == "rbd_ceph_conf") {
    if (v.empty()) return BadValue(name, value, "a path to ceph.conf");
    ceph_conf = v;
  } else if (name == "rbd_ceph_user") {
    if (v.empty()) return BadValue(name, value, "a cephx user id such as 'dovecot'");
    if (v.substr(0, 7) == "client.") v.remove_prefix(7);
    ceph_user = v;
  } else if (name == "rbd_pool") {
    if (v.empty()) return BadValue(name, value, "a pool name");
    pool = v;
  } else if (name == "rbd_index_pool") {
    index_pool = v;
  } else if (name == "rbd_namespace") {
    ns = v;
  } else if (name == "rbd_op_timeout") {
    if (!ParseDurationMs(v, &n) || n == 0 || n > std::numeric_limits<uint32_t>::max())
      return BadValue(name, value, "a duration such as 30s or 500ms");
    op_timeout_ms = static_cast<uint32_t>(n);
  } else if (name == "rbd_inline_max") {
    if (!ParseSize(v, &n) || n > (1u << 20))
      return BadValue(name, value, "a size up to 1M such as 8k; 0 disables inline bodies");
    inline_max = n;
  } else if (name == "rbd_stripe_size") {
    if (!ParseSize(v, &n) || n < 4096) return BadValue(name, value, "a size of at least 4k");
    stripe_size = n;
  } else if (name == "rbd_gc_grace") {
    if (!ParseDurationMs(v, &n) || n / 1000 > std::numeric_limits<uint32_t>::max())
      return BadValue(name, value, "a duration such as 1h");
    gc_grace_seconds = static_cast<uint32_t>(n / 1000);
  } else if (name == "rbd_changelog_max_entries") {
    std::string unit;
    if (!SplitNumber(v, &n, &unit) || !unit.empty() || n > std::numeric_limits<uint32_t>::max())
      return BadValue(name, value, "a count such as 10000; 0: no limit by count");
    changelog_max_entries = n;
  } else if (name == "rbd_changelog_max_age") {
    if (!ParseDurationMs(v, &n) || n / 1000 > std::numeric_limits<uint32_t>::max() || (n > 0 && n < 1000))
      return BadValue(name, value, "a duration of at least 1s such as 30d; 0: no limit by age");
    changelog_max_age_seconds = static_cast<uint32_t>(n / 1000);
  } else if (name == "rbd_shard_uids") {
    std::string unit;
    if (!SplitNumber(v, &n, &unit) || !unit.empty() || n > (1u << 20) || (n > 0 && n < 4))
      return BadValue(name, value, "a count from 4 to 1048576 such as 8192; 0: never shard");
    shard_uids = static_cast<uint32_t>(n);
  } else if (name == "rbd_max_message_size") {
    if (!ParseSize(v, &n) || n == 0) return BadValue(name, value, "a size such as 100M or 2G");
    max_message_size = n;
  } else if (name == "rbd_service") {
    if (v.empty()) return BadValue(name, value, "the path of the rbd service's socket");
    service = v;
  } else {
    return Status::Invalid(std::string(name) + ": unknown setting");
  }
  return Status::OK();
}

Status Config::Validate() const {
  if (pool.empty()) return Status::Invalid("rbd_pool: setting is required (the pool for message bodies)");
  if (inline_max >= stripe_size) return Status::Invalid("rbd_inline_max: must be below rbd_stripe_size");
  return Status::OK();
}

std::string Config::ConnectionKey() const {
  return ceph_conf + '\0' + ceph_user + '\0' + std::to_string(op_timeout_ms);
}

}  // namespace rbd
