"""A SELECT on the node where another session is deleting the same mailbox (issue #8, CI
stress seed 68556: "Panic: ... mail_index_write: assertion failed: (file->hdr.prev_file_seq
== hdr->log_file_seq)").

Dovecot's DELETE marks the node's index cache of the mailbox deleted, then has the
cluster drop the mailbox, all under the mailbox list's lock. A SELECT of this node that
found the mark in between took the cache for a stale one and replaced its files under the
DELETE, whose writes then failed ("indexid changed"), and whose log rotation made the
SELECT's own sync panic. gdb holds the deleting process at the cluster delete, after the
mark, so that the SELECT comes in between every time."""

import re
import shutil
import time

import pytest

from gdb_control import hold_at, process_lines, session_pid
from imap_connection import ImapError
from messages import numbered

pytestmark = [
    pytest.mark.two_nodes,
    pytest.mark.rbd_only("holds node A's imap process in gdb inside a DELETE"),
    pytest.mark.skipif(shutil.which("gdb") is None, reason="needs gdb"),
]

# How long the SELECT is given to run into the DELETE before the DELETE goes on.
STALL = 2


def hold_at_cluster_delete(pid, out):
    """gdb stopping the process where the DELETE asks the cluster to drop the mailbox: by
    then Dovecot has marked the cache deleted and holds the list lock. Prints HELD there."""
    return hold_at(pid, "rbd_delete_mailbox", out)


def prepare(connect, node_a, user):
    """A mailbox with one message whose cache node A has built; a session on A to delete
    it and another one, with their pids."""
    other = connect(node_a, user)
    other.ok("CREATE", "doomed")
    other.append("doomed", numbered(1))
    other.ok("EXAMINE", "doomed")
    other.ok("UNSELECT")
    other_pid = session_pid(node_a, user)
    deleter = connect(node_a, user)
    return other, other_pid, deleter, session_pid(node_a, user, other_than=(other_pid,))


def assert_no_failure(node, pids):
    lines = [line for pid in pids for line in process_lines(node, pid)]
    assert [line for line in lines if re.search(r"Panic:|Error:|Fatal:|indexid", line)] == []


def test_a_select_during_a_delete_on_the_same_node_finds_the_mailbox_gone(
        connect, node_a, node_b, user, tmp_path):
    selector, selector_pid, deleter, pid = prepare(connect, node_a, user)
    gdb = hold_at_cluster_delete(pid, tmp_path / "gdb.out")
    try:
        tag = deleter.next_tag()
        deleter.send("%s DELETE doomed\r\n" % tag)
        gdb.wait_for("HELD", 30)
        select_tag = selector.next_tag()
        selector.send("%s SELECT doomed\r\n" % select_tag)
        time.sleep(STALL)
        gdb.send("detach\n")
    finally:
        gdb.close()
    assert deleter.wait_tagged(tag).status == "OK"
    # As on mdbox, where the SELECT finds the index marked deleted.
    answer = selector.wait_tagged(select_tag)
    assert answer.status == "NO", answer.tagged
    selector.ok("NOOP")
    assert connect(node_b, user).command("SELECT", "doomed").status == "NO"
    selector.ok("CREATE", "doomed")
    selector.append("doomed", numbered(2))
    assert selector.ok("SELECT", "doomed").lines("1 EXISTS") == ["* 1 EXISTS"]
    assert_no_failure(node_a, [pid, selector_pid])


def test_a_delete_killed_halfway_leaves_the_mailbox_usable_on_its_node(
        connect, node_a, node_b, user, tmp_path):
    """The mark of a DELETE whose process died before the cluster dropped the mailbox:
    the mailbox is still there (node B shows it), so node A rebuilds its cache. Dovecot
    expunges a mailbox's messages before it marks it: the mailbox is empty now."""
    other, other_pid, deleter, pid = prepare(connect, node_a, user)
    gdb = hold_at_cluster_delete(pid, tmp_path / "gdb.out")
    try:
        deleter.send("%s DELETE doomed\r\n" % deleter.next_tag())
        gdb.wait_for("HELD", 30)
        gdb.send("kill\n")
    finally:
        gdb.close()
    with pytest.raises(ImapError):
        deleter.command("NOOP")
    assert other.ok("SELECT", "doomed").lines("0 EXISTS") == ["* 0 EXISTS"]
    on_b = connect(node_b, user)
    assert on_b.ok("SELECT", "doomed").lines("0 EXISTS") == ["* 0 EXISTS"]
    on_b.append("doomed", numbered(2))
    assert other.ok("NOOP").lines("1 EXISTS") == ["* 1 EXISTS"]
    assert list(other.fetch("1:*", "(FLAGS)")) == [2]
    assert_no_failure(node_a, [other_pid])
