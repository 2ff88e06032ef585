"""Keywords across nodes (issue 10, failure 5): a message's keywords live in its own record, so
what an op reads and writes grows with the keywords it carries, never with the names the
mailbox has ever seen. With 32,000 keywords on one message a STORE \\Seen took 25 s and the
first SELECT on the other node 58.5 s (mdbox 0.02 s): every op compared and rewrote a state
holding the whole keyword table. Answers are compared with mdbox's; run times are not asserted
(bench/imap workload h measures them)."""

import subprocess

import pytest

from imap_connection import selected_state
from messages import numbered

SYSTEM_FLAGS = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"]
# One STORE's worth, well inside imap_max_line_length.
KEYWORDS = ["kw%03d" % i for i in range(300)]


def flags_by_uid(conn):
    return {uid: f["FLAGS"] for uid, f in conn.fetch("1:*", "(FLAGS)").items()}


def state_xattr(cluster, user):
    """The state of the user's one mailbox index object, which every op compares and
    rewrites."""
    [index] = [o for o in cluster.objects("mail-index", user) if o.startswith("i.")]
    return subprocess.run(cluster.rados_args("mail-index", user) + ["getxattr", index, "state"],
                          check=True, stdout=subprocess.PIPE).stdout


@pytest.mark.two_nodes
def test_keywords_set_on_one_node_are_read_on_the_other_in_the_order_first_set(
        connect, node_a, node_b, user):
    on_a = connect(node_a, user)
    for i in range(1, 4):
        on_a.append("INBOX", numbered(i))
    on_a.ok("SELECT", "INBOX")
    on_a.ok("STORE 1 +FLAGS.SILENT (%s)" % " ".join(KEYWORDS))
    on_a.ok("STORE 2 +FLAGS.SILENT ($Forwarded kw005)")
    on_a.ok("STORE 1 -FLAGS.SILENT (kw007)")
    on_a.ok("STORE 3 +FLAGS.SILENT (\\Seen)")

    on_b = connect(node_b, user)
    state = selected_state(on_b.ok("SELECT", "INBOX"))
    # A keyword no message carries any more stays defined.
    assert state["flags"] == SYSTEM_FLAGS + KEYWORDS + ["$Forwarded"]
    assert flags_by_uid(on_b) == {1: [k for k in KEYWORDS if k != "kw007"],
                                  2: ["kw005", "$Forwarded"], 3: ["\\Seen"]}
    # A change on B of a message with many keywords reaches A as it is.
    on_b.ok("STORE 1 +FLAGS.SILENT (\\Flagged)")
    on_a.ok("NOOP")
    assert flags_by_uid(on_a)[1] == ["\\Flagged"] + [k for k in KEYWORDS if k != "kw007"]


@pytest.mark.rbd_only("reads the index object's state in RADOS")
def test_the_state_every_op_rewrites_does_not_grow_with_keywords(cluster, connect, node_a,
                                                                  user):
    conn = connect(node_a, user)
    conn.append("INBOX", numbered(1), flags=["$Junk"])
    conn.append("INBOX", numbered(2))
    conn.ok("SELECT", "INBOX")
    before = len(state_xattr(cluster, user))
    conn.ok("STORE 1 +FLAGS.SILENT (%s)" % " ".join(KEYWORDS))
    conn.ok("STORE 2 +FLAGS.SILENT (\\Seen)")
    # It was the whole keyword table: 300 names more, ~3 KB, in every op of the mailbox.
    assert len(state_xattr(cluster, user)) == before


def test_keywords_appended_to_a_mailbox_not_selected_are_in_the_nodes_index_at_once(
        connect, node_a, user):
    # An APPEND to a mailbox not selected is followed by no sync: the node's index learnt
    # the new keywords only at the next SELECT, all at once, which Dovecot's index does in
    # time quadratic in their number (268 s after 20,000 such APPENDs; mdbox 9 s).
    conn = connect(node_a, user)
    conn.ok("SELECT", "INBOX")
    conn.ok("CREATE", "other")
    for i in range(3):
        conn.append("other", numbered(i + 1), flags=["appended-%d" % i])
    conn.logout()
    files = [p for p in node_a.cache_dir(user).rglob("dovecot.index*") if p.is_file()]
    written = b"".join(p.read_bytes() for p in files)
    assert [b"appended-%d" % i in written for i in range(3)] == [True] * 3


def test_dovecots_keyword_limits_hold_as_on_mdbox(imap):
    # mail_max_keyword_length (50) is Dovecot's, checked before the storage sees a
    # keyword; there is no limit on their number (see doc/design.md, "Keywords").
    imap.append("INBOX", numbered(1))
    imap.ok("SELECT", "INBOX")
    resp = imap.command("STORE 1 +FLAGS (%s)" % ("k" * 51))
    assert (resp.status, resp.text) == ("NO", "[CANNOT] Keyword length too long")
    imap.ok("STORE 1 +FLAGS.SILENT (%s)" % ("k" * 50))
    assert imap.fetch("1", "(FLAGS)")[1]["FLAGS"] == ["k" * 50]
