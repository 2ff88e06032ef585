"""QRESYNC against a node whose index cache was built after the client's MODSEQ.

Dovecot computes VANISHED from its local transaction log. A cache built in
one go from the RADOS records (first use of a node, or a deleted cache dir)
has no expunge history, so it must not claim to cover MODSEQs older than
itself: Dovecot then reports every missing UID of the client's range. Changes
after the cache was built are in its log, and reported exactly.
"""

import shutil

import pytest

from imap_connection import select_qresync, selected_state
from messages import numbered


def _expunge(conn, uid):
    conn.ok("UID STORE %d +FLAGS.SILENT (\\Deleted)" % uid)
    conn.ok("UID EXPUNGE %d" % uid)


@pytest.mark.rbd_only("needs a second node with its own, rebuilt index cache")
def test_qresync_from_before_a_rebuilt_cache_reports_every_vanished_uid(
        connect, node_a, node_b, user):
    on_a = connect(node_a, user)
    for i in range(1, 5):
        on_a.append("INBOX", numbered(i))
    on_a.ok("ENABLE QRESYNC")
    state = selected_state(on_a.ok("SELECT", "INBOX"))
    _expunge(on_a, 2)
    on_a.ok("LOGOUT")
    shutil.rmtree(node_b.cache_dir(user), ignore_errors=True)
    on_b = connect(node_b, user)
    on_b.ok("ENABLE QRESYNC")
    resp = select_qresync(on_b, state)
    assert resp.lines("VANISHED") == ["* VANISHED (EARLIER) 2"]


@pytest.mark.rbd_only("needs a second node with its own, rebuilt index cache")
def test_qresync_after_a_rebuilt_cache_reports_only_later_expunges(
        connect, node_a, node_b, user):
    on_a = connect(node_a, user)
    for i in range(1, 7):
        on_a.append("INBOX", numbered(i))
    on_a.ok("ENABLE QRESYNC")
    on_a.ok("SELECT", "INBOX")
    _expunge(on_a, 2)
    shutil.rmtree(node_b.cache_dir(user), ignore_errors=True)
    on_b = connect(node_b, user)
    on_b.ok("ENABLE QRESYNC")
    state = selected_state(on_b.ok("SELECT", "INBOX"))
    on_b.ok("LOGOUT")
    _expunge(on_a, 4)
    on_a.ok("UID STORE 5 +FLAGS.SILENT (\\Flagged)")
    on_b = connect(node_b, user)
    on_b.ok("ENABLE QRESYNC")
    resp = select_qresync(on_b, state)
    # \Deleted on 4, its expunge, then \Flagged on 5: one MODSEQ each.
    highest = state["highestmodseq"] + 3
    assert resp.lines("VANISHED") == ["* VANISHED (EARLIER) 4"]
    assert [line for line in resp.lines() if " FETCH " in line] == [
        "* 3 FETCH (UID 5 FLAGS (\\Flagged) MODSEQ (%d))" % highest]
    assert selected_state(resp)["highestmodseq"] == highest
