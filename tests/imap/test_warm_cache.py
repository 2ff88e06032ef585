"""A new imap process on a node whose index cache is warm reads no records from RADOS.

Sizes, dates and GUIDs live in the node's Dovecot index (the rbd-msg record extension,
doc/design.md "Body lifetime after expunge"), so SELECT and FETCH 1:* (FLAGS RFC822.SIZE
INTERNALDATE) of a second process come from there: its sync reads the mailbox state and
the change log since the cache's MODSEQ, and nothing else. Counted two ways: the plugin's
`rbd_records_listed` debug event (node W logs it: log_debug = event=rbd_records_listed),
and the reads and bytes the OSD served meanwhile (its perf counters; nothing else runs).
"""

import time

import pytest

from conftest import STORAGE, new_user_name
from daemons import Node, wait_for
from messages import numbered

MESSAGES = 100


@pytest.fixture(scope="module")
def node_w(work_dir, cluster):
    with Node.running("W", work_dir / "node-w", STORAGE, cluster,
                      log_debug="event=rbd_records_listed") as node:
        yield node


def _log_lines(node, user, text):
    log = (node.path / "dovecot.log").read_text(errors="replace")
    return [line for line in log.splitlines() if "imap(%s)" % user in line and text in line]


def _session(connect, node, user):
    """SELECT and FETCH everything in a new process: its FETCH answers."""
    logged_out = len(_log_lines(node, user, "Logged out"))
    conn = connect(node, user)
    conn.ok("SELECT", "INBOX")
    answers = conn.fetch("1:*", "(FLAGS RFC822.SIZE INTERNALDATE)")
    conn.ok("LOGOUT")
    assert wait_for(lambda: len(_log_lines(node, user, "Logged out")) > logged_out, 10)
    return answers


@pytest.mark.rbd_only("counts the RADOS ops and the plugin's listings")
def test_a_second_process_with_a_warm_cache_lists_no_records(connect, node_a, node_w,
                                                            cluster, report):
    user = new_user_name()
    for node in (node_a, node_w):
        node.add_user(user)
    on_a = connect(node_a, user)
    for i in range(1, MESSAGES + 1):
        on_a.append("INBOX", numbered(i, size=100 + i))
    on_a.ok("SELECT", "INBOX")
    on_a.ok("UID STORE 1:10 +FLAGS (\\Seen)")
    expected = on_a.fetch("1:*", "(FLAGS RFC822.SIZE INTERNALDATE)")

    assert _session(connect, node_w, user) == expected
    listed = _log_lines(node_w, user, "rbd: listed")
    assert listed and listed[-1].endswith("rbd: listed %d records" % MESSAGES), \
        "the first process on a new cache lists the records once"

    reads_before, bytes_before = cluster.osd_reads()
    started = time.monotonic()
    assert _session(connect, node_w, user) == expected
    elapsed = time.monotonic() - started
    reads, read_bytes = (a - b for a, b in zip(cluster.osd_reads(), (reads_before,
                                                                     bytes_before)))
    assert _log_lines(node_w, user, "rbd: listed") == listed, \
        "a process with a warm cache listed the records"
    report("warm cache, new process: LOGIN SELECT FETCH 1:* LOGOUT", elapsed)
    print("second process: %d RADOS reads, %d bytes" % (reads, read_bytes))
    # The access probe's stats, the name lookup, the open's state read, the syncs after
    # SELECT and after FETCH (state and change log since the cache's MODSEQ): a few
    # hundred bytes. The records alone take more than 100 bytes each.
    assert reads <= 8
    assert read_bytes < MESSAGES * 20
