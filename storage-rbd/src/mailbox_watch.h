// MailboxWatch: push notification of changes to one mailbox index, or to
// the mailbox list (the user root object).
//
// One RADOS watch per object per connection (in the node's rbd service,
// per node), however many sessions watch it: each MailboxWatch is a
// subscriber with an eventfd of its own, and the watch (Shared, in
// mailbox_watch.cc) signals every subscriber of its object.
//
// librados delivers notifies on its own threads; Dovecot must never be
// called from one (doc/design.md). So the callbacks here only record what
// happened and write to an eventfd, which the owner polls in its ioloop.
// A watch error (disconnect, missed notifies) is reported as "lost", and
// Consume() re-registers the watch; the owner resyncs when that is done, as
// a change in the gap sent no notify. Not at the loss: with the OSD away
// that sync waited out the op timeout, and a client's IDLE DONE waited for
// it (fault checker in CI, seed 24223: 12.4 s against 9).
//
// Ending or renewing a watch asks the OSD (unwatch, watch), which takes up
// to the op timeout while the OSD is away, and nothing needs the answer at
// once: Close() and the re-registration of a lost watch run on threads of
// their own. Done in the ioloop callback that reported the loss, the
// re-registration held up the session's next command by up to twice the
// op timeout after a cluster restart (fault checker, seed 76144: an IDLE
// answered in 9.7 s and an EXPUNGE in 10.2 s, against 9). The first
// registration is part of a command (IDLE, NOTIFY) and ends by its
// deadline like every other op; one still in flight then is left to the
// background close, which ends it when the OSD answers, and the next
// subscriber of the object starts a watch of its own.
//
// Hibernation. imap-hibernate keeps an IDLE client with no imap process,
// and wakes it when a file it watches with inotify changes. A subscriber
// closed by CloseLingering() stays subscribed for a while with no owner and
// writes a byte to such a file at every change of its object, and once a
// lost watch is registered again (not at the loss, when the client's new
// process could not open its mailbox); at the end of the while it writes
// once more, so that a client still hibernated wakes, and its new imap
// process watches again.
#ifndef STORAGE_RBD_MAILBOX_WATCH_H_
#define STORAGE_RBD_MAILBOX_WATCH_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <rados/librados.hpp>
#include <string>
#include <thread>

#include "account.h"
#include "aio.h"
#include "status.h"

namespace rbd {

class MailboxWatch {
 public:
  static constexpr unsigned kChanged = 0x1;
  static constexpr unsigned kLost = 0x2;

  // Watches `oid` in the index pool: keys::IndexObject(guid) or keys::kRoot.
  // NotFound if the object does not exist (yet); Unavailable if the OSD
  // did not answer by the account's deadline().
  static Status Open(Account* account, const std::string& oid, std::unique_ptr<MailboxWatch>* watch);
  // Ends the subscription in the background, and with the last one the
  // watch: the unwatch, then the wait for callbacks librados has started.
  static void Close(std::unique_ptr<MailboxWatch> watch);
  // Keeps the subscription for `linger` more, writing to `file` (given
  // over) instead of signalling an owner (see the top of this file), then
  // closes it as Close() does.
  static void CloseLingering(std::unique_ptr<MailboxWatch> watch, int file, std::chrono::seconds linger);
  // Ends every lingering subscription now (writing to its file once more),
  // then waits for every close still going on in the background, up to
  // `at_most` (a watch waits for its OSD as long as the OSD is away); false
  // if one still is.
  static bool WaitForClosing(std::chrono::milliseconds at_most);
  ~MailboxWatch();

  int fd() const { return event_fd_; }
  // Clears the fd; returns kChanged/kLost bits seen since the last call.
  // A lost watch is registered again in the background; until that is done
  // Consume() keeps reporting kLost (the owner keeps polling), then reports
  // kChanged once, so that the owner syncs what the gap may have missed.
  // An object found gone reports kChanged once too (the owner learns of
  // the deletion by its sync), and is not watched again.
  unsigned Consume();

 private:
  class Shared;

  MailboxWatch(std::shared_ptr<Shared> shared, int event_fd);
  void Signal(unsigned bits);
  // Writes a byte to the lingering subscriber's file, if it has one.
  void Touch();

  std::shared_ptr<Shared> shared_;
  int event_fd_;
  std::atomic<unsigned> pending_{0};
  // The file of CloseLingering(), -1 before.
  std::atomic<int> file_{-1};
};

}  // namespace rbd

#endif  // STORAGE_RBD_MAILBOX_WATCH_H_
