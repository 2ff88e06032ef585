#include "mailbox_watch.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

namespace rbd {

MailboxWatch::MailboxWatch(Account* account, std::string oid, int event_fd)
    : cluster_(account->shared_cluster()), oid_(std::move(oid)), event_fd_(event_fd) {
  io_.dup(account->index_io());
}

Status MailboxWatch::Open(Account* account, const std::string& oid, std::unique_ptr<MailboxWatch>* watch) {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return Status::Io(std::string("eventfd: ") + std::strerror(errno));
  std::unique_ptr<MailboxWatch> w(new MailboxWatch(account, oid, fd));
  Status s = w->Register(account->deadline());
  if (!s.ok()) {
    if (w->unanswered_ != nullptr) Close(std::move(w));
    return s;
  }
  *watch = std::move(w);
  return Status::OK();
}

namespace {

// Closes still running on threads of their own.
struct Closing {
  std::mutex mu;
  std::condition_variable cv;
  unsigned running = 0;
};

Closing& closing() {
  static Closing* c = new Closing;  // never destroyed: a close may end during exit
  return *c;
}

}  // namespace

void MailboxWatch::Close(std::unique_ptr<MailboxWatch> watch) {
  Closing& c = closing();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    c.running++;
  }
  std::thread([watch = std::move(watch), &c]() mutable {
    watch.reset();
    std::lock_guard<std::mutex> lock(c.mu);
    c.running--;
    c.cv.notify_all();
  }).detach();
}

namespace {

// Watches closed lingering, each until its deadline: one thread for all,
// however many sessions are hibernated.
class Lingering {
 public:
  void Add(std::unique_ptr<MailboxWatch> watch, std::chrono::steady_clock::time_point until) {
    std::lock_guard<std::mutex> lock(mu_);
    watches_.emplace(until, std::move(watch));
    if (!thread_.joinable()) thread_ = std::thread(&Lingering::Run, this);
    cv_.notify_all();
  }
  // Ends every watch now.
  void EndAll() {
    std::multimap<std::chrono::steady_clock::time_point, std::unique_ptr<MailboxWatch>> all;
    {
      std::lock_guard<std::mutex> lock(mu_);
      all.swap(watches_);
    }
    for (auto& [until, watch] : all) End(std::move(watch));
  }

 private:
  static void End(std::unique_ptr<MailboxWatch> watch) { MailboxWatch::Close(std::move(watch)); }

  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      if (watches_.empty()) {
        cv_.wait(lock);
        continue;
      }
      auto first = watches_.begin();
      if (cv_.wait_until(lock, first->first) == std::cv_status::no_timeout) continue;
      first = watches_.begin();
      if (first == watches_.end() || first->first > std::chrono::steady_clock::now()) continue;
      std::unique_ptr<MailboxWatch> watch = std::move(first->second);
      watches_.erase(first);
      lock.unlock();
      End(std::move(watch));
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::multimap<std::chrono::steady_clock::time_point, std::unique_ptr<MailboxWatch>> watches_;
  std::thread thread_;
};

Lingering& lingering() {
  static Lingering* l = new Lingering;  // never destroyed, as closing()
  return *l;
}

}  // namespace

void MailboxWatch::CloseLingering(std::unique_ptr<MailboxWatch> watch, int file,
                                  std::chrono::seconds linger) {
  watch->file_ = file;
  lingering().Add(std::move(watch), std::chrono::steady_clock::now() + linger);
}

bool MailboxWatch::WaitForClosing(std::chrono::milliseconds at_most) {
  lingering().EndAll();
  Closing& c = closing();
  std::unique_lock<std::mutex> lock(c.mu);
  return c.cv.wait_for(lock, at_most, [&] { return c.running == 0; });
}

MailboxWatch::~MailboxWatch() {
  if (unanswered_ != nullptr) {
    unanswered_->wait_for_complete_and_cb();
    registered_ = unanswered_->get_return_value() == 0;
  }
  if (reregister_.joinable()) reregister_.join();
  if (registered_) io_.unwatch2(handle_);
  // unwatch2 (here or in Reregister()) stops new callbacks, but one librados
  // already started still runs on its finisher thread: it would then ack
  // through a destroyed IoCtx and write to a closed (or reused) fd. That
  // happens when a session is closed as its mailbox is deleted, just as the
  // OSD's disconnect and the last notifies arrive. watch_flush() returns
  // once every callback queued so far has returned.
  librados::Rados(io_).watch_flush();
  close(event_fd_);
  // The last word to a hibernated client: watch again.
  Touch();
  if (file_ >= 0) close(file_);
}

Status MailboxWatch::Register(Deadline until) {
  const std::string what = "watch " + oid_;
  if (std::chrono::steady_clock::now() >= until) return Status::FromRados(-ETIME, what);
  AioCompletionPtr c = register_waiter_.NewCompletion();
  int r = io_.aio_watch(oid_, c.get(), &handle_, this);
  if (r < 0) return Status::FromRados(r, what);
  // librados cannot cancel a watch being registered: one that succeeds
  // after all is ended by the destructor.
  if (!register_waiter_.WaitUntil(c, until)) {
    unanswered_ = std::move(c);
    return Status::FromRados(-ETIMEDOUT, what);
  }
  c->wait_for_complete_and_cb();
  r = c->get_return_value();
  if (r < 0) return Status::FromRados(r, what);
  registered_ = true;
  return Status::OK();
}

void MailboxWatch::Reregister() {
  uint64_t old;
  bool had;
  {
    std::lock_guard<std::mutex> lock(mu_);
    had = registered_;
    old = handle_;
    registered_ = false;
  }
  if (had) io_.unwatch2(old);
  uint64_t handle = 0;
  const int r = io_.watch2(oid_, &handle, this);
  // Another failure is tried again at the next Consume, which this wakes:
  // not at once, as an OSD that is away fails every attempt at once.
  if (r < 0 && r != -ENOENT) std::this_thread::sleep_for(kRetryPause);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (r == 0) {
      handle_ = handle;
      registered_ = true;
    }
    gone_ = r == -ENOENT;
    reregistering_ = false;
  }
  // Registered: the owner syncs once more, as a change in the gap sent no
  // notify. Gone: its sync finds out.
  Signal(r == 0 || r == -ENOENT ? kChanged : kLost);
}

void MailboxWatch::Touch() {
  const int file = file_;
  // inotify reports a write (IN_MODIFY); imap-hibernate watches for it.
  if (file >= 0) (void)!pwrite(file, "\n", 1, 0);
}

void MailboxWatch::Signal(unsigned bits) {
  Touch();
  pending_.fetch_or(bits);
  uint64_t one = 1;
  // A full counter (never in practice) still leaves the fd readable.
  (void)!write(event_fd_, &one, sizeof(one));
}

void MailboxWatch::handle_notify(uint64_t notify_id, uint64_t cookie, uint64_t, librados::bufferlist&) {
  librados::bufferlist reply;
  io_.notify_ack(oid_, notify_id, cookie, reply);
  Signal(kChanged);
}

void MailboxWatch::handle_error(uint64_t, int) { Signal(kLost); }

unsigned MailboxWatch::Consume() {
  uint64_t count;
  (void)!read(event_fd_, &count, sizeof(count));
  unsigned bits = pending_.exchange(0);
  std::lock_guard<std::mutex> lock(mu_);
  if (reregistering_) return bits | kLost;
  if (!gone_ && ((bits & kLost) || !registered_)) {
    // The previous one is done (reregistering_ is false): this only reaps it.
    if (reregister_.joinable()) reregister_.join();
    reregistering_ = true;
    reregister_ = std::thread(&MailboxWatch::Reregister, this);
    bits |= kLost;
  }
  return bits;
}

}  // namespace rbd
