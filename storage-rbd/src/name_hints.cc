#include "name_hints.h"

namespace rbd {

std::string NameHints::Key(const std::string& list, const std::string& name) {
  std::string key = list;
  key.push_back('\0');
  key += name;
  return key;
}

std::optional<Guid> NameHints::Find(const std::string& list, const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = hints_.find(Key(list, name));
  if (it == hints_.end()) return std::nullopt;
  return it->second;
}

void NameHints::Remember(const std::string& list, const std::string& name, const Guid& guid) {
  std::lock_guard<std::mutex> lock(mu_);
  if (hints_.size() >= kMaxHints) hints_.clear();
  hints_[Key(list, name)] = guid;
}

void NameHints::Forget(const std::string& list, const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  hints_.erase(Key(list, name));
}

}  // namespace rbd
