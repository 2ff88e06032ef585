"""STORE of flags and keywords, including CONDSTORE's UNCHANGEDSINCE."""

from imap_connection import selected_state
from messages import numbered


def flags_by_uid(conn):
    return {uid: f["FLAGS"] for uid, f in conn.fetch("1:*", "(FLAGS)").items()}


def with_messages(conn, n, mailbox="INBOX"):
    for i in range(1, n + 1):
        conn.append(mailbox, numbered(i))
    conn.ok("SELECT", mailbox)


def test_store_add_remove_and_replace_flags_report_the_new_flags(imap):
    with_messages(imap, 1)
    resp = imap.ok("STORE 1 +FLAGS (\\Seen \\Flagged)")
    assert resp.lines() == ["* 1 FETCH (FLAGS (\\Flagged \\Seen))"]
    assert resp.text == "Store completed"
    assert imap.ok("STORE 1 -FLAGS (\\Seen)").lines() == ["* 1 FETCH (FLAGS (\\Flagged))"]
    assert imap.ok("STORE 1 FLAGS (\\Answered \\Draft)").lines() == [
        "* 1 FETCH (FLAGS (\\Answered \\Draft))"]


def test_uid_store_reports_the_uid(imap):
    with_messages(imap, 2)
    assert imap.ok("UID STORE 2 +FLAGS (\\Deleted)").lines() == [
        "* 2 FETCH (UID 2 FLAGS (\\Deleted))"]


def test_store_silent_sends_no_fetch(imap):
    with_messages(imap, 2)
    assert imap.ok("STORE 1:2 +FLAGS.SILENT (\\Seen)").untagged == []
    assert flags_by_uid(imap) == {1: ["\\Seen"], 2: ["\\Seen"]}


def test_store_on_a_range_changes_every_message(imap):
    with_messages(imap, 5)
    imap.ok("STORE 2:4 +FLAGS.SILENT (\\Flagged)")
    assert flags_by_uid(imap) == {1: [], 2: ["\\Flagged"], 3: ["\\Flagged"], 4: ["\\Flagged"],
                                  5: []}


def test_new_keywords_extend_flags_and_permanentflags(imap):
    with_messages(imap, 1)
    resp = imap.ok("STORE 1 +FLAGS ($Forwarded project-x)")
    assert resp.lines() == [
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded project-x)",
        "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded "
        "project-x \\*)] Flags permitted.",
        "* 1 FETCH (FLAGS ($Forwarded project-x))"]


def test_keywords_can_be_removed_and_stay_defined(imap):
    with_messages(imap, 2)
    imap.ok("STORE 1:2 +FLAGS (alpha beta)")
    assert imap.ok("STORE 1 -FLAGS (alpha)").lines() == ["* 1 FETCH (FLAGS (beta))"]
    assert flags_by_uid(imap) == {1: ["beta"], 2: ["alpha", "beta"]}
    state = selected_state(imap.ok("SELECT", "INBOX"))
    assert state["flags"] == ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft",
                              "alpha", "beta"]


def test_flags_and_keywords_persist_into_a_new_session(imap, connect, node_a, user):
    with_messages(imap, 3)
    imap.ok("STORE 1 +FLAGS.SILENT (\\Seen $Important)")
    imap.ok("STORE 3 +FLAGS.SILENT (\\Answered \\Flagged)")
    other = connect(node_a, user)
    other.ok("EXAMINE", "INBOX")
    assert flags_by_uid(other) == {1: ["\\Seen", "$Important"], 2: [],
                                   3: ["\\Answered", "\\Flagged"]}


def test_many_keywords_on_one_message(imap):
    with_messages(imap, 1)
    keywords = ["kw%02d" % i for i in range(40)]
    imap.ok("STORE 1 +FLAGS.SILENT (%s)" % " ".join(keywords))
    assert imap.fetch("1", "(FLAGS)")[1]["FLAGS"] == keywords


def test_store_unchangedsince_current_modseq_succeeds_and_reports_modseq(imap):
    with_messages(imap, 2)
    imap.ok("ENABLE CONDSTORE")
    modseq = int(imap.fetch("1", "(MODSEQ)")[1]["MODSEQ"][0])
    resp = imap.ok("UID STORE 1 (UNCHANGEDSINCE %d) +FLAGS (\\Seen)" % modseq)
    new = int(imap.fetch("1", "(MODSEQ)")[1]["MODSEQ"][0])
    assert new > modseq
    assert resp.lines() == ["* 1 FETCH (UID 1 MODSEQ (%d) FLAGS (\\Seen))" % new]
    assert resp.text == "Store completed"


def test_store_unchangedsince_an_older_modseq_fails_with_modified(imap):
    with_messages(imap, 3)
    imap.ok("ENABLE CONDSTORE")
    before = {u: int(f["MODSEQ"][0]) for u, f in imap.fetch("1:*", "(MODSEQ)").items()}
    imap.ok("UID STORE 2 +FLAGS.SILENT (\\Flagged)")
    resp = imap.ok("UID STORE 1:3 (UNCHANGEDSINCE %d) +FLAGS (\\Seen)" % max(before.values()))
    assert resp.text == "[MODIFIED 2] Conditional store failed"
    assert flags_by_uid(imap) == {1: ["\\Seen"], 2: ["\\Flagged"], 3: ["\\Seen"]}


def test_store_unchangedsince_zero_fails_for_every_message(imap):
    with_messages(imap, 2)
    resp = imap.ok("STORE 1:2 (UNCHANGEDSINCE 0) +FLAGS (\\Seen)")
    assert resp.text == "[MODIFIED 1:2] Conditional store failed"
    assert flags_by_uid(imap) == {1: [], 2: []}


def test_store_in_examine_mode_is_ignored(imap):
    with_messages(imap, 1)
    imap.ok("EXAMINE", "INBOX")
    resp = imap.ok("STORE 1 +FLAGS (\\Seen)")
    assert (resp.untagged, resp.text) == ([], "Store ignored with read-only mailbox")
    assert flags_by_uid(imap) == {1: []}
