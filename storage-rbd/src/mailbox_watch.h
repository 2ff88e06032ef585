// MailboxWatch: push notification of changes to one mailbox index, or to
// the mailbox list (the user root object).
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
// background close, which ends it when the OSD answers.
//
// Hibernation. imap-hibernate keeps an IDLE client with no imap process,
// and wakes it when a file it watches with inotify changes. A watch closed
// by CloseLingering() goes on for a while with no owner and writes a byte
// to such a file at every change of its object and at every loss of the
// watch; at the end of the while it writes once more, so that a client
// still hibernated wakes, and its new imap process watches again.
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

class MailboxWatch : public librados::WatchCtx2 {
 public:
  static constexpr unsigned kChanged = 0x1;
  static constexpr unsigned kLost = 0x2;

  // Watches `oid` in the index pool: keys::IndexObject(guid) or keys::kRoot.
  // NotFound if the object does not exist (yet); Unavailable if the OSD
  // did not answer by the account's deadline().
  static Status Open(Account* account, const std::string& oid, std::unique_ptr<MailboxWatch>* watch);
  // Ends the watch in the background: the unwatch, then the wait for
  // callbacks librados has started, then the watch is freed.
  static void Close(std::unique_ptr<MailboxWatch> watch);
  // Keeps the watch for `linger` more, writing to `file` (given over)
  // instead of signalling an owner (see the top of this file), then
  // closes it as Close() does.
  static void CloseLingering(std::unique_ptr<MailboxWatch> watch, int file, std::chrono::seconds linger);
  // Ends every lingering watch now (writing to its file once more), then
  // waits for every close still going on in the background, up to
  // `at_most` (a watch waits for its OSD as long as the OSD is away); false
  // if one still is.
  static bool WaitForClosing(std::chrono::milliseconds at_most);
  ~MailboxWatch() override;

  int fd() const { return event_fd_; }
  // Clears the fd; returns kChanged/kLost bits seen since the last call.
  // A lost watch is registered again in the background; until that is done
  // Consume() keeps reporting kLost (the owner keeps polling), then reports
  // kChanged once, so that the owner syncs what the gap may have missed.
  // An object found gone reports kChanged once too (the owner learns of
  // the deletion by its sync), and is not watched again.
  unsigned Consume();

  void handle_notify(uint64_t notify_id, uint64_t cookie, uint64_t notifier_id,
                     librados::bufferlist& bl) override;
  void handle_error(uint64_t cookie, int err) override;

 private:
  MailboxWatch(Account* account, std::string oid, int event_fd);
  static constexpr std::chrono::seconds kRetryPause{1};  // between failed registrations

  void Signal(unsigned bits);
  // Writes a byte to the lingering watch's file, if it has one.
  void Touch();
  Status Register(Deadline until);  // the first registration (Open)
  void Reregister();                // on reregister_

  // A watch closed in the background may outlive the account that opened
  // it, never the connection.
  std::shared_ptr<Cluster> cluster_;
  librados::IoCtx io_;
  std::string oid_;
  int event_fd_;
  // The first registration, when Open gave up waiting for it: the watch
  // must outlive it, as librados calls back into both.
  AioWaiter register_waiter_;
  AioCompletionPtr unanswered_;
  std::mutex mu_;  // handle_, registered_, reregistering_ once Open returned
  uint64_t handle_ = 0;
  bool registered_ = false;
  bool reregistering_ = false;
  bool gone_ = false;  // the object no longer exists
  std::thread reregister_;
  std::atomic<unsigned> pending_{0};
  // The file of CloseLingering(), -1 before.
  std::atomic<int> file_{-1};
};

}  // namespace rbd

#endif  // STORAGE_RBD_MAILBOX_WATCH_H_
