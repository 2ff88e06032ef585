"""A small raw IMAP client for tests that assert exact server responses.

imaplib hides the wire: it has no MULTIAPPEND, no literal8 (BINARY), no IDLE, and it
reorders untagged responses into a dict. ImapConnection sends exactly the command given
and returns every untagged response verbatim (literals inline), plus the tagged line.
"""

import re
import socket
import time

DEFAULT_TIMEOUT = 20.0
_LITERAL_AT_END = re.compile(rb"~?\{(\d+)\+?\}\r\n$")
# Dovecot 2.3 replaces a final '.' of most tagged replies with the command's timing:
# "Append completed (0.004 + 0.001 + 0.002 secs)." -- dropped, so Response.text is
# "Append completed", and "Quota exceeded (mailbox for user is full)" for a NO.
_TIMING = re.compile(r" \(\d+\.\d+(?: \+ \d+\.\d+)* secs\)\.$")


class ImapError(AssertionError):
    """A failed command, or the server closed the connection; `untagged` holds what the
    command received before that (a '* BYE ...', say)."""

    def __init__(self, message, untagged=()):
        super().__init__(message)
        self.untagged = list(untagged)


class Literal:
    """A command argument sent as a literal: {n} (synchronizing, waits for '+'), or
    ~{n} (literal8, RFC 3516) when binary is set."""

    def __init__(self, data, binary=False):
        self.data = data if isinstance(data, bytes) else data.encode()
        self.binary = binary


class Response:
    """The outcome of one command: untagged responses as bytes (CRLF stripped, literals
    inline), the tagged status (OK/NO/BAD) and the text after it."""

    def __init__(self, untagged, status, text):
        self.untagged = untagged
        self.status = status
        self.text = _TIMING.sub("", text)

    @property
    def tagged(self):
        return "%s %s" % (self.status, self.text)

    def lines(self, prefix=""):
        """Untagged responses (decoded) that start with `* <prefix>`, without `* n RECENT`
        and with the \\Recent flag removed from flag lists: recent-ness is
        session-specific (which session first saw a message), so no test can expect it on
        a shared mailbox, and IMAP4rev2 dropped it."""
        want = "* " + prefix
        out = []
        for u in self.untagged:
            line = u.decode("utf-8", "replace")
            if line.startswith(want) and not _RECENT_COUNT.match(line):
                out.append(drop_recent(line))
        return out

    def __repr__(self):
        return "Response(%r, %r)" % (self.untagged, self.tagged)


class ImapConnection:
    def __init__(self, port, host="127.0.0.1", timeout=DEFAULT_TIMEOUT, source=None):
        """source: a local address to connect from (any 127.x.y.z works on Linux)."""
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.buf = b""
        self.tag_counter = 0
        self.greeting = self.read_response()

    # ---- wire ------------------------------------------------------------------------

    def _read_line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ImapError("connection closed by server; pending: %r" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line + b"\r\n"

    def _read_exact(self, n):
        # Chunks joined once: appending to bytes would copy a large literal per chunk.
        chunks, have = [self.buf], len(self.buf)
        while have < n:
            chunk = self.sock.recv(max(65536, min(n - have, 1 << 20)))
            if not chunk:
                self.buf = b"".join(chunks)
                raise ImapError("connection closed inside a literal")
            chunks.append(chunk)
            have += len(chunk)
        data = b"".join(chunks)
        self.buf = data[n:]
        return data[:n]

    def read_response(self):
        """One complete server response (a line plus its literals), CRLF stripped."""
        out = b""
        while True:
            line = self._read_line()
            out += line
            m = _LITERAL_AT_END.search(line)
            if not m:
                return out[:-2]
            out += self._read_exact(int(m.group(1)))

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def next_tag(self):
        self.tag_counter += 1
        return "a%04d" % self.tag_counter

    # ---- commands --------------------------------------------------------------------

    def command(self, *parts):
        """Send one command built from parts (str, bytes, or Literal) separated by
        spaces; wait for the tagged response. Untagged responses that arrive before it
        are returned in the Response."""
        tag = self.next_tag()
        pending = tag.encode()
        untagged = []
        for part in parts:
            if isinstance(part, Literal):
                pending += b" " + (b"~" if part.binary else b"") + b"{%d}\r\n" % len(part.data)
                self.send(pending)
                pending = b""
                while True:
                    resp = self.read_response()
                    if resp.startswith(b"+"):
                        break
                    if resp.startswith(tag.encode() + b" "):
                        return self._tagged(untagged, resp, tag)
                    untagged.append(resp)
                pending = part.data
            else:
                part = part if isinstance(part, bytes) else part.encode()
                pending += (b" " if pending else b"") + part
        self.send(pending + b"\r\n")
        return self.wait_tagged(tag, untagged)

    def wait_tagged(self, tag, untagged=None):
        untagged = [] if untagged is None else untagged
        while True:
            try:
                resp = self.read_response()
            except ImapError as e:
                raise ImapError(str(e), untagged) from None
            if resp.startswith(tag.encode() + b" "):
                return self._tagged(untagged, resp, tag)
            untagged.append(resp)

    @staticmethod
    def _tagged(untagged, resp, tag):
        status, _, text = resp[len(tag) + 1:].decode("utf-8", "replace").partition(" ")
        return Response(untagged, status, text)

    def ok(self, *parts):
        """command() that must succeed."""
        resp = self.command(*parts)
        if resp.status != "OK":
            raise ImapError("%s -> %s" % (_show(parts), resp.tagged))
        return resp

    def login(self, user, password):
        return self.ok("LOGIN", quote(user), quote(password))

    def select(self, mailbox, *params):
        return self.ok("SELECT", quote(mailbox), *params)

    def append(self, mailbox, message, flags=None, date=None):
        """APPEND one message; returns the Response (APPENDUID in its text)."""
        parts = ["APPEND", quote(mailbox)]
        if flags is not None:
            parts.append("(%s)" % " ".join(flags))
        if date is not None:
            parts.append(quote(date))
        parts.append(Literal(message))
        return self.ok(*parts)

    def fetch(self, sequence, items, uid=True):
        """(UID) FETCH; returns {uid or seq: {ITEM: value}} parsed with parse()."""
        resp = self.ok(*(["UID"] if uid else []), "FETCH", sequence, items)
        return parse_fetch(resp.untagged, key="UID" if uid else None)

    def logout(self):
        try:
            self.command("LOGOUT")
        except (OSError, ImapError):
            pass
        self.close()

    def close(self):
        self.sock.close()

    # ---- IDLE ------------------------------------------------------------------------

    def idle_start(self):
        self.idle_tag = self.next_tag()
        self.send(self.idle_tag + " IDLE\r\n")
        resp = self.read_response()
        if not resp.startswith(b"+"):
            raise ImapError("IDLE not accepted: %r" % resp)
        return resp

    def idle_wait(self, predicate, timeout):
        """Read untagged responses while idling until predicate(resp) is true; returns
        (the matching response, seconds waited from this call), or (None, timeout) after
        timeout. Called right after the change's tagged OK, that is the push latency."""
        t0 = time.monotonic()
        try:
            while True:
                left = timeout - (time.monotonic() - t0)
                if left <= 0:
                    return None, timeout
                self.sock.settimeout(left)
                try:
                    resp = self.read_response()
                except socket.timeout:
                    return None, timeout
                if predicate(resp):
                    return resp, time.monotonic() - t0
        finally:
            self.sock.settimeout(DEFAULT_TIMEOUT)

    def idle_done(self):
        self.send("DONE\r\n")
        return self.wait_tagged(self.idle_tag)


# ---- response parsing ----------------------------------------------------------------

def quote(s):
    """An IMAP quoted string."""
    return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"')


def _show(parts):
    return " ".join("{literal %d}" % len(p.data) if isinstance(p, Literal) else
                    (p.decode() if isinstance(p, bytes) else p) for p in parts)


_ATOM_END = b" ()[]\r\n"


def parse(data):
    """Parse IMAP response data into Python values: a list for (...), bytes for quoted
    strings and literals, None for NIL, str for every other atom (numbers included).
    A section like BODY[HEADER.FIELDS (A B)]<0> stays one atom."""
    pos = 0
    stack = [[]]
    n = len(data)
    while pos < n:
        c = data[pos:pos + 1]
        if c == b" ":
            pos += 1
        elif c == b"(":
            stack.append([])
            pos += 1
        elif c == b")":
            done = stack.pop()
            stack[-1].append(done)
            pos += 1
        elif c == b'"':
            pos += 1
            out = bytearray()
            while data[pos:pos + 1] != b'"':
                if data[pos:pos + 1] == b"\\":
                    pos += 1
                out += data[pos:pos + 1]
                pos += 1
            pos += 1
            stack[-1].append(bytes(out))
        elif c in (b"{", b"~") and re.match(rb"~?\{\d+\}\r\n", data[pos:]):
            m = re.match(rb"~?\{(\d+)\}\r\n", data[pos:])
            pos += m.end()
            length = int(m.group(1))
            stack[-1].append(data[pos:pos + length])
            pos += length
        else:
            start = pos
            depth = 0
            while pos < n:
                ch = data[pos:pos + 1]
                if ch == b"[":
                    depth += 1
                elif ch == b"]":
                    depth -= 1
                elif depth == 0 and ch in (b" ", b"(", b")", b"\r", b"\n"):
                    break
                pos += 1
            atom = data[start:pos].decode("utf-8", "replace")
            stack[-1].append(None if atom == "NIL" else atom)
    if len(stack) != 1:
        raise ValueError("unbalanced parentheses in %r" % data[:200])
    return stack[0]


_RECENT_COUNT = re.compile(r"\* \d+ RECENT$")
_RECENT = re.compile(r"(?<=\()\\Recent(?: |(?=\)))| \\Recent(?=[ )])")


def drop_recent(line):
    """line without the \\Recent flag (see Response.lines)."""
    return _RECENT.sub("", line)


def parse_fetch(untagged, key=None):
    """{seq (or the value of item `key`): {ITEM: value}} for the FETCH responses;
    FLAGS without \\Recent (see Response.lines). A server may report some items of a
    message in a FETCH of their own (an implicit \\Seen, say) without the key item:
    those are merged by sequence number."""
    by_seq = {}
    for resp in untagged:
        m = re.match(rb"\* (\d+) FETCH ", resp)
        if not m:
            continue
        items = parse(resp[m.end():])[0]
        d = {items[i].upper(): items[i + 1] for i in range(0, len(items), 2)}
        if "FLAGS" in d:
            d["FLAGS"] = [f for f in d["FLAGS"] if f != "\\Recent"]
        by_seq.setdefault(int(m.group(1)), {}).update(d)
    if not key:
        return by_seq
    return {int(d[key]): d for d in by_seq.values() if key in d}


def response_code(text):
    """The response code of a reply text as a list of atoms:
    '[APPENDUID 38 1:3] Append completed' -> ['APPENDUID', '38', '1:3']; [] if none."""
    if not text.startswith("["):
        return []
    return text[1:text.index("]")].split(" ")


def uid_set(text):
    """The UIDs of an IMAP sequence set without '*': '1:3,7' -> [1, 2, 3, 7]."""
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition(":")
        lo, hi = int(lo), int(hi or lo)
        out += range(min(lo, hi), max(lo, hi) + 1)
    return out


def after_expunges(before, lines):
    """The UIDs left after applying `* n EXPUNGE` responses, in order, to the mailbox
    whose UIDs were `before` (a server may report several in any order)."""
    left = list(before)
    for line in lines:
        star, seq, word = line.split(" ")
        assert (star, word) == ("*", "EXPUNGE"), line
        del left[int(seq) - 1]
    return left


def recent_count(resp):
    """The `* n RECENT` of a response; None when it has none."""
    for line in resp.untagged:
        m = re.match(rb"\* (\d+) RECENT$", line)
        if m:
            return int(m.group(1))
    return None


def status_items(resp):
    """{item: number} (lowercase names) of the response's first untagged STATUS."""
    line = resp.lines("STATUS")[0]
    words = line[line.rindex("(") + 1:line.rindex(")")].split()
    return {name.lower(): int(value) for name, value in zip(words[::2], words[1::2])}


def examined_status(conn, mailbox):
    """What EXAMINE (CONDSTORE), SEARCH UNSEEN and FETCH RFC822.SIZE report of the items
    of a STATUS (MESSAGES RECENT UNSEEN UIDNEXT UIDVALIDITY HIGHESTMODSEQ SIZE), as
    status_items() gives them; claims nothing."""
    resp = conn.ok("EXAMINE", quote(mailbox), "(CONDSTORE)")
    state = selected_state(resp)
    unseen = conn.ok("SEARCH UNSEEN").lines("SEARCH")[0].split()[2:]
    sizes = conn.fetch("1:*", "(RFC822.SIZE)") if state["exists"] else {}
    conn.ok("UNSELECT")
    return {"messages": state["exists"], "recent": recent_count(resp), "unseen": len(unseen),
            "uidnext": state["uidnext"], "uidvalidity": state["uidvalidity"],
            "highestmodseq": state["highestmodseq"],
            "size": sum(int(f["RFC822.SIZE"]) for f in sizes.values())}


def selected_state(resp):
    """What SELECT/EXAMINE reported: exists, recent, flags, permanentflags, uidvalidity,
    uidnext, unseen, highestmodseq (absent keys were not reported)."""
    state = {}
    for line in resp.lines():
        words = line.split(" ")
        if line.startswith("* FLAGS "):
            state["flags"] = parse(line[len("* FLAGS "):].encode())[0]
        elif len(words) == 3 and words[2] in ("EXISTS", "RECENT"):
            state[words[2].lower()] = int(words[1])
        elif line.startswith("* OK ["):
            code = response_code(line[len("* OK "):])
            if code[0] == "PERMANENTFLAGS":
                state["permanentflags"] = parse(" ".join(code[1:]).encode())[0]
            elif code[0] in ("UIDVALIDITY", "UIDNEXT", "UNSEEN", "HIGHESTMODSEQ"):
                state[code[0].lower()] = int(code[1])
    return state


def select_qresync(conn, state, mailbox="INBOX"):
    """SELECT with QRESYNC from what an earlier SELECT reported (selected_state()): the
    tagged OK's response, VANISHED (EARLIER) and the changed messages' FETCHes included."""
    return conn.ok("SELECT", mailbox, "(QRESYNC (%d %d))" % (state["uidvalidity"],
                                                              state["highestmodseq"]))
