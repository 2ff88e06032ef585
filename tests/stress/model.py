"""The reference model of the stress checker: every acknowledged effect, with the logical
times at which its command was sent and acknowledged, and the properties checked against
it (see README.md).

Times are ticks of one global counter: a command's send time is taken just before it is
written, its ack time just after its tagged reply is read. If A.ack < B.send, A's effect
happened before B's in real time; otherwise their order is unknown, and the model only
asserts what holds for every order.
"""

import functools
import hashlib
import re
import threading
import time
from collections import defaultdict

STABLE = ("INBOX", "m1", "m2")      # never deleted or renamed: exact content model
# Other mailboxes are created, renamed and deleted while sessions have them selected:
# tmp1, tmp2, ... each name used once (CREATE and RENAME make new names), because Dovecot's
# own mdbox corrupts its indexes when a name is re-created while another session has it
# open (README.md).
VOLATILE_PREFIX = "tmp"
MAX_VOLATILE = 4    # mailboxes of this kind per user at a time


def is_volatile(name):
    return name.startswith(VOLATILE_PREFIX)
SYSTEM_FLAGS = ("\\Seen", "\\Flagged", "\\Answered", "\\Draft", "\\Deleted")
INF = float("inf")


def norm(flags):
    """A flag set compared as IMAP does (case-insensitive), without \\Recent."""
    return frozenset(f.casefold() for f in flags if f.casefold() != "\\recent")


# ---- messages ----------------------------------------------------------------------------

def msgid_for(seed, session, n, size):
    """A message id that names its size: the body is a function of the id alone."""
    return "s%d-%s-%d-%d" % (seed, session, n, size)


@functools.lru_cache(maxsize=128)
def message(msgid):
    """The exact bytes of message msgid (CRLF lines, an X-Stress-Id header)."""
    size = int(msgid.rsplit("-", 1)[1])
    head = ("From: stress <stress@example.org>\r\nTo: user@example.org\r\n"
            "Subject: stress %s\r\nDate: Sat, 5 Dec 2026 00:00:00 +0000\r\n"
            "Message-ID: <%s@stress.example.org>\r\nX-Stress-Id: %s\r\n\r\n"
            % (msgid, msgid, msgid)).encode()
    lines = []
    total = len(head)
    i = 0
    while total < size:
        line = ("%s %06d %s\r\n" % (msgid, i, hashlib.sha256(b"%s/%d" % (msgid.encode(), i))
                                    .hexdigest())).encode()
        lines.append(line)
        total += len(line)
        i += 1
    return head + b"".join(lines)


# A message delivered by LMTP: its session part ends in this. Dovecot's LMTP puts trace
# headers on top of it (Return-Path, Delivered-To, Received, folded), so its stored bytes
# are known once a BODY[] has shown them.
DELIVERED = "L"
TRACE_HEADERS = re.compile(rb"(?:(?:Return-Path|Delivered-To|Received): [^\r\n]*\r\n"
                           rb"|[ \t][^\r\n]*\r\n)*")


def delivered(msgid):
    return msgid.split("-")[1].endswith(DELIVERED)


def msgid_of(data):
    """The X-Stress-Id of a message or of its header fields, or None."""
    for line in data.split(b"\r\n"):
        if line.lower().startswith(b"x-stress-id:"):
            return line.split(b":", 1)[1].strip().decode()
        if not line:
            break
    return None


# ---- trace -------------------------------------------------------------------------------

# Monotonic to wall-clock time, so that a trace line can be matched with the node logs.
_WALL_OFFSET = time.time() - time.monotonic()


def wall_clock(t):
    """HH:MM:SS.mmm (local time, as Dovecot logs it) of monotonic time t."""
    t += _WALL_OFFSET
    return time.strftime("%H:%M:%S", time.localtime(t)) + ".%03d" % int(t % 1 * 1000)


class Record:
    """One command: who sent it where, when, and what came back."""
    __slots__ = ("id", "session", "node", "user", "text", "boxes", "send", "ack", "result",
                 "untagged", "epoch", "t_send", "t_ack", "stacks")

    def __init__(self, rid, session, node, user, text, boxes, send, epoch):
        self.id = rid
        self.session = session
        self.node = node
        self.user = user
        self.text = text
        self.boxes = boxes
        self.send = send
        self.ack = None
        self.result = None
        self.untagged = []
        self.epoch = epoch
        self.t_send = time.monotonic()
        self.t_ack = None
        self.stacks = None      # gdb's stacks of the server, if it was late (stacks.py)

    def duration(self):
        return self.t_ack - self.t_send if self.t_ack is not None else None

    def who(self):
        """Which command this is: number, session, node, text, answer and duration."""
        took = " in %.1f s" % self.duration() if self.t_ack is not None else ""
        return "#%d %s@%s at %s `%s` -> %s%s" % (self.id, self.session, self.node,
                                                 wall_clock(self.t_send), self.text[:120],
                                                 (self.result or "(none)")[:120], took)

    def line(self, full=False):
        ack = "%d" % self.ack if self.ack is not None else "-"
        took = " (%.1f s)" % self.duration() if self.t_ack is not None else ""
        out = "[%d..%s %s] %s@%s %s: %s -> %s%s" % (self.send, ack, wall_clock(self.t_send),
                                                    self.session, self.node, self.user, self.text,
                                                    self.result or "(none)", took)
        if full and self.untagged:
            out += "".join("\n      " + u for u in self.untagged)
        return out


class Trace:
    """The global clock and every command sent, in send order."""

    def __init__(self):
        self.lock = threading.Lock()
        self.clock = 0
        self.records = []
        self.epoch = 0      # number of checkpoints passed

    def tick(self):
        with self.lock:
            self.clock += 1
            return self.clock

    def begin(self, session, node, user, text, boxes):
        with self.lock:
            self.clock += 1
            rec = Record(len(self.records), session, node, user, text, frozenset(boxes),
                         self.clock, self.epoch)
            self.records.append(rec)
            return rec

    def end(self, rec, result, untagged=()):
        rec.t_ack = time.monotonic()
        rec.ack = self.tick()
        rec.result = result if len(result) < 200 else result[:200] + "..."
        rec.untagged = [u[:300] for u in untagged[:40]]

    def relevant(self, box, since_epoch):
        """The commands, since checkpoint since_epoch, of the sessions that touched box
        ((user, name)) in that time, in send order."""
        with self.lock:
            records = [r for r in self.records if r.epoch >= since_epoch]
        sessions = {r.session for r in records if box is None or box in r.boxes}
        return [r for r in records if r.session in sessions]


# ---- mailboxes ---------------------------------------------------------------------------

class FlagOp:
    """A STORE (or APPEND's flags) on one message: kind add, remove or replace."""
    __slots__ = ("kind", "flags", "send", "ack", "modified", "rid", "seen")

    def __init__(self, kind, flags, send, rid, seen=True):
        self.kind = kind
        self.flags = norm(flags)
        self.send = send
        self.ack = None
        self.modified = False   # UNCHANGEDSINCE refused it for this message
        self.rid = rid
        # The message was in the session's view when the STORE was sent: a UID STORE
        # applies to the messages the session knows (Dovecot resolves UIDs in its
        # view, synced after the previous command), not to newer ones.
        self.seen = seen

    def adds(self, flag):
        return self.kind in ("add", "replace") and flag in self.flags

    def removes(self, flag):
        return (self.kind == "remove" and flag in self.flags) or \
            (self.kind == "replace" and flag not in self.flags)


class Created:
    __slots__ = ("send", "ack", "kind", "msgid", "flags", "rid")

    def __init__(self, send, ack, kind, msgid, flags, rid):
        self.send, self.ack, self.kind, self.msgid, self.flags, self.rid = \
            send, ack, kind, msgid, flags, rid


class Expunge:
    __slots__ = ("send", "ack", "uids", "forced")

    def __init__(self, send, uids, forced):
        self.send = send
        self.ack = None
        self.uids = uids        # None: every message with \Deleted
        self.forced = forced    # MOVE: no \Deleted needed


class Box:
    """One mailbox instance: (user, name, UIDVALIDITY)."""

    def __init__(self, key, kills):
        self.key = key
        self.kills = kills      # the Records of every DELETE/RENAME of its name
        self.uid_msg = {}                       # uid -> msgid, as first seen
        self.created = {}                       # uid -> Created (APPENDUID / COPYUID)
        self.deleted_adds = defaultdict(list)   # uid -> send times of possible \Deleted
        self.expunges = []
        self.flag_ops = defaultdict(list)       # uid -> [FlagOp]
        self.owners = []                        # (rid, uids): commands that may share a MODSEQ
        self.states = {}                        # (uid, modseq) -> flags seen
        self.max_modseq = {}                    # uid -> highest MODSEQ seen anywhere
        self.rw = []                            # [session, start, end] read-write selections
        self.recent = {}                        # uid -> session that was shown it \Recent
        self.bodies = {}                        # uid -> stored bytes of a delivered message
        self.heard_expunged = {}                # uid -> (session, how) first told it is gone

    def may_be_expunged(self, uid, before=INF):
        """Could an expunge sent before `before` have removed uid?"""
        created = self.created.get(uid)
        born = created.send if created else 0
        for r in list(self.kills):
            if r.send < before and (r.ack is None or r.ack > born):
                return True
        for e in list(self.expunges):
            if e.send >= before or (e.ack is not None and e.ack < born):
                continue
            if e.uids is not None and uid not in e.uids:
                continue
            if e.forced:
                return True
            end = e.ack if e.ack is not None else INF
            if any(t < end for t in self.deleted_adds.get(uid, ())):
                return True
        return False


class Violation:
    def __init__(self, prop, detail, box, session, time, epoch):
        self.prop = prop
        self.detail = detail
        self.box = box          # (user, name) or None
        self.session = session
        self.time = time
        self.epoch = epoch

    def __str__(self):
        where = " [%s %s]" % self.box if self.box else ""
        who = " (session %s)" % self.session if self.session else ""
        return "%s%s%s: %s" % (self.prop, where, who, self.detail)


class Model:
    def __init__(self, trace):
        self.trace = trace
        self.lock = threading.RLock()
        self.boxes = {}
        self.kills = defaultdict(list)    # (user, name) -> Records of DELETE/RENAME of it
        self.violations = []
        self.volatile = defaultdict(list)   # user -> volatile names believed to exist
        self.volatile_count = defaultdict(int)
        # (user, name) -> {msgid: [Record]}: the commands with an unknown outcome (or
        # answered NO) that may have stored the message there; one message can have
        # several (a partly committed APPEND, then a COPY of it back that failed)
        self.maybe_copied = defaultdict(lambda: defaultdict(list))
        # ids of the APPENDs, COPYs and MOVEs among those answered NO (and LMTP
        # deliveries refused): none of them may have taken effect
        self.refused = set()
        # (user, "INBOX") -> {msgid: Record}: LMTP deliveries answered 250 that no
        # checkpoint has found yet (their UIDs are known only once found)
        self.delivered = defaultdict(dict)
        self.notes = defaultdict(int)     # allowed but remarkable outcomes -> count
        self.stop = threading.Event()     # set on the first violation unless keep-going
        self.keep_going = False

    def box(self, user, name, uidvalidity):
        key = (user, name, int(uidvalidity))
        with self.lock:
            if key not in self.boxes:
                self.boxes[key] = Box(key, self.kills[(user, name)])
            return self.boxes[key]

    def violation(self, prop, detail, box=None, session=None):
        with self.lock:
            v = Violation(prop, detail, box, session, self.trace.clock, self.trace.epoch)
            self.violations.append(v)
            if not self.keep_going:
                self.stop.set()
            return v

    def new_volatile(self, user):
        with self.lock:
            self.volatile_count[user] += 1
            return "%s%d" % (VOLATILE_PREFIX, self.volatile_count[user])

    def note(self, what):
        with self.lock:
            self.notes[what] += 1

    def killed_since(self, user, name, since):
        """Was a DELETE or RENAME of (user, name) sent (before now) and not acknowledged
        before `since`?"""
        with self.lock:
            return any(r.ack is None or r.ack > since for r in self.kills[(user, name)])

    def stored(self, box, uid, msgid, body=None):
        """The bytes box's uid must have: the message, or for one delivered by LMTP trace
        headers and the message as first seen whole (body: a BODY[] just read), None
        while unknown."""
        want = message(msgid)
        if not delivered(msgid):
            return want
        with self.lock:
            if uid not in box.bodies and body is not None and body.endswith(want) and \
                    TRACE_HEADERS.fullmatch(body[:-len(want)]):
                box.bodies[uid] = body
            return box.bodies.get(uid)

    def size_wrong(self, box, uid, msgid, size):
        """Why RFC822.SIZE size is wrong for box's uid, or None."""
        full = self.stored(box, uid, msgid)
        if full is None and size > len(message(msgid)):
            return None
        want = len(full if full is not None else message(msgid))
        if size == want:
            return None
        return "RFC822.SIZE %d, message has %d%s" % (size, want, " and trace headers"
                                                     if delivered(msgid) else "")

    # ---- observations --------------------------------------------------------------------

    def saw_message(self, box, uid, msgid, session):
        """A UID was seen carrying msgid: a UID never changes its message."""
        with self.lock:
            known = box.uid_msg.setdefault(uid, msgid)
        if known != msgid:
            self.violation("uid-changed-message", "UIDVALIDITY %d UID %d was %s, now %s" %
                           (box.key[2], uid, known, msgid), box.key[:2], session)

    def saw_state(self, box, uid, modseq, flags, session):
        """A message seen with MODSEQ modseq and (if not None) flags: one MODSEQ is one
        state of a message."""
        with self.lock:
            if modseq > box.max_modseq.get(uid, 0):
                box.max_modseq[uid] = modseq
            if flags is None:
                return
            known = box.states.setdefault((uid, modseq), norm(flags))
        if known != norm(flags):
            self.violation("modseq-two-states",
                           "UID %d MODSEQ %d seen with flags %s and %s" %
                           (uid, modseq, sorted(known), sorted(norm(flags))),
                           box.key[:2], session)

    def saw_recent(self, box, uid, session):
        with self.lock:
            first = box.recent.setdefault(uid, session)
        if first != session:
            self.violation("recent-twice", "UID %d was \\Recent in sessions %s and %s" %
                           (uid, first, session), box.key[:2], session)

    def saw_expunged(self, box, uid, before, session, how):
        """uid was reported expunged in a response received before `before` (`how`: EXPUNGE,
        VANISHED or VANISHED (EARLIER)). A message a session saw expunged never shows
        again (UIDs are not reused): the checkpoints check that. Not for VANISHED
        (EARLIER), which may name UIDs of the client's range that were never used."""
        if how != "VANISHED (EARLIER)":
            with self.lock:
                box.heard_expunged.setdefault(uid, (session, how))
        if uid in box.created and not box.may_be_expunged(uid, before):
            self.violation("expunged-without-expunge",
                           "UID %d (%s) reported expunged (%s) but no EXPUNGE/MOVE could "
                           "have removed it" % (uid, box.uid_msg.get(uid), how),
                           box.key[:2], session)
