#include "unsettled.h"

#include <algorithm>

namespace rbd {

bool UnsettledChanges::Has(const Guid& mailbox) const {
  return std::any_of(changes_.begin(), changes_.end(),
                     [&](const UnsettledChange& c) { return c.mailbox == mailbox; });
}

std::vector<UnsettledChange> UnsettledChanges::Take(const Guid& mailbox) {
  std::vector<UnsettledChange> taken, kept;
  for (UnsettledChange& c : changes_) (c.mailbox == mailbox ? taken : kept).push_back(std::move(c));
  changes_ = std::move(kept);
  return taken;
}

std::vector<UnsettledChange> UnsettledChanges::TakeAll() {
  std::vector<UnsettledChange> taken;
  taken.swap(changes_);
  return taken;
}

std::vector<Guid> UnsettledChanges::Mailboxes() const {
  std::vector<Guid> guids;
  for (const UnsettledChange& c : changes_)
    if (std::find(guids.begin(), guids.end(), c.mailbox) == guids.end()) guids.push_back(c.mailbox);
  return guids;
}

std::vector<Settlement> UnsettledChanges::Drain() {
  std::vector<Settlement> out;
  out.swap(settled_);
  return out;
}

}  // namespace rbd
