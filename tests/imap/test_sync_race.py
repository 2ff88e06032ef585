"""Processes of one node working on the same mailbox cache, one of them held in gdb so that
another one acts at one chosen point every time (issue 9; CI stress checker, growth profile,
seed 86365: "IMAP session state is inconsistent, please relogin", then MODSEQs going back).

- A sync reads the cluster before it locks the node's cache, so that a stalled OSD never
  holds the lock; a full sync's snapshot may then be older than the cache it locks.
- A change read from the cluster that does not apply to the cache (only a bug does that)
  gets the cache rebuilt, with the cluster's MODSEQs.
- A STORE .SILENT writes its own op into its index transaction, which must commit under
  the lock."""

import shutil
import time

import pytest

from gdb_control import hold_at, process_lines, session_pid
from imap_connection import ImapError, selected_state
from messages import numbered

pytestmark = [
    pytest.mark.two_nodes,
    pytest.mark.rbd_only("holds node A's imap process in gdb inside a sync"),
    pytest.mark.skipif(shutil.which("gdb") is None, reason="needs gdb"),
]


def hold_after_the_read(pid, out):
    """gdb stopping the process at its \\Recent claim, which a SELECT's sync makes after
    reading the cluster and before locking the cache. Prints HELD there."""
    return hold_at(pid, "rbd_index_claim_recent", out)


def box_on_b(connect, node_b, user, count):
    """A session of node B that created "box" with messages 1..count."""
    writer = connect(node_b, user)
    writer.ok("CREATE", "box")
    for n in range(1, count + 1):
        writer.append("box", numbered(n))
    return writer


def uids(conn, mailbox):
    conn.ok("EXAMINE", mailbox)
    found = conn.ok("UID SEARCH ALL").lines()
    return [int(u) for u in found[0].split()[2:]] if found else []


def test_a_full_sync_from_an_older_snapshot_keeps_what_the_cache_gained_meanwhile(
        connect, node_a, node_b, user, tmp_path):
    writer = box_on_b(connect, node_b, user, 3)
    # Node A has no cache of "box": the first SELECT there lists every record.
    held = connect(node_a, user)
    gdb = hold_after_the_read(session_pid(node_a, user), tmp_path / "gdb.out")
    try:
        tag = held.next_tag()
        held.send("%s SELECT box\r\n" % tag)
        gdb.wait_for("HELD", 30)
        writer.append("box", numbered(4))
        other = connect(node_a, user)
        assert selected_state(other.ok("SELECT", "box"))["exists"] == 4
        gdb.send("detach\n")
    finally:
        gdb.close()
    assert held.wait_tagged(tag).status == "OK"
    # Nothing was expunged, from the cache or the cluster: no session of node A hears of
    # one, a new one sees all four messages, as node B does, and a change to the fourth
    # reaches both sessions of node A.
    assert other.ok("NOOP").lines("") == []
    assert [line for line in held.ok("NOOP").lines() if "EXPUNGE" in line] == []
    assert uids(connect(node_a, user), "box") == uids(writer, "box") == [1, 2, 3, 4]
    writer.ok("SELECT", "box")
    writer.ok("UID STORE 4 +FLAGS (\\Flagged)")
    for conn in (other, held):
        conn.ok("NOOP")
        assert "\\Flagged" in conn.fetch("4", "(FLAGS)")[4]["FLAGS"]


def modseqs(conn, mailbox):
    """{uid: (flags, MODSEQ)} of every message, as a client sees them."""
    conn.ok("EXAMINE", mailbox, "(CONDSTORE)")
    fetched = conn.fetch("1:*", "(FLAGS MODSEQ)")
    conn.ok("UNSELECT")
    return {uid: (sorted(f["FLAGS"]), f["MODSEQ"]) for uid, f in fetched.items()}


def test_a_cache_that_disagrees_with_the_cluster_is_rebuilt_with_the_clusters_modseqs(
        connect, node_a, node_b, user, tmp_path):
    # Only a bug makes a change read from the cluster not apply to a node's cache (the
    # stale snapshot above did). The cache is then rebuilt, and must come back with the
    # cluster's MODSEQs, as on every other node: a reset in place counted every message
    # at the old cache's HIGHESTMODSEQ or above (seed 86365: "MODSEQ 7 is on UIDs [6, 7,
    # 8, 10]"). gdb makes the next change name a message the cache does not have.
    writer = box_on_b(connect, node_b, user, 5)
    writer.ok("SELECT", "box")
    writer.ok("UID STORE 2 +FLAGS (\\Flagged)")
    writer.ok("UID STORE 4 +FLAGS (\\Answered)")
    session = connect(node_a, user)
    session.ok("SELECT", "box")
    pid = session_pid(node_a, user)
    gdb = hold_at(pid, "rbd_index_changes", tmp_path / "gdb.out",
                  "set $changes_r = (char **) $rdx\n")
    try:
        writer.ok("UID STORE 3 +FLAGS (\\Seen)")
        tag = session.next_tag()
        session.send("%s NOOP\r\n" % tag)
        gdb.wait_for("HELD", 30)
        # rbd-storage.h: struct rbd_changes starts with its ops, struct rbd_change has
        # its updated messages at offset 24, struct rbd_flag_state starts with the UID.
        gdb.send("finish\n"
                 "set $op = *(char **) *$changes_r\n"
                 "set *(unsigned int *) *(char **) ($op + 24) = 99\n"
                 "echo CHANGED\\n\n"
                 "detach\n")
        gdb.wait_for("CHANGED", 30)
        try:
            session.wait_tagged(tag)
            ended = False
        except ImapError:
            ended = True
    finally:
        gdb.close()
    assert ended, "the session went on with a cache that disagrees with the cluster"
    assert "rbd: index cache disagrees with the cluster" in "\n".join(
        process_lines(node_a, pid))
    assert modseqs(connect(node_a, user), "box") == modseqs(writer, "box")


def test_a_silent_store_and_another_process_of_the_node_sync_one_after_the_other(
        connect, node_a, node_b, user, tmp_path):
    # A STORE .SILENT writes its own op into the session's hidden index transaction, so
    # that the op is not echoed back to it. That transaction committed without the cache's
    # lock, and another process of the node could sync the op and a newer one first: the
    # transaction then wrote a cache position older than the cache (the next sync replayed
    # the newer op's append onto the message the cache had already, and the cache
    # disagreed with the cluster), and counted its messages above the op's MODSEQ (fault
    # soak, seed 1217), or set flags another op had taken away again. It now commits under
    # the lock. gdb holds the STORE just before its index commit while node B takes the
    # flag away and appends, and another session of node A asks for a sync.
    writer = box_on_b(connect, node_b, user, 2)
    silent = connect(node_a, user)
    silent.ok("SELECT", "box", "(CONDSTORE)")
    silent_pid = session_pid(node_a, user)
    other = connect(node_a, user)
    other.ok("SELECT", "box")
    gdb = hold_at(silent_pid, "index_transaction_commit", tmp_path / "gdb.out")
    try:
        tag = silent.next_tag()
        silent.send("%s STORE 1 +FLAGS.SILENT (\\Flagged)\r\n" % tag)
        gdb.wait_for("HELD", 30)
        writer.ok("SELECT", "box")
        writer.ok("UID STORE 1 -FLAGS (\\Flagged)")
        writer.append("box", numbered(3))
        noop = other.next_tag()
        other.send("%s NOOP\r\n" % noop)
        time.sleep(1)   # the other session's sync, unless it waits for the STORE's lock
        gdb.send("detach\n")
    finally:
        gdb.close()
    assert silent.wait_tagged(tag).status == "OK"
    assert "* 3 EXISTS" in other.wait_tagged(noop).lines()
    # A new session of node A sees what node B does. Its open replaces a cache counted
    # above the cluster's HIGHESTMODSEQ, which would end the node's other sessions: both
    # go on, and the STORE's own session is told node B's flag change, not its own.
    assert modseqs(connect(node_a, user), "box") == modseqs(writer, "box")
    writer.append("box", numbered(4))
    lines = silent.ok("NOOP").lines()
    assert "* 4 EXISTS" in lines and not [line for line in lines if "Flagged" in line], lines
    assert "* 4 EXISTS" in other.ok("NOOP").lines()
