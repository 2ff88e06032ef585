"""COPY and MOVE: exact COPYUID, bodies, flags and GUIDs carried over, no body stored twice."""

import pytest

from imap_connection import after_expunges, selected_state
from messages import multipart, numbered


def setup_source(conn, n, flags=None):
    conn.ok("CREATE", "dst")
    for i in range(1, n + 1):
        conn.append("INBOX", numbered(i, size=200 * i), flags=(flags or {}).get(i))
    dst_validity = selected_state(conn.ok("EXAMINE", "dst"))["uidvalidity"]
    src_validity = selected_state(conn.ok("SELECT", "INBOX"))["uidvalidity"]
    return src_validity, dst_validity


def contents(conn, mailbox):
    conn.ok("EXAMINE", mailbox)
    fetched = conn.fetch("1:*", "(FLAGS BODY.PEEK[] X-GUID)")
    return {uid: (f["FLAGS"], f["BODY[]"], f["X-GUID"]) for uid, f in fetched.items()}


def test_copy_returns_copyuid_mapping_source_to_new_uids(imap):
    _, dst_validity = setup_source(imap, 4)
    resp = imap.ok("COPY 2:3 dst")
    assert resp.tagged == "OK [COPYUID %d 2:3 1:2] Copy completed" % dst_validity
    resp = imap.ok("UID COPY 4,1 dst")
    assert resp.tagged == "OK [COPYUID %d 1,4 3:4] Copy completed" % dst_validity


def test_copied_messages_keep_body_flags_guid_and_internaldate(imap):
    setup_source(imap, 3, flags={1: ["\\Seen", "$Label"], 3: ["\\Flagged"]})
    imap.append("INBOX", multipart(b"\x00\x01payload" * 100), date="07-Jul-2021 07:07:07 +0000")
    imap.ok("SELECT", "INBOX")
    dates = {u: f["INTERNALDATE"] for u, f in imap.fetch("1:*", "(INTERNALDATE)").items()}
    imap.ok("COPY 1:* dst")
    source = contents(imap, "INBOX")
    copied = contents(imap, "dst")
    assert copied == source
    imap.ok("EXAMINE", "dst")
    assert {u: f["INTERNALDATE"] for u, f in imap.fetch("1:*", "(INTERNALDATE)").items()} == dates


def test_copy_leaves_the_source_unchanged(imap):
    setup_source(imap, 2)
    before = contents(imap, "INBOX")
    imap.ok("SELECT", "INBOX")
    resp = imap.ok("COPY 1:2 dst")
    assert resp.untagged == []
    assert contents(imap, "INBOX") == before


def test_copy_into_the_same_mailbox_adds_new_uids(imap):
    src_validity, _ = setup_source(imap, 2)
    resp = imap.ok("UID COPY 1:2 INBOX")
    assert resp.tagged == "OK [COPYUID %d 1:2 3:4] Copy completed" % src_validity
    assert resp.lines() == ["* 4 EXISTS"]
    bodies = {u: f["BODY[]"] for u, f in imap.fetch("1:*", "(BODY.PEEK[])").items()}
    assert bodies == {1: numbered(1, 200), 2: numbered(2, 400), 3: numbered(1, 200),
                      4: numbered(2, 400)}


def test_copy_to_a_missing_mailbox_fails_with_trycreate(imap):
    setup_source(imap, 1)
    assert imap.command("COPY 1 nope").tagged == "NO [TRYCREATE] Mailbox doesn't exist: nope"


def test_copy_of_no_existing_uids_succeeds_without_copyuid(imap):
    setup_source(imap, 1)
    assert imap.ok("UID COPY 99 dst").tagged == "OK No messages found"


def test_move_reports_copyuid_then_expunges_from_the_source(imap):
    src_validity, dst_validity = setup_source(imap, 4)
    source = contents(imap, "INBOX")
    imap.ok("SELECT", "INBOX")
    resp = imap.ok("UID MOVE 2:3 dst")
    lines = resp.lines()
    assert lines[0] == "* OK [COPYUID %d 2:3 1:2] Moved UIDs." % dst_validity
    assert after_expunges([1, 2, 3, 4], lines[1:]) == [1, 4]
    assert resp.text == "Move completed"
    assert sorted(imap.fetch("1:*", "(UID)")) == [1, 4]
    moved = contents(imap, "dst")
    assert moved == {1: source[2], 2: source[3]}


def test_move_with_qresync_reports_vanished(imap):
    _, dst_validity = setup_source(imap, 5)
    imap.ok("ENABLE QRESYNC")
    imap.ok("SELECT", "INBOX")
    resp = imap.ok("UID MOVE 2,4:5 dst")
    assert resp.lines() == ["* OK [COPYUID %d 2,4:5 1:3] Moved UIDs." % dst_validity,
                            "* VANISHED 2,4:5"]
    assert resp.text.startswith("[HIGHESTMODSEQ ")
    assert resp.text.endswith("] Move completed")


def test_moved_message_is_in_the_destination_for_a_new_session(imap, connect, node_a, user):
    setup_source(imap, 2)
    imap.ok("MOVE 1 dst")
    other = connect(node_a, user)
    assert other.ok("STATUS dst (MESSAGES UIDNEXT)").lines() == [
        "* STATUS dst (MESSAGES 1 UIDNEXT 2)"]
    assert other.ok("STATUS INBOX (MESSAGES UIDNEXT)").lines() == [
        "* STATUS INBOX (MESSAGES 1 UIDNEXT 3)"]


def test_copy_keeps_the_x_guid_so_the_body_is_shared(imap):
    setup_source(imap, 1)
    guid = imap.fetch("1", "(X-GUID)")[1]["X-GUID"]
    imap.ok("COPY 1 dst")
    imap.ok("MOVE 1 dst")
    imap.ok("EXAMINE", "dst")
    assert {u: f["X-GUID"] for u, f in imap.fetch("1:*", "(X-GUID)").items()} == {
        1: guid, 2: guid}


@pytest.mark.rbd_only("counts the user's objects in the cluster's mail pool")
def test_copy_and_move_reuse_the_stored_body_instead_of_uploading_it_again(imap, cluster,
                                                                          user):
    imap.ok("CREATE", "dst")
    imap.append("INBOX", numbered(1, size=300000))   # too big to travel inline: own objects
    stored = cluster.objects("mail", user)
    assert stored
    imap.ok("SELECT", "INBOX")
    imap.ok("COPY 1 dst")
    imap.ok("MOVE 1 dst")
    assert cluster.objects("mail", user) == stored
    imap.ok("EXAMINE", "dst")
    assert {u: f["BODY[]"] for u, f in imap.fetch("1:*", "(BODY.PEEK[])").items()} == {
        1: numbered(1, 300000), 2: numbered(1, 300000)}
