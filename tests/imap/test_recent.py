"""\\Recent (RFC 3501 2.3.2): a new message is \\Recent in exactly one session, the first
read-write session to be notified of it, on whichever node that session runs; EXAMINE and
STATUS never take it away. Response.lines() drops \\Recent, so these tests read the raw
responses. Every expectation here is what Dovecot's mdbox answers (run with
RBD_IMAP_STORAGE=mdbox, and RBD_IMAP_SINGLE_NODE=1 for the two-node ones)."""

import re

import pytest

from imap_connection import parse, recent_count
from messages import message

two_nodes = pytest.mark.two_nodes


def numbered(i):
    return message(subject="message %d" % i)


def search(conn, criteria):
    """The UIDs UID SEARCH answers."""
    resp = conn.ok("UID SEARCH", criteria)
    found = [line.decode() for line in resp.untagged if line.startswith(b"* SEARCH")]
    assert len(found) == 1, resp
    return [int(uid) for uid in found[0].split(" ")[2:]]


def recent_flags(conn):
    """{uid: has the \\Recent flag} from FETCH FLAGS, as the client sees the flags."""
    resp = conn.ok("UID FETCH 1:* (FLAGS)")
    out = {}
    for line in resp.untagged:
        m = re.match(rb"\* \d+ FETCH ", line)
        if m:
            items = parse(line[m.end():])[0]
            d = {items[i].upper(): items[i + 1] for i in range(0, len(items), 2)}
            out[int(d["UID"])] = "\\Recent" in d["FLAGS"]
    return out


def status_recent(conn, mailbox="INBOX"):
    resp = conn.ok("STATUS", mailbox, "(RECENT)")
    m = re.search(r"\(RECENT (\d+)\)", resp.untagged[0].decode())
    return int(m.group(1))


def test_select_after_append_from_another_session_shows_them_recent_once(connect, node_a,
                                                                       user):
    appender = connect(node_a, user)
    for i in (1, 2):
        appender.append("INBOX", numbered(i))
    first = connect(node_a, user)
    assert recent_count(first.select("INBOX")) == 2
    assert recent_flags(first) == {1: True, 2: True}
    assert search(first, "RECENT") == [1, 2]
    # The first session took them: nobody else sees them as recent, nor does the
    # first session after selecting again.
    second = connect(node_a, user)
    assert recent_count(second.select("INBOX")) == 0
    assert recent_flags(second) == {1: False, 2: False}
    assert recent_count(first.select("INBOX")) == 0


def test_append_into_the_selected_mailbox_is_recent_in_the_appending_session(connect,
                                                                           node_a, user):
    conn = connect(node_a, user)
    assert recent_count(conn.select("INBOX")) == 0
    resp = conn.append("INBOX", numbered(1))
    assert recent_count(resp) == 1
    resp = conn.append("INBOX", numbered(2))
    assert recent_count(resp) == 2
    assert recent_flags(conn) == {1: True, 2: True}
    other = connect(node_a, user)
    assert recent_count(other.select("INBOX")) == 0


def test_copy_into_the_selected_mailbox_is_recent_in_the_copying_session(connect, node_a,
                                                                       user):
    conn = connect(node_a, user)
    conn.append("INBOX", numbered(1))
    conn.append("INBOX", numbered(2))
    assert recent_count(conn.select("INBOX")) == 2
    resp = conn.ok("COPY 1:2 INBOX")
    assert recent_count(resp) == 4
    assert search(conn, "RECENT") == [1, 2, 3, 4]
    other = connect(node_a, user)
    assert recent_count(other.select("INBOX")) == 0


def test_search_new_recent_and_old(connect, node_a, user):
    appender = connect(node_a, user)
    appender.append("INBOX", numbered(1), flags=["\\Seen"])
    appender.append("INBOX", numbered(2))
    appender.append("INBOX", numbered(3))
    first = connect(node_a, user)
    first.select("INBOX")
    assert search(first, "RECENT") == [1, 2, 3]
    assert search(first, "NEW") == [2, 3]
    assert search(first, "OLD") == []
    assert search(first, "NOT RECENT") == []
    second = connect(node_a, user)
    second.select("INBOX")
    assert search(second, "RECENT") == []
    assert search(second, "NEW") == []
    assert search(second, "OLD") == [1, 2, 3]


def test_status_recent_counts_what_no_session_has_taken_and_takes_nothing(connect, node_a,
                                                                         user):
    appender = connect(node_a, user)
    appender.append("INBOX", numbered(1))
    appender.append("INBOX", numbered(2))
    watcher = connect(node_a, user)
    assert status_recent(watcher) == 2
    assert status_recent(watcher) == 2
    first = connect(node_a, user)
    assert recent_count(first.select("INBOX")) == 2
    assert status_recent(watcher) == 0
    appender.append("INBOX", numbered(3))
    assert status_recent(watcher) == 1


def test_examine_never_takes_recent(connect, node_a, user):
    appender = connect(node_a, user)
    appender.append("INBOX", numbered(1))
    reader = connect(node_a, user)
    assert recent_count(reader.ok("EXAMINE INBOX")) == 1
    assert search(reader, "RECENT") == [1]
    assert recent_count(reader.ok("EXAMINE INBOX")) == 1
    first = connect(node_a, user)
    assert recent_count(first.select("INBOX")) == 1
    assert recent_flags(first) == {1: True}


@two_nodes
def test_a_message_appended_on_b_is_recent_in_exactly_one_session_of_either_node(
        connect, node_a, node_b, user):
    on_a = connect(node_a, user)
    on_b = connect(node_b, user)
    appender = connect(node_b, user)
    on_a.select("INBOX")
    on_b.select("INBOX")
    # Message 1: the session on A syncs first and takes it. (IMAP reports RECENT only
    # when the count changes.)
    appender.append("INBOX", numbered(1))
    assert recent_count(on_a.ok("NOOP")) == 1
    assert recent_count(on_b.ok("NOOP")) is None
    assert recent_flags(on_a) == {1: True}
    assert recent_flags(on_b) == {1: False}
    # Message 2: the session on B syncs first and takes it.
    appender.append("INBOX", numbered(2))
    assert recent_count(on_b.ok("NOOP")) == 1
    assert recent_count(on_a.ok("NOOP")) is None
    assert search(on_a, "RECENT") == [1]
    assert search(on_b, "RECENT") == [2]


@two_nodes
def test_a_message_taken_on_another_node_is_not_recent_for_any_session_here(
        connect, node_a, node_b, user):
    on_a = connect(node_a, user)
    reader_a = connect(node_a, user)
    # Node A caches the mailbox before the message arrives.
    assert recent_count(on_a.select("INBOX")) == 0
    assert recent_count(reader_a.ok("EXAMINE INBOX")) == 0
    connect(node_b, user).append("INBOX", numbered(1))
    assert recent_count(connect(node_b, user).select("INBOX")) == 1
    assert recent_count(on_a.ok("NOOP")) is None
    assert recent_flags(on_a) == {1: False}
    assert recent_count(connect(node_a, user).select("INBOX")) == 0
    reader_a.ok("NOOP")
    assert search(reader_a, "RECENT") == []
    assert status_recent(connect(node_a, user)) == 0


@two_nodes
def test_examine_on_one_node_leaves_recent_for_a_select_on_the_other(connect, node_a,
                                                                    node_b, user):
    connect(node_a, user).append("INBOX", numbered(1))
    assert recent_count(connect(node_a, user).ok("EXAMINE INBOX")) == 1
    assert status_recent(connect(node_a, user)) == 1
    on_b = connect(node_b, user)
    assert recent_count(on_b.select("INBOX")) == 1
    assert status_recent(connect(node_a, user)) == 0


@two_nodes
def test_dsync_s_first_recent_uid_leaves_only_the_later_messages_recent(connect, node_a,
                                                                      node_b, user):
    """dsync (here its doveadm front end) carries the source's first recent UID: the
    messages below it were recent in a session there, so none is recent here, on any
    node; the mailbox's FIRST RECENT UID then matches the source's."""
    appender = connect(node_a, user)
    for i in (1, 2, 3):
        appender.append("INBOX", numbered(i))
    node_a.doveadm_ok("mailbox", "update", "-u", user, "--min-next-uid", "4",
                      "--min-first-recent-uid", "3", "INBOX")
    assert status_recent(connect(node_b, user)) == 1
    first = connect(node_b, user)
    assert recent_count(first.select("INBOX")) == 1
    assert search(first, "RECENT") == [3]
