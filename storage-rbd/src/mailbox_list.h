// MailboxList: the user root object `r` (doc/design.md).
//
// Omap holds `n.<name>` -> MailboxEntry for each mailbox and `s.<name>` for
// each subscription; the "state" xattr holds a version that every change
// increments. Like MailboxIndex, every change is one write op guarded by a
// compare of that version, so a rename of a whole subtree is atomic with
// respect to any create, delete or rename racing it.
#ifndef STORAGE_RBD_MAILBOX_LIST_H_
#define STORAGE_RBD_MAILBOX_LIST_H_

#include <functional>
#include <map>
#include <rados/librados.hpp>
#include <set>
#include <string>
#include <vector>

#include "account.h"
#include "record_codec.h"
#include "status.h"

namespace rbd {

struct MailboxInfo {
  std::string name;
  MailboxEntry entry;
  bool exists = false;  // false: only a subscription
  bool subscribed = false;
};

class MailboxList {
 public:
  explicit MailboxList(Account* account) : account_(account) {}

  // Every mailbox and subscription, in name order.
  Status List(std::vector<MailboxInfo>* mailboxes);
  Status Lookup(const std::string& name, MailboxEntry* entry);
  // Creates the index object first, then publishes the name.
  Status Create(const std::string& name, const Guid& guid, uint32_t uidvalidity,
                const std::string& special_use);
  // Rebuild: creates the lost index object of `guid`, with a UIDVALIDITY
  // above every one this user had (clients must forget what they cached),
  // and lists it as `name` unless it is listed already (the list itself
  // may have been lost too). With `listed_only`, only while `name` still
  // lists `guid` (NotFound otherwise: a delete won, the index stays gone).
  Status Recreate(const std::string& name, const Guid& guid, bool listed_only);
  // Raises the UIDVALIDITY every new mailbox of the user must exceed to at
  // least `uidvalidity` (one guarded op; nothing is written when it is
  // there already), so that a mailbox deleted and created again under the
  // same name never gets a value a client may have cached.
  Status RaiseLastUidValidity(uint32_t uidvalidity);
  // Unpublishes the name, then removes the index and its references.
  Status Delete(const std::string& name);
  Status Rename(const std::string& old_name, const std::string& new_name, char separator);
  // Gives the mailbox `name` the GUID `new_guid` (dsync gives an INBOX
  // that both sides created the other side's): a new index object with the
  // same UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ replaces the old one, which
  // must be empty (Invalid otherwise), in the list.
  Status ChangeGuid(const std::string& name, const Guid& new_guid);
  Status SetSubscribed(const std::string& name, bool subscribed);
  Status SetSpecialUse(const std::string& name, const std::string& special_use);
  // The root's version: grows with every change of the list.
  Status Version(uint64_t* version);

 private:
  struct Mutation {
    RootState state;  // as read; the op writes it back with version + 1
    std::map<std::string, librados::bufferlist> set;
    std::set<std::string> remove;
    bool noop = false;  // nothing to write
  };
  // The planner may read anything: the version guard makes it consistent.
  using Planner = std::function<Status(Mutation* m)>;
  Status Mutate(const Planner& plan);
  Status ReadVersion(RootState* state, librados::bufferlist* raw, bool* exists);
  Status ReadPrefix(const std::string& prefix, std::map<std::string, librados::bufferlist>* values);

  Account* account_;
};

}  // namespace rbd

#endif  // STORAGE_RBD_MAILBOX_LIST_H_
