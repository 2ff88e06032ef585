// Checker: `doveadm rbd check`, a user's indexes against their bodies.
//
// Finds what a bug, a lost object or an operator's mistake leaves behind;
// crashes alone never produce the first two (doc/design.md: a record is
// published only after its body exists, and a body goes only after its
// records):
//  - a record whose stored body `m.<guid>` is gone (the message cannot be
//    read: repair expunges the record, so every node drops it);
//  - counters (messages, sizes, UIDNEXT) that disagree with the records
//    (STATUS and quota read them: repair rewrites them);
//  - a body that no record references and whose reference has not changed
//    for the grace period, or the chunks of a body whose head was never
//    written, unchanged as long (repair reclaims them, as gc does). Younger
//    ones are a COPY or APPEND in flight, not a problem.
#ifndef STORAGE_RBD_CHECKER_H_
#define STORAGE_RBD_CHECKER_H_

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "account.h"
#include "guid.h"
#include "mailbox_list.h"
#include "status.h"

namespace rbd {

struct Problem {
  enum class Kind { kMissingBody, kWrongCounters, kUnreferencedBody };
  Kind kind;
  Guid mailbox;  // zero for kUnreferencedBody
  uint32_t uid = 0;
  Guid body;  // zero for kWrongCounters
  std::string detail;
  bool repaired = false;
};

class Checker {
 public:
  explicit Checker(Account* account) : account_(account) {}

  // Checks every listed mailbox and every body of the account; with
  // `repair`, fixes what it found (reclaiming bodies under the gc lease).
  Status Run(bool repair, uint32_t grace_seconds, std::vector<Problem>* problems);

 private:
  // One mailbox: its missing bodies and counters; adds the bodies its
  // records reference to *referenced.
  Status CheckMailbox(const MailboxInfo& info, const std::set<Guid>& bodies, bool repair,
                      std::set<Guid>* referenced, std::vector<Problem>* problems);

  Account* account_;
};

}  // namespace rbd

#endif  // STORAGE_RBD_CHECKER_H_
