"""QRESYNC against a node whose index cache was built after the client's MODSEQ.

Dovecot computes VANISHED from its local transaction log. A cache built in
one go from the RADOS records (first use of a node, or a deleted cache dir)
has no expunge history, yet its log reads as covering older MODSEQs, so the
UIDs expunged before the cache existed are not reported. Known gap of the
plugin: the test pins the correct answer and fails loudly (strict xfail)
once it is fixed, so the marker cannot outlive the bug.
"""

import shutil

import pytest

from imap_connection import selected_state
from messages import numbered


@pytest.mark.rbd_only("needs a second node with its own, rebuilt index cache")
@pytest.mark.xfail(strict=True, reason="known gap: a rebuilt cache has no expunge history "
                   "and Dovecot's log-based VANISHED then reports nothing older")
def test_qresync_from_before_a_rebuilt_cache_reports_every_vanished_uid(
        connect, node_a, node_b, user):
    on_a = connect(node_a, user)
    for i in range(1, 5):
        on_a.append("INBOX", numbered(i))
    on_a.ok("ENABLE QRESYNC")
    state = selected_state(on_a.ok("SELECT", "INBOX"))
    on_a.ok("UID STORE 2 +FLAGS.SILENT (\\Deleted)")
    on_a.ok("EXPUNGE")
    on_a.ok("LOGOUT")
    shutil.rmtree(node_b.cache_dir(user), ignore_errors=True)
    on_b = connect(node_b, user)
    on_b.ok("ENABLE QRESYNC")
    resp = on_b.ok("SELECT", "INBOX", "(QRESYNC (%d %d))" % (state["uidvalidity"],
                                                             state["highestmodseq"]))
    assert resp.lines("VANISHED") == ["* VANISHED (EARLIER) 2"]
