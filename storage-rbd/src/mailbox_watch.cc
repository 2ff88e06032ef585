#include "mailbox_watch.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <thread>

namespace rbd {

// The RADOS watch of one object, for every subscriber of it on one
// connection. Kept alive by its subscribers; the last one's close ends it.
class MailboxWatch::Shared : public librados::WatchCtx2 {
 public:
  // The watch of `oid` in the account's index pool and namespace: the one
  // already there unless none is, or its first registration failed.
  static std::shared_ptr<Shared> Get(Account* account, const std::string& oid);
  ~Shared() override;

  // Subscribes `sub`, registering the watch first when nobody has yet.
  Status Subscribe(MailboxWatch* sub, Deadline until);
  void Unsubscribe(MailboxWatch* sub);
  // What a subscriber's Consume() reports of the pending `bits` (see
  // MailboxWatch::Consume): starts a re-registration after a loss.
  unsigned Poll(unsigned bits);

  void handle_notify(uint64_t notify_id, uint64_t cookie, uint64_t notifier_id,
                     librados::bufferlist& bl) override;
  void handle_error(uint64_t cookie, int err) override;

 private:
  static constexpr std::chrono::seconds kRetryPause{1};  // between failed registrations

  struct Registry {
    std::mutex mu;
    std::map<std::string, std::weak_ptr<Shared>> watches;
  };
  static Registry& registry() {
    static Registry* r = new Registry;  // never destroyed, as closing()
    return *r;
  }

  Shared(Account* account, std::string oid, std::string key);
  Status Register(Deadline until);  // the first registration
  void Reregister();                // on reregister_
  void SignalAll(unsigned bits);    // with mu_ held

  // A watch closed in the background may outlive the account that opened
  // it, never the connection.
  std::shared_ptr<Cluster> cluster_;
  librados::IoCtx io_;
  const std::string oid_;
  const std::string key_;  // in registry()
  // The first registration, when it gave up waiting: the watch must
  // outlive it, as librados calls back into both.
  AioWaiter register_waiter_;
  AioCompletionPtr unanswered_;
  std::mutex register_mu_;  // one first registration at a time
  bool failed_ = false;     // the first registration failed: Get() makes another
  std::mutex mu_;           // everything below
  std::set<MailboxWatch*> subscribers_;
  uint64_t handle_ = 0;
  bool registered_ = false;
  bool lost_ = false;  // an error since the last registration
  bool reregistering_ = false;
  bool gone_ = false;  // the object no longer exists
  std::thread reregister_;
};

MailboxWatch::Shared::Shared(Account* account, std::string oid, std::string key)
    : cluster_(account->shared_cluster()), oid_(std::move(oid)), key_(std::move(key)) {
  io_.dup(account->index_io());
}

std::shared_ptr<MailboxWatch::Shared> MailboxWatch::Shared::Get(Account* account, const std::string& oid) {
  const std::string key = std::to_string(reinterpret_cast<uintptr_t>(account->cluster())) + '/' +
                          account->index_io().get_pool_name() + '/' + account->ns() + '/' + oid;
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::shared_ptr<Shared> shared = r.watches[key].lock();
  if (shared == nullptr || shared->failed_) {
    shared.reset(new Shared(account, oid, key));
    r.watches[key] = shared;
  }
  return shared;
}

MailboxWatch::Shared::~Shared() {
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    auto it = r.watches.find(key_);
    if (it != r.watches.end() && it->second.expired()) r.watches.erase(it);
  }
  if (unanswered_ != nullptr) {
    unanswered_->wait_for_complete_and_cb();
    registered_ = unanswered_->get_return_value() == 0;
  }
  if (reregister_.joinable()) reregister_.join();
  if (registered_) io_.unwatch2(handle_);
  // unwatch2 (here or in Reregister()) stops new callbacks, but one librados
  // already started still runs on its finisher thread: it would then ack
  // through a destroyed IoCtx. That happens when a session is closed as its
  // mailbox is deleted, just as the OSD's disconnect and the last notifies
  // arrive. watch_flush() returns once every callback queued so far has
  // returned.
  librados::Rados(io_).watch_flush();
}

Status MailboxWatch::Shared::Subscribe(MailboxWatch* sub, Deadline until) {
  std::lock_guard<std::mutex> registering(register_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (registered_ || reregistering_ || lost_) {
      subscribers_.insert(sub);
      // Not watching right now: the new owner polls until it is again.
      if (!registered_ || lost_) sub->Signal(kLost);
      return Status::OK();
    }
  }
  Status s = Register(until);
  std::lock_guard<std::mutex> lock(mu_);
  if (s.ok()) {
    subscribers_.insert(sub);
  } else {
    failed_ = true;
  }
  return s;
}

void MailboxWatch::Shared::Unsubscribe(MailboxWatch* sub) {
  std::lock_guard<std::mutex> lock(mu_);
  subscribers_.erase(sub);
}

Status MailboxWatch::Shared::Register(Deadline until) {
  const std::string what = "watch " + oid_;
  if (std::chrono::steady_clock::now() >= until) return Status::FromRados(-ETIME, what);
  AioCompletionPtr c = register_waiter_.NewCompletion();
  uint64_t handle = 0;
  int r = io_.aio_watch(oid_, c.get(), &handle, this);
  if (r < 0) return Status::FromRados(r, what);
  // librados cannot cancel a watch being registered: one that succeeds
  // after all is ended by the destructor.
  if (!register_waiter_.WaitUntil(c, until)) {
    std::lock_guard<std::mutex> lock(mu_);
    handle_ = handle;
    unanswered_ = std::move(c);
    return Status::FromRados(-ETIMEDOUT, what);
  }
  c->wait_for_complete_and_cb();
  r = c->get_return_value();
  if (r < 0) return Status::FromRados(r, what);
  std::lock_guard<std::mutex> lock(mu_);
  handle_ = handle;
  registered_ = true;
  return Status::OK();
}

unsigned MailboxWatch::Shared::Poll(unsigned bits) {
  std::lock_guard<std::mutex> lock(mu_);
  if (reregistering_) return bits | kLost;
  if (!gone_ && (lost_ || !registered_)) {
    // The previous one is done (reregistering_ is false): this only reaps it.
    if (reregister_.joinable()) reregister_.join();
    reregistering_ = true;
    reregister_ = std::thread(&Shared::Reregister, this);
    return bits | kLost;
  }
  // A loss another subscriber's Consume() has seen to already: its
  // re-registration signalled kChanged to every subscriber.
  return bits & ~kLost;
}

void MailboxWatch::Shared::Reregister() {
  uint64_t old;
  bool had;
  {
    std::lock_guard<std::mutex> lock(mu_);
    had = registered_;
    old = handle_;
    registered_ = false;
    lost_ = false;
  }
  if (had) io_.unwatch2(old);
  uint64_t handle = 0;
  const int r = io_.watch2(oid_, &handle, this);
  // Another failure is tried again at the next Consume, which this wakes:
  // not at once, as an OSD that is away fails every attempt at once.
  if (r < 0 && r != -ENOENT) std::this_thread::sleep_for(kRetryPause);
  std::lock_guard<std::mutex> lock(mu_);
  if (r == 0) {
    handle_ = handle;
    registered_ = true;
  } else if (r != -ENOENT) {
    lost_ = true;
  }
  gone_ = r == -ENOENT;
  reregistering_ = false;
  // Registered: the owners sync once more, as a change in the gap sent no
  // notify. Gone: their sync finds out.
  SignalAll(r == 0 || r == -ENOENT ? kChanged : kLost);
}

void MailboxWatch::Shared::SignalAll(unsigned bits) {
  for (MailboxWatch* sub : subscribers_) sub->Signal(bits);
}

void MailboxWatch::Shared::handle_notify(uint64_t notify_id, uint64_t cookie, uint64_t,
                                         librados::bufferlist&) {
  librados::bufferlist reply;
  io_.notify_ack(oid_, notify_id, cookie, reply);
  std::lock_guard<std::mutex> lock(mu_);
  SignalAll(kChanged);
}

void MailboxWatch::Shared::handle_error(uint64_t, int) {
  std::lock_guard<std::mutex> lock(mu_);
  lost_ = true;
  SignalAll(kLost);
}

MailboxWatch::MailboxWatch(std::shared_ptr<Shared> shared, int event_fd)
    : shared_(std::move(shared)), event_fd_(event_fd) {}

Status MailboxWatch::Open(Account* account, const std::string& oid, std::unique_ptr<MailboxWatch>* watch) {
  int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return Status::Io(std::string("eventfd: ") + std::strerror(errno));
  std::unique_ptr<MailboxWatch> w(new MailboxWatch(Shared::Get(account, oid), fd));
  Status s = w->shared_->Subscribe(w.get(), account->deadline());
  if (!s.ok()) {
    // A registration still in flight is ended in the background.
    Close(std::move(w));
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

  // Each lingering watch is consumed every kPoll as its owner would, so
  // that a lost watch is registered again: its file is written once the
  // watch is back (a change may have gone unnotified), not at the loss,
  // when the session it wakes could not open its mailbox (the fault soak,
  // seed 1503: imap dropped such a session during a cluster restart).
  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      if (watches_.empty()) {
        cv_.wait(lock);
        continue;
      }
      const auto now = std::chrono::steady_clock::now();
      auto first = watches_.begin();
      if (first->first <= now) {
        std::unique_ptr<MailboxWatch> watch = std::move(first->second);
        watches_.erase(first);
        lock.unlock();
        End(std::move(watch));
        lock.lock();
        continue;
      }
      for (auto& [until, watch] : watches_) watch->Consume();
      cv_.wait_until(lock, std::min(first->first, now + kPoll));
    }
  }

  static constexpr std::chrono::seconds kPoll{1};

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
  shared_->Unsubscribe(this);
  close(event_fd_);
  // The last word to a hibernated client: watch again.
  Touch();
  if (file_ >= 0) close(file_);
}

void MailboxWatch::Touch() {
  const int file = file_;
  // inotify reports a write (IN_MODIFY); imap-hibernate watches for it.
  if (file >= 0) (void)!pwrite(file, "\n", 1, 0);
}

void MailboxWatch::Signal(unsigned bits) {
  if (bits & kChanged) Touch();
  pending_.fetch_or(bits);
  uint64_t one = 1;
  // A full counter (never in practice) still leaves the fd readable.
  (void)!write(event_fd_, &one, sizeof(one));
}

unsigned MailboxWatch::Consume() {
  uint64_t count;
  (void)!read(event_fd_, &count, sizeof(count));
  return shared_->Poll(pending_.exchange(0));
}

}  // namespace rbd
