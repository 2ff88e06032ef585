// MailboxWatch: push notification of changes to one mailbox index, or to
// the mailbox list (the user root object).
//
// librados delivers notifies on its own threads; Dovecot must never be
// called from one (doc/design.md). So the callbacks here only record what
// happened and write to an eventfd, which the owner polls in its ioloop.
// A watch error (disconnect, missed notifies) is reported as "lost": the
// owner resyncs as if notified, and Consume() re-registers the watch.
//
// Ending a watch asks the OSD (unwatch), which takes up to the op timeout
// while the OSD is away. No one waits for its answer: Close() lets it run
// on a thread of its own. An IDLE whose DONE came in during a sync stalled
// by an outage was answered only after the sync and then the unwatch, each
// up to the op timeout (fault checker, seed 76144: 9.7 s against 9).
#ifndef STORAGE_RBD_MAILBOX_WATCH_H_
#define STORAGE_RBD_MAILBOX_WATCH_H_

#include <atomic>
#include <memory>
#include <rados/librados.hpp>
#include <string>

#include "account.h"
#include "status.h"

namespace rbd {

class MailboxWatch : public librados::WatchCtx2 {
 public:
  static constexpr unsigned kChanged = 0x1;
  static constexpr unsigned kLost = 0x2;

  // Watches `oid` in the index pool: keys::IndexObject(guid) or keys::kRoot.
  // NotFound if the object does not exist (yet).
  static Status Open(Account* account, const std::string& oid, std::unique_ptr<MailboxWatch>* watch);
  // Ends the watch in the background: the unwatch, then the wait for
  // callbacks librados has started, then the watch is freed.
  static void Close(std::unique_ptr<MailboxWatch> watch);
  // Waits for every close still going on in the background: librados must
  // not be torn down under one at exit.
  static void WaitForClosing();
  ~MailboxWatch() override;

  int fd() const { return event_fd_; }
  // Clears the fd; returns kChanged/kLost bits seen since the last call.
  // While the watch is lost it retries registering and keeps reporting
  // kLost, so the owner keeps polling until push works again.
  unsigned Consume();

  void handle_notify(uint64_t notify_id, uint64_t cookie, uint64_t notifier_id,
                     librados::bufferlist& bl) override;
  void handle_error(uint64_t cookie, int err) override;

 private:
  MailboxWatch(Account* account, std::string oid, int event_fd);
  void Signal(unsigned bits);
  Status Register();

  // A watch closed in the background may outlive the account that opened
  // it, never the connection.
  std::shared_ptr<Cluster> cluster_;
  librados::IoCtx io_;
  std::string oid_;
  int event_fd_;
  uint64_t handle_ = 0;
  bool registered_ = false;
  std::atomic<unsigned> pending_{0};
};

}  // namespace rbd

#endif  // STORAGE_RBD_MAILBOX_WATCH_H_
