"""A node's index cache against another node's changes to the mailbox tree.

Node A keeps an index cache on disk, by mailbox name. Another node can put a different
mailbox under a name A has cached (delete and create again, rename, swap names through a
temporary one, dsync giving the mailbox a new GUID): A's next open of that name must show
the mailbox the cluster now has there, exactly as node B does, and keep doing so. And a
session that has the mailbox selected while another node deletes or renames it ends, as
on Dovecot's own storages. The two_nodes tests run on mdbox with RBD_IMAP_SINGLE_NODE=1,
where B is A and the expectations are Dovecot's own answers."""

import subprocess

import pytest

from daemons import DOVECOT_DEV
from imap_connection import ImapError, Literal, quote, selected_state
from messages import numbered

two_nodes = pytest.mark.two_nodes
# The mailbox dsync copies from, in the user's home on the node running it.
DSYNC_SOURCE = "mdbox:~/dsync-source"
# Stored as m.<guid>, not inline in the index: recoverable when the index is lost.
BIG = 20000


def view(conn, mailbox):
    """What a client sees of the mailbox: SELECT's counts, UIDVALIDITY, UIDNEXT and
    HIGHESTMODSEQ, and every message's flags, MODSEQ and body by UID."""
    state = selected_state(conn.ok("SELECT", quote(mailbox), "(CONDSTORE)"))
    fetched = conn.fetch("1:*", "(FLAGS MODSEQ BODY.PEEK[])") if state["exists"] else {}
    conn.ok("UNSELECT")
    counts = {k: state[k] for k in ("exists", "uidvalidity", "uidnext", "highestmodseq")}
    return counts, {uid: (f["FLAGS"], f["MODSEQ"], f["BODY[]"]) for uid, f in fetched.items()}


def fill(conn, mailbox, numbers):
    """Creates the mailbox with messages `numbers`, some flagged, as a client leaves it."""
    conn.ok("CREATE", quote(mailbox))
    for n in numbers:
        conn.append(mailbox, numbered(n))
    conn.ok("SELECT", quote(mailbox))
    conn.ok("STORE 1 +FLAGS.SILENT (\\Seen $Work)")
    conn.ok("UNSELECT")


def bodies(seen):
    return sorted(body for _, _, body in seen[1].values())


def cache_then_replace(connect, node_a, node_b, user, mailboxes, replace):
    """Node A caches `mailboxes` ({name: message numbers}); node B then runs the commands
    `replace`. Returns A's session (still logged in) and B's."""
    on_a = connect(node_a, user)
    for name, numbers in mailboxes.items():
        fill(on_a, name, numbers)
        view(on_a, name)
    on_b = connect(node_b, user)
    for command in replace:
        on_b.ok(*command)
    return on_a, on_b


@two_nodes
def test_a_mailbox_deleted_and_created_again_on_b_is_the_new_one_on_a(connect, node_a,
                                                                     node_b, user):
    on_a, on_b = cache_then_replace(connect, node_a, node_b, user, {"X": [1, 2, 3]},
                                    [("DELETE X",), ("CREATE X",)])
    on_b.append("X", numbered(10))
    seen_on_b = view(on_b, "X")
    assert seen_on_b[0]["exists"] == 1 and bodies(seen_on_b) == [numbered(10)]
    assert view(on_a, "X") == seen_on_b
    # And it stays the new one, whichever node changes it next.
    on_a.append("X", numbered(11))
    on_b.append("X", numbered(12))
    seen_on_a = view(on_a, "X")
    assert bodies(seen_on_a) == [numbered(n) for n in (10, 11, 12)]
    assert view(on_b, "X") == seen_on_a
    on_a.ok("SELECT X")
    assert on_a.ok("NOOP").lines() == []


@two_nodes
def test_a_mailbox_renamed_into_a_name_on_b_is_seen_under_it_on_a(connect, node_a,
                                                                  node_b, user):
    on_a, on_b = cache_then_replace(
        connect, node_a, node_b, user, {"X": [1, 2, 3], "Y": [4]},
        [("RENAME X Old",), ("RENAME Y X",)])
    seen_on_b = view(on_b, "X"), view(on_b, "Old")
    assert bodies(seen_on_b[0]) == [numbered(4)]
    assert bodies(seen_on_b[1]) == [numbered(n) for n in (1, 2, 3)]
    assert (view(on_a, "X"), view(on_a, "Old")) == seen_on_b
    resp = on_a.command("SELECT Y")
    assert (resp.status, resp.text) == ("NO", "Mailbox doesn't exist: Y")


@two_nodes
def test_two_mailboxes_swapping_names_on_b_are_swapped_on_a(connect, node_a, node_b, user):
    on_a, on_b = cache_then_replace(
        connect, node_a, node_b, user, {"X": [1, 2], "Y": [3]},
        [("RENAME X T",), ("RENAME Y X",), ("RENAME T Y",)])
    seen_on_b = view(on_b, "X"), view(on_b, "Y")
    assert bodies(seen_on_b[0]) == [numbered(3)]
    assert bodies(seen_on_b[1]) == [numbered(1), numbered(2)]
    assert (view(on_a, "X"), view(on_a, "Y")) == seen_on_b


def doveadm_save(node, user, location, mailbox, message):
    """doveadm save of one message into `mailbox` at `location`."""
    proc = subprocess.run([str(DOVECOT_DEV), "doveadm", str(node.path), "-o",
                           "mail_location=" + location, "save", "-u", user, "-m", mailbox],
                          input=message, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.returncode == 0, proc.stdout


@two_nodes
def test_a_mailbox_dsync_gave_a_new_guid_on_b_is_the_new_one_on_a(connect, node_a, node_b,
                                                                 user):
    """dsync gives a mailbox that is empty on the storage the GUID of its source's
    mailbox of that name, then copies the source's messages with their UIDs: node A's
    cache still has the messages the mailbox had before it was emptied."""
    on_a, on_b = cache_then_replace(connect, node_a, node_b, user, {"X": [1, 2]},
                                    [("SELECT X",), ("STORE 1:* +FLAGS.SILENT (\\Deleted)",),
                                     ("EXPUNGE",), ("UNSELECT",)])
    guid = lambda node, *opts: node.doveadm_json(*opts, "mailbox", "status", "-u", user,
                                                 "guid", "X")[0]["guid"]
    before = guid(node_b)
    location = node_b.doveadm_ok("user", "-f", "mail", user).strip()
    source = ("-o", "mail_location=" + DSYNC_SOURCE)
    node_b.doveadm_ok(*source, "mailbox", "create", "-u", user, "X")
    doveadm_save(node_b, user, DSYNC_SOURCE, "X", numbered(20))
    doveadm_save(node_b, user, DSYNC_SOURCE, "X", numbered(21))
    node_b.doveadm_ok(*source, "backup", "-u", user, location)
    assert guid(node_b) == guid(node_b, *source) != before
    seen_on_b = view(on_b, "X")
    assert bodies(seen_on_b) == [numbered(20), numbered(21)]
    assert sorted(seen_on_b[1]) == [1, 2]
    assert view(on_a, "X") == seen_on_b


def select_then_change_on_b(connect, node_a, node_b, user, change):
    on_a = connect(node_a, user)
    on_a.ok("CREATE X")
    on_a.append("X", numbered(1))
    on_a.ok("SELECT X")
    connect(node_b, user).ok(*change)
    return on_a


def assert_closed(conn):
    """The server has closed the connection (after a BYE, or at once)."""
    with pytest.raises((ImapError, OSError)):
        conn.command("NOOP")


CHANGES = [pytest.param(("DELETE X",), id="deleted"),
           pytest.param(("RENAME X Y",), id="renamed")]


@two_nodes
@pytest.mark.parametrize("change", CHANGES)
def test_noop_in_a_mailbox_deleted_or_renamed_on_b_ends_the_session(connect, node_a, node_b,
                                                                   user, change):
    on_a = select_then_change_on_b(connect, node_a, node_b, user, change)
    with pytest.raises(ImapError) as closed:
        on_a.command("NOOP")
    assert closed.value.untagged == [b"* BYE IMAP session state is inconsistent, please relogin."]


@two_nodes
@pytest.mark.parametrize("change", CHANGES)
def test_store_in_a_mailbox_deleted_or_renamed_on_b_fails_and_ends_the_session(
        connect, node_a, node_b, user, change):
    on_a = select_then_change_on_b(connect, node_a, node_b, user, change)
    resp = on_a.command("STORE 1 +FLAGS (\\Seen)")
    assert (resp.status, resp.text, resp.untagged) == ("NO", "Mailbox was deleted under us", [])
    assert_closed(on_a)
    if change[0].startswith("RENAME"):
        on_b = connect(node_b, user)
        assert view(on_b, "Y")[1][1][0] == []


@two_nodes
@pytest.mark.parametrize("change", CHANGES)
def test_append_to_a_selected_mailbox_deleted_or_renamed_on_b_fails_and_ends_the_session(
        connect, node_a, node_b, user, change):
    """The APPEND names the selected mailbox: it must not land in the mailbox that now
    has another name."""
    on_a = select_then_change_on_b(connect, node_a, node_b, user, change)
    resp = on_a.command("APPEND", "X", Literal(numbered(2)))
    assert (resp.status, resp.text) == ("NO", "Mailbox was deleted under us")
    assert_closed(on_a)
    if change[0].startswith("RENAME"):
        assert bodies(view(connect(node_b, user), "Y")) == [numbered(1)]


@two_nodes
@pytest.mark.rbd_only("removes a mailbox index from the cluster")
def test_a_mailbox_index_recreated_from_the_bodies_is_seen_afresh_on_a(cluster, connect,
                                                                      node_a, node_b, user):
    """The recreated index starts again at a low HIGHESTMODSEQ: node A's cache is ahead of
    the cluster, and its MODSEQs can never come down to the cluster's in place."""
    on_a, saved = cache_then_recreate_index(connect, node_a, user)
    cached = view(on_a, "X")
    recreate_index(cluster, node_b, user)
    seen_on_b = view(connect(node_b, user), "X")
    assert bodies(seen_on_b) == saved
    assert seen_on_b[0]["highestmodseq"] < cached[0]["highestmodseq"]
    assert view(on_a, "X") == seen_on_b


@two_nodes
@pytest.mark.rbd_only("removes a mailbox index from the cluster")
def test_a_session_in_a_mailbox_whose_index_was_recreated_ends(cluster, connect, node_a,
                                                             node_b, user):
    """Its MODSEQs went back: the session cannot follow them."""
    on_a, _ = cache_then_recreate_index(connect, node_a, user)
    on_a.ok("SELECT X")
    recreate_index(cluster, node_b, user)
    with pytest.raises(ImapError) as closed:
        on_a.command("NOOP")
    assert closed.value.untagged == [b"* BYE IMAP session state is inconsistent, please relogin."]


def cache_then_recreate_index(connect, node_a, user):
    """Node A's session, with mailbox X cached after a few changes; X's messages."""
    saved = [numbered(n, size=BIG) for n in (1, 2, 3)]
    on_a = connect(node_a, user)
    on_a.ok("CREATE X")
    for body in saved:
        on_a.append("X", body)
    on_a.ok("SELECT X")
    for flag in ("\\Flagged", "\\Answered", "$Later", "$Done"):
        on_a.ok("STORE 1:3 +FLAGS.SILENT (%s)" % flag)
    on_a.ok("UNSELECT")
    return on_a, saved


def recreate_index(cluster, node, user):
    """Loses X's index object, and has doveadm recreate it from the bodies."""
    guid = node.doveadm_json("mailbox", "status", "-u", user, "guid", "X")[0]["guid"]
    cluster.rados("mail-index", user, "rm", "i." + guid)
    node.doveadm_ok("force-resync", "-u", user, "X")
