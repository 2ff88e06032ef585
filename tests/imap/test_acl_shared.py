"""ACLs and shared namespaces: the groupware case (a team folder one user shares with
another) from two nodes. The owner grants rights on node S1; the other user, on node S2,
finds the folder in LIST under shared/<owner>/, reads the owner's messages there, and
appends; the owner sees that on S1. The ACL answers (GETACL, MYRIGHTS, LISTRIGHTS) are
those of mdbox, and an ACL lives in the cluster, not in a node's index cache: the other
node sees it, and removing the caches keeps it. On mdbox (the baseline) the same
commands run on one node."""

import shutil
import time

import pytest

from conftest import STORAGE, new_user_name
from daemons import Cluster, Node, wait_for
from imap_connection import ImapError, quote
from messages import message

# What the owner grants the team in these tests (RFC 4314): insert, lookup, read, keep
# \Seen, write flags; in the order Dovecot answers rights in.
TEAM_RIGHTS = "ilrws"
# The owner's rights when the ACL names none for them: all.
OWNER_RIGHTS = "lrwstipekxacd"


def team_message(n):
    return message(subject="team %d" % n, message_id="<team-%d@test>" % n)


@pytest.fixture(scope="module")
def acl_nodes(work_dir, cluster):
    """Nodes S1 and S2 (rbd; on mdbox only S1) with ACLs and a shared namespace."""
    shared_dict = "rbd:" if STORAGE == "rbd" else "file:%s/shared-mailboxes" % (
        work_dir / "node-s1" / "home")
    started = []
    try:
        for name in ("S1", "S2") if STORAGE == "rbd" else ("S1",):
            started.append(Node.start(name, work_dir / ("node-" + name.lower()), STORAGE,
                                      cluster, acl=shared_dict))
        yield started[0], started[-1]
    finally:
        for node in started:
            node.stop()


@pytest.fixture
def team(acl_nodes):
    """(owner, member): two fresh users known to every node."""
    names = new_user_name("o"), new_user_name("m")
    for node in set(acl_nodes):
        for name in names:
            node.add_user(name)
    return names


def message_ids(conn, mailbox):
    """The Message-IDs of the mailbox's messages, in UID order."""
    conn.ok("SELECT", quote(mailbox))
    fetched = conn.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    return [[item for item in v.values() if isinstance(item, bytes)][0]
            .decode().split(":", 1)[1].strip() for _, v in sorted(fetched.items())]


def getacl(conn, mailbox):
    """GETACL as {identifier: rights}."""
    (line,) = conn.ok("GETACL", quote(mailbox)).lines("ACL ")
    words = line.split()[3:]
    return dict(zip(words[0::2], words[1::2]))


def myrights(conn, mailbox):
    (line,) = conn.ok("MYRIGHTS", quote(mailbox)).lines("MYRIGHTS ")
    return line.split()[-1]


def listed(conn, pattern):
    return [line.rsplit(" ", 1)[1].strip('"') for line in conn.ok(
        "LIST", '""', quote(pattern)).lines("LIST ")]


def test_member_reads_and_appends_to_the_owners_team_folder_from_another_node(
        connect, acl_nodes, team):
    node_1, node_2 = acl_nodes
    owner, member = team
    shared = "shared/%s/Team" % owner

    on_1 = connect(node_1, owner)
    on_1.ok("CREATE Team")
    on_1.ok("CREATE Private")
    on_1.append("Team", team_message(1))
    on_1.append("Team", team_message(2))
    on_1.append("Private", team_message(9))
    # The member has a Team of their own: the shared one must not open it.
    by_member = connect(node_2, member)
    by_member.ok("CREATE Team")
    by_member.append("Team", team_message(7))

    on_1.ok("SETACL Team", quote(member), TEAM_RIGHTS)
    assert getacl(on_1, "Team") == {owner: OWNER_RIGHTS, member: TEAM_RIGHTS}

    assert listed(by_member, "shared/*") == ["shared/" + owner, shared]
    assert myrights(by_member, shared) == "lrwsi"
    assert message_ids(by_member, shared) == ["<team-1@test>", "<team-2@test>"]
    by_member.append(shared, team_message(3))
    # A copy from the member's own mailbox is the owner's message, whole.
    by_member.ok("SELECT Team")
    by_member.ok("COPY 1", quote(shared))
    assert message_ids(by_member, "Team") == ["<team-7@test>"]

    expected = ["<team-1@test>", "<team-2@test>", "<team-3@test>", "<team-7@test>"]
    assert message_ids(on_1, "Team") == expected
    assert on_1.fetch("4", "(BODY.PEEK[])")[4]["BODY[]"] == team_message(7)
    assert message_ids(connect(node_2, owner), "Team") == expected
    assert message_ids(by_member, shared) == expected

    # Only what was granted: no other mailbox, no administration.
    assert "shared/%s/Private" % owner not in listed(by_member, "shared/*")
    assert by_member.command("SELECT", quote("shared/%s/Private" % owner)).status == "NO"
    # RFC 4314: STATUS needs the read right, and a STATUS that the index state answers
    # still opens the mailbox through the ACL check. mdbox answers it from Dovecot's
    # mailbox list index, which skips that check (counts of a mailbox the member may
    # not even see): rbd does not copy that.
    if STORAGE == "rbd":
        assert by_member.command("STATUS", quote("shared/%s/Private" % owner),
                                 "(MESSAGES UIDNEXT)").tagged == "NO Mailbox doesn't exist: " \
            "shared/%s/Private" % owner
    assert by_member.ok("STATUS", quote(shared), "(MESSAGES)").lines("STATUS") == [
        "* STATUS %s (MESSAGES 4)" % shared]
    assert by_member.command("SETACL", quote(shared), quote(member), OWNER_RIGHTS
                             ).status == "NO"
    assert by_member.command("DELETE", quote(shared)).status == "NO"


def test_acl_is_in_the_cluster_not_in_a_node_cache(connect, acl_nodes, team):
    node_1, node_2 = acl_nodes
    owner, member = team
    shared = "shared/%s/Team" % owner

    on_1 = connect(node_1, owner)
    on_1.ok("CREATE Team")
    on_1.ok("SETACL Team", quote(member), "lr")
    on_1.ok("SETACL Team", quote(member), "+w")
    acl = {owner: OWNER_RIGHTS, member: "lrw"}
    assert getacl(on_1, "Team") == acl
    on_2 = connect(node_2, owner)
    assert getacl(on_2, "Team") == acl
    # doveadm's acl commands read and write the same ACLs.
    out = node_2.doveadm_ok("acl", "get", "-u", owner, "Team").splitlines()
    assert out[1].split() == ["user=" + member, "lookup", "read", "write"], out
    node_2.doveadm_ok("acl", "add", "-u", owner, "Team", "user=" + member, "insert")
    acl[member] = "ilrw"
    assert getacl(on_1, "Team") == acl
    on_1.logout()
    on_2.logout()

    for node in set(acl_nodes):
        shutil.rmtree(node.cache_dir(owner), ignore_errors=True)
        shutil.rmtree(node.cache_dir(member), ignore_errors=True)
    on_2 = connect(node_2, owner)
    assert getacl(on_2, "Team") == acl
    by_member = connect(node_2, member)
    assert myrights(by_member, shared) == "lrwi"

    # Taken back on one node: the other knows it. (A session on mdbox may use its
    # cached ACL for acl_cache_secs, so each check is a new one.)
    connect(node_1, owner).ok("SETACL Team", quote(member), "-rwi")
    assert myrights(connect(node_2, member), shared) == "l"
    assert connect(node_2, member).command("SELECT", quote(shared)).status == "NO"
    if STORAGE == "rbd":   # see the STATUS of Private above
        assert connect(node_2, member).command("STATUS", quote(shared), "(MESSAGES)"
                                               ).tagged == "NO [NOPERM] Permission denied"
    connect(node_1, owner).ok("DELETEACL Team", quote(member))
    assert connect(node_2, member).command("MYRIGHTS", quote(shared)).status == "NO"


def acl_keys(cluster, owner):
    """rbd: the ACL keys in the owner's dictionary object (doc/design.md)."""
    keys = cluster.rados("mail-index", owner, "listomapkeys", "d").split()
    return [key for key in keys if key.startswith("rbd.acl/")]


def test_acl_follows_a_rename_and_goes_with_a_delete(connect, acl_nodes, team, cluster):
    node_1, node_2 = acl_nodes
    owner, member = team

    on_1 = connect(node_1, owner)
    on_1.ok("CREATE Team")
    on_1.ok("SETACL Team", quote(member), "lr")
    on_1.ok("RENAME Team Projects")
    on_2 = connect(node_2, owner)
    assert getacl(on_2, "Projects") == {owner: OWNER_RIGHTS, member: "lr"}
    if STORAGE == "rbd":
        assert len(acl_keys(cluster, owner)) == 1
    on_2.ok("DELETE Projects")
    if STORAGE == "rbd":
        assert acl_keys(cluster, owner) == []
    on_1.ok("CREATE Projects")
    assert getacl(on_1, "Projects") == {owner: OWNER_RIGHTS}


@pytest.mark.rbd_only("on mdbox, vfile's files are where the mail is")
def test_acl_without_rbd_acl_is_refused(connect, work_dir, cluster):
    """With acl alone, ACLs would go to the node's cache again: the session ends at its
    first command, and the log says what to add."""
    node = Node.start("S3", work_dir / "node-s3", STORAGE, cluster, mail_plugin="acl",
                      plugin_setting="acl=vfile")
    try:
        user = new_user_name("a")
        node.add_user(user)
        conn = connect(node, user)
        with pytest.raises((ImapError, OSError)):
            conn.ok("SELECT INBOX")
        # Dovecot's log process writes the line after the client saw the disconnect.
        assert wait_for(lambda: "mail_plugins has acl but not rbd_acl" in node.log_tail(), 5), \
            node.log_tail()
    finally:
        node.stop()


@pytest.mark.rbd_only("stops a cluster")
def test_a_select_while_the_cluster_is_away_is_unavailable_not_missing(connect, work_dir):
    """A rights check that cannot read the ACL must not leave the client an older error
    of the session ("Mailbox doesn't exist: INBOX" was seen) in place of the cluster's,
    and its dictionary reads end with the command's one deadline (rbd_op_timeout + 1 s
    for the whole command, with the same slack as test_failure.py)."""
    cluster = Cluster.start(work_dir / "ceph-acl")
    node = None
    try:
        node = Node.start("S4", work_dir / "node-s4", STORAGE, cluster, acl="rbd:",
                          op_timeout="2s")
        user = new_user_name("u")
        node.add_user(user)
        conn = connect(node, user)
        conn.ok("CREATE Team")
        conn.ok("SELECT INBOX")
        cluster.stop()
        started = time.monotonic()
        resp = conn.command("SELECT Team")
        seconds = time.monotonic() - started
        assert resp.tagged.startswith("NO [UNAVAILABLE] "), resp
        assert seconds <= 2 + 1.5, "SELECT took %.1f s" % seconds
    finally:
        if node is not None:
            node.stop()
        cluster.stop()
