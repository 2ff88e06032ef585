"""FETCH and SEARCH end with a FAST sync (MAILBOX_SYNC_FLAG_FAST). As on Dovecot's own
storages (index_mailbox_want_full_sync) and imapc, it reads nothing from the cluster within
MAILBOX_FULL_SYNC_INTERVAL (5 s) of the mailbox's last full sync, unless the session itself
changed the mailbox since (a FETCH that sets \\Seen): the node's cache learns its own
changes only from a sync. Another node's change shows at the next command that is not FAST
(NOOP, IDLE, STORE, SELECT), or at a FAST one after the interval (issue 13). And a
command's closing sync does not look the mailbox's name up again: once per command."""

import time

import pytest

from conftest import STORAGE, new_user_name
from daemons import Node, wait_for
from gdb_control import session_pid
from imap_connection import parse_fetch
from messages import numbered

two_nodes = pytest.mark.two_nodes
FULL_SYNC_INTERVAL = 5   # Dovecot's MAILBOX_FULL_SYNC_INTERVAL, seconds


@pytest.fixture(scope="module")
def node_r(work_dir, cluster):
    """A node that logs every RADOS op of its sessions, and their ends."""
    with Node.running("R", work_dir / "node-r", STORAGE, cluster,
                      log_debug="event=rbd_request_finished OR event=rbd_session_finished") as node:
        yield node


def selected(connect, node, user, messages):
    conn = connect(node, user)
    for n in range(messages):
        conn.append("INBOX", numbered(n))
    conn.ok("SELECT", "INBOX")
    return conn


def flags_reported(resp, seq):
    """Every FLAGS the response's untagged FETCHes gave message `seq`, in order."""
    items = [parse_fetch([line]).get(seq, {}) for line in resp.untagged]
    return [item["FLAGS"] for item in items if "FLAGS" in item]


@pytest.mark.rbd_only("counts the OSD's reads")
def test_a_fetch_or_search_soon_after_a_sync_reads_nothing_from_the_cluster(
        connect, node_a, user, cluster):
    conn = selected(connect, node_a, user, 3)
    conn.ok("NOOP")
    reads_before, _ = cluster.osd_reads()
    conn.fetch("1:3", "(FLAGS RFC822.SIZE INTERNALDATE)")
    conn.ok("SEARCH UNSEEN")
    conn.ok("UID FETCH 1:* (FLAGS)")
    reads, _ = cluster.osd_reads()
    assert reads - reads_before == 0, "%d OSD reads" % (reads - reads_before)
    conn.logout()


def test_a_fetch_that_sets_seen_is_seen_by_the_next_command(connect, node_a, user):
    conn = selected(connect, node_a, user, 2)
    conn.ok("NOOP")
    resp = conn.ok("FETCH 1 BODY[]")
    assert flags_reported(resp, 1) == [["\\Seen"]], resp.untagged
    fetched = conn.fetch("1:2", "(FLAGS)")
    assert {uid: f["FLAGS"] for uid, f in fetched.items()} == {1: ["\\Seen"], 2: []}
    assert b"1" in conn.ok("SEARCH SEEN").untagged[0]
    conn.logout()


@two_nodes
def test_another_nodes_change_shows_at_the_next_full_sync_or_after_the_interval(
        connect, node_a, node_b, user):
    on_a = selected(connect, node_a, user, 2)
    on_b = connect(node_b, user)
    on_b.ok("SELECT", "INBOX")
    on_b.ok("STORE 1 +FLAGS.SILENT (\\Flagged)")
    # NOOP is a full sync: it reports the change at once, whatever the interval.
    assert flags_reported(on_a.ok("NOOP"), 1) == [["\\Flagged"]]
    on_b.ok("STORE 2 +FLAGS.SILENT (\\Answered)")
    time.sleep(FULL_SYNC_INTERVAL + 1)
    # The FETCH answers from what A had, and its FAST sync, past the interval, reads
    # the cluster and reports the change after it (a single mdbox node has it at once).
    assert flags_reported(on_a.ok("FETCH 2 FLAGS"), 2)[-1] == ["\\Answered"]
    on_a.logout()
    on_b.logout()


@pytest.mark.rbd_only("counts the storage's RADOS ops")
def test_a_store_looks_the_mailbox_name_up_once(connect, node_r):
    # imap refreshes ioloop_timeval at the end of command_exec(), before the command's
    # own sync: checked once per ioloop_timeval, the name was read twice per STORE. A
    # session logs the ops the core recorded at its next call or at its end, so two whole
    # sessions are compared: one with the STORE, one without, each (by its pid) counted
    # once its rbd_session_finished line (logged after its last ops) is there.
    user = new_user_name("n")
    node_r.add_user(user)
    filler = selected(connect, node_r, user, 2)
    seen_pids = [session_pid(node_r, user)]
    filler.logout()
    log = node_r.path / "dovecot.log"

    def session_lookups(*commands):
        conn = connect(node_r, user)
        pid = session_pid(node_r, user, other_than=seen_pids)
        seen_pids.append(pid)
        conn.ok("SELECT", "INBOX")
        conn.ok("NOOP")
        for command in commands:
            conn.ok(command)
        conn.logout()

        def session_lines():
            return [line for line in log.read_text(errors="replace").splitlines()
                    if "imap(%s)<%d>" % (user, pid) in line]
        assert wait_for(lambda: any("RADOS ops (" in line for line in session_lines()), 10)
        return sum(1 for line in session_lines() if "RADOS read of mailbox list" in line)

    assert session_lookups("STORE 1 +FLAGS (\\Flagged)") - session_lookups() == 1
