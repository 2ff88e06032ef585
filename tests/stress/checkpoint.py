"""Quiescent checkpoints: with every session paused, each node is asked for the state of
every mailbox of every user, the nodes must agree exactly, and the state must match what
the model knows (README.md)."""

import re
import time
from collections import defaultdict

from imap_connection import (ImapConnection, ImapError, Literal, parse, parse_fetch, quote,
                             recent_count, response_code, selected_state, uid_set)
from model import STABLE, Created, message, msgid_for, msgid_of, norm

CHECKER = "checker"
LOG_PROBLEM = re.compile(r": (Panic|Fatal|Error): ")
# Dovecot's own mdbox logs an Error when a session opens or syncs a mailbox that another
# one deletes at that moment (stat(.../dovecot.index.log) failed, Mailbox was deleted
# under us), or when a process writing its index files finds the directory gone
# (unlink(.../tmpN/dovecot.index.tmp) or rename(.../tmpN/dovecot.index.log.newlock, ...)
# failed: the deleting process removed it): allowed for a deleted tmpN mailbox, on every
# storage. So is imap's error when a hibernated session's mailbox was deleted before it
# woke (imap-master: Failed to import client state: Mailbox tmpN: Couldn't open
# mailbox): mdbox logs it too (--hibernate, seed 1502), and the client is disconnected.
DELETED_BOX_ERROR = re.compile(r"imap\(([^)]+)\)<[^>]*><[^>]*>: Error: "
                               r"(?:imap-master: Failed to import client state: )?"
                               r"(?:Mailbox (tmp\d+): |"
                               r"Couldn't open mailbox '(tmp\d+)'|"
                               r"(?:unlink|rename)\([^),]*/(tmp\d+)/(?:dbox-Mails/)?"
                               r"dovecot\.index[^)]*\) failed: No such file or directory)")

# The processes a killed master (master-kill) left, and new ones started meanwhile,
# cannot reach the sockets the master's services listened on (config, stats-writer,
# auth-master, the imap service) until the master is back; one reading its settings
# from the config process as it died has the read cut off. A new master refuses to start
# while one of them still listens on a socket or port (dovecot-dev restart tries again).
MASTER_GONE = re.compile(r"^(\w+ \d+ [\d:]+) [^:]+: (?:Error|Fatal): .*(?:connect(?:_unix)?\([^)]*\) "
                         r"failed: Connection refused|master\(imap\): read\(\) failed: Remote "
                         r"closed connection|Failed to lookup user \S+: Internal error occurred|"
                         r"Error reading configuration: read\(\S+/config\) failed: "
                         r"read\(size=\d+\) failed: Connection reset by peer|"
                         r"Dovecot is already running\? Socket already exists|"
                         r"listen\([^)]*\) failed: Address already in use|"
                         r"Failed to start listeners)")
# What rbd logs when it cannot tell whether a write it answered NO for took effect (an OSD
# stalled past the deadline and the read-back too; doc/design.md, "Unknown outcomes"), or
# when a session ended before it could check it: the designed report, allowed during a
# storage fault. That no such write showed up is what the
# checkpoints check (no-but-applied).
UNKNOWN_OUTCOME = re.compile(r"^(\w+ \d+ [\d:]+) [^:]+: Error: .*?rbd: "
                             r"(?:(?:update|reference) \S+: outcome unknown: |"
                             r"answered NO, but these |"
                             r"mailbox \S+: a change answered NO \(MODSEQ \d+\) could not be "
                             r"checked )")
KILLED_CHILD = re.compile(r"Fatal: master: service\((?:imap|lmtp)\): child (\d+) killed with "
                          r"signal 9")


class Snapshot:
    """One node's view of one mailbox at a checkpoint."""

    def __init__(self, uidvalidity, uidnext, hms, msgs):
        self.uidvalidity = uidvalidity
        self.uidnext = uidnext
        self.hms = hms
        self.msgs = msgs    # uid -> (modseq, flags (normalized), size, msgid)

    def same(self, other):
        return (self.uidvalidity, self.uidnext, self.hms, self.msgs) == \
            (other.uidvalidity, other.uidnext, other.hms, other.msgs)

    def differences(self, other, limit=5):
        out = []
        for attr in ("uidvalidity", "uidnext", "hms"):
            if getattr(self, attr) != getattr(other, attr):
                out.append("%s %s vs %s" % (attr.upper(), getattr(self, attr),
                                            getattr(other, attr)))
        for uid in sorted(set(self.msgs) | set(other.msgs)):
            a, b = self.msgs.get(uid), other.msgs.get(uid)
            if a != b:
                out.append("UID %d: %s vs %s" % (uid, show(a), show(b)))
            if len(out) >= limit:
                break
        return "; ".join(out)


def show(m):
    if m is None:
        return "absent"
    return "MODSEQ %d FLAGS (%s)" % (m[0], " ".join(sorted(m[1])))


def qresync_arg(prev):
    """The QRESYNC parameter of an EXAMINE that resyncs from snapshot `prev`, with the
    UIDs it knew. Dovecot reads a QRESYNC without that list as "every UID known"
    (cmd-select.c), and then reports every UID expunged since as VANISHED: a mailbox
    that was empty at `prev` gets a UID no message can have instead (stress seed 1303:
    checkpoint 0 found m1 empty, and checkpoint 1 flagged the exact answer)."""
    known = ",".join(map(str, sorted(prev.msgs))) or "4294967295"
    return "(QRESYNC (%d %d %s))" % (prev.uidvalidity, prev.hms, known)


class Checker:
    def __init__(self, runner):
        self.runner = runner
        self.model = runner.model
        self.prev = {}              # (user, name) -> node 0's Snapshot at the last checkpoint
        self.log_pos = defaultdict(int)

    def violation(self, prop, detail, box=None):
        self.model.violation(prop, detail, box, CHECKER)

    def command(self, conn, *parts):
        resp = conn.command(*parts)
        if resp.status != "OK":
            raise ImapError("%s -> %s" % (" ".join(map(str, parts)), resp.tagged), resp.untagged)
        return resp

    # ---- one checkpoint ------------------------------------------------------------------

    def run(self, final=False):
        for user in self.runner.users:
            try:
                self.check_user(user, final)
            except (ImapError, OSError) as e:
                self.violation("checkpoint-failed", "%s: %s %s" % (
                    user, e, [u[:200] for u in getattr(e, "untagged", [])][:3]))
        self.scan_logs()

    def check_user(self, user, final):
        nodes = self.runner.nodes
        conns = []
        try:
            for node in nodes:
                conn = ImapConnection(node.imap_port, timeout=self.runner.op_timeout)
                conns.append(conn)
                self.command(conn, "LOGIN", quote(user), quote("pass"))
                self.command(conn, "ENABLE", "QRESYNC")
            lists = [self.mailboxes(conn) for conn in conns]
            for node, names in zip(nodes[1:], lists[1:]):
                if names != lists[0]:
                    self.violation("list-differs", "%s: LIST on %s %s, on %s %s" % (
                        user, nodes[0].name, sorted(lists[0]), node.name, sorted(names)))
            for name in sorted(set(STABLE) | set().union(*lists)):
                snaps = [self.snapshot(conn, node, user, name, final)
                         for node, conn in zip(nodes, conns)]
                self.compare(user, name, snaps)
        finally:
            for conn in conns:
                conn.logout()

    def mailboxes(self, conn):
        resp = self.command(conn, "LIST", '""', '"*"')
        names = set()
        for u in resp.untagged:
            if u.startswith(b"* LIST "):
                item = parse(u[len(b"* LIST "):])
                name = item[2]
                names.add(name.decode() if isinstance(name, bytes) else name)
        return names

    def snapshot(self, conn, node, user, name, final):
        """EXAMINE (with QRESYNC from the previous checkpoint), STATUS, FETCH CHANGEDSINCE
        and a full FETCH; per-node checks; returns the Snapshot or None (no mailbox)."""
        where = (user, name)
        # rbd answers these from the index state, without the node's cache.
        items = "(MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ)"
        status = conn.command("STATUS", quote(name), items)
        if status.status != "OK":
            if name in STABLE:
                self.violation("status-failed", "on %s: STATUS %s -> %s" % (
                    node.name, name, status.tagged), where)
            return None
        values = parse([u for u in status.untagged if u.startswith(b"* STATUS ")][0]
                       [len(b"* STATUS "):])[-1]
        st = {values[i].upper(): int(values[i + 1]) for i in range(0, len(values), 2)}
        prev = self.prev.get(where)
        resync = prev is not None and prev.uidvalidity == st["UIDVALIDITY"]
        parts = ["EXAMINE", quote(name)]
        if resync:
            parts.append(qresync_arg(prev))
        resp = self.command(conn, *parts)
        state = selected_state(resp)
        vanished = set()
        for u in resp.untagged:
            if u.startswith(b"* VANISHED (EARLIER) "):
                vanished |= set(uid_set(u[len(b"* VANISHED (EARLIER) "):].decode()))
        qfetched = set(parse_fetch(resp.untagged, key="UID"))
        full = self.command(conn, "UID", "FETCH", "1:*", "(UID FLAGS MODSEQ RFC822.SIZE "
                            "BODY.PEEK[HEADER.FIELDS (X-Stress-Id)])") if state["exists"] else None
        msgs = {}
        for uid, d in (parse_fetch(full.untagged, key="UID").items() if full else ()):
            header = [v for k, v in d.items() if k.startswith("BODY[HEADER")]
            msgs[uid] = (int(d["MODSEQ"][0]), norm(d["FLAGS"]), int(d["RFC822.SIZE"]),
                         msgid_of(header[0]) if header and header[0] else None)
        snap = Snapshot(state["uidvalidity"], state["uidnext"], state["highestmodseq"], msgs)
        n = node.name
        box = self.model.box(user, name, snap.uidvalidity)
        unseen = sum(1 for _, flags, _, _ in msgs.values() if "\\seen" not in flags)
        if (st["MESSAGES"], st["RECENT"], st["UIDNEXT"], st["UIDVALIDITY"], st["UNSEEN"],
                st["HIGHESTMODSEQ"]) != (state["exists"], recent_count(resp), snap.uidnext,
                                         snap.uidvalidity, unseen, snap.hms):
            self.violation("status-differs-from-examine", "on %s: STATUS %s, EXAMINE %s" % (
                n, st, state), where)
        if len(msgs) != state["exists"]:
            self.violation("fetch-count", "on %s: %d EXISTS, FETCH 1:* gave %d" % (
                n, state["exists"], len(msgs)), where)
        for uid, (modseq, _, size, msgid) in msgs.items():
            if modseq > snap.hms or uid >= snap.uidnext:
                self.violation("above-highest", "on %s: UID %d MODSEQ %d, HIGHESTMODSEQ %d "
                               "UIDNEXT %d" % (n, uid, modseq, snap.hms, snap.uidnext), where)
            if msgid is None:
                self.violation("body-corrupt", "on %s: UID %d has no X-Stress-Id" % (n, uid),
                               where)
            elif self.model.size_wrong(box, uid, msgid, size):
                self.violation("size-wrong", "on %s: UID %d (%s) %s" % (
                    n, uid, msgid, self.model.size_wrong(box, uid, msgid, size)), where)
        if resync:
            self.check_resync(conn, n, where, prev, snap, vanished, qfetched)
        if final and msgs:
            self.check_bodies(conn, n, where, snap)
        return snap

    def check_resync(self, conn, n, where, prev, snap, vanished, qfetched):
        """QRESYNC and CHANGEDSINCE against the previous checkpoint's state: exact."""
        want_vanished = set(prev.msgs) - set(snap.msgs)
        if vanished != want_vanished:
            self.violation("vanished-inexact", "on %s: QRESYNC (%d %d) VANISHED %s, expunged "
                           "since: %s" % (n, prev.uidvalidity, prev.hms, sorted(vanished),
                                          sorted(want_vanished)), where)
        changed = {u for u, m in snap.msgs.items() if m[0] > prev.hms}
        # QRESYNC's FETCHes are for the known UIDs only (RFC 7162 3.2.5.2)
        if qfetched != changed & set(prev.msgs):
            self.violation("qresync-fetch-inexact", "on %s: QRESYNC (%d %d) FETCH for %s, "
                           "known and changed since: %s" % (
                               n, prev.uidvalidity, prev.hms, sorted(qfetched),
                               sorted(changed & set(prev.msgs))), where)
        resp = self.command(conn, "UID", "FETCH", "1:*", "(UID)", "(CHANGEDSINCE %d)" % prev.hms)
        got = set(parse_fetch(resp.untagged, key="UID"))
        if got != changed:
            self.violation("changedsince-inexact", "on %s: CHANGEDSINCE %d gave %s, changed "
                           "since: %s" % (n, prev.hms, sorted(got), sorted(changed)), where)
        for uid in set(snap.msgs) - set(prev.msgs):
            if snap.msgs[uid][0] <= prev.hms:
                self.violation("new-message-old-modseq", "on %s: new UID %d has MODSEQ %d, "
                               "HIGHESTMODSEQ was %d" % (n, uid, snap.msgs[uid][0], prev.hms),
                               where)
        if snap.hms < prev.hms:
            self.violation("highestmodseq-back", "on %s: HIGHESTMODSEQ %d, was %d" % (
                n, snap.hms, prev.hms), where)

    def check_bodies(self, conn, n, where, snap):
        resp = self.command(conn, "UID", "FETCH", "1:*", "(UID BODY.PEEK[])")
        for uid, d in parse_fetch(resp.untagged, key="UID").items():
            msgid = snap.msgs.get(uid, (0, 0, 0, None))[3]
            body = d.get("BODY[]")
            if msgid and body != self.model.stored(self.model.box(*where, snap.uidvalidity), uid,
                                                   msgid, body):
                self.violation("body-not-exact", "on %s: UID %d (%s) body differs" % (
                    n, uid, msgid), where)

    # ---- across nodes and against the model --------------------------------------------

    def compare(self, user, name, snaps):
        where = (user, name)
        nodes = self.runner.nodes
        if snaps[0] is None:
            return
        for node, snap in zip(nodes[1:], snaps[1:]):
            if snap is None:
                self.violation("nodes-differ", "%s missing on %s" % (name, node.name), where)
            elif not snap.same(snaps[0]):
                self.violation("nodes-differ", "%s vs %s: %s" % (
                    nodes[0].name, node.name, snaps[0].differences(snap)), where)
        snap = snaps[0]
        self.prev[where] = snap
        box = self.model.box(user, name, snap.uidvalidity)
        for uid, (modseq, flags, _, msgid) in snap.msgs.items():
            if msgid:
                self.model.saw_message(box, uid, msgid, CHECKER)
            if modseq < box.max_modseq.get(uid, 0):
                self.violation("modseq-decreased", "UID %d MODSEQ %d, was seen as %d" % (
                    uid, modseq, box.max_modseq[uid]), where)
            self.model.saw_state(box, uid, modseq, flags, CHECKER)
        self.check_expunged_present(box, snap, where)
        if name not in STABLE or where in self.runner.uncertain:
            return
        with self.model.lock:
            self.check_messages(box, snap, where)
            self.check_flags(box, snap, where)
            self.check_modseq_groups(box, where)

    def check_expunged_present(self, box, snap, where):
        """A session told that a message was expunged must never find it again: a node
        whose cache dropped messages the cluster has showed them expunged (CI growth
        profile, seed 86365)."""
        for uid in sorted(set(snap.msgs) & set(box.heard_expunged)):
            session, how = box.heard_expunged[uid]
            self.violation("expunged-but-present", "UID %d (%s) was reported expunged to %s "
                           "(%s), and is still here" % (uid, snap.msgs[uid][3], session, how),
                           where)

    def check_messages(self, box, snap, where):
        for uid, created in sorted(box.created.items()):
            if uid not in snap.msgs and not box.may_be_expunged(uid):
                self.violation("message-lost", "UID %d (%s, %s by command #%d) is gone, but "
                               "no EXPUNGE/MOVE could have removed it" % (
                                   uid, created.msgid, created.kind, created.rid), where)
        resolved = defaultdict(set)
        for uid in sorted(set(snap.msgs) - set(box.created)):
            msgid = snap.msgs[uid][3]
            candidates = self.model.maybe_copied[where].get(msgid, [])
            # the one that stored it: one with an unknown outcome if any could have
            unknown = [r for r in candidates if r.id not in self.model.refused]
            rec = (unknown or candidates or [None])[0]
            if rec is not None and not unknown:
                # issue 9: no client sees NO for an APPEND, COPY or MOVE that took effect
                self.violation("no-but-applied", "UID %d (%s) is here, stored by %s" % (
                    uid, msgid, rec.who()), where)
            elif rec is not None and rec.text.startswith("LMTP"):
                self.model.note("a checkpoint found the UID of an LMTP delivery")
            elif rec is not None:
                self.model.note("a COPY/MOVE/APPEND with an unknown outcome had stored a message")
            if rec is not None:
                box.created[uid] = Created(rec.send, rec.ack, "copy", msgid, None, rec.id)
                box.deleted_adds[uid].append(rec.send)
                resolved[rec.id].add(uid)
                continue
            self.violation("unknown-message", "UID %d (%s) was never appended or copied here "
                           "by an acknowledged command" % (uid, snap.msgs[uid][3]), where)
        for rid, uids in resolved.items():
            box.owners.append((rid, frozenset(uids)))
        self.check_delivered(box, snap, where)

    def check_delivered(self, box, snap, where):
        """An acknowledged LMTP delivery is here (then check_messages made it a known
        message), or an expunge could have removed it: at the UID a session saw it
        with, or, if none did, at some UID nobody saw."""
        here = {m[3] for m in snap.msgs.values()}
        pending = self.model.delivered[where]
        for msgid, rec in sorted(pending.items()):
            del pending[msgid]
            if msgid in here:
                continue
            seen = [u for u, m in box.uid_msg.items() if m == msgid]
            if seen:
                gone = box.may_be_expunged(seen[0])
            else:
                gone = any(u not in snap.msgs and u not in box.uid_msg and
                           box.may_be_expunged(u) for u in range(1, snap.uidnext))
            if not gone:
                self.violation("message-lost", "%s, delivered by %s, is gone, but no "
                               "EXPUNGE/MOVE could have removed it" % (msgid, rec.who()),
                               where)

    def check_flags(self, box, snap, where):
        for uid, (_, flags, _, _) in snap.msgs.items():
            ops = box.flag_ops.get(uid, [])
            created = box.created.get(uid)
            for op in ops:
                # a STORE on a UID range may name a message appended after it was sent
                if op.ack is None or op.modified or not op.seen or created is None or (
                        op.rid != created.rid and created.ack > op.send):
                    continue
                for flag in op.flags:
                    if flag in flags:
                        continue
                    removals = [r for r in ops if r.removes(flag) and
                                not (r.ack is not None and r.ack < op.send)]
                    if not removals:
                        self.violation("flag-lost", "UID %d lost %s, set by command #%d; no "
                                       "later removal (flags now: %s)" % (
                                           uid, flag, op.rid, " ".join(sorted(flags))), where)
                    elif all(r.rid in self.model.refused for r in removals):
                        self.no_but_applied(uid, flag, "removed", removals, where)
            if created is None or created.kind != "append":
                continue
            for flag in flags:
                adds = [op for op in ops if op.adds(flag)]
                if not adds:
                    self.violation("flag-from-nowhere", "UID %d has %s, which no APPEND or "
                                   "STORE set" % (uid, flag), where)
                elif all(op.rid in self.model.refused for op in adds):
                    self.no_but_applied(uid, flag, "set", adds, where)

    def no_but_applied(self, uid, flag, did, ops, where):
        """Only STOREs answered NO could have changed flag on uid (issue 9)."""
        self.violation("no-but-applied", "UID %d: %s was %s, and only command(s) %s, "
                       "answered NO, could have done that" % (
                           uid, flag, did, ", ".join("#%d" % op.rid for op in ops)), where)

    def check_modseq_groups(self, box, where):
        """Every MODSEQ value is one change: all messages ever seen with MODSEQ m were
        changed by one command (one STORE, APPEND or COPY transaction)."""
        groups = defaultdict(set)
        for uid, modseq in box.states:
            groups[modseq].add(uid)
        # a command with an unknown outcome owns the UIDs that carry its messages, and
        # those no one was told (expunged before anyone saw them)
        unknown = defaultdict(set)
        for msgid, recs in self.model.maybe_copied[where].items():
            for rec in recs:
                unknown[rec.id].add(msgid)
        unseen = {uid for uid, _ in box.states
                  if uid not in box.created and uid not in box.uid_msg}
        # (check_messages resolves the ones a checkpoint found into box.created)
        owners = [owned for _, owned in box.owners] + [
            unseen | {uid for uid, msgid in box.uid_msg.items() if msgid in msgids}
            | {uid for uid, created in box.created.items() if created.rid == rid}
            for rid, msgids in unknown.items()]
        for modseq, uids in sorted(groups.items()):
            if len(uids) > 1 and not any(uids <= owned for owned in owners):
                self.violation("modseq-shared", "MODSEQ %d is on UIDs %s, which no single "
                               "command changed together" % (modseq, sorted(uids)), where)

    def maintenance(self, rounds):
        """After a fault (and growth): `doveadm rbd gc`, then `doveadm rbd check` must be
        clean, from the nodes in turn. The gc grace is short in these runs; waiting it
        out lets gc reclaim what killed processes left."""
        time.sleep(self.runner.gc_grace + 1)
        node = self.runner.nodes[rounds % len(self.runner.nodes)]
        for user in self.runner.users:
            for verb, prop in (("gc", "rbd-gc-failed"), ("check", "rbd-check-not-clean")):
                status, out = node.doveadm("rbd", verb, "-u", user)
                if status != 0:
                    self.violation(prop, "doveadm rbd %s -u %s on %s: exit %d: %s" % (
                        verb, user, node.name, status, " | ".join(out.splitlines()[-8:])))

    # ---- final ---------------------------------------------------------------------------

    def shard_report(self):
        """Notes how many of the run's mailboxes sealed shards (rbd): the run tested
        sealing and folding under its load only if they happened."""
        sharded = shards = boxes = 0
        for user in self.runner.users:
            status, out = self.runner.nodes[0].doveadm("-f", "tab", "rbd", "stat", "-u", user)
            if status != 0:
                self.violation("rbd-stat-failed", "doveadm rbd stat -u %s: exit %d: %s" % (
                    user, status, out.strip()[-300:]))
                continue
            lines = out.splitlines()
            column = lines[0].split("\t").index("shards")
            for line in lines[1:]:
                boxes += 1
                n = int(line.split("\t")[column])
                sharded += n > 0
                shards += n
        self.model.note("final: %d of %d mailboxes had sealed shards, %d shards in all" % (
            sharded, boxes, shards))

    def check_recent(self):
        """With every session gone, a read-write SELECT shows \\Recent exactly for the
        messages no read-write session could have seen."""
        node = self.runner.nodes[0]
        for user in self.runner.users:
            conn = ImapConnection(node.imap_port, timeout=self.runner.op_timeout)
            try:
                self.command(conn, "LOGIN", quote(user), quote("pass"))
                for name in STABLE:
                    self.append_one(conn, user, name)
                    resp = self.command(conn, "SELECT", quote(name))
                    state = selected_state(resp)
                    box = self.model.box(user, name, state["uidvalidity"])
                    recent = set()
                    if state["exists"]:
                        resp = self.command(conn, "UID", "FETCH", "1:*", "(UID FLAGS)")
                        for u in resp.untagged:
                            items = parse(u[u.index(b"FETCH ") + 6:])[0]
                            d = {items[i]: items[i + 1] for i in range(0, len(items), 2)}
                            if "\\Recent" in d["FLAGS"]:
                                recent.add(int(d["UID"]))
                    self.check_recent_box(box, recent, (user, name))
            finally:
                conn.logout()

    def append_one(self, conn, user, name):
        """One more message while no session has the mailbox: it must be \Recent."""
        msgid = msgid_for(self.runner.args.seed, CHECKER, self.runner.trace.tick(), 500)
        send = self.runner.trace.tick()
        resp = self.command(conn, "APPEND", quote(name), Literal(message(msgid)))
        ack = self.runner.trace.tick()
        code = response_code(resp.text)
        box = self.model.box(user, name, code[1])
        with self.model.lock:
            box.created[int(code[2])] = Created(send, ack, "append", msgid, frozenset(), None)

    def check_recent_box(self, box, recent, where):
        if where in self.runner.uncertain:
            return
        with self.model.lock:
            for uid in sorted(recent):
                if uid in box.recent:
                    self.violation("recent-twice", "UID %d \\Recent for the final SELECT, "
                                   "already for session %s" % (uid, box.recent[uid]), where)
            for uid, created in sorted(box.created.items()):
                if uid in recent or box.may_be_expunged(uid):
                    continue
                if all(end is not None and end < created.send for _, _, end in box.rw):
                    self.violation("recent-lost", "UID %d (%s) was never in a read-write "
                                   "session, yet not \\Recent" % (uid, created.msgid), where)

    def scan_logs(self):
        for node in self.runner.nodes:
            path = node.path / "dovecot.log"
            with open(path, errors="replace") as f:
                f.seek(self.log_pos[path])
                text = f.read()
                self.log_pos[path] = f.tell()
            for line in text.splitlines():
                if not LOG_PROBLEM.search(line):
                    continue
                m = DELETED_BOX_ERROR.search(line)
                if m and self.model.kills.get((m.group(1), m.group(2) or m.group(3) or m.group(4))):
                    self.model.note("Error logged for a mailbox deleted meanwhile")
                    continue
                faults = self.runner.faults
                m = MASTER_GONE.search(line)
                if m and faults and faults.master_down_at(node.name, m.group(1)):
                    self.model.note("Error logged while the node's master was down")
                    continue
                m = UNKNOWN_OUTCOME.search(line)
                if m and faults and faults.storage_down_at(m.group(1)):
                    self.model.note("unknown outcome logged during a storage fault")
                    continue
                m = KILLED_CHILD.search(line)
                if m and faults and int(m.group(1)) in faults.killed:
                    self.model.note("master logged a process a kill fault killed")
                    continue
                self.violation("log-error", "%s: %s" % (node.name, line[:400]))
