"""CONDSTORE and QRESYNC: MODSEQ, CHANGEDSINCE, exact VANISHED sets."""

import pytest

from imap_connection import parse_fetch, select_qresync, selected_state
from messages import numbered


def modseq_of(fetched):
    return int(fetched["MODSEQ"][0])


def prepare(conn, n):
    """n messages; QRESYNC enabled and INBOX selected. Returns (uidvalidity, modseq)."""
    for i in range(1, n + 1):
        conn.append("INBOX", numbered(i))
    assert conn.ok("ENABLE QRESYNC").lines() == ["* ENABLED QRESYNC"]
    state = selected_state(conn.ok("SELECT", "INBOX"))
    return state["uidvalidity"], state["highestmodseq"]


def change(conn):
    """The changes the resync must report: \\Flagged on UID 2, UIDs 3 and 5 expunged
    (5 after a flag change), a new message (UID 7)."""
    conn.ok("SELECT", "INBOX")
    conn.ok("UID STORE 2 +FLAGS.SILENT (\\Flagged)")
    conn.ok("UID STORE 5 +FLAGS.SILENT (\\Seen)")
    conn.ok("UID STORE 3,5 +FLAGS.SILENT (\\Deleted)")
    conn.ok("EXPUNGE")
    conn.append("INBOX", numbered(7))
    conn.ok("UNSELECT")


def test_enable_condstore_and_qresync_are_acknowledged(imap):
    assert imap.ok("ENABLE CONDSTORE QRESYNC").lines() == ["* ENABLED CONDSTORE QRESYNC"]


def test_every_change_gets_a_higher_modseq(imap):
    uidvalidity, highest = prepare(imap, 2)
    before = {u: modseq_of(f) for u, f in imap.fetch("1:*", "(MODSEQ)").items()}
    assert max(before.values()) == highest
    imap.ok("UID STORE 1 +FLAGS.SILENT (\\Seen)")
    after = {u: modseq_of(f) for u, f in imap.fetch("1:*", "(MODSEQ)").items()}
    assert after[1] > highest and after[2] == before[2]
    state = selected_state(imap.ok("SELECT", "INBOX"))
    assert state["highestmodseq"] == after[1]


def test_uid_fetch_changedsince_returns_only_changed_messages(imap):
    _, highest = prepare(imap, 4)
    imap.ok("UID STORE 3 +FLAGS.SILENT (\\Answered)")
    fetched = imap.fetch("1:*", "(FLAGS) (CHANGEDSINCE %d)" % highest)
    assert list(fetched) == [3]
    assert fetched[3]["FLAGS"] == ["\\Answered"]
    assert modseq_of(fetched[3]) > highest


def test_expunge_with_qresync_reports_vanished_uids_not_sequence_numbers(imap):
    prepare(imap, 5)
    imap.ok("UID STORE 2:3,5 +FLAGS.SILENT (\\Deleted)")
    resp = imap.ok("EXPUNGE")
    assert resp.lines() == ["* VANISHED 2:3,5"]
    assert resp.text.startswith("[HIGHESTMODSEQ ") and resp.text.endswith("] Expunge completed")


def test_select_qresync_reports_exactly_the_vanished_and_changed_uids(imap, connect, node_a,
                                                                      user):
    uidvalidity, highest = prepare(imap, 6)
    imap.ok("UNSELECT")
    change(connect(node_a, user))
    resp = imap.ok("SELECT", "INBOX", "(QRESYNC (%d %d))" % (uidvalidity, highest))
    assert resp.lines("VANISHED") == ["* VANISHED (EARLIER) 3,5"]
    fetched = parse_fetch(resp.untagged, key="UID")
    assert sorted(fetched) == [2, 7]
    assert fetched[2]["FLAGS"] == ["\\Flagged"]
    assert fetched[7]["FLAGS"] == []
    assert all(modseq_of(f) > highest for f in fetched.values())
    assert selected_state(resp)["exists"] == 5


def test_uid_fetch_changedsince_vanished_reports_exactly_the_expunged_uids(imap, connect,
                                                                           node_a, user):
    _, highest = prepare(imap, 6)
    imap.ok("UNSELECT")
    change(connect(node_a, user))
    imap.ok("SELECT", "INBOX")
    resp = imap.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % highest)
    assert resp.lines("VANISHED") == ["* VANISHED (EARLIER) 3,5"]
    assert sorted(parse_fetch(resp.untagged, key="UID")) == [2, 7]


def test_select_qresync_with_the_current_modseq_reports_nothing(imap, connect, node_a, user):
    prepare(imap, 3)
    imap.ok("UNSELECT")
    other = connect(node_a, user)
    other.ok("ENABLE QRESYNC")
    state = selected_state(other.ok("SELECT", "INBOX"))
    resp = select_qresync(other, state)
    assert resp.lines("VANISHED") == []
    assert parse_fetch(resp.untagged) == {}


def test_select_qresync_with_a_wrong_uidvalidity_reports_no_changes(imap, connect, node_a,
                                                                    user):
    uidvalidity, highest = prepare(imap, 4)
    imap.ok("UNSELECT")
    change(connect(node_a, user))
    resp = imap.ok("SELECT", "INBOX", "(QRESYNC (%d %d))" % (uidvalidity + 1, highest))
    assert resp.lines("VANISHED") == []
    assert parse_fetch(resp.untagged) == {}
    assert selected_state(resp)["uidvalidity"] == uidvalidity


@pytest.mark.two_nodes
def test_a_store_replacing_different_flags_is_one_transaction(imap, connect, node_b, user):
    # STORE FLAGS on messages whose flags differ removes different flags from each, yet it
    # is one transaction: Dovecot writes one system-flag record and one record per keyword
    # for it, so HIGHESTMODSEQ moves by those records alone (mdbox), and rbd writes it in
    # one guarded op. As an op per distinct change, the first could take effect while the
    # second failed, and the client heard NO for a STORE the cluster had partly kept
    # (fault soak seed 1208: \Draft set on one message); HIGHESTMODSEQ moved by 4 here.
    prepare(imap, 3)
    imap.ok("UID STORE 1 +FLAGS.SILENT (\\Seen)")
    imap.ok("UID STORE 2 +FLAGS.SILENT (\\Flagged $Work)")
    highest = selected_state(imap.ok("SELECT", "INBOX"))["highestmodseq"]
    fetched = parse_fetch(imap.ok("UID STORE 1:3 FLAGS (\\Draft)").untagged, key="UID")
    # \Draft on all three (one system-flag record), $Work removed from UID 2 (one keyword
    # record): UID 2 carries the last record; each message's MODSEQ is new.
    assert selected_state(imap.ok("SELECT", "INBOX"))["highestmodseq"] == highest + 2
    modseqs = {u: modseq_of(f) for u, f in fetched.items()}
    assert modseqs[2] == highest + 2 and all(highest < m <= highest + 2
                                             for m in modseqs.values()), modseqs
    on_b = connect(node_b, user)
    on_b.ok("ENABLE QRESYNC")
    assert selected_state(on_b.ok("EXAMINE", "INBOX"))["highestmodseq"] == highest + 2
    assert {u: (f["FLAGS"], modseq_of(f))
            for u, f in on_b.fetch("1:*", "(FLAGS MODSEQ)").items()} == \
        {u: (["\\Draft"], modseqs[u]) for u in (1, 2, 3)}
