"""Two processes of one node syncing the same mailbox cache, one held in gdb between its
RADOS read and its lock of the cache, so that the other syncs newer changes in between
every time (issue 9; CI fault checker, growth profile, seed 86365: "IMAP session state is
inconsistent, please relogin", then MODSEQs going back).

A sync reads the cluster before it locks the node's cache, so that a stalled OSD never
holds the lock. A full sync reads every record, and the cache may have moved past that
snapshot by the time the lock is taken. The full sync used to expunge from the cache every
message the snapshot lacked before it checked for that: the messages another process had
just synced in were dropped from this node's cache for good (the cache's MODSEQ said it
had them), and the next change to one of them did not apply, which reset the cache and
ended every session of the node on that mailbox."""

import shutil

import pytest

from gdb_control import Gdb, session_pid
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
    gdb = Gdb("""set pagination off
set confirm off
attach %d
break rbd_index_claim_recent
commands
echo HELD\\n
end
continue
""" % pid, out)
    gdb.wait_for("Breakpoint 1 at", 60)
    return gdb


def uids(conn, mailbox):
    conn.ok("EXAMINE", mailbox)
    found = conn.ok("UID SEARCH ALL").lines()
    return [int(u) for u in found[0].split()[2:]] if found else []


def test_a_full_sync_from_an_older_snapshot_keeps_what_the_cache_gained_meanwhile(
        connect, node_a, node_b, user, tmp_path):
    writer = connect(node_b, user)
    writer.ok("CREATE", "box")
    for n in range(1, 4):
        writer.append("box", numbered(n))
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
    # 8, 10]"). gdb makes the next change not apply once.
    writer = connect(node_b, user)
    writer.ok("CREATE", "box")
    for n in range(1, 6):
        writer.append("box", numbered(n))
    writer.ok("SELECT", "box")
    writer.ok("UID STORE 2 +FLAGS (\\Flagged)")
    writer.ok("UID STORE 4 +FLAGS (\\Answered)")
    session = connect(node_a, user)
    session.ok("SELECT", "box")
    gdb = Gdb("""set pagination off
set confirm off
attach %d
tbreak rbd_sync_op_applies
commands
return (char)0
echo REFUSED\\n
continue
end
continue
""" % session_pid(node_a, user), tmp_path / "gdb.out")
    try:
        gdb.wait_for("Temporary breakpoint 1 at", 60)
        writer.ok("UID STORE 3 +FLAGS (\\Seen)")
        try:
            session.command("NOOP")
            ended = False
        except ImapError:
            ended = True
        gdb.wait_for("REFUSED", 10)
    finally:
        gdb.close()
    assert ended, "the session went on with a cache that disagrees with the cluster"
    assert modseqs(connect(node_a, user), "box") == modseqs(writer, "box")
