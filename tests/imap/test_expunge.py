"""EXPUNGE, UID EXPUNGE, CLOSE, UNSELECT."""

from imap_connection import after_expunges
from messages import numbered


def with_messages(conn, n, mailbox="INBOX"):
    for i in range(1, n + 1):
        conn.append(mailbox, numbered(i))
    conn.ok("SELECT", mailbox)


def uids(conn):
    return sorted(conn.fetch("1:*", "(UID)"))


def test_expunge_removes_deleted_messages_and_reports_sequence_numbers(imap):
    with_messages(imap, 5)
    imap.ok("STORE 2,4 +FLAGS.SILENT (\\Deleted)")
    resp = imap.ok("EXPUNGE")
    assert len(resp.lines()) == 2
    assert after_expunges([1, 2, 3, 4, 5], resp.lines()) == [1, 3, 5]
    assert resp.text == "Expunge completed"
    assert uids(imap) == [1, 3, 5]


def test_expunge_without_deleted_messages_changes_nothing(imap):
    with_messages(imap, 2)
    resp = imap.ok("EXPUNGE")
    assert resp.untagged == []
    assert uids(imap) == [1, 2]


def test_uid_expunge_removes_only_the_given_deleted_uids(imap):
    with_messages(imap, 4)
    imap.ok("STORE 1:4 +FLAGS.SILENT (\\Deleted)")
    resp = imap.ok("UID EXPUNGE 2:3")
    assert after_expunges([1, 2, 3, 4], resp.lines()) == [1, 4]
    assert uids(imap) == [1, 4]


def test_expunged_uids_are_never_reused(imap):
    with_messages(imap, 3)
    imap.ok("STORE 3 +FLAGS.SILENT (\\Deleted)")
    imap.ok("EXPUNGE")
    resp = imap.append("INBOX", numbered(4))
    assert resp.text.split()[2] == "4]"
    assert uids(imap) == [1, 2, 4]


def test_close_expunges_silently(imap, connect, node_a, user):
    with_messages(imap, 3)
    imap.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    resp = imap.ok("CLOSE")
    assert (resp.untagged, resp.text) == ([], "Close completed")
    assert imap.command("FETCH 1 (UID)").tagged == "BAD No mailbox selected"
    other = connect(node_a, user)
    assert other.ok("STATUS INBOX (MESSAGES)").lines() == ["* STATUS INBOX (MESSAGES 2)"]


def test_close_in_examine_mode_does_not_expunge(imap):
    with_messages(imap, 2)
    imap.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    imap.ok("EXAMINE", "INBOX")
    imap.ok("CLOSE")
    assert imap.ok("STATUS INBOX (MESSAGES)").lines() == ["* STATUS INBOX (MESSAGES 2)"]


def test_unselect_does_not_expunge(imap):
    with_messages(imap, 2)
    imap.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    resp = imap.ok("UNSELECT")
    assert (resp.untagged, resp.text) == ([], "Unselect completed")
    assert imap.ok("STATUS INBOX (MESSAGES)").lines() == ["* STATUS INBOX (MESSAGES 2)"]


def test_expunge_in_examine_mode_is_ignored(imap):
    with_messages(imap, 1)
    imap.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    imap.ok("EXAMINE", "INBOX")
    resp = imap.ok("EXPUNGE")
    assert (resp.untagged, resp.text) == ([], "Expunge completed")
    assert imap.ok("STATUS INBOX (MESSAGES)").lines() == ["* STATUS INBOX (MESSAGES 1)"]


def test_expunge_seen_by_another_session_on_its_next_command(imap, connect, node_a, user):
    with_messages(imap, 3)
    other = connect(node_a, user)
    other.ok("SELECT", "INBOX")
    imap.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    imap.ok("EXPUNGE")
    resp = other.ok("NOOP")
    assert resp.lines() == ["* 2 EXPUNGE"]
    assert uids(other) == [1, 3]
