"""POP3 (stable UIDLs, RETR byte-equal, DELE) and LMTP delivery, on one node and across
the two nodes."""

import poplib
import smtplib

import pytest

from daemons import PASSWORD, deliver
from imap_connection import selected_state
from messages import numbered


def pop3(node, user):
    conn = poplib.POP3("127.0.0.1", node.pop3_port, timeout=20)
    conn.user(user)
    conn.pass_(PASSWORD)
    return conn


def uidls(conn):
    resp, lines, _ = conn.uidl()
    assert resp.startswith(b"+OK")
    return dict(line.decode().split(" ") for line in lines)


@pytest.fixture
def inbox_of_three(imap):
    msgs = [numbered(i, size=100 * i) for i in range(1, 4)]
    for m in msgs:
        imap.append("INBOX", m)
    validity = selected_state(imap.ok("EXAMINE", "INBOX"))["uidvalidity"]
    imap.ok("UNSELECT")
    return msgs, validity


# ---- POP3 --------------------------------------------------------------------------------

def test_pop3_stat_and_list_report_exact_sizes(node_a, user, inbox_of_three):
    msgs, _ = inbox_of_three
    conn = pop3(node_a, user)
    try:
        assert conn.stat() == (3, sum(map(len, msgs)))
        resp, lines, _ = conn.list()
        assert lines == [b"%d %d" % (i + 1, len(m)) for i, m in enumerate(msgs)]
    finally:
        conn.quit()


def test_pop3_uidl_is_uid_and_uidvalidity_in_hex_and_stable_across_sessions(
        node_a, user, inbox_of_three):
    _, validity = inbox_of_three
    conn = pop3(node_a, user)
    first = uidls(conn)
    conn.quit()
    assert first == {str(i): "%08x%08x" % (i, validity) for i in (1, 2, 3)}
    conn = pop3(node_a, user)
    assert uidls(conn) == first
    conn.quit()


def test_pop3_retr_and_top_return_the_message(node_a, user, inbox_of_three):
    msgs, _ = inbox_of_three
    conn = pop3(node_a, user)
    try:
        for i, m in enumerate(msgs, 1):
            resp, lines, octets = conn.retr(i)
            assert b"\r\n".join(lines) + b"\r\n" == m
        head = msgs[1].split(b"\r\n\r\n")[0]
        resp, lines, _ = conn.top(2, 1)
        assert lines == head.split(b"\r\n") + [b"", b"Message number 2."]
    finally:
        conn.quit()


def test_pop3_dele_then_quit_expunges_and_other_uidls_stay(node_a, user, inbox_of_three, imap):
    conn = pop3(node_a, user)
    before = uidls(conn)
    conn.dele(2)
    conn.quit()
    conn = pop3(node_a, user)
    assert uidls(conn) == {"1": before["1"], "2": before["3"]}
    conn.quit()
    imap.ok("EXAMINE", "INBOX")
    assert sorted(imap.fetch("1:*", "(UID)")) == [1, 3]


def test_pop3_rset_undoes_dele(node_a, user, inbox_of_three):
    conn = pop3(node_a, user)
    conn.dele(1)
    conn.rset()
    conn.quit()
    conn = pop3(node_a, user)
    assert conn.stat()[0] == 3
    conn.quit()


def test_pop3_retr_marks_the_message_seen(node_a, user, inbox_of_three, imap):
    conn = pop3(node_a, user)
    conn.retr(1)
    conn.quit()
    imap.ok("EXAMINE", "INBOX")
    assert {u: f["FLAGS"] for u, f in imap.fetch("1:*", "(FLAGS)").items()} == {
        1: ["\\Seen"], 2: [], 3: []}


@pytest.mark.two_nodes
def test_pop3_uidls_are_equal_on_both_nodes(node_a, node_b, user, inbox_of_three):
    a = pop3(node_a, user)
    b = pop3(node_b, user)
    try:
        assert uidls(a) == uidls(b)
        assert a.stat() == b.stat()
    finally:
        a.quit()
        b.quit()


# ---- LMTP --------------------------------------------------------------------------------

def test_lmtp_delivers_into_inbox_with_return_path_and_delivered_to(node_a, user, imap):
    msg = numbered(1, size=2000)
    deliver(node_a, [user], msg)
    imap.ok("EXAMINE", "INBOX")
    body = imap.fetch("1", "(BODY.PEEK[])")[1]["BODY[]"]
    assert body.endswith(msg)
    trace = body[:-len(msg)].decode()
    assert trace.startswith("Return-Path: <sender@example.org>\r\n"
                            "Delivered-To: %s@example.org\r\n" % user)
    assert "\r\nReceived: from " in "\r\n" + trace


def test_lmtp_delivers_one_copy_to_every_recipient(node_a, new_user, connect):
    users = [new_user(), new_user()]
    deliver(node_a, users, numbered(5))
    for u in users:
        conn = connect(node_a, u)
        assert conn.ok("STATUS INBOX (MESSAGES)").lines() == ["* STATUS INBOX (MESSAGES 1)"]


def test_lmtp_refuses_an_unknown_recipient(node_a):
    with smtplib.LMTP("127.0.0.1", node_a.lmtp_port, timeout=20) as lmtp:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            lmtp.sendmail("s@example.org", ["nosuchuser@example.org"], numbered(1))
    code, text = refused.value.recipients["nosuchuser@example.org"]
    assert (code, text) == (550, b"5.1.1 <nosuchuser@example.org> User doesn't exist: "
                                 b"nosuchuser@example.org")


@pytest.mark.two_nodes
def test_lmtp_delivery_on_node_a_is_readable_on_node_b(node_a, node_b, user, connect):
    msg = numbered(1, size=3000)
    deliver(node_a, [user], msg)
    on_b = connect(node_b, user)
    on_b.ok("EXAMINE", "INBOX")
    assert on_b.fetch("1", "(BODY.PEEK[])")[1]["BODY[]"].endswith(msg)
