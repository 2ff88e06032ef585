"""Each node's index cache: one directory per user, whatever the username, and per mailbox
GUID inside it. Dovecot's default auth_username_chars allow '.' and '..', which a path
built from %u takes for the cache root and its parent: user '.' had the cache root of every
user, so its mailbox '<X>/INBOX' was user X's INBOX cache. (mdbox has the same trap with a
%u location, so these run on rbd only.)"""

import os
import time

import pytest

from imap_connection import ImapError, quote
from messages import numbered

rbd_only = pytest.mark.rbd_only("the rbd plugin's own cache layout")
ODD_USERS = [".", ".."]


def add_odd_users(nodes):
    """'.' and '..' on every node, once per node (they live in DIR/users.list)."""
    for node in set(nodes):
        listed = (node.path / "users.list").read_text()
        for name in ODD_USERS:
            if not listed.startswith(name + ":") and ("\n%s:" % name) not in listed:
                node.add_user(name)


def login(node, user):
    """Dovecot rereads users.list at most once a second: a new user may need that long."""
    deadline = time.monotonic() + 5
    while True:
        try:
            return node.login(user)
        except ImapError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def status(conn, mailbox):
    return conn.ok("STATUS", quote(mailbox),
                   "(MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)").lines("STATUS")


def guids(node, user):
    return sorted(m["guid"] for m in node.doveadm_json("mailbox", "status", "-u", user,
                                                        "guid", "*"))


@rbd_only
def test_users_named_dot_and_dotdot_get_caches_of_their_own(nodes, node_a, node_b, user):
    add_odd_users(nodes)
    conns = {name: login(node_a, name) for name in [user] + ODD_USERS}
    try:
        for n in range(3):
            conns[user].append("INBOX", numbered(n))
        for name in ODD_USERS:
            # The mailbox that a path-derived cache put on top of the user's INBOX.
            target = "%s/INBOX" % user
            created = conns[name].command("CREATE", quote(target))
            assert created.status == "OK" or "[ALREADYEXISTS]" in created.text, created.tagged
            conns[name].append(target, numbered(10))
            conns[name].append("INBOX", numbered(11))
        on_b = {name: login(node_b, name) for name in conns}
        try:
            for name, conn in conns.items():
                for mailbox in ["INBOX"] + ([] if name == user else ["%s/INBOX" % user]):
                    assert status(conn, mailbox) == status(on_b[name], mailbox), (name, mailbox)
            assert "(MESSAGES 3 " in status(conns[user], "INBOX")[0]
        finally:
            for conn in on_b.values():
                conn.logout()
    finally:
        for conn in conns.values():
            conn.logout()
    dirs = {name: node_a.cache_dir(name) for name in [user] + ODD_USERS}
    for name, path in dirs.items():
        assert sorted(p.name for p in path.iterdir()) == guids(node_a, name), name
        for other, other_path in dirs.items():
            if other != name:
                resolved, other_resolved = path.resolve(), other_path.resolve()
                assert resolved != other_resolved and \
                    resolved not in other_resolved.parents, (name, other)


@rbd_only
def test_a_cache_of_a_mailbox_deleted_on_another_node_is_removed_at_the_next_list(
        connect, node_a, node_b, user):
    on_a = connect(node_a, user)
    on_a.ok("CREATE Gone")
    on_a.ok("CREATE Kept")
    for mailbox in ("Gone", "Kept"):
        on_a.append(mailbox, numbered(1))
        on_a.ok("SELECT", mailbox)
    on_a.ok("UNSELECT")
    before = {m["guid"]: m["mailbox"] for m in node_a.doveadm_json(
        "mailbox", "status", "-u", user, "guid", "*")}
    connect(node_b, user).ok("DELETE Gone")
    cache = node_a.cache_dir(user)
    assert sorted(p.name for p in cache.iterdir()) == sorted(before)
    # Untouched for two hours, as if long ago: only the deleted mailbox's goes.
    for path in cache.iterdir():
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    young = cache / "0123456789abcdef0123456789abcdef"
    young.mkdir()
    connect(node_a, user).ok("LIST", '""', "*")
    left = sorted(p.name for p in cache.iterdir())
    assert left == sorted([g for g, m in before.items() if m != "Gone"] + [young.name])


def cache_files(node, user):
    """{path relative to the user's cache dir: inode} of every index file on the node."""
    root = node.cache_dir(user)
    return {str(p.relative_to(root)): p.stat().st_ino for p in root.rglob("dovecot.index*")}


@rbd_only
def test_a_name_created_again_on_another_node_gets_new_files_here_and_the_old_stay_untouched(
        connect, node_a, node_b, user):
    """The files a session of this node still has open are never replaced: the panic
    'mail_index_write: assertion failed: (file->hdr.prev_file_seq == hdr->log_file_seq)'
    came from one process replacing a name-keyed cache another process had open."""
    on_b = connect(node_b, user)
    on_b.ok("CREATE Box")
    on_b.append("Box", numbered(1))
    holder = connect(node_a, user)
    holder.ok("SELECT Box")
    before = cache_files(node_a, user)
    on_b.ok("DELETE Box")
    on_b.ok("CREATE Box")
    on_b.append("Box", numbered(2))
    on_b.append("Box", numbered(3))
    other = connect(node_a, user)
    assert other.ok("SELECT Box").lines("2 EXISTS") == ["* 2 EXISTS"]
    after = cache_files(node_a, user)
    assert {path: after.get(path) for path in before} == before
    assert len({path.split("/")[0] for path in after}) == 2   # one directory per GUID
    with pytest.raises(ImapError) as closed:
        holder.command("NOOP")
    assert closed.value.untagged == [b"* BYE IMAP session state is inconsistent, please relogin."]
