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
from imap_connection import Literal, parse_fetch
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


class SessionOps:
    """Counts the RADOS ops that whole sessions of one user on node R logged. A session
    logs the ops the core recorded at its next call or at its end, so whole sessions are
    compared, each (by its pid) counted once its rbd_session_finished line (logged after
    its last ops) is there."""

    def __init__(self, connect, node, prefix):
        self.connect, self.node = connect, node
        self.user = new_user_name(prefix)
        node.add_user(self.user)
        filler = selected(connect, node, self.user, 2)
        self.seen_pids = [session_pid(node, self.user)]
        filler.logout()

    def count(self, what, commands=(), meanwhile=None):
        """How many `RADOS <what>` lines (e.g. "read of mailbox list") a session logged
        that selects INBOX, NOOPs, then sends `commands` (each a string, or a tuple of
        parts); `meanwhile(n)` runs before the n-th of them."""
        conn = self.connect(self.node, self.user)
        pid = session_pid(self.node, self.user, other_than=self.seen_pids)
        self.seen_pids.append(pid)
        conn.ok("SELECT", "INBOX")
        conn.ok("NOOP")
        for n, command in enumerate(commands):
            if meanwhile:
                meanwhile(n)
            conn.ok(*command) if isinstance(command, tuple) else conn.ok(command)
        conn.logout()
        log = self.node.path / "dovecot.log"

        def session_lines():
            return [line for line in log.read_text(errors="replace").splitlines()
                    if "imap(%s)<%d>" % (self.user, pid) in line]
        assert wait_for(lambda: any("RADOS ops (" in line for line in session_lines()), 10)
        return sum(1 for line in session_lines() if "RADOS %s" % what in line)

    def reads(self, commands, baseline=(), meanwhile=None):
        """(index reads, mailbox list reads) that `commands` cost over `baseline`."""
        return tuple(self.count(what, commands, meanwhile) - self.count(what, baseline)
                     for what in ("read of index", "read of mailbox list"))


@pytest.mark.rbd_only("counts the storage's RADOS ops")
def test_writes_to_the_selected_mailbox_read_no_mailbox_list(connect, node_r):
    # A STORE, EXPUNGE or APPEND checks the mailbox's name within its guarded op, from
    # the state the op is guarded by (rbd_index_guard_name): no read of the list. It was
    # one per command before, and two when the check was stamped with ioloop_timeval,
    # which imap refreshes at the end of command_exec(), before the command's own sync.
    ops = SessionOps(connect, node_r, "n")
    lookups = "read of mailbox list"
    base = ops.count(lookups)
    for commands in (["STORE 1 +FLAGS (\\Flagged)"],
                     ["STORE 1 +FLAGS (\\Deleted)", "EXPUNGE"],
                     [("APPEND", "INBOX", Literal(numbered(12)))]):
        assert ops.count(lookups, commands) - base == 0, commands


@pytest.mark.rbd_only("counts the storage's RADOS ops")
def test_the_sync_closing_a_store_learns_it_without_a_read(connect, node_r, node_a):
    # The STORE's guarded op starts from the state the session's cache is at, so the
    # sync that closes the command learns the change from the session's own op: one
    # index read per STORE (its records), not two. When another node wrote in between,
    # the op starts from a later state than the node's cache, and the sync reads the
    # change log (a session on the same node would have brought the cache there).
    ops = SessionOps(connect, node_r, "o")
    reads = "read of index"
    base = ops.count(reads)
    stores = ["STORE 1 +FLAGS (\\Flagged)", "STORE 2 +FLAGS (\\Seen)"]
    assert ops.count(reads, stores) - base == 2
    node_a.add_user(ops.user)
    other = connect(node_a, ops.user)
    other.ok("SELECT", "INBOX")
    assert ops.count(reads, stores, lambda n: other.ok("STORE %d -FLAGS (\\Flagged \\Seen)"
                                                       % (n + 1))) - base == 4
    other.logout()


@pytest.mark.rbd_only("counts the storage's RADOS ops")
def test_a_message_stored_again_or_expunged_reads_nothing_more(connect, node_r, node_a):
    # The record the first STORE read (and wrote) is known at the state its op left:
    # the next STORE and the EXPUNGE plan from it and only write (KnownRecords). Another
    # node's change in between fails the write's guard: that STORE reads, and keeps it,
    # and its closing sync reads that change from the log.
    ops = SessionOps(connect, node_r, "q")
    reads = "read of index"
    base = ops.count(reads)
    commands = ["STORE 1 +FLAGS (\\Flagged)", "STORE 1 +FLAGS (\\Seen)",
                "STORE 1 +FLAGS.SILENT (\\Deleted)", "EXPUNGE"]
    assert ops.count(reads, commands) - base == 1
    node_a.add_user(ops.user)
    other = connect(node_a, ops.user)
    other.ok("SELECT", "INBOX")
    assert ops.count(reads, commands[:2], lambda n: n == 1 and other.ok(
        "STORE 1 +FLAGS (\\Answered)")) - base == 3
    other.ok("NOOP")
    assert sorted(other.fetch("1:*", "(FLAGS)", uid=False)[1]["FLAGS"]) == [
        "\\Answered", "\\Flagged", "\\Seen"]
    other.logout()


@pytest.mark.rbd_only("counts the storage's RADOS ops")
def test_an_append_to_the_selected_mailbox_reads_no_index(connect, node_r):
    # imap APPENDs to the selected mailbox through the selected mailbox instance, whose
    # state the append's guarded op starts from, and the closing sync learns the append
    # from that op: no index read at all (one per APPEND before, the closing sync's).
    # Its \Recent claim is in the append's own op (rbd_index_append_claiming): one index
    # write per APPEND, where the closing sync's claim was one more.
    ops = SessionOps(connect, node_r, "p")
    appends = [("APPEND", "INBOX", Literal(numbered(n))) for n in (10, 11)]
    for what, cost in (("read of index", 0), ("write of index", 2)):
        assert ops.count(what, appends) - ops.count(what) == cost, what


@two_nodes
@pytest.mark.rbd_only("counts the storage's RADOS ops")
def test_a_status_of_the_index_state_reads_the_state_alone(connect, node_r, node_a):
    # MESSAGES, RECENT, UNSEEN, UIDNEXT, UIDVALIDITY, HIGHESTMODSEQ and SIZE are all in
    # the index's state, so a STATUS of them reads that state, whatever the mailbox's
    # size and however far behind this node's cache is: it does not sync it. And the
    # state names the mailbox (doc/design.md, "Names in the state"), so a name the node
    # has looked up before needs no read of the mailbox list: one read per STATUS.
    ops = SessionOps(connect, node_r, "s")
    node_a.add_user(ops.user)
    elsewhere = connect(node_a, ops.user)
    elsewhere.ok("CREATE", "Other")
    items = "(MESSAGES RECENT UNSEEN UIDNEXT UIDVALIDITY HIGHESTMODSEQ SIZE)"
    status = [("STATUS", "Other", items)]
    assert ops.reads(status * 2, status) == (1, 0)
    assert ops.reads(status * 2, status,
                     lambda n: elsewhere.append("Other", numbered(n))) == (1, 0)
    for n in range(50):
        elsewhere.append("Other", numbered(n))
    assert ops.reads(status * 2, status) == (1, 0)

    # Renames on the other node: node R's hint that "Other" leads to that mailbox is
    # stale at once, and is never trusted.
    on_r = connect(node_r, ops.user)
    for old, new in (("Other", "Moved"), ("Moved", "Other")):
        elsewhere.ok("RENAME", old, new)
        assert on_r.command("STATUS", old, "(MESSAGES)").tagged.startswith("NO ")
        assert (on_r.ok("STATUS", new, items).lines()
                == elsewhere.ok("STATUS", new, items).lines())
    # A new mailbox under the old name is another mailbox.
    elsewhere.ok("RENAME", "Other", "Moved")
    elsewhere.ok("CREATE", "Other")
    assert on_r.ok("STATUS", "Other", "(MESSAGES)").lines() == ["* STATUS Other (MESSAGES 0)"]
    assert ops.reads(status * 2, status) == (1, 0)
    on_r.logout()
    elsewhere.logout()


@pytest.mark.rbd_only("counts the storage's RADOS ops")
def test_a_list_return_status_reads_the_list_once_and_one_state_per_mailbox(connect, node_r):
    # Each listed mailbox is opened while the listing's iteration runs: its name is
    # looked up in that listing, not read again (issue 13: ops per command).
    ops = SessionOps(connect, node_r, "l")
    setup = connect(node_r, ops.user)
    # Not one of the sessions counted: its login line could otherwise stand in for
    # that of a counted session not logged yet.
    ops.seen_pids.append(session_pid(node_r, ops.user, other_than=ops.seen_pids))
    list_status = [("LIST", '""', '"*"', "RETURN", "(STATUS (MESSAGES UNSEEN))")]
    for n in range(3):
        setup.ok("CREATE", "f%02d" % n)
    index_3, list_3 = ops.reads(list_status)
    for n in range(3, 12):
        setup.ok("CREATE", "f%02d" % n)
    index_12, list_12 = ops.reads(list_status)
    setup.logout()
    assert (index_3, index_12) == (3, 12)   # INBOX is selected: its view answers
    assert list_12 == list_3 <= 3, (list_3, list_12)
