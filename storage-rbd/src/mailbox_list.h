// MailboxList: the user root object `r` (doc/design.md).
//
// Omap holds `n.<name>` -> MailboxEntry for each mailbox and `s.<name>` for
// each subscription; the "state" xattr holds a version that every change
// increments. Like MailboxIndex, every change is one write op guarded by a
// compare of that version, so a rename of a whole subtree is atomic with
// respect to any create, delete or rename racing it.
//
// Names in the state. Each mailbox's state also carries the name the list
// gives it (MailboxState::name), so that OpenIndex() can go from a name to
// a mailbox with one read, of the state, when the node has a hint of the
// index the name led to (NameHints). The rule that makes a state's name
// true whenever it is set: whatever takes a name from a mailbox (rename,
// delete, GUID change) first marks the mailbox's state pending, with a
// token of its own and no name, and only then changes the list; a name is
// set only by a create (before the list names the new index), by the
// operation holding the pending token after its list change, or by a
// reader that read the list inside a guarded op on a state with neither a
// name nor a pending mark (AdoptName). Any of those that races a marking
// fails its guard or is overwritten by the mark.
#ifndef STORAGE_RBD_MAILBOX_LIST_H_
#define STORAGE_RBD_MAILBOX_LIST_H_

#include <functional>
#include <map>
#include <memory>
#include <rados/librados.hpp>
#include <set>
#include <string>
#include <vector>

#include "account.h"
#include "guid.h"
#include "mailbox_index.h"
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
  // Opens the mailbox `name`: its index, whose state has been read. With a
  // hint that the state confirms, that is the one read; otherwise the list
  // is read too (and the state names the mailbox for next time).
  Status OpenIndex(const std::string& name, std::unique_ptr<MailboxIndex>* index);
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

  // The pending marks of one operation that takes names away ("Names in
  // the state"): Release() before its list change, Settle() after it.
  class NameRelease {
   public:
    explicit NameRelease(Account* account);
    // Marks the state of `guid` pending under this release's token (once).
    Status Release(const Guid& guid);
    // Gives each released mailbox its name in `names` (none when absent)
    // unless another operation has marked it since. Best effort: a mark
    // left behind only costs readers the list's read.
    void Settle(const std::map<Guid, std::string>& names);

   private:
    Account* account_;
    uint64_t token_;
    std::set<Guid> released_;
  };
  // Names the mailbox of `index` `name` if its state has no name and no
  // mark, while the list still gives it that name.
  Status AdoptName(MailboxIndex* index, const std::string& name);
  // Which list the name hints of this one are under (NameHints).
  std::string HintList();

  Account* account_;
};

}  // namespace rbd

#endif  // STORAGE_RBD_MAILBOX_LIST_H_
