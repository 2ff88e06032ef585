"""A message stays readable while a session's view still shows it, whoever expunged it or
synced it into the node's index cache (issue #8, failures 1 and 6); once gc has reclaimed
its body, FETCH answers it as expunged and the session goes on.

Each `connect` is an imap process of its own; the nodes keep their index caches on disk, so
a later process syncs from the cache another one left."""

import pytest

from imap_connection import response_code, selected_state
from messages import numbered

BODIES = {
    "inline": numbered(1),                 # travels inline in the index
    "striped": numbered(2, size=300000),   # above rbd_stripe_size (256k): objects of its own
}
bodies = pytest.mark.parametrize("body", list(BODIES.values()), ids=list(BODIES))


def cache_mailbox(connect, node, user, mailbox, body):
    """`mailbox` holding `body` as UID 1, in `node`'s index cache (a process that is gone)."""
    first = connect(node, user)
    if mailbox != "INBOX":
        first.ok("CREATE", mailbox)
    first.append(mailbox, body)
    first.ok("SELECT", mailbox)
    first.logout()


def expunge_first(conn, mailbox):
    conn.ok("SELECT", mailbox)
    conn.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert conn.ok("EXPUNGE").lines() == ["* 1 EXPUNGE"]


@pytest.mark.two_nodes
@bodies
def test_fetch_of_a_message_the_other_node_expunged_returns_it_until_the_session_syncs(
        connect, node_a, node_b, user, body):
    cache_mailbox(connect, node_a, user, "x", body)
    on_a = connect(node_a, user)
    assert selected_state(on_a.ok("SELECT", "x"))["exists"] == 1
    expunge_first(connect(node_b, user), "x")

    fetched = on_a.fetch("1", "(UID RFC822.SIZE BODY.PEEK[])", uid=False)
    # On one node (mdbox with RBD_IMAP_SINGLE_NODE) the \Deleted flag comes along.
    fetched[1].pop("FLAGS", None)
    assert fetched == {1: {"UID": "1", "RFC822.SIZE": str(len(body)), "BODY[]": body}}
    assert on_a.ok("NOOP").lines() == ["* 1 EXPUNGE"]


@pytest.mark.rbd_only("on one node (mdbox with RBD_IMAP_SINGLE_NODE) COPY refreshes the "
                     "shared index, sees the expunge and answers NO [EXPUNGEISSUED], as RFC "
                     "2180 4.4.1 allows; across nodes the session's view is all there is")
@bodies
def test_copy_of_a_message_the_other_node_expunged_copies_it_as_shown(connect, node_a, node_b,
                                                                     user, body):
    cache_mailbox(connect, node_a, user, "x", body)
    on_a = connect(node_a, user)
    on_a.ok("CREATE", "y")
    on_a.ok("SELECT", "x")
    expunge_first(connect(node_b, user), "x")
    assert response_code(on_a.ok("COPY 1 y").text)[0] == "COPYUID"
    on_b = connect(node_b, user)
    on_b.ok("EXAMINE", "y")
    assert on_b.fetch("1:*", "(BODY.PEEK[])") == {1: {"UID": "1", "BODY[]": body}}


@bodies
def test_fetch_of_a_message_another_session_on_the_node_synced_in_first(connect, node_a,
                                                                        user, body):
    s1 = connect(node_a, user)
    s1.ok("CREATE", "x")
    s1.ok("SELECT", "x")
    s2 = connect(node_a, user)
    s2.append("x", body)
    s2.ok("SELECT", "x")
    assert s1.ok("NOOP").lines() == ["* 1 EXISTS"]
    assert s1.fetch("1:*", "(RFC822.SIZE BODY.PEEK[])") == {
        1: {"UID": "1", "RFC822.SIZE": str(len(body)), "BODY[]": body}}


@pytest.mark.rbd_only("reclaims bodies with doveadm rbd gc")
@bodies
def test_fetch_of_a_shown_message_whose_body_gc_reclaimed_answers_expunged_without_bye(
        connect, node_a, node_b, user, body):
    cache_mailbox(connect, node_a, user, "x", body)
    on_a = connect(node_a, user)
    on_a.ok("CREATE", "y")
    on_a.ok("SELECT", "x")
    expunge_first(connect(node_b, user), "x")
    grace0 = ("-o", "plugin/rbd_gc_grace=0")
    # Released bodies are gc's ordinary work, not problems.
    node_b.doveadm_ok(*grace0, "rbd", "check", "-u", user)
    node_b.doveadm_ok(*grace0, "rbd", "gc", "-u", user)

    resp = on_a.command("FETCH 1 (UID RFC822.SIZE BODY.PEEK[])")
    # The sync replays B's ops one by one: the \Deleted flag set before the expunge
    # reaches the session first, as it does on mdbox.
    lines = [line for line in resp.lines() if line != "* 1 FETCH (FLAGS (\\Deleted))"]
    assert lines == ["* 1 FETCH (UID 1 RFC822.SIZE %d BODY[] NIL)" % len(body)]
    assert (resp.status, response_code(resp.text)) == ("OK", ["EXPUNGEISSUED"])
    # COPY's NO [EXPUNGEISSUED] brings the expunge along (Dovecot's cmd-copy.c).
    resp = on_a.command("COPY 1 y")
    assert (resp.status, response_code(resp.text)) == ("NO", ["EXPUNGEISSUED"])
    assert resp.lines() == ["* 1 EXPUNGE"]


@pytest.mark.rbd_only("deletes a body object behind the storage's back")
def test_copy_of_a_message_whose_body_is_gone_answers_expunged_and_copies_nothing(
        cluster, connect, node_a, user):
    # Issue 9, failure 9: this was "NO [TRYCREATE] Mailbox doesn't exist", with the
    # messages whose bodies were there copied all the same.
    conn = connect(node_a, user)
    conn.ok("CREATE", "y")
    conn.append("INBOX", numbered(1))
    conn.append("INBOX", BODIES["striped"])
    conn.ok("SELECT", "INBOX")
    guid = conn.fetch("2", "(X-GUID)")[2]["X-GUID"]
    cluster.rados("mail", user, "rm", "m." + guid)

    resp = conn.command("UID COPY 1:2 y")
    assert (resp.status, response_code(resp.text)) == ("NO", ["EXPUNGEISSUED"]), resp.text
    assert "doesn't exist" not in resp.text
    # All or nothing, as Dovecot's own storages copy.
    assert selected_state(conn.ok("EXAMINE", "y"))["exists"] == 0
