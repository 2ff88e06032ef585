#include "checker.h"

#include <algorithm>
#include <ctime>
#include <set>

#include "garbage_collector.h"
#include "keys.h"
#include "mailbox_index.h"
#include "mailbox_list.h"
#include "message_store.h"

namespace rbd {

namespace {

std::string Count(bool counted, uint32_t n) { return counted ? std::to_string(n) : "not counted"; }

std::string Describe(const MailboxState& s) {
  return "messages " + std::to_string(s.messages) + ", seen " + Count(s.seen_counted, s.seen_messages) +
         ", recent " + Count(s.recent_counted, s.recent_messages) + ", vsize " +
         std::to_string(s.virtual_size) + ", psize " + std::to_string(s.physical_size) + ", uidnext " +
         std::to_string(s.uidnext);
}

// Whether `state`'s counters are `counted`'s. A recent count may be off
// in normal use (a \Recent claim short of UIDNEXT): only a kept one must be
// right.
bool CountersHold(const MailboxState& state, const MailboxState& counted) {
  return state.messages == counted.messages && state.seen_counted &&
         state.seen_messages == counted.seen_messages &&
         (!state.recent_counted || state.recent_messages == counted.recent_messages) &&
         state.virtual_size == counted.virtual_size && state.physical_size == counted.physical_size &&
         state.uidnext == counted.uidnext;
}

}  // namespace

Status Checker::Run(bool repair, uint32_t grace_seconds, std::vector<Problem>* problems) {
  problems->clear();
  std::vector<std::string> mail_objects;
  Status s = Account::ListObjects(account_->mail_io(), &mail_objects);
  if (!s.ok()) return s;
  std::set<Guid> bodies;
  for (const std::string& oid : mail_objects) {
    keys::ParsedObject parsed = keys::ParseObject(oid);
    if (parsed.kind == keys::ObjectKind::kBody) bodies.insert(parsed.guid);
  }
  const int64_t cutoff = static_cast<int64_t>(std::time(nullptr)) - grace_seconds;
  MessageStore store(account_);

  std::vector<MailboxInfo> mailboxes;
  s = MailboxList(account_).List(&mailboxes);
  if (!s.ok()) return s;
  std::set<Guid> referenced;
  for (const MailboxInfo& info : mailboxes) {
    if (!info.exists) continue;
    s = CheckMailbox(info, bodies, repair, &referenced, problems);
    if (s.IsNotFound()) continue;  // deleted meanwhile
    if (!s.ok()) return s;
  }

  bool unreferenced = false;
  for (const Guid& body : bodies) {
    if (referenced.count(body)) continue;
    BodyMeta meta;
    BodyRef ref;
    s = store.Stat(body, &meta, &ref);
    if (s.IsNotFound()) continue;
    if (!s.ok()) return s;
    if (ref.changed > cutoff) continue;  // in flight
    // Released by an expunge or delete: gc's ordinary work, not a fault.
    if (ref.count == 0) continue;
    unreferenced = true;
    problems->push_back(
        {Problem::Kind::kUnreferencedBody, Guid(), 0, body,
         "body m." + body.Hex() + " (" + std::to_string(meta.size) + " bytes) is referenced by no record"});
  }
  const auto headless = HeadlessChunks(account_->mail_io(), mail_objects, cutoff);
  for (const auto& [body, chunks] : headless) {
    unreferenced = true;
    problems->push_back({Problem::Kind::kUnreferencedBody, Guid(), 0, body,
                         "body m." + body.Hex() + " has " + std::to_string(chunks.size()) +
                             " chunk objects and no head: its write never finished"});
  }
  if (repair && unreferenced) {
    // gc's own scan, under its lease: it re-checks every body against the
    // records, so a reference taken since this scan wins.
    GcStats stats;
    s = GarbageCollector(account_).Run(grace_seconds, &stats);
    if (!s.ok()) return s;
    for (Problem& p : *problems) {
      if (p.kind != Problem::Kind::kUnreferencedBody) continue;
      auto chunks = headless.find(p.body);
      if (chunks == headless.end()) {
        BodyMeta meta;
        BodyRef ref;
        p.repaired = store.Stat(p.body, &meta, &ref).IsNotFound();
      } else {
        uint64_t size;
        time_t mtime;
        p.repaired = std::none_of(chunks->second.begin(), chunks->second.end(), [&](const std::string& oid) {
          return account_->mail_io().stat(oid, &size, &mtime) == 0;
        });
      }
    }
  }
  return Status::OK();
}

// Under live traffic: the records are counted from one snapshot, a missing
// body is confirmed by a read (the body listing predates the records, so a
// message appended since is not in it), and counters are written only
// while the state is still that snapshot's. A repair that loses a race to a
// writer counts again, a few times, then reports the problem unrepaired.
Status Checker::CheckMailbox(const MailboxInfo& info, const std::set<Guid>& bodies, bool repair,
                             std::set<Guid>* referenced, std::vector<Problem>* problems) {
  constexpr int kAttempts = 5;
  MailboxIndex index(account_, info.entry.guid);
  MessageStore store(account_);
  std::set<uint32_t> reported;
  for (int attempt = 1;; attempt++) {
    std::vector<MessageRecord> records;
    MailboxState state;
    Status s = index.ListAll(&records, &state);
    if (!s.ok()) return s;
    // What the records add up to, counted as the ops count them.
    MailboxState expected;
    expected.uidnext = state.uidnext;
    expected.first_recent_uid = state.first_recent_uid;
    std::vector<uint32_t> bodiless;
    for (const MessageRecord& r : records) {
      expected.CountAdded(r);
      expected.uidnext = std::max(expected.uidnext, r.uid + 1);
      if (r.inline_body) continue;
      referenced->insert(r.guid);
      if (bodies.count(r.guid)) continue;
      BodyMeta meta;
      BodyRef ref;
      s = store.Stat(r.guid, &meta, &ref);
      if (s.ok()) continue;
      if (!s.IsNotFound()) return s;
      bodiless.push_back(r.uid);
      if (!reported.insert(r.uid).second) continue;
      problems->push_back(
          {Problem::Kind::kMissingBody, info.entry.guid, r.uid, r.guid,
           info.name + " UID " + std::to_string(r.uid) + ": body m." + r.guid.Hex() + " does not exist"});
    }
    if (repair && !bodiless.empty()) {
      std::vector<uint32_t> expunged;
      s = index.Expunge(bodiless, &expunged);
      if (!s.ok()) return s;
      for (Problem& p : *problems)
        if (p.kind == Problem::Kind::kMissingBody && p.mailbox == info.entry.guid) p.repaired = true;
      continue;  // counted again without them
    }
    if (CountersHold(state, expected)) return Status::OK();
    Problem p{Problem::Kind::kWrongCounters, info.entry.guid, 0, Guid(),
              info.name + ": counters say " + Describe(state) + "; records add up to " + Describe(expected)};
    if (repair) {
      s = index.SetCounters(state, expected);
      if (s.code() == Code::kConflict && attempt < kAttempts) continue;
      if (!s.ok() && s.code() != Code::kConflict) return s;
      p.repaired = s.ok();
    }
    problems->push_back(std::move(p));
    return Status::OK();
  }
}

}  // namespace rbd
