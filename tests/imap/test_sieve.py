"""Sieve on rbd (issue 11): scripts live in RADOS (`sieve = rbd:`, the sieve_rbd
Pigeonhole plugin), so a script managed through ManageSieve on one node is the one LMTP
runs on every node. Nodes V1 and V2 share the cluster; VM is Dovecot's mdbox with
Pigeonhole's own file storage, which answers every ManageSieve command of the same
sequence the same way."""

import base64
import re
import socket
import time

import pytest

from daemons import PASSWORD, Node, deliver
from imap_connection import quote, selected_state
from messages import message

pytestmark = pytest.mark.rbd_only("scripts in RADOS are the rbd plugin's")

FILTER = (b'require ["fileinto", "mailbox"];\r\n'
          b'if header :contains "subject" "sorted" {\r\n'
          b'  fileinto :create "Sorted";\r\n'
          b'}\r\n')
BROKEN = b'require "fileinto";\r\nfileinto "x"\r\n'   # missing ';'
MAX_SCRIPTS = 3     # sieve_quota_max_scripts on every node


class ManageSieve:
    """A ManageSieve (RFC 5804) session, logged in with SASL PLAIN."""

    def __init__(self, port, user):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.file = self.sock.makefile("rb")
        status, _ = self.response()                  # capabilities, then OK
        assert status.startswith("OK"), status
        plain = base64.b64encode(b"\0%s\0%s" % (user.encode(), PASSWORD.encode()))
        status, _ = self.command('AUTHENTICATE "PLAIN" "%s"' % plain.decode())
        assert status.startswith("OK"), status

    def command(self, line, literal=None):
        """(status line, data lines); a literal argument goes last, non-synchronizing."""
        data = line.encode()
        if literal is not None:
            data += b" {%d+}\r\n" % len(literal) + literal
        self.sock.sendall(data + b"\r\n")
        return self.response()

    def response(self):
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                raise EOFError("ManageSieve connection closed")
            text = line.rstrip(b"\r\n")
            literal = re.search(rb"\{(\d+)\+?\}$", text)
            if literal:                              # a string sent as a literal
                data = self.file.read(int(literal.group(1)))
                text = text[:literal.start()] + b'"' + data + b'"'
                self.file.readline()                 # the CRLF after it
            if re.match(rb"(OK|NO|BYE)\b", text):
                return text.decode(), lines
            if text:
                lines.append(data if literal and not text[:literal.start()] else text)

    def scripts(self):
        """{name: active} from LISTSCRIPTS."""
        status, lines = self.command("LISTSCRIPTS")
        assert status.startswith("OK"), status
        found = {}
        for line in lines:
            m = re.fullmatch(rb'"([^"]*)"( ACTIVE)?', line)
            assert m, line
            found[m.group(1).decode()] = bool(m.group(2))
        return found

    def close(self):
        try:
            self.command("LOGOUT")
        finally:
            self.sock.close()


@pytest.fixture(scope="module")
def sieve_nodes(work_dir, cluster):
    started = []
    try:
        for name, storage in (("V1", "rbd"), ("V2", "rbd"), ("VM", "mdbox")):
            started.append(Node.start(name, work_dir / ("node-" + name.lower()), storage,
                                      cluster, sieve="on",
                                      plugin_setting="sieve_quota_max_scripts=%d" % MAX_SCRIPTS))
        yield started
    finally:
        for node in started:
            node.stop()


def sieve_user(nodes, prefix):
    user = "%s%d" % (prefix, time.monotonic_ns() % 10**9)
    for node in nodes:
        node.add_user(user)
    return user


def subjects(node, user, mailbox):
    """The subjects in `mailbox` as a new session on `node` sees them, sorted; None if
    the mailbox does not exist."""
    conn = node.login(user)
    try:
        resp = conn.command("EXAMINE", quote(mailbox))
        if resp.status != "OK":
            return None
        if selected_state(resp)["exists"] == 0:
            return []
        fetched = conn.ok("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        return sorted(m.decode() for m in
                      re.findall(rb"Subject: ([^\r\n]*)", b"".join(fetched.untagged)))
    finally:
        conn.close()


def test_a_script_set_through_one_node_filters_deliveries_on_every_node(sieve_nodes):
    node_1, node_2, _ = sieve_nodes
    user = sieve_user((node_1, node_2), "sv")
    sieve = ManageSieve(node_1.sieve_port, user)
    assert sieve.command('PUTSCRIPT "filter"', FILTER)[0].startswith("OK")
    assert sieve.command('SETACTIVE "filter"')[0].startswith("OK")
    sieve.close()

    deliver(node_2, [user], message(subject="sorted on 2"))
    deliver(node_1, [user], message(subject="sorted on 1"))
    deliver(node_2, [user], message(subject="plain"))
    for node in (node_1, node_2):
        assert subjects(node, user, "Sorted") == ["sorted on 1", "sorted on 2"], node.name
        assert subjects(node, user, "INBOX") == ["plain"], node.name

    # Deactivated on node 2: node 1's LMTP stops filtering at once.
    sieve = ManageSieve(node_2.sieve_port, user)
    assert sieve.scripts() == {"filter": True}
    assert sieve.command('SETACTIVE ""')[0].startswith("OK")
    sieve.close()
    deliver(node_1, [user], message(subject="sorted, unfiltered"))
    assert subjects(node_2, user, "INBOX") == ["plain", "sorted, unfiltered"]


# Each step: the command, its literal, and what to compare: the status word with its
# response code (NO (ACTIVE) ...), and LISTSCRIPTS afterwards.
STEPS = [
    ('PUTSCRIPT "one"', FILTER),
    ('PUTSCRIPT "broken"', BROKEN),
    ('CHECKSCRIPT', BROKEN),
    ('CHECKSCRIPT', FILTER),
    ('SETACTIVE "one"', None),
    ('SETACTIVE "missing"', None),
    ('PUTSCRIPT "two"', b"keep;\r\n"),
    ('DELETESCRIPT "one"', None),
    ('RENAMESCRIPT "one" "two"', None),
    ('RENAMESCRIPT "one" "first"', None),
    ('GETSCRIPT "first"', None),
    ('GETSCRIPT "one"', None),
    ('PUTSCRIPT "first"', b"discard;\r\n"),
    ('SETACTIVE ""', None),
    ('DELETESCRIPT "first"', None),
    ('DELETESCRIPT "first"', None),
    ('PUTSCRIPT "a"', b"keep;\r\n"),
    ('PUTSCRIPT "b"', b"keep;\r\n"),
    ('PUTSCRIPT "c"', b"keep;\r\n"),     # one more than MAX_SCRIPTS with "two"
    ('PUTSCRIPT "a"', b"discard;\r\n"),  # replacing one is not one more
    ('HAVESPACE "d" 10', None),
    ('HAVESPACE "b" 10', None),
]


def outcome(status):
    """The status word and response code: 'NO (ACTIVE)', 'OK', 'NO'."""
    m = re.match(r"(OK|NO|BYE)( \([^)]*\))?", status)
    return m.group(1) + (m.group(2) or "")


def test_managesieve_answers_as_on_mdbox_and_every_node_sees_each_change(sieve_nodes):
    node_1, node_2, node_m = sieve_nodes
    rbd_user = sieve_user((node_1, node_2), "sr")
    mdbox_user = sieve_user((node_m,), "sm")
    rbd, other, mdbox = (ManageSieve(node_1.sieve_port, rbd_user),
                         ManageSieve(node_2.sieve_port, rbd_user),
                         ManageSieve(node_m.sieve_port, mdbox_user))
    for line, literal in STEPS:
        got = rbd.command(line, literal)
        want = mdbox.command(line, literal)
        assert (outcome(got[0]), got[1]) == (outcome(want[0]), want[1]), line
        assert rbd.scripts() == mdbox.scripts(), line
        assert other.scripts() == rbd.scripts(), "node 2 after " + line
    for session in (rbd, other, mdbox):
        session.close()
