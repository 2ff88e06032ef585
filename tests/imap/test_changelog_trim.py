"""A node whose cache fell behind the trimmed change log (doc/design.md, "The change log
trims itself").

Every commit trims the mailbox's change log in RADOS to rbd_changelog_max_entries MODSEQs
(set to WINDOW for these users). Node B's cache (and a session on B) stops at some MODSEQ,
node A then writes more changes than the window holds, so B can no longer replay the log:
it lists every record once. What B's clients see must still be exact: the same UIDs, flags
and HIGHESTMODSEQ as on A, and QRESYNC from before the floor answers with every UID that no
longer exists (as after a rebuilt cache), which is exactly what mdbox answers when the
client's state predates every expunge. MODSEQs are the same on both nodes: a message B's
catch-up could only count above its MODSEQ gets a new one from the cluster
(doc/design.md, "A node behind the floor").
"""

import pytest

from imap_connection import parse_fetch, select_qresync, selected_state, uid_set
from messages import numbered

WINDOW = 8
FIRST = 12


@pytest.fixture
def small_log_user(new_user):
    return new_user(settings={"rbd_changelog_max_entries": WINDOW})


def _expunge(conn, uid):
    conn.ok("UID STORE %d +FLAGS.SILENT (\\Deleted)" % uid)
    conn.ok("UID EXPUNGE %d" % uid)


def _many_changes(conn, flags):
    """More changes than the log's window, made through `conn` (INBOX selected): flags,
    a keyword, expunges, appends, and a message appended and expunged again. Updates the
    model `flags` ({uid: set of flags}); returns the UIDs expunged."""
    conn.ok("UID STORE 1:3 +FLAGS.SILENT (\\Seen)")
    conn.ok("UID STORE 4 +FLAGS.SILENT ($label1)")
    conn.ok("UID STORE 8 +FLAGS.SILENT (\\Flagged)")
    for uid in (1, 2, 3):
        flags[uid].add("\\Seen")
    flags[4].add("$label1")
    flags[8].add("\\Flagged")
    expunged = [5, 6, 7]
    for uid in expunged:
        _expunge(conn, uid)
        del flags[uid]
    for n in range(FIRST + 1, FIRST + 4):
        conn.append("INBOX", numbered(n))
        flags[n] = set()
    conn.ok("UID STORE 13 +FLAGS.SILENT (\\Answered)")
    flags[13].add("\\Answered")
    conn.append("INBOX", numbered(99))
    _expunge(conn, FIRST + 4)
    return expunged + [FIRST + 4]


def _flags_and_modseqs(conn):
    return {uid: (set(d["FLAGS"]), int(d["MODSEQ"][0]))
            for uid, d in conn.fetch("1:*", "(FLAGS MODSEQ)").items()}


def _assert_same_as(on_b, on_a):
    """B shows what A shows, MODSEQs included (A first syncs what B's catch-up wrote)."""
    on_a.ok("NOOP")
    assert _flags_and_modseqs(on_b) == _flags_and_modseqs(on_a)
    status = "STATUS INBOX (HIGHESTMODSEQ MESSAGES UIDNEXT)"
    assert on_b.ok(status).lines("STATUS") == on_a.ok(status).lines("STATUS")


def _vanished(resp):
    uids = []
    for line in resp.lines("VANISHED"):
        uids += uid_set(line.split(" ")[-1])
    return sorted(uids)


def _fill(conn):
    for i in range(1, FIRST + 1):
        conn.append("INBOX", numbered(i))
    return {uid: set() for uid in range(1, FIRST + 1)}


@pytest.mark.two_nodes
def test_a_session_behind_the_trimmed_log_catches_up_exactly(connect, node_a, node_b,
                                                            small_log_user):
    on_a = connect(node_a, small_log_user)
    flags = _fill(on_a)
    on_a.ok("ENABLE QRESYNC")
    on_a.ok("SELECT", "INBOX")
    on_b = connect(node_b, small_log_user)
    on_b.ok("ENABLE QRESYNC")
    on_b.ok("SELECT", "INBOX")
    expunged = _many_changes(on_a, flags)

    resp = on_b.ok("NOOP")
    # The session never saw the last message appended and expunged on A.
    assert _vanished(resp) == expunged[:-1]
    assert resp.lines("12 EXISTS") == ["* 12 EXISTS"]
    assert {uid: f for uid, (f, _) in _flags_and_modseqs(on_a).items()} == flags
    _assert_same_as(on_b, on_a)


@pytest.mark.two_nodes
def test_qresync_from_before_the_floor_reports_every_vanished_uid(connect, node_a, node_b,
                                                                  small_log_user):
    on_a = connect(node_a, small_log_user)
    flags = _fill(on_a)
    on_b = connect(node_b, small_log_user)
    on_b.ok("ENABLE QRESYNC")
    before = selected_state(on_b.ok("SELECT", "INBOX"))
    on_b.ok("LOGOUT")
    on_a.ok("SELECT", "INBOX")
    expunged = _many_changes(on_a, flags)

    on_b = connect(node_b, small_log_user)
    on_b.ok("ENABLE QRESYNC")
    resp = select_qresync(on_b, before)
    # Every expunge came after the client's MODSEQ: the full list is the exact one (mdbox
    # reports the same from its history).
    assert _vanished(resp) == sorted(expunged)
    changed = {int(d["UID"]): set(d["FLAGS"])
               for d in parse_fetch(resp.untagged).values()}
    assert changed == {uid: f for uid, f in flags.items() if f or uid > FIRST}
    assert selected_state(resp)["highestmodseq"] == \
        selected_state(on_a.ok("SELECT", "INBOX"))["highestmodseq"]
    _assert_same_as(on_b, on_a)


@pytest.mark.rbd_only("a node whose cache fell behind the trimmed log answers as mdbox "
                      "cannot: with every missing UID")
def test_qresync_from_between_expunges_on_a_node_behind_the_floor(connect, node_a, node_b,
                                                                  small_log_user):
    on_a = connect(node_a, small_log_user)
    flags = _fill(on_a)
    on_a.ok("SELECT", "INBOX")
    on_b = connect(node_b, small_log_user)
    on_b.ok("SELECT", "INBOX")
    on_b.ok("LOGOUT")
    _expunge(on_a, 2)
    on_a.ok("ENABLE QRESYNC")
    client = selected_state(on_a.ok("SELECT", "INBOX"))
    expunged = _many_changes(on_a, flags)

    on_b = connect(node_b, small_log_user)
    on_b.ok("ENABLE QRESYNC")
    resp = select_qresync(on_b, client)
    # B's cache cannot tell which expunges came after the client's MODSEQ: it reports
    # every UID that no longer exists, UID 2 too (a superset RFC 7162 allows), never
    # fewer. A, whose own log has the history, reports exactly the later ones.
    assert _vanished(resp) == sorted([2] + expunged)
    on_a2 = connect(node_a, small_log_user)
    on_a2.ok("ENABLE QRESYNC")
    exact = select_qresync(on_a2, client)
    assert _vanished(exact) == sorted(expunged)

