// NameHints: which mailbox index a name led to when it was last read from
// a user's mailbox list, kept per connection to the cluster (in the node's
// rbd service, for every session of the node).
//
// Only a hint. MailboxList::OpenIndex() trusts one when the state it reads
// from the hinted index names that very name, which holds only while the
// list still gives the name to that index (record_codec.h, MailboxState's
// `name`); otherwise it reads the list as it would without a hint. So a
// hint may be stale, or lost, at any time: the cost is one read more.
#ifndef STORAGE_RBD_NAME_HINTS_H_
#define STORAGE_RBD_NAME_HINTS_H_

#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "guid.h"

namespace rbd {

class NameHints {
 public:
  // `list`: which list (its pool and namespace, see MailboxList).
  std::optional<Guid> Find(const std::string& list, const std::string& name) const;
  void Remember(const std::string& list, const std::string& name, const Guid& guid);
  void Forget(const std::string& list, const std::string& name);

 private:
  // A node serving many users forgets every hint at once when it has this
  // many, instead of keeping an order of use: a lost hint costs one read.
  static constexpr size_t kMaxHints = 1 << 16;

  static std::string Key(const std::string& list, const std::string& name);

  mutable std::mutex mu_;
  std::unordered_map<std::string, Guid> hints_;
};

}  // namespace rbd

#endif  // STORAGE_RBD_NAME_HINTS_H_
