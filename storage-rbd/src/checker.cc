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

std::string Describe(const MailboxState& s) {
  return "messages " + std::to_string(s.messages) + ", seen " +
         (s.seen_counted ? std::to_string(s.seen_messages) : std::string("not counted")) + ", vsize " +
         std::to_string(s.virtual_size) + ", psize " + std::to_string(s.physical_size) + ", uidnext " +
         std::to_string(s.uidnext);
}

bool SameCounters(const MailboxState& a, const MailboxState& b) {
  return a.messages == b.messages && a.seen_counted == b.seen_counted && a.seen_messages == b.seen_messages &&
         a.virtual_size == b.virtual_size && a.physical_size == b.physical_size && a.uidnext == b.uidnext;
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
    if (SameCounters(state, expected)) return Status::OK();
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
