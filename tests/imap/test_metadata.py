"""IMAP METADATA (RFC 5464). The nodes keep mailbox and server entries in
mail_attribute_dict: on rbd the plugin's dict driver (rbd:) stores them in RADOS, so what
node A sets node B reads at once; on mdbox a file in the user's home (the two_nodes tests
are skipped there, see conftest.py)."""

import uuid

import pytest

from imap_connection import Literal, parse, quote

two_nodes = pytest.mark.two_nodes


def get_metadata(conn, mailbox, entries, depth=None):
    """{entry: value (str, or None for NIL)} of one GETMETADATA."""
    options = "(DEPTH %s) " % depth if depth is not None else ""
    resp = conn.ok("GETMETADATA %s%s (%s)" % (options, quote(mailbox), " ".join(entries)))
    if not resp.untagged:
        return {}
    assert len(resp.untagged) == 1, resp.untagged
    assert resp.untagged[0].startswith(b"* METADATA "), resp.untagged
    name, pairs = parse(resp.untagged[0][len(b"* METADATA "):])
    assert (name.decode() if isinstance(name, bytes) else name) == mailbox
    return {key: None if value is None else value.decode()
            for key, value in zip(pairs[::2], pairs[1::2])}


def set_metadata(conn, mailbox, entries):
    """SETMETADATA of {entry: value (str, or None to remove it)}."""
    pairs = " ".join("%s %s" % (entry, "NIL" if value is None else quote(value))
                     for entry, value in entries.items())
    return conn.ok("SETMETADATA %s (%s)" % (quote(mailbox), pairs))


@two_nodes
def test_private_entries_set_on_a_are_read_on_b(connect, node_a, node_b, user):
    on_a = connect(node_a, user)
    # A new user's first command: INBOX does not exist in the storage yet.
    set_metadata(on_a, "INBOX", {"/private/comment": "inbox note",
                                 "/private/vendor/test/color": "blue"})
    set_metadata(on_a, "", {"/private/comment": "server note"})
    on_b = connect(node_b, user)
    assert get_metadata(on_b, "INBOX", ["/private/comment", "/private/vendor/test/color",
                                        "/private/vendor/test/size"]) == {
        "/private/comment": "inbox note", "/private/vendor/test/color": "blue",
        "/private/vendor/test/size": None}
    assert get_metadata(on_b, "", ["/private/comment"]) == {"/private/comment": "server note"}


@two_nodes
def test_shared_entries_set_on_a_are_read_on_b(connect, node_a, node_b, user):
    on_a = connect(node_a, user)
    on_a.ok("CREATE", "team")
    set_metadata(on_a, "team", {"/shared/comment": "for everyone",
                                "/private/comment": "for me"})
    on_b = connect(node_b, user)
    assert get_metadata(on_b, "team", ["/shared/comment", "/private/comment"]) == {
        "/shared/comment": "for everyone", "/private/comment": "for me"}
    assert get_metadata(on_b, "INBOX", ["/shared/comment"]) == {"/shared/comment": None}


@two_nodes
def test_nil_on_b_removes_the_entry_for_a(connect, node_a, node_b, user):
    on_a = connect(node_a, user)
    set_metadata(on_a, "INBOX", {"/private/vendor/test/a": "1", "/private/vendor/test/b": "2",
                                 "/shared/vendor/test/c": "3"})
    on_b = connect(node_b, user)
    set_metadata(on_b, "INBOX", {"/private/vendor/test/a": None, "/shared/vendor/test/c": None})
    assert get_metadata(on_a, "INBOX", ["/private/vendor/test/a", "/private/vendor/test/b",
                                        "/shared/vendor/test/c"]) == {
        "/private/vendor/test/a": None, "/private/vendor/test/b": "2",
        "/shared/vendor/test/c": None}
    assert get_metadata(on_a, "INBOX", ["/private/vendor/test", "/shared/vendor/test"],
                        depth="infinity") == {"/private/vendor/test/b": "2"}


@two_nodes
def test_entries_written_alternately_on_a_and_b_are_all_kept(connect, node_a, node_b, user):
    on_a = connect(node_a, user)
    on_b = connect(node_b, user)
    for i in range(6):
        set_metadata(on_a if i % 2 == 0 else on_b, "INBOX", {"/private/vendor/n/%d" % i: str(i)})
    want = {"/private/vendor/n/%d" % i: str(i) for i in range(6)}
    assert get_metadata(on_a, "INBOX", ["/private/vendor/n"], depth="infinity") == want
    assert get_metadata(on_b, "INBOX", ["/private/vendor/n"], depth="infinity") == want


def test_depth_selects_the_entry_one_level_or_the_whole_subtree(imap):
    set_metadata(imap, "INBOX", {"/private/vendor/t/a": "1", "/private/vendor/t/b/c": "2",
                                 "/private/vendor/t/b/d/e": "3", "/private/vendor/tu": "4",
                                 "/shared/vendor/t/s": "5"})
    tree = ["/private/vendor/t"]
    assert get_metadata(imap, "INBOX", tree) == {"/private/vendor/t": None}
    assert get_metadata(imap, "INBOX", tree, depth="0") == {"/private/vendor/t": None}
    assert get_metadata(imap, "INBOX", tree, depth="1") == {"/private/vendor/t/a": "1"}
    assert get_metadata(imap, "INBOX", tree, depth="infinity") == {
        "/private/vendor/t/a": "1", "/private/vendor/t/b/c": "2", "/private/vendor/t/b/d/e": "3"}
    assert get_metadata(imap, "INBOX", ["/private/vendor/t/b", "/shared/vendor"],
                        depth="infinity") == {
        "/private/vendor/t/b/c": "2", "/private/vendor/t/b/d/e": "3",
        "/shared/vendor/t/s": "5"}


def test_values_keep_every_byte(imap):
    value = b"line 1\r\nline 2 \"quoted\" \\ tab\t caf\xc3\xa9 " + b"x" * 3000
    imap.ok("SETMETADATA INBOX (/private/vendor/test/raw", Literal(value), "/private/comment",
            '"")')
    resp = imap.ok("GETMETADATA INBOX (/private/vendor/test/raw /private/comment)")
    _, pairs = parse(resp.untagged[0][len(b"* METADATA "):])
    assert pairs == ["/private/vendor/test/raw", value, "/private/comment", b""]


def test_entries_are_per_user(connect, node_a, new_user):
    first, second = new_user(), new_user()
    set_metadata(connect(node_a, first), "", {"/private/comment": "mine"})
    other = connect(node_a, second)
    assert get_metadata(other, "", ["/private/comment"]) == {"/private/comment": None}
    set_metadata(other, "", {"/private/comment": "theirs"})
    assert get_metadata(connect(node_a, first), "", ["/private/comment"]) == {
        "/private/comment": "mine"}


def test_entries_follow_a_renamed_mailbox_and_a_recreated_name_starts_empty(imap):
    imap.ok("CREATE", "work")
    set_metadata(imap, "work", {"/private/comment": "w", "/shared/comment": "s"})
    imap.ok("RENAME", "work", "done")
    entries = ["/private/comment", "/shared/comment"]
    assert get_metadata(imap, "done", entries) == {"/private/comment": "w",
                                                   "/shared/comment": "s"}
    imap.ok("CREATE", "work")
    assert get_metadata(imap, "work", entries) == {"/private/comment": None,
                                                   "/shared/comment": None}
    imap.ok("DELETE", "done")
    imap.ok("CREATE", "done")
    assert get_metadata(imap, "done", entries) == {"/private/comment": None,
                                                   "/shared/comment": None}


def test_shared_entries_of_mailboxes_with_one_guid_stay_with_their_user(connect, node_a, node_b,
                                                                         new_user):
    """A mailbox GUID is unique only within one user: `doveadm mailbox create -g` and dsync
    from a template give two users the same one. Their /shared/ entries must not meet."""
    first, second = new_user(), new_user()
    guid = uuid.uuid4().hex
    node_a.doveadm_ok("mailbox", "create", "-u", first, "-g", guid, "team")
    node_b.doveadm_ok("mailbox", "create", "-u", second, "-g", guid, "team")
    on_a, on_b = connect(node_a, first), connect(node_b, second)
    entries = ["/shared/comment", "/shared/vendor/test/x"]
    set_metadata(on_a, "team", {"/shared/comment": "first's", "/shared/vendor/test/x": "1"})
    assert get_metadata(on_b, "team", entries) == {"/shared/comment": None,
                                                   "/shared/vendor/test/x": None}
    assert get_metadata(on_b, "team", ["/shared"], depth="infinity") == {}
    set_metadata(on_b, "team", {"/shared/comment": "second's"})
    set_metadata(on_b, "team", {"/shared/comment": None})
    assert get_metadata(on_a, "team", entries) == {"/shared/comment": "first's",
                                                   "/shared/vendor/test/x": "1"}
    assert get_metadata(on_b, "team", entries) == {"/shared/comment": None,
                                                   "/shared/vendor/test/x": None}


@pytest.mark.rbd_only("writes the dictionary layout of earlier versions into the cluster")
def test_shared_entries_kept_where_every_user_shared_them_are_adopted(connect, cluster, node_a,
                                                                       node_b, new_user):
    """Earlier versions kept every user's mailbox /shared/ entries in one object of the
    pool's default namespace, keyed by mailbox GUID alone. After an upgrade each user who
    owns a mailbox with that GUID reads them once more, and from then on has a copy of
    their own; a user without such a mailbox never sees them."""
    first, second, third = new_user(), new_user(), new_user()
    guid = uuid.uuid4().hex
    pool = cluster.env["RBD_TEST_INDEX_POOL"]
    cluster.rados(pool, "", "setomapval", "d", "shared/%s/comment" % guid, "old")
    cluster.rados(pool, "", "setomapval", "d", "shared/%s/vendor/test/x" % guid, "1")
    for user in (first, second):
        node_a.doveadm_ok("mailbox", "create", "-u", user, "-g", guid, "team")
    node_a.doveadm_ok("mailbox", "create", "-u", third, "team")
    on_a, on_b = connect(node_a, first), connect(node_b, second)
    assert get_metadata(on_a, "team", ["/shared"], depth="infinity") == {
        "/shared/comment": "old", "/shared/vendor/test/x": "1"}
    set_metadata(on_a, "team", {"/shared/comment": "new"})
    assert get_metadata(on_b, "team", ["/shared/comment"]) == {"/shared/comment": "old"}
    set_metadata(on_b, "team", {"/shared/comment": None})
    assert get_metadata(connect(node_b, first), "team", ["/shared/comment"]) == {
        "/shared/comment": "new"}
    assert get_metadata(on_b, "team", ["/shared/comment"]) == {"/shared/comment": None}
    assert get_metadata(connect(node_b, third), "team", ["/shared/comment"]) == {
        "/shared/comment": None}
    assert "old" in cluster.rados(pool, "", "listomapvals", "d")
