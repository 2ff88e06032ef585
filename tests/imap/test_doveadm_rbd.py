"""doveadm rbd stat / ls / check / gc on a user served by the nodes.

doveadm runs through `dovecot-dev doveadm` (the build tree's doveadm plugin in
a private mount namespace). Bodies above rbd_inline_max (8k by default) are
objects of their own; smaller ones travel inline in the index.
"""

import struct
import subprocess

import pytest

from imap_connection import selected_state, status_items
from messages import numbered

pytestmark = pytest.mark.rbd_only("doveadm rbd inspects the cluster")

BIG = 20000  # stored as m.<guid>


def table(output):
    """`doveadm -f tab` output as a list of {column: value}."""
    lines = output.rstrip("\n").split("\n")
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def doveadm_ok(node, *args):
    status, out = node.doveadm(*args)
    assert status == 0, out
    return out


def bodies(cluster, user):
    return [name for name in cluster.objects("mail", user) if name.startswith("m.")]


def fill(imap):
    """INBOX: two small messages and a big one; Work: one big one."""
    imap.ok("CREATE Work")
    imap.append("INBOX", numbered(1))
    imap.append("INBOX", numbered(2, size=BIG))
    imap.append("INBOX", numbered(3))
    imap.append("Work", numbered(4, size=BIG))
    imap.ok("SELECT INBOX")


def test_stat_reports_each_mailbox_from_the_cluster(node_a, imap, user):
    fill(imap)
    imap.ok("UID STORE 1 +FLAGS.SILENT (\\Seen)")
    sizes = imap.fetch("1:*", "(RFC822.SIZE)")
    inbox = selected_state(imap.ok("EXAMINE INBOX"))
    guids = {row["mailbox"]: row["guid"] for row in table(doveadm_ok(
        node_a, "-f", "tab", "mailbox", "status", "-u", user, "guid", "*"))}

    rows = {row["mailbox"]: row for row in table(doveadm_ok(
        node_a, "-f", "tab", "rbd", "stat", "-u", user))}
    assert rows["INBOX"] == {
        "mailbox": "INBOX", "guid": guids["INBOX"], "messages": "3",
        "bytes": str(sum(int(m["RFC822.SIZE"]) for m in sizes.values())),
        "uidnext": "4", "highestmodseq": str(inbox["highestmodseq"]), "objects": "2",
        # Three records, two inline bodies, four change-log entries (three appends, one
        # flag change).
        "omap-keys": "9", "changelog": "4", "shards": "0", "shard-keys": "0"}
    assert rows["Work"]["messages"] == "1"
    assert rows["Work"]["objects"] == "2"
    assert set(rows) == {"INBOX", "Work"}

    only = table(doveadm_ok(node_a, "-f", "tab", "rbd", "stat", "-u", user, "Work"))
    assert [row["mailbox"] for row in only] == ["Work"]


def test_stat_shows_the_change_log_trimmed_to_its_window(connect, node_a, new_user):
    user = new_user(settings={"rbd_changelog_max_entries": 3})
    imap = connect(node_a, user)
    for i in range(1, 6):
        imap.append("INBOX", numbered(i))
    imap.ok("SELECT INBOX")
    imap.ok("UID STORE 1:5 +FLAGS.SILENT (\\Seen)")
    [row] = table(doveadm_ok(node_a, "-f", "tab", "rbd", "stat", "-u", user, "INBOX"))
    assert (row["changelog"], row["omap-keys"]) == ("3", str(5 + 5 + 3))


def test_ls_lists_exactly_the_users_objects(cluster, node_a, imap, user):
    fill(imap)
    rows = table(doveadm_ok(node_a, "-f", "tab", "rbd", "ls", "-u", user))
    listed = {(row["pool"], row["object"]): row for row in rows}
    expected = {("mail-index", name) for name in cluster.objects("mail-index", user)} | \
               {("mail", name) for name in cluster.objects("mail", user)}
    assert set(listed) == expected
    kinds = sorted(row["kind"] for row in rows)
    assert kinds == ["body", "body", "index", "index", "mailbox list"]
    for (pool, name), row in listed.items():
        if row["kind"] == "body":
            size = int(cluster.rados(pool, user, "stat", name).split("size ")[1])
            assert int(row["size"]) == size > BIG


def test_check_finds_a_lost_body_and_an_orphan_and_repair_fixes_them(
        cluster, node_a, node_b, imap, user, connect):
    fill(imap)
    status, out = node_a.doveadm("-f", "tab", "rbd", "check", "-u", user)
    assert (status, table(out)) == (0, [])

    inbox_body = next(iter(imap.fetch("2", "(X-GUID)").values()))["X-GUID"]
    lost = "m." + inbox_body
    assert lost in bodies(cluster, user)
    work_body = [b for b in bodies(cluster, user) if b != lost][0]
    # An orphan: a copy of a real body (data and xattrs) under a GUID no record names.
    orphan = "m." + "0" * 28 + "abcd"
    cluster.copy_object("mail", user, work_body, orphan, ("meta", "ref"))
    cluster.rados("mail", user, "rm", lost)

    # Young unreferenced bodies are saves in flight: the orphan shows only
    # once it is older than rbd_gc_grace.
    status, out = node_a.doveadm("-f", "tab", "rbd", "check", "-u", user)
    assert status != 0
    assert [(r["problem"], r["state"]) for r in table(out)] == [("missing-body", "")]
    assert "INBOX UID 2: body %s does not exist" % lost in out

    grace0 = ("-o", "plugin/rbd_gc_grace=0")
    status, out = node_a.doveadm(*grace0, "-f", "tab", "rbd", "check", "-u", user)
    assert status != 0
    assert sorted(r["problem"] for r in table(out)) == ["missing-body", "unreferenced-body"]

    rows = table(doveadm_ok(node_a, *grace0, "-f", "tab", "rbd", "check", "--repair",
                            "-u", user))
    assert sorted((r["problem"], r["state"]) for r in rows) == [
        ("missing-body", "repaired"), ("unreferenced-body", "repaired")]
    status, out = node_a.doveadm(*grace0, "-f", "tab", "rbd", "check", "-u", user)
    assert (status, table(out)) == (0, [])
    assert orphan not in bodies(cluster, user)

    on_b = connect(node_b, user)
    assert selected_state(on_b.ok("SELECT INBOX"))["exists"] == 2
    assert sorted(on_b.fetch("1:*", "(UID)")) == [1, 3]
    body = next(iter(on_b.fetch("3", "(BODY.PEEK[])").values()))["BODY[]"]
    assert body == numbered(3)


STATE_SEEN_TAG = 12   # the state's \\Seen count (storage-rbd/src/record_codec.cc)


def drop_state_field(cluster, user, mailbox_guid, tag):
    """Rewrites a mailbox's index state without one field, as a writer from before the
    field existed left it (header: type, version, 4-byte payload length; then fields of
    tag, 4-byte length, value)."""
    index, rados = "i." + mailbox_guid, cluster.rados_args("mail-index", user)
    raw = subprocess.run(rados + ["getxattr", index, "state"], check=True,
                         stdout=subprocess.PIPE).stdout
    fields, at = b"", 6
    while at < len(raw):
        (length,) = struct.unpack_from("<I", raw, at + 1)
        if raw[at] != tag:
            fields += raw[at:at + 5 + length]
        at += 5 + length
    assert len(fields) < len(raw) - 6, "no field %d in the state" % tag
    state = raw[:2] + struct.pack("<I", len(fields)) + fields
    subprocess.run(rados + ["setxattr", index, "state"], input=state, check=True)


def test_a_state_without_the_seen_count_answers_unseen_from_the_cache_until_repaired(
        cluster, node_a, connect, user):
    conn = connect(node_a, user)
    conn.append("INBOX", numbered(1), flags=["\\Seen"])
    conn.append("INBOX", numbered(2))
    guid = conn.ok("STATUS INBOX (X-GUID)").lines("STATUS")[0].split()[-1].rstrip(")")
    drop_state_field(cluster, user, guid, STATE_SEEN_TAG)
    conn.append("INBOX", numbered(3))   # not counted: the state has no count to keep

    unseen = "STATUS INBOX (MESSAGES UNSEEN)"
    assert status_items(conn.ok(unseen)) == {"messages": 3, "unseen": 2}
    rows = table(node_a.doveadm("-f", "tab", "rbd", "check", "-u", user)[1])
    assert [r["problem"] for r in rows] == ["wrong-counters"]
    assert "seen not counted" in rows[0]["detail"], rows
    rows = table(doveadm_ok(node_a, "-f", "tab", "rbd", "check", "--repair", "-u", user))
    assert [(r["problem"], r["state"]) for r in rows] == [("wrong-counters", "repaired")]
    assert table(doveadm_ok(node_a, "-f", "tab", "rbd", "check", "-u", user)) == []
    # Counted from the records, and kept from then on.
    conn.append("INBOX", numbered(4), flags=["\\Seen"])
    conn.append("INBOX", numbered(5))
    assert status_items(conn.ok(unseen)) == {"messages": 5, "unseen": 3}


def test_gc_reclaims_an_unreferenced_body_after_the_grace_period(cluster, node_a, imap, user):
    imap.append("INBOX", numbered(1, size=BIG))
    source = bodies(cluster, user)[0]
    orphan = "m." + "0" * 28 + "beef"
    cluster.copy_object("mail", user, source, orphan, ("meta", "ref"))

    kept = table(doveadm_ok(node_a, "-f", "tab", "rbd", "gc", "-u", user))
    assert kept == [{"scanned": "2", "reclaimed": "0", "in-grace": "1",
                     "indexes-reclaimed": "0"}]
    reclaimed = table(doveadm_ok(node_a, "-o", "plugin/rbd_gc_grace=0", "-f", "tab",
                                 "rbd", "gc", "-u", user))
    assert reclaimed == [{"scanned": "2", "reclaimed": "1", "in-grace": "0",
                          "indexes-reclaimed": "0"}]
    assert bodies(cluster, user) == [source]


def drop_indexes(cluster, user, keep_root=True):
    for name in cluster.objects("mail-index", user):
        if name.startswith("i.") or (name == "r" and not keep_root):
            cluster.rados("mail-index", user, "rm", name)


def test_rebuild_recreates_every_lost_index_from_the_bodies(cluster, node_a, node_b, imap, user,
                                                             connect):
    imap.ok("CREATE Work")
    imap.ok("CREATE Sub/Deep")
    saved = {"INBOX": [numbered(1, size=BIG), numbered(2, size=BIG)],
             "Work": [numbered(3, size=BIG)], "Sub/Deep": [numbered(4, size=BIG)]}
    for mailbox, messages in saved.items():
        for message in messages:
            imap.append(mailbox, message, date="01-Feb-2024 10:00:00 +0000")
    imap.append("INBOX", numbered(5))  # small: inline in the index, lost with it
    old = selected_state(imap.ok("EXAMINE INBOX"))
    imap.ok("LOGOUT")

    drop_indexes(cluster, user)
    rows = table(doveadm_ok(node_a, "-f", "tab", "rbd", "rebuild", "-u", user))
    assert rows == [{"mailboxes": "3", "messages": "4"}]
    assert table(doveadm_ok(node_a, "-f", "tab", "rbd", "rebuild", "-u", user)) == [
        {"mailboxes": "0", "messages": "0"}], "nothing is lost any more"

    on_b = connect(node_b, user)
    for mailbox, messages in saved.items():
        state = selected_state(on_b.ok("SELECT", '"%s"' % mailbox))
        assert state["exists"] == len(messages)
        if mailbox == "INBOX":
            assert state["uidvalidity"] != old["uidvalidity"]
        fetched = on_b.fetch("1:*", "(BODY.PEEK[] INTERNALDATE)")
        # Save order is kept to the second: these were saved within one.
        assert sorted(m["BODY[]"] for m in fetched.values()) == sorted(messages)
        assert {m["INTERNALDATE"] for m in fetched.values()} == {b"01-Feb-2024 10:00:00 +0000"}
    status, out = node_a.doveadm("-f", "tab", "rbd", "check", "-u", user)
    assert (status, table(out)) == (0, [])


def test_rebuild_without_the_mailbox_list_names_mailboxes_by_guid(cluster, node_a, imap, user):
    imap.ok("CREATE Work")
    imap.append("Work", numbered(1, size=BIG))
    guid = table(doveadm_ok(node_a, "-f", "tab", "rbd", "stat", "-u", user, "Work"))[0]["guid"]
    drop_indexes(cluster, user, keep_root=False)
    assert table(doveadm_ok(node_a, "-f", "tab", "rbd", "rebuild", "-u", user)) == [
        {"mailboxes": "1", "messages": "1"}]
    rows = table(doveadm_ok(node_a, "-f", "tab", "rbd", "stat", "-u", user))
    # INBOX always exists: Dovecot creates it when the list is read.
    assert sorted((r["mailbox"], r["messages"]) for r in rows) == [
        ("INBOX", "0"), ("Recovered/" + guid, "1")]


def test_force_resync_recreates_a_lost_index(cluster, node_a, imap, user):
    imap.append("INBOX", numbered(1, size=BIG))
    inbox = "i." + table(doveadm_ok(node_a, "-f", "tab", "rbd", "stat", "-u", user,
                                    "INBOX"))[0]["guid"]
    cluster.rados("mail-index", user, "rm", inbox)
    doveadm_ok(node_a, "force-resync", "-u", user, "INBOX")
    assert inbox in cluster.objects("mail-index", user)
    rows = table(doveadm_ok(node_a, "-f", "tab", "rbd", "stat", "-u", user, "INBOX"))
    assert [(r["guid"], r["messages"]) for r in rows] == [(inbox[2:], "1")]


def test_rebuild_never_brings_back_a_deleted_mailbox_whose_messages_moved_on(
        cluster, node_a, imap, user):
    # The bodies were first saved to Work; one was copied and one moved to INBOX before
    # Work was deleted. Their records in INBOX reference them: nothing is lost.
    imap.ok("CREATE Work")
    for i in (1, 2, 3):
        imap.append("Work", numbered(i, size=BIG))
    imap.ok("SELECT Work")
    imap.ok("UID COPY 1 INBOX")
    imap.ok("UID MOVE 2 INBOX")
    imap.ok("UNSELECT")
    imap.ok("DELETE Work")
    assert table(doveadm_ok(node_a, "-f", "tab", "rbd", "rebuild", "-u", user)) == [
        {"mailboxes": "0", "messages": "0"}]
    assert [line for line in imap.ok('LIST "" *').lines() if "Recovered" in line] == []
    assert selected_state(imap.ok("EXAMINE INBOX"))["exists"] == 2
    grace0 = ("-o", "plugin/rbd_gc_grace=0")
    status, out = node_a.doveadm(*grace0, "-f", "tab", "rbd", "check", "-u", user)
    assert (status, table(out)) == (0, []), "no reference was raised"


def test_opening_a_mailbox_whose_index_is_lost_recreates_that_one_only(cluster, node_a, imap,
                                                                      user):
    imap.ok("CREATE Work")
    imap.append("INBOX", numbered(1, size=BIG))
    imap.append("Work", numbered(2, size=BIG))
    guids = {r["mailbox"]: r["guid"]
             for r in table(doveadm_ok(node_a, "-f", "tab", "rbd", "stat", "-u", user))}
    for guid in guids.values():
        cluster.rados("mail-index", user, "rm", "i." + guid)
    doveadm_ok(node_a, "force-resync", "-u", user, "INBOX")
    indexes = set(cluster.objects("mail-index", user))
    assert "i." + guids["INBOX"] in indexes
    assert "i." + guids["Work"] not in indexes, "rebuilt though nobody opened it"
    assert table(doveadm_ok(node_a, "-f", "tab", "rbd", "rebuild", "-u", user)) == [
        {"mailboxes": "1", "messages": "1"}]
