"""One stress session: a thread with one IMAP connection to one node, sending a random,
seeded mix of commands on its user's shared mailboxes, recording every effect in the model
and checking every response it gets (README.md lists the properties)."""

import random
import re
import smtplib
import socket
import time

from faults import FAULTS, PROCESS_FAULTS, STORAGE_FAULTS
from imap_connection import (ImapConnection, ImapError, Literal, parse, quote, response_code,
                             selected_state, uid_set)
from model import (DELIVERED, MAX_VOLATILE, STABLE, SYSTEM_FLAGS, Created, Expunge, FlagOp,
                   is_volatile,
                   message, msgid_for, msgid_of, norm)

# The command mix: name -> weight. --ops restricts it to some names (README.md).
OPS = {
    "select": 6, "examine": 3, "qresync": 4, "unselect": 1,
    "append": 9, "multiappend": 4, "deliver": 3,
    "fetch": 8, "fetch-body": 6, "fetch-seq": 4, "fetch-partial": 5, "fetch-header": 3,
    "changedsince": 4,
    "store": 12, "store-silent": 4, "store-unchanged": 4, "keyword": 5,
    "expunge": 3, "uid-expunge": 3, "copy": 4, "move": 4,
    "create": 2, "rename": 2, "delete": 2, "recreate": 1,
    "status": 5, "idle": 3, "noop": 4,
}
# Not in the mix unless --ops names them: Dovecot 2.3.19's own mdbox crashes (signal 11) and
# corrupts its storage when a mailbox is renamed, or a name deleted and created again, while
# other sessions have it selected, so no mdbox baseline can prove the checker for these
# (README.md).
DEFAULT_OFF = {"rename", "recreate"}
# Commands that work on the selected mailbox: a session selects one first.
NEED_SELECTED = {"unselect", "fetch", "fetch-body", "fetch-seq", "fetch-partial",
                 "fetch-header", "changedsince", "store", "store-silent", "store-unchanged",
                 "keyword", "expunge", "uid-expunge", "copy", "move", "idle"}
# Commands that change the selected mailbox: a session in a read-only one selects it again.
NEED_WRITE = {"store", "store-silent", "store-unchanged", "keyword", "expunge", "uid-expunge",
              "move"}
SHARED_KEYWORDS = ("$Stress1", "$Stress2", "$Stress3", "$Stress4")
MAX_MESSAGES = 40   # above this a session prefers deleting and expunging
_FETCH = re.compile(rb"\* (\d+) FETCH ")


def is_sync_fetch(items):
    """Whether a FETCH's items (name, value, ...) are those of Dovecot's sync reporting a
    change (imap-sync.c: [UID n] MODSEQ (m) [FLAGS (...)]) rather than a FETCH's answer,
    which lists what was asked for, MODSEQ last."""
    names = [n.upper() for n in items[0::2] if isinstance(n, str)]
    return names in (["MODSEQ"], ["MODSEQ", "FLAGS"], ["UID", "MODSEQ"],
                     ["UID", "MODSEQ", "FLAGS"])


class Abort(Exception):
    """The command ended the connection (or hung): the session reconnects. args[0] is the
    command's Record."""

    @property
    def rec(self):
        return self.args[0]


def text_lines(resp):
    return [u.decode("utf-8", "surrogateescape") for u in resp.untagged]


def late_stacks(rec):
    """Where the server's stacks of a late command are, for its violation."""
    return "; server stacks while late: %s" % rec.stacks if rec.stacks else ""


def uid_text(uids):
    """An IMAP set for a sorted list of UIDs: [1, 2, 3, 7] -> '1:3,7'."""
    out = []
    uids = sorted(set(uids))
    i = 0
    while i < len(uids):
        j = i
        while j + 1 < len(uids) and uids[j + 1] == uids[j] + 1:
            j += 1
        out.append(str(uids[i]) if i == j else "%d:%d" % (uids[i], uids[j]))
        i = j + 1
    return ",".join(out)


class Selected:
    """The session's selected mailbox: its model instance and the session's view of it
    (sequence number - 1 -> UID, None while unknown)."""

    def __init__(self, name, box, rw, exists, select_send):
        self.name = name
        self.box = box
        self.rw = rw
        self.view = [None] * exists
        self.dirty = False      # a VANISHED UID was unknown: positions may be off
        self.view_hms = 0       # the highest MODSEQ the view has reported (SELECT, FETCH)
        self.select_send = select_send
        self.rw_entry = None


class Session:
    def __init__(self, runner, index, node, user, seed):
        self.runner = runner
        self.model = runner.model
        self.trace = runner.trace
        self.name = "s%02d" % index
        self.node = node
        self.user = user
        self.seed = seed
        self.rng = random.Random("%d/%d" % (seed, index))
        self.qresync = index % 2 == 0       # half QRESYNC (VANISHED), half CONDSTORE
        self.conn = None
        self.connected_at = None
        self.selected = None
        self.closing = None     # the mailbox a SELECT in progress leaves
        self.failed_select = None   # the last SELECT, if it failed
        self.last_seen = {}     # mailbox name -> (uidvalidity, highestmodseq, uids)
        self.max_hms = {}       # box key -> highest HIGHESTMODSEQ this session saw
        self.modseqs = {}       # (box key, uid) -> highest MODSEQ this session saw
        self.counter = 0
        self.commands = 0
        ops = runner.ops
        self.op_names = [o for o in OPS if o in ops]
        self.op_weights = [OPS[o] for o in self.op_names]

    # ---- connection --------------------------------------------------------------------

    def connect(self):
        """Connects and logs in; leaves self.conn None if that failed (tried again at the
        session's next turn)."""
        try:
            self.connected_at = time.monotonic()
            self.conn = ImapConnection(self.node.imap_port, timeout=self.runner.op_timeout)
        except (ImapError, OSError) as e:
            self.conn = None
            if self.runner.faults and self.runner.faults.node_down(self.node.name):
                self.model.note("connection refused while the node's master was down")
                time.sleep(0.2)
            else:
                self.model.violation("connect-failed", "%s: %s" % (self.node.name, e),
                                     None, self.name)
                time.sleep(1)
            return
        resp, rec = self.command("LOGIN %s" % self.user,
                                 ["LOGIN", quote(self.user), quote("pass")])
        if resp.status != "OK":
            if not self.unavailable(rec, resp):
                self.model.violation("login-failed", rec.who(), None, self.name)
            self.conn.close()
            self.conn = None
            time.sleep(0.2)
            return
        self.command("ENABLE", ["ENABLE", "QRESYNC" if self.qresync else "CONDSTORE"])

    def close_selection(self, when):
        sel = self.selected
        if sel and sel.rw_entry is not None:
            sel.rw_entry[2] = when
        if sel:
            uids = [u for u in sel.view if u is not None]
            hms = self.max_hms.get(sel.box.key, 0)
            if hms:
                self.last_seen[sel.name] = (sel.box.key[2], hms, uids)
        self.selected = None

    def reconnect(self):
        self.close_selection(self.trace.tick())
        self.failed_select = None
        try:
            self.conn.close()
        except OSError:
            pass
        self.conn = None
        self.connect()

    def logout(self):
        if self.conn is None:
            return
        rec = self.trace.begin(self.name, self.node.name, self.user, "LOGOUT", ())
        try:
            resp = self.conn.command("LOGOUT")
            self.trace.end(rec, resp.tagged, [u.decode("utf-8", "surrogateescape")
                                              for u in resp.untagged])
        except (ImapError, OSError) as e:
            self.trace.end(rec, "closed: %s" % e)
        self.close_selection(rec.ack)
        self.conn.close()
        self.conn = None

    # ---- one command -------------------------------------------------------------------

    def command(self, text, parts, boxes=(), on_send=None):
        """Send one command; returns (Response, Record). Raises Abort after a BYE, a
        closed connection or a timeout, each checked against the model first."""
        boxes = set(boxes)
        if self.selected:
            boxes.add((self.user, self.selected.name))
        rec = self.trace.begin(self.name, self.node.name, self.user, text, boxes)
        if on_send:
            on_send(rec)
            # The command's time limit is the server's: from here, when it goes on the
            # wire. on_send waits for the model's lock, which other sessions hold while
            # they check their responses; late in a soak the model is large. (The two
            # overruns of the fault soaks, seeds 1211 and 1214, both EXPUNGEs, left no
            # stacks of a late server: suspected to be this wait.)
            held = time.monotonic() - rec.t_send
            if held > 1:
                self.model.note("a command waited %d-%d s for the model before it was sent"
                                % (int(held), int(held) + 1))
            rec.t_send = time.monotonic()
        self.commands += 1
        try:
            with self.runner.late_watch(self, rec):
                resp = self.conn.command(*parts)
        except socket.timeout:
            self.trace.end(rec, "TIMEOUT after %.0f s" % self.runner.op_timeout)
            self.timed(rec, boxes)
            self.model.violation("command-hung", "%s: no tagged reply in %.0f s" %
                                 (text, self.runner.op_timeout),
                                 self.box_name(boxes), self.name)
            self.reconnect()
            raise Abort(rec) from None
        except (ImapError, OSError) as e:
            untagged = [u.decode("utf-8", "surrogateescape") for u in getattr(e, "untagged", [])]
            self.trace.end(rec, "DISCONNECTED (%s)" % e, untagged)
            self.timed(rec, boxes)
            self.disconnected(rec, untagged)
            raise Abort(rec) from None
        untagged = text_lines(resp)
        self.trace.end(rec, resp.tagged, untagged)
        self.timed(rec, boxes)
        if any(u.startswith("* BYE") for u in untagged):
            self.disconnected(rec, untagged)
            raise Abort(rec)
        if resp.status == "BAD":
            self.model.violation("bad-reply", "%s -> %s" % (text, resp.tagged),
                                 self.box_name(boxes), self.name)
        return resp, rec

    def box_name(self, boxes):
        return sorted(boxes)[0] if boxes else None

    def timed(self, rec, boxes):
        """Every command answers within rbd_op_timeout + 1 s (issue 9), faults or not."""
        limit = self.runner.deadline
        if limit is not None and rec.duration() > limit:
            self.model.violation("command-too-long", "%s: over rbd_op_timeout + 1 s = %g s%s%s" %
                                 (rec.who(), limit, self.fault_context(rec), late_stacks(rec)),
                                 self.box_name(boxes), self.name)

    def idle_started(self, rec):
        """IDLE's continuation is its first answer: it too comes within the limit
        (the server sets up its mailbox watch before it)."""
        limit = self.runner.deadline
        took = time.monotonic() - rec.t_send
        if limit is not None and took > limit:
            self.model.violation("command-too-long", "%s: + idling after %.1f s: over "
                                 "rbd_op_timeout + 1 s = %g s%s%s" %
                                 (rec.who(), took, limit, self.fault_context(rec),
                                  late_stacks(rec)),
                                 self.box_name(rec.boxes), self.name)

    def fault_context(self, rec):
        w = self.runner.faults and self.runner.faults.covering(rec, FAULTS, self.node.name)
        return " (during %s)" % w if w else ""

    def unavailable(self, rec, resp):
        """A NO [UNAVAILABLE] to a command overlapping a storage fault: allowed, its
        outcome is unknown (a change it made must not show: the checkpoints check)."""
        faults = self.runner.faults
        if resp.status == "NO" and "[UNAVAILABLE]" in resp.text and faults and \
                faults.covering(rec, STORAGE_FAULTS):
            words = rec.text.split(" ")
            self.model.note("%s NO [UNAVAILABLE] during a fault" %
                            " ".join(words[:2] if words[0] == "UID" else words[:1]))
            return True
        return False

    def disconnected(self, rec, untagged):
        """A BYE other than LOGOUT's is allowed only when the selected mailbox was deleted
        or renamed (RFC 3501 7.1.5): by any session after this one selected it."""
        bye = [u for u in untagged if u.startswith("* BYE")]
        tried = [t for t in (self.selected, self.closing, self.failed_select) if t is not None]
        sel = tried[0] if tried else None
        # After a SELECT that failed because the mailbox was being deleted, Dovecot ends
        # the session at the next command ("IMAP session state is inconsistent").
        allowed = any(is_volatile(t.name) and
                      self.model.killed_since(self.user, t.name, t.select_send)
                      for t in tried)
        faults = self.runner.faults
        killed = faults and faults.covering(rec, PROCESS_FAULTS, self.node.name)
        if allowed:
            self.model.note("BYE: selected mailbox deleted or renamed by another session")
        elif killed and (not bye or (killed.kind == "master-kill" and
                                     rec.text.startswith("LOGIN"))):
            self.model.note("connection lost to %s" % killed.kind)
        elif "FETCH" in rec.text.split(" ")[:2] and faults and \
                faults.covering(rec, STORAGE_FAULTS) and \
                bye == ["* BYE FETCH failed: Mail storage temporarily unavailable, try again "
                        "later"]:
            # Dovecot 2.3 ends the session on a FETCH the storage failed (its default
            # imap_fetch_failure; README): it has no tagged answer for it.
            self.model.note("BYE FETCH failed during a storage fault")
        elif faults and faults.orphaned(self.node.name, self.connected_at) and \
                all(b.startswith("* BYE Server shutting down.") for b in bye):
            # its process outlived a killed master: it ends at its next status change
            self.model.note("session of a process a killed master left ended")
        else:
            self.model.violation(
                "unexpected-bye", "%s: %s%s" % (rec.who(), bye[0] if bye else rec.result,
                                                self.fault_context(rec)),
                (self.user, sel.name) if sel else None, self.name)
        self.reconnect()

    # ---- untagged responses ------------------------------------------------------------

    def process(self, untagged, rec, qresync_known=None, changed_since=None, partial=None):
        """Apply untagged responses to the view and check them. qresync_known: the
        known UIDs of a QRESYNC SELECT; changed_since: the modseq a FETCH CHANGEDSINCE or
        QRESYNC gave (every FETCH answered must be above it); partial: (origin, length)."""
        for line in untagged:
            sel = self.selected
            if sel is None:
                continue
            words = line.split(" ")
            if len(words) >= 3 and words[2] == "EXISTS":
                n = int(words[1])
                if n < len(sel.view):
                    self.model.violation("exists-decreased", "* %d EXISTS after %d" %
                                         (n, len(sel.view)), (self.user, sel.name), self.name)
                sel.view += [None] * (n - len(sel.view))
            elif len(words) >= 3 and words[2] == "EXPUNGE":
                n = int(words[1])
                if n > len(sel.view):
                    self.model.violation("expunge-beyond-exists", "* %d EXPUNGE with %d "
                                         "messages" % (n, len(sel.view)),
                                         (self.user, sel.name), self.name)
                    continue
                uid = sel.view.pop(n - 1)
                if uid is not None:
                    self.model.saw_expunged(sel.box, uid, rec.ack, self.name, "EXPUNGE")
            elif line.startswith("* VANISHED "):
                self.vanished(sel, line, rec, qresync_known)
            elif _FETCH.match(line.encode()):
                self.fetched(sel, line, rec, changed_since, partial)
            elif line.startswith("* OK [HIGHESTMODSEQ "):
                # Not the view's: Dovecot may send it before the FETCHes of changes at
                # or below it (seed 80184 on mdbox, after a refused UNCHANGEDSINCE STORE),
                # so a CHANGEDSINCE based on it meets them as unsolicited updates.
                self.highestmodseq(sel.box, int(response_code(line[5:])[1]), sel.name)

    def vanished(self, sel, line, rec, known):
        rest = line[len("* VANISHED "):]
        earlier = rest.startswith("(EARLIER) ")
        uids = uid_set(rest[len("(EARLIER) "):] if earlier else rest)
        for uid in uids:
            if earlier and known is not None and uid not in known:
                self.model.violation("vanished-not-known", "VANISHED (EARLIER) UID %d not in "
                                     "the known UIDs given" % uid, (self.user, sel.name),
                                     self.name)
            self.model.saw_expunged(sel.box, uid, rec.ack, self.name,
                                    "VANISHED (EARLIER)" if earlier else "VANISHED")
            if earlier:
                continue
            if uid in sel.view:
                sel.view.remove(uid)
            elif None in sel.view:
                sel.view.remove(None)
                sel.dirty = True

    def fetched(self, sel, line, rec, changed_since, partial):
        m = _FETCH.match(line.encode())
        seq = int(m.group(1))
        items = parse(line.encode("utf-8", "surrogateescape")[m.end():])[0]
        d = {items[i].upper() if isinstance(items[i], str) else items[i]: items[i + 1]
             for i in range(0, len(items) - 1, 2)}
        box = sel.box
        where = (self.user, sel.name)
        if seq > len(sel.view):
            self.model.violation("fetch-beyond-exists", "%s with %d messages" %
                                 (line[:80], len(sel.view)), where, self.name)
            return
        uid = int(d["UID"]) if "UID" in d else None
        if uid is not None:
            known = sel.view[seq - 1]
            if known is None:
                sel.view[seq - 1] = uid
            elif known != uid and not sel.dirty:
                self.model.violation("sequence-changed", "message %d was UID %d, FETCH says "
                                     "UID %d" % (seq, known, uid), where, self.name)
            sel.view[seq - 1] = uid
        else:
            uid = sel.view[seq - 1]
        if uid is None:
            return
        flags = d.get("FLAGS")
        if flags is not None and sel.rw and any(f.casefold() == "\\recent" for f in flags):
            self.model.saw_recent(box, uid, self.name)
        if "MODSEQ" in d:
            modseq = int(d["MODSEQ"][0])
            sel.view_hms = max(sel.view_hms, modseq)
            key = (box.key, uid)
            told = self.modseqs.get(key, 0)
            if modseq < told:
                self.model.violation("modseq-back-in-session", "UID %d MODSEQ %d after %d" %
                                     (uid, modseq, told), where, self.name)
            self.modseqs[key] = max(modseq, told)
            if changed_since is not None and modseq <= changed_since:
                if modseq == told and is_sync_fetch(items):
                    # Dovecot's FETCH reads a message's newest flags, past the view's
                    # last sync; when that sync failed (cluster away), the next one
                    # reports the change again, unsolicited (seed 1601, fault soak).
                    self.model.note("a sync repeated a change a FETCH had shown")
                else:
                    self.model.violation("changedsince-not-changed", "UID %d MODSEQ %d "
                                         "returned for CHANGEDSINCE %d" %
                                         (uid, modseq, changed_since), where, self.name)
            self.model.saw_state(box, uid, modseq, flags, self.name)
        msgid = None
        for key, value in d.items():
            if not isinstance(key, str) or not key.startswith("BODY["):
                continue
            if value is None:
                if box.may_be_expunged(uid, rec.ack):
                    self.model.note("NIL body of a message that may be expunged")
                else:
                    self.model.violation("body-nil", "UID %d %s is NIL, no expunge could have "
                                         "removed it" % (uid, key), where, self.name)
                continue
            if key == "BODY[]" or key.startswith("BODY[HEADER"):
                msgid = msgid_of(value)
                if msgid is None:
                    self.model.violation("body-corrupt", "UID %d %s has no X-Stress-Id: %r" %
                                         (uid, key, value[:100]), where, self.name)
                    continue
                self.model.saw_message(box, uid, msgid, self.name)
                if key == "BODY[]" and value != self.model.stored(box, uid, msgid, value):
                    self.model.violation("body-not-exact", "UID %d (%s): %d bytes differ from "
                                         "the %d stored" % (uid, msgid, len(value),
                                                            len(message(msgid))),
                                         where, self.name)
        msgid = msgid or box.uid_msg.get(uid)
        if msgid is None:
            return
        wrong = "RFC822.SIZE" in d and self.model.size_wrong(box, uid, msgid,
                                                             int(d["RFC822.SIZE"]))
        if wrong:
            if int(d["RFC822.SIZE"]) == 0 and box.may_be_expunged(uid, rec.ack):
                self.model.note("RFC822.SIZE 0 of a message that may be expunged")
                return
            self.model.violation("size-wrong", "UID %d %s" % (uid, wrong), where, self.name)
        full = self.model.stored(box, uid, msgid)
        for key, value in d.items():
            if full is not None and isinstance(key, str) and key.startswith("BODY[]<") and \
                    value is not None:
                origin = int(key[len("BODY[]<"):-1])
                want = full[origin:origin + (partial[1] if partial else len(value))]
                if value != want:
                    self.model.violation("partial-not-exact", "UID %d %s: %d bytes, want %d" %
                                         (uid, key, len(value), len(want)), where, self.name)

    def highestmodseq(self, box, hms, name):
        if hms < self.max_hms.get(box.key, 0):
            self.model.violation("highestmodseq-back", "HIGHESTMODSEQ %d after %d" %
                                 (hms, self.max_hms[box.key]), (self.user, name), self.name)
        self.max_hms[box.key] = max(hms, self.max_hms.get(box.key, 0))

    # ---- the loop ----------------------------------------------------------------------

    def run(self):
        try:
            self.connect()
        except Abort:
            pass
        while not self.runner.stopping():
            self.runner.maybe_park()
            if self.runner.stopping():
                break
            op = self.rng.choices(self.op_names, self.op_weights)[0]
            try:
                if self.conn is None:
                    self.connect()
                    if self.conn is None:
                        continue
                if op in NEED_SELECTED and self.selected is None:
                    self.op_select(self.pick_mailbox(), "SELECT")
                    continue
                if op in NEED_WRITE and not self.selected.rw:
                    self.op_select(self.selected.name, "SELECT")
                    continue
                if op in NEED_SELECTED and (self.selected.dirty or None in self.selected.view):
                    self.op_fetch()
                    continue
                if op in ("store", "store-silent", "store-unchanged", "keyword") and \
                        self.selected and \
                        len(self.selected.view) > MAX_MESSAGES and self.rng.random() < 0.5:
                    op = "expunge-many"
                getattr(self, "op_" + op.replace("-", "_"))()
            except Abort:
                pass
        try:
            self.logout()
        except Abort:
            pass

    # ---- choices -----------------------------------------------------------------------

    def pick_mailbox(self):
        with self.model.lock:
            volatile = list(self.model.volatile[self.user])
        return self.rng.choice(STABLE * 3 + tuple(volatile) + ("tmp0",))

    def known_uids(self):
        return [u for u in self.selected.view if u is not None]

    def pick_uids(self):
        uids = self.known_uids()
        if not uids:
            return []
        if self.rng.random() < 0.2:
            a = self.rng.choice(uids)
            return list(range(a, a + self.rng.randint(1, 4)))
        return self.rng.sample(uids, min(len(uids), self.rng.randint(1, 3)))

    def pick_flags(self):
        pool = list(SYSTEM_FLAGS[:4]) + list(SHARED_KEYWORDS) + ["\\Deleted"]
        return self.rng.sample(pool, self.rng.randint(1, 2))

    def new_message(self, kind=""):
        """A new message id; kind DELIVERED for one LMTP delivers."""
        r = self.rng.random()
        if r < 0.03:
            size = self.rng.randint(262145, 420000)
        elif r < 0.25:
            size = self.rng.randint(2000, 40000)
        else:
            size = self.rng.randint(300, 2000)
        self.counter += 1
        return msgid_for(self.seed, self.name + kind, self.counter, size)

    # ---- selection ---------------------------------------------------------------------

    def op_select(self, name=None, verb=None, qresync=False):
        name = name or self.pick_mailbox()
        verb = verb or "SELECT"
        parts = [verb, quote(name)]
        text = "%s %s" % (verb, name)
        known = since = None
        seen = self.last_seen.get(name)
        resync = qresync and self.qresync and seen is not None
        if resync:
            uidvalidity, since, known = seen
            known = set(known) or None     # none given: all UIDs are known
            params = "(QRESYNC (%d %d%s))" % (uidvalidity, since,
                                              " " + uid_text(known) if known else "")
            parts.append(params)
            text += " " + params
        old_rw = self.selected.rw_entry if self.selected else None
        self.closing = self.selected
        self.close_selection(None)
        try:
            resp, rec = self.command(text, parts, {(self.user, name)})
        finally:
            self.closing = None
        if old_rw is not None:
            old_rw[2] = rec.ack
        self.failed_select = None
        if resp.status != "OK":
            if name in STABLE and not self.unavailable(rec, resp):
                self.model.violation("select-failed", "%s -> %s" % (text, resp.tagged),
                                     (self.user, name), self.name)
            self.failed_select = Selected(name, None, False, 0, rec.send)
            return
        state = selected_state(resp)
        box = self.model.box(self.user, name, state["uidvalidity"])
        sel = Selected(name, box, "[READ-WRITE]" in resp.tagged, state.get("exists", 0),
                       rec.send)
        if sel.rw:
            sel.rw_entry = [self.name, rec.send, None]
            with self.model.lock:
                box.rw.append(sel.rw_entry)
        self.selected = sel
        if "highestmodseq" in state:
            sel.view_hms = state["highestmodseq"]
            self.highestmodseq(box, state["highestmodseq"], name)
        same = seen is not None and seen[0] == state["uidvalidity"]
        self.process([u for u in text_lines(resp) if not u.startswith("* OK [HIGHESTMODSEQ")
                      and not u.endswith(" EXISTS")],
                     rec, qresync_known=known if same else None,
                     changed_since=since if (resync and same) else None)
        self.op_fetch()

    def op_examine(self):
        self.op_select(verb="EXAMINE")

    def op_qresync(self):
        self.op_select(verb=self.rng.choice(["SELECT", "EXAMINE"]), qresync=True)

    def op_unselect(self):
        old_rw = self.selected.rw_entry
        resp, rec = self.command("UNSELECT", ["UNSELECT"])
        self.close_selection(rec.ack)
        if old_rw is not None:
            old_rw[2] = rec.ack

    # ---- fetch -------------------------------------------------------------------------

    def fetch(self, text, parts, uids=None, **kw):
        resp, rec = self.command(text, parts)
        self.process(text_lines(resp), rec, **kw)
        if resp.status != "OK":
            sel = self.selected
            targets = uids if uids is not None else self.known_uids()
            if "[EXPUNGEISSUED]" in resp.text and any(
                    sel.box.may_be_expunged(u, rec.ack) for u in targets):
                self.model.note("FETCH NO [EXPUNGEISSUED] for a message that may be expunged")
            elif is_volatile(sel.name) and self.model.killed_since(self.user, sel.name,
                                                                  sel.select_send):
                self.model.note("NO in a deleted or renamed selected mailbox")
            elif not self.unavailable(rec, resp):
                self.model.violation("fetch-failed", "%s -> %s" % (text, resp.tagged),
                                     (self.user, sel.name), self.name)
        return resp, rec

    def op_fetch(self):
        """FETCH 1:* (UID FLAGS MODSEQ): also rebuilds the view."""
        sel = self.selected
        if sel is None:
            return
        if not sel.view:
            self.op_noop()
            return
        sel.view = [None] * len(sel.view)
        sel.dirty = False
        self.fetch("FETCH 1:* (UID FLAGS MODSEQ)", ["FETCH", "1:*", "(UID FLAGS MODSEQ)"])

    def op_fetch_body(self):
        uids = self.pick_uids()[:2]
        if not uids:
            return self.op_noop()
        text = "UID FETCH %s (UID RFC822.SIZE BODY.PEEK[])" % uid_text(uids)
        self.fetch(text, text.split(" ", 3), uids)

    def op_fetch_seq(self):
        n = len(self.selected.view)
        if not n:
            return self.op_noop()
        seq = self.rng.randint(1, n)
        uid = self.selected.view[seq - 1]
        text = "FETCH %d (UID RFC822.SIZE BODY.PEEK[])" % seq
        self.fetch(text, text.split(" ", 2), [uid] if uid else [])

    def op_fetch_partial(self):
        uids = self.pick_uids()[:1]
        if not uids:
            return self.op_noop()
        msgid = self.selected.box.uid_msg.get(uids[0])
        size = len(message(msgid)) if msgid else 4000
        origin = self.rng.randint(0, size + 10)
        length = self.rng.randint(1, 70000)
        text = "UID FETCH %d (UID BODY.PEEK[HEADER.FIELDS (X-Stress-Id)] BODY.PEEK[]<%d.%d>)" \
            % (uids[0], origin, length)
        self.fetch(text, text.split(" ", 3), uids, partial=(origin, length))

    def op_fetch_header(self):
        text = "UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (X-Stress-Id)])"
        self.fetch(text, text.split(" ", 3))

    def op_changedsince(self):
        # below what this view reported: every change the reply carries, its own or a
        # sync's, is newer (a STATUS may have shown a later HIGHESTMODSEQ)
        hms = self.selected.view_hms
        since = self.rng.randint(max(0, hms - 5), hms) if hms else 1
        text = "UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE %d)" % since
        self.fetch(text, text.split(" ", 3), changed_since=since)

    # ---- store -------------------------------------------------------------------------

    def store(self, uids, kind, flags, unchanged=None, silent=False):
        """silent: .SILENT, so that the session hears only the new MODSEQs of its own
        change (its sessions have CONDSTORE enabled)."""
        sel = self.selected
        box = sel.box
        sign = {"add": "+", "remove": "-", "replace": ""}[kind]
        mod = " (UNCHANGEDSINCE %d)" % unchanged if unchanged is not None else ""
        text = "UID STORE %s%s %sFLAGS%s (%s)" % (uid_text(uids), mod, sign,
                                                 ".SILENT" if silent else "", " ".join(flags))
        ops = {}
        view = set(self.known_uids())

        def on_send(rec):
            with self.model.lock:
                for uid in uids:
                    op = FlagOp(kind, flags, rec.send, rec.id, uid in view)
                    ops[uid] = op
                    box.flag_ops[uid].append(op)
                    if op.adds("\\deleted"):
                        box.deleted_adds[uid].append(rec.send)
                box.owners.append((rec.id, frozenset(uids)))

        resp, rec = self.command(text, text.split(" ", 3), on_send=on_send)
        modified = set()
        code = response_code(resp.text)
        if code and code[0] == "MODIFIED":
            modified = set(uid_set(code[1]))
        for uid, op in ops.items():
            op.ack = rec.ack
            op.modified = uid in modified or resp.status != "OK"
        self.process(text_lines(resp), rec)
        if resp.status != "OK":
            if is_volatile(sel.name) and self.model.killed_since(self.user, sel.name,
                                                                sel.select_send):
                self.model.note("NO in a deleted or renamed selected mailbox")
            elif self.unavailable(rec, resp):
                self.refuse(rec)
            else:
                self.model.violation("store-failed", "%s -> %s" % (text, resp.tagged),
                                     (self.user, sel.name), self.name)

    def op_store(self, silent=False):
        uids = self.pick_uids()
        if not uids:
            return self.op_append()
        kind = self.rng.choices(["add", "remove", "replace"], [5, 3, 2])[0]
        self.store(uids, kind, self.pick_flags(), silent=silent)

    def op_store_silent(self):
        """A STORE .SILENT writes the session's own change into its index transaction
        (not echoed back), which commits without the cache's lock (test_sync_race.py)."""
        self.op_store(silent=True)

    def op_store_unchanged(self):
        uids = self.pick_uids()
        if not uids:
            return self.op_append()
        key = self.selected.box.key
        seen = [self.modseqs.get((key, u), 0) for u in uids]
        since = max(seen) if self.rng.random() < 0.7 else max(0, min(seen) - 1)
        self.store(uids, self.rng.choice(["add", "remove"]), self.pick_flags(), since)

    def op_keyword(self):
        """New keywords from several nodes at once: a shared new name, or one of this
        session's own."""
        uids = self.pick_uids()
        if not uids:
            return self.op_append()
        if self.rng.random() < 0.5:
            kw = "$New%d" % self.rng.randint(1, 30)
        else:
            self.counter += 1
            kw = "k%s%d" % (self.name, self.counter)
        self.store(uids, "add", [kw])

    # ---- expunge, copy, move -----------------------------------------------------------

    def expunge(self, uids):
        sel = self.selected
        box = sel.box
        exp = []

        def on_send(rec):
            e = Expunge(rec.send, frozenset(uids) if uids is not None else None, False)
            exp.append(e)
            with self.model.lock:
                box.expunges.append(e)

        text = "UID EXPUNGE %s" % uid_text(uids) if uids is not None else "EXPUNGE"
        resp, rec = self.command(text, text.split(" ", 2) if uids is not None else ["EXPUNGE"],
                                 on_send=on_send)
        exp[0].ack = rec.ack
        self.process(text_lines(resp), rec)
        if resp.status != "OK":
            self.failed_in_selected(text, resp, rec)

    def failed_in_selected(self, text, resp, rec):
        sel = self.selected
        if sel and is_volatile(sel.name) and self.model.killed_since(self.user, sel.name,
                                                                    sel.select_send):
            self.model.note("NO in a deleted or renamed selected mailbox")
        elif not self.unavailable(rec, resp):
            self.model.violation("command-failed", "%s -> %s" % (text, resp.tagged),
                                 (self.user, sel.name) if sel else None, self.name)

    def op_expunge(self):
        self.expunge(None)

    def op_uid_expunge(self):
        uids = self.pick_uids()
        if uids:
            self.expunge(uids)

    def op_expunge_many(self):
        uids = self.known_uids()
        self.store(self.rng.sample(uids, len(uids) // 2), "add", ["\\Deleted"])
        if self.selected:
            self.expunge(None)

    def copy(self, verb):
        sel = self.selected
        uids = self.pick_uids()
        if not uids:
            return
        # Not into the volatile mailboxes: Dovecot 2.3.19's imap process crashes (signal 11)
        # on a COPY/MOVE into a mailbox another instance renames meanwhile (README.md).
        dest = self.rng.choice([n for n in STABLE if n != sel.name])
        text = "UID %s %s %s" % (verb, uid_text(uids), dest)
        src = sel.box
        exp = []

        def on_send(rec):
            if verb == "MOVE":
                e = Expunge(rec.send, frozenset(uids), True)
                exp.append(e)
                with self.model.lock:
                    src.expunges.append(e)

        view = set(self.known_uids())
        try:
            resp, rec = self.command(text, ["UID", verb, uid_text(uids), quote(dest)],
                                     {(self.user, dest)}, on_send=on_send)
        except Abort as e:
            # the COPYUID may have arrived before the connection ended
            if not self.copied(dest, src, e.rec, e.rec.untagged):
                self.maybe_copied(dest, src, uids, view, e.rec)
            raise
        for e in exp:
            e.ack = rec.ack
        # A NO may still carry an untagged COPYUID: the copy was committed first.
        copied = self.copied(dest, src, rec, [resp.text] + text_lines(resp))
        if resp.status != "OK" or not copied:
            # Dovecot answers NO ("Mailbox was deleted under us") or OK without COPYUID
            # when the source or target was deleted meanwhile, after the copy may have
            # been committed: without a COPYUID, the target may hold copies with UIDs
            # nobody was told.
            if not copied:
                self.maybe_copied(dest, src, uids, view, rec)
            if resp.status == "OK":
                self.model.note("%s OK without COPYUID" % verb)
            elif "[EXPUNGEISSUED]" in resp.text and any(src.may_be_expunged(u, rec.ack)
                                                        for u in uids):
                self.model.note("%s NO [EXPUNGEISSUED] for a message that may be expunged"
                                % verb)
            elif is_volatile(dest) or is_volatile(sel.name):
                self.model.note("%s NO with a volatile mailbox" % verb)
            else:
                self.refuse(rec)
                if not self.unavailable(rec, resp):
                    self.model.violation("copy-failed", rec.who(), (self.user, dest),
                                         self.name)
        self.process(text_lines(resp), rec)

    def refuse(self, rec):
        """rec was answered NO: if its change shows anyway, that is no-but-applied."""
        with self.model.lock:
            self.model.refused.add(rec.id)

    def copied(self, dest, src, rec, texts):
        """Registers the copies a COPYUID (tagged or untagged) names; False if none."""
        codes = [response_code(t[5:] if t.startswith("* OK [") else t) for t in texts]
        copyuid = [c for c in codes if c and c[0] == "COPYUID"]
        if not copyuid:
            return False
        _, validity, src_uids, dst_uids = copyuid[0]
        dst = self.model.box(self.user, dest, validity)
        pairs = list(zip(uid_set(src_uids), uid_set(dst_uids)))
        with self.model.lock:
            for s, d in pairs:
                msgid = src.uid_msg.get(s)
                dst.created[d] = Created(rec.send, rec.ack, "copy", msgid, None, rec.id)
                if any(t < rec.ack for t in src.deleted_adds.get(s, ())) or \
                        s not in src.created:
                    dst.deleted_adds[d].append(rec.send)
            dst.owners.append((rec.id, frozenset(d for _, d in pairs)))
        for s, d in pairs:
            if src.uid_msg.get(s):
                self.model.saw_message(dst, d, src.uid_msg[s], self.name)
        return True

    def maybe_copied(self, dest, src, uids, view, rec):
        """A COPY/MOVE of uids whose outcome is unknown: its copies are allowed in dest.
        A message of the view whose id the model does not know makes dest uncertain."""
        msgids = [src.uid_msg.get(u) for u in uids if u in src.uid_msg or u in view]
        with self.model.lock:
            if any(m is None for m in msgids):
                self.runner.uncertain.add((self.user, dest))
            for msgid in msgids:
                if msgid is not None:
                    self.model.maybe_copied[(self.user, dest)][msgid].append(rec)

    def op_copy(self):
        self.copy("COPY")

    def op_move(self):
        self.copy("MOVE")

    # ---- append ------------------------------------------------------------------------

    def append(self, count):
        # Only into INBOX/m1/m2, as COPY and MOVE: Dovecot 2.3.19's mdbox imap process
        # crashes (signal 11) on an APPEND into a mailbox another instance deletes
        # meanwhile (README.md).
        if self.selected and self.selected.name in STABLE and self.rng.random() < 0.4:
            dest = self.selected.name
        else:
            dest = self.rng.choice(STABLE)
        msgs = []
        parts = ["APPEND", quote(dest)]
        for _ in range(count):
            msgid = self.new_message()
            flags = self.pick_flags() if self.rng.random() < 0.3 else []
            msgs.append((msgid, flags))
            parts += ["(%s)" % " ".join(flags), Literal(message(msgid))]
        text = "APPEND %s %s" % (dest, " ".join("(%s) {%s}" % (" ".join(f), m)
                                                for m, f in msgs))
        try:
            resp, rec = self.command(text, parts, {(self.user, dest)})
        except Abort as e:
            with self.model.lock:
                for msgid, _ in msgs:
                    self.model.maybe_copied[(self.user, dest)][msgid].append(e.rec)
            raise
        code = response_code(resp.text)
        if resp.status == "OK" and code and code[0] == "APPENDUID":
            box = self.model.box(self.user, dest, code[1])
            uids = uid_set(code[2])
            if len(uids) != count:
                self.model.violation("appenduid-wrong", "%s -> %s" % (text, resp.tagged),
                                     (self.user, dest), self.name)
            with self.model.lock:
                for uid, (msgid, flags) in zip(uids, msgs):
                    box.created[uid] = Created(rec.send, rec.ack, "append", msgid, norm(flags),
                                               rec.id)
                    if flags:
                        op = FlagOp("add", flags, rec.send, rec.id)
                        op.ack = rec.ack
                        box.flag_ops[uid].append(op)
                    if "\\deleted" in norm(flags):
                        box.deleted_adds[uid].append(rec.send)
                box.owners.append((rec.id, frozenset(uids)))
            for uid, (msgid, _) in zip(uids, msgs):
                self.model.saw_message(box, uid, msgid, self.name)
        elif resp.status == "OK":
            self.model.violation("appenduid-missing", "%s -> %s" % (text, resp.tagged),
                                 (self.user, dest), self.name)
        else:
            # stored anyway? the checkpoint reports it (no-but-applied)
            with self.model.lock:
                for msgid, _ in msgs:
                    self.model.maybe_copied[(self.user, dest)][msgid].append(rec)
            self.refuse(rec)
            if not self.unavailable(rec, resp):
                self.model.violation("append-failed", rec.who(), (self.user, dest), self.name)
        self.process(text_lines(resp), rec)

    def op_append(self):
        self.append(1)

    def op_deliver(self):
        """An LMTP delivery to the user, through this session's node: into INBOX, with
        trace headers on top (model.stored)."""
        msgid = self.new_message(DELIVERED)
        where = (self.user, "INBOX")
        rec = self.trace.begin(self.name, self.node.name, self.user, "LMTP {%s}" % msgid,
                               {where})
        self.commands += 1
        with self.model.lock:       # whatever the answer, it may be there
            self.model.maybe_copied[where][msgid].append(rec)
        faults = self.runner.faults
        steps = []
        try:
            code, text = self.lmtp(message(msgid), steps)
        except (smtplib.SMTPServerDisconnected, OSError) as e:
            self.trace.end(rec, "DISCONNECTED (%s)" % e)
            self.lmtp_timed(rec, steps)
            killed = faults and faults.covering(rec, PROCESS_FAULTS, self.node.name)
            if killed:
                self.model.note("LMTP connection lost to %s" % killed.kind)
            else:
                self.model.violation("deliver-failed", rec.who(), where, self.name)
            return
        self.trace.end(rec, "%d %s" % (code, text.decode(errors="replace")))
        self.lmtp_timed(rec, steps)
        if code == 250:
            with self.model.lock:
                self.model.delivered[where][msgid] = rec
            return
        killed = faults and faults.covering(rec, {"master-kill"}, self.node.name)
        if code == 421 and killed:
            # Dovecot's lmtp answers 421 when its master dies, delivered or not
            self.model.note("LMTP 421 while the master was killed")
            return
        self.refuse(rec)
        if 400 <= code < 500 and (killed or faults and faults.covering(rec, STORAGE_FAULTS)):
            self.model.note("LMTP %d during a fault" % code)
        else:
            self.model.violation("deliver-failed", rec.who(), where, self.name)

    def lmtp_timed(self, rec, steps):
        """The deadline is per LMTP command: rec's time is its slowest one (steps:
        (name, start, end)); the connection and greeting before them are not one."""
        if not steps:
            return
        name, start, end = max(steps, key=lambda s: s[2] - s[1])
        rec.result += " (slowest: %s)" % name
        rec.t_send = rec.t_ack - (end - start)
        self.timed(rec, rec.boxes)

    def lmtp(self, data, steps):
        """One LMTP transaction to this session's user: the reply to RCPT if it was not
        250, else the one to DATA. Appends (command, start, end) to steps."""
        with smtplib.LMTP("127.0.0.1", self.node.lmtp_port,
                          timeout=self.runner.op_timeout) as lmtp:

            def step(name, call, *args):
                start = time.monotonic()
                try:
                    return call(*args)
                finally:
                    steps.append((name, start, time.monotonic()))

            step("LHLO", lmtp.ehlo)
            step("MAIL", lmtp.mail, "stress@example.org")
            code, text = step("RCPT", lmtp.rcpt, "%s@example.org" % self.user)
            if code != 250:
                return code, text
            try:
                return step("DATA", lmtp.data, data)
            except smtplib.SMTPResponseException as e:
                return e.smtp_code, e.smtp_error

    def op_multiappend(self):
        self.append(self.rng.randint(2, 4))

    # ---- mailboxes ---------------------------------------------------------------------

    def kill(self, name):
        """on_send for DELETE/RENAME of name: sessions in it may get BYE, its messages
        may vanish."""
        def on_send(rec):
            with self.model.lock:
                self.model.kills[(self.user, name)].append(rec)
        return on_send

    def op_create(self):
        with self.model.lock:
            if len(self.model.volatile[self.user]) >= MAX_VOLATILE:
                return self.op_delete()
        name = self.model.new_volatile(self.user)
        resp, _ = self.command("CREATE %s" % name, ["CREATE", quote(name)], {(self.user, name)})
        # Dovecot's mdbox may answer NO [ALREADYEXISTS] to a CREATE of a new name while
        # other mailboxes are deleted, yet create it: a NO is only noted.
        if resp.status != "OK":
            self.model.note("CREATE of a new name: %s" % resp.tagged)
        with self.model.lock:
            self.model.volatile[self.user].append(name)

    def pick_volatile(self):
        with self.model.lock:
            names = self.model.volatile[self.user]
            return self.rng.choice(names) if names else None

    def op_delete(self):
        name = self.pick_volatile()
        if name is None:
            return self.op_create()
        resp, _ = self.command("DELETE %s" % name, ["DELETE", quote(name)], {(self.user, name)},
                               on_send=self.kill(name))
        if resp.status == "OK":
            self.forget(name)

    def op_rename(self):
        a = self.pick_volatile()
        if a is None:
            return self.op_create()
        b = self.model.new_volatile(self.user)
        resp, _ = self.command("RENAME %s %s" % (a, b), ["RENAME", quote(a), quote(b)],
                               {(self.user, a), (self.user, b)}, on_send=self.kill(a))
        if resp.status == "OK":
            self.forget(a)
            with self.model.lock:
                self.model.volatile[self.user].append(b)

    def op_recreate(self):
        """DELETE and CREATE again the same name: another mailbox, a new UIDVALIDITY."""
        name = self.pick_volatile()
        if name is None:
            return self.op_create()
        resp, _ = self.command("DELETE %s" % name, ["DELETE", quote(name)], {(self.user, name)},
                               on_send=self.kill(name))
        if resp.status != "OK":
            return
        resp, _ = self.command("CREATE %s" % name, ["CREATE", quote(name)], {(self.user, name)})
        if resp.status != "OK":
            self.forget(name)

    def forget(self, name):
        with self.model.lock:
            if name in self.model.volatile[self.user]:
                self.model.volatile[self.user].remove(name)

    def op_status(self):
        name = self.pick_mailbox()
        # rbd answers the second set from the index state alone, the first from a
        # synced cache: both must fit the model.
        items = self.rng.choice(["(MESSAGES UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ RECENT)",
                                 "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ)"])
        resp, rec = self.command("STATUS %s %s" % (name, items),
                                 ["STATUS", quote(name), items], {(self.user, name)})
        self.process([u.decode("utf-8", "surrogateescape") for u in resp.untagged
                      if not u.startswith(b"* STATUS")], rec)
        if resp.status != "OK":
            if name in STABLE and not self.unavailable(rec, resp):
                self.model.violation("status-failed", "STATUS %s -> %s" % (name, resp.tagged),
                                     (self.user, name), self.name)
            return
        for u in resp.untagged:
            if u.startswith(b"* STATUS "):
                values = parse(u[len(b"* STATUS "):])[-1]
                st = {values[i].upper(): int(values[i + 1]) for i in range(0, len(values), 2)}
                box = self.model.box(self.user, name, st["UIDVALIDITY"])
                self.highestmodseq(box, st["HIGHESTMODSEQ"], name)

    def op_noop(self):
        resp, rec = self.command("NOOP", ["NOOP"])
        self.process(text_lines(resp), rec)

    def op_idle(self):
        """IDLE for 0.1-0.6 s (with --hibernate a third of them for 1.5-2.5 s, so that
        imap-hibernate takes them over): whatever arrives is checked like any response."""
        conn = self.conn
        rec = self.trace.begin(self.name, self.node.name, self.user, "IDLE",
                               {(self.user, self.selected.name)})
        self.commands += 1
        untagged = []
        try:
            tag = conn.next_tag()
            conn.send(tag + " IDLE\r\n")
            with self.runner.late_watch(self, rec):
                while True:
                    resp = conn.read_response()
                    if resp.startswith(b"+"):
                        break
                    untagged.append(resp)
            self.idle_started(rec)
            hold = self.rng.uniform(0.1, 0.6)
            if self.runner.hibernate and self.rng.random() < 1 / 3:
                hold = self.rng.uniform(1.5, 2.5)
            deadline = time.monotonic() + hold
            while time.monotonic() < deadline:
                conn.sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    untagged.append(conn.read_response())
                except socket.timeout:
                    break
            conn.sock.settimeout(self.runner.op_timeout)
            rec.t_send = time.monotonic()   # its time: from DONE on
            conn.send("DONE\r\n")
            with self.runner.late_watch(self, rec):
                resp = conn.wait_tagged(tag, untagged)
        except socket.timeout:
            self.trace.end(rec, "TIMEOUT")
            self.model.violation("command-hung", "IDLE/DONE: no tagged reply",
                                 (self.user, self.selected.name), self.name)
            self.reconnect()
            raise Abort(rec) from None
        except (ImapError, OSError) as e:
            text = [u.decode("utf-8", "surrogateescape") for u in untagged]
            self.trace.end(rec, "DISCONNECTED (%s)" % e, text)
            self.process(text, rec)
            self.disconnected(rec, text)
            raise Abort(rec) from None
        text = [u.decode("utf-8", "surrogateescape") for u in resp.untagged]
        self.trace.end(rec, resp.tagged, text)
        self.timed(rec, rec.boxes)
        if any(u.startswith("* BYE") for u in text):
            self.disconnected(rec, text)
            raise Abort(rec)
        self.process(text, rec)
