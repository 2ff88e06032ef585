"""Dovecot's standard doveadm mail commands on the nodes' storage: what they print, and
what IMAP sees after them. (`doveadm backup` and `sync` are in test_migration.py.)

doveadm runs as the node's own (Node.doveadm), as a separate process beside the imap
processes: on rbd its changes reach IMAP through the cluster, as an operator's would.
"""

from datetime import datetime

import pytest

from imap_connection import quote, selected_state
from messages import message

# (flags, INTERNALDATE, message) of the three messages fill() appends to INBOX.
MESSAGES = [
    (["\\Seen"], "01-Feb-2020 10:11:12 +0100", message(subject="one", body="First.\r\n")),
    (["\\Flagged", "$Work"], "02-Mar-2021 00:00:01 +0000",
     message(subject="two", body="Second, about the budget.\r\n")),
    ([], "03-Apr-2019 23:59:59 -0700", message(subject="three", body="Third.\r\n")),
]


def unixtime(internaldate):
    return int(datetime.strptime(internaldate, "%d-%b-%Y %H:%M:%S %z").timestamp())


def stored(node, msg):
    """The message as the storage keeps it, which is what doveadm's `text` prints: rbd
    keeps what IMAP sent (CRLF), mdbox and Maildir keep LF line ends."""
    return (msg if node.storage == "rbd" else msg.replace(b"\r\n", b"\n")).decode()


def flags(text):
    """doveadm's flags field without the per-session \\Recent."""
    return [f for f in text.split(" ") if f and f != "\\Recent"]


def fill(imap):
    for msg_flags, date, msg in MESSAGES:
        imap.append("INBOX", msg, flags=msg_flags, date=date)


def state(imap, mailbox):
    """EXAMINE's report, with FLAGS and PERMANENTFLAGS as sets: the order in which a
    node's index learnt the keywords is no state of the mailbox."""
    reported = selected_state(imap.ok("EXAMINE", quote(mailbox)))
    for key in ("flags", "permanentflags"):
        reported[key] = set(reported[key])
    return reported


def fetch_flags(imap):
    return {uid: m["FLAGS"] for uid, m in imap.fetch("1:*", "(FLAGS)").items()}


def search(node, user, *query):
    """doveadm search: the UIDs found in INBOX (it prints mailbox GUID and UID)."""
    guid = node.doveadm_json("mailbox", "status", "-u", user, "guid", "INBOX")[0]["guid"]
    lines = node.doveadm_ok("search", "-u", user, "mailbox", "INBOX", *query).splitlines()
    assert all(line.split(" ")[0] == guid for line in lines), lines
    return [int(line.split(" ")[1]) for line in lines]


def test_fetch_prints_every_field_of_every_message(node_a, imap, user):
    fill(imap)
    imap.ok("SELECT INBOX")
    guids = {uid: m["X-GUID"] for uid, m in imap.fetch("1:*", "(X-GUID)").items()}
    rows = node_a.doveadm_json("fetch", "-u", user,
                               "mailbox uid guid flags date.received.unixtime size.virtual text",
                               "mailbox", "INBOX", "all")
    for row in rows:
        row["flags"] = flags(row["flags"])
    assert rows == [
        {"mailbox": "INBOX", "uid": str(uid), "guid": guids[uid], "flags": msg_flags,
         "date.received.unixtime": str(unixtime(date)), "size.virtual": str(len(msg)),
         "text": stored(node_a, msg)}
        for uid, (msg_flags, date, msg) in enumerate(MESSAGES, 1)]


def test_search_finds_messages_by_flag_keyword_date_and_body(node_a, imap, user):
    fill(imap)
    assert search(node_a, user, "all") == [1, 2, 3]
    assert search(node_a, user, "seen") == [1]
    assert search(node_a, user, "unseen") == [2, 3]
    assert search(node_a, user, "keyword", "$Work") == [2]
    assert search(node_a, user, "before", "2020-01-01") == [3]
    assert search(node_a, user, "body", "budget") == [2]


def test_flags_add_remove_and_replace_are_seen_by_imap(node_a, imap, user):
    fill(imap)
    imap.ok("SELECT INBOX")
    node_a.doveadm_ok("flags", "add", "-u", user, "\\Answered $Done", "mailbox", "INBOX",
                      "uid", "1")
    assert imap.ok("NOOP").lines() == [
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work $Done)",
        "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work $Done \\*)] "
        "Flags permitted.",
        "* 1 FETCH (FLAGS (\\Answered \\Seen $Done))"]
    node_a.doveadm_ok("flags", "remove", "-u", user, "\\Seen $Work", "mailbox", "INBOX",
                      "uid", "1:2")
    node_a.doveadm_ok("flags", "replace", "-u", user, "\\Draft custom", "mailbox", "INBOX",
                      "uid", "3")
    assert fetch_flags(imap) == {1: ["\\Answered", "$Done"], 2: ["\\Flagged"],
                                 3: ["\\Draft", "custom"]}


def test_expunge_removes_exactly_the_matching_messages(node_a, imap, user):
    fill(imap)
    imap.ok("SELECT INBOX")
    node_a.doveadm_ok("expunge", "-u", user, "mailbox", "INBOX", "unseen", "before", "2020-01-01")
    assert imap.ok("NOOP").lines() == ["* 3 EXPUNGE"]
    node_a.doveadm_ok("expunge", "-u", user, "mailbox", "INBOX", "uid", "1")
    assert imap.ok("NOOP").lines() == ["* 1 EXPUNGE"]
    assert list(imap.fetch("1:*", "(FLAGS)")) == [2]
    assert search(node_a, user, "all") == [2]


def test_mailbox_create_rename_and_delete_change_the_imap_list(node_a, imap, user):
    node_a.doveadm_ok("mailbox", "create", "-u", user, "-s", "Projects", "Projects/2024")
    imap.append("Projects/2024", MESSAGES[0][2])
    assert sorted(node_a.doveadm_ok("mailbox", "list", "-u", user).split("\n")[:-1]) == [
        "INBOX", "Projects", "Projects/2024"]
    assert sorted(node_a.doveadm_ok("mailbox", "list", "-s", "-u", user).split("\n")[:-1]) == [
        "Projects", "Projects/2024"]

    node_a.doveadm_ok("mailbox", "rename", "-u", user, "Projects", "Archive")
    assert sorted(imap.ok('LIST "" "*"').lines()) == [
        '* LIST (\\HasChildren) "/" Archive',
        '* LIST (\\HasNoChildren) "/" Archive/2024',
        '* LIST (\\HasNoChildren) "/" INBOX']
    assert imap.ok("STATUS Archive/2024 (MESSAGES)").lines() == [
        "* STATUS Archive/2024 (MESSAGES 1)"]

    node_a.doveadm_ok("mailbox", "delete", "-u", user, "Archive/2024", "Archive")
    assert imap.ok('LIST "" "*"').lines() == ['* LIST (\\HasNoChildren) "/" INBOX']


def test_mailbox_status_reports_what_imap_status_does(node_a, imap, user):
    fill(imap)
    imap.ok("SELECT INBOX")
    imap.ok("UID STORE 2 +FLAGS.SILENT (\\Seen)")
    status = imap.ok("STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ)")
    line = [l for l in status.lines() if l.startswith("* STATUS INBOX (")][0]
    words = line[len("* STATUS INBOX ("):-1].split(" ")
    expected = dict(zip([w.lower() for w in words[0::2]], words[1::2]))
    expected["vsize"] = str(sum(len(msg) for _, _, msg in MESSAGES))
    assert node_a.doveadm_json(
        "mailbox", "status", "-u", user,
        "messages uidnext uidvalidity unseen highestmodseq vsize", "INBOX") == [
            dict(mailbox="INBOX", **expected)]


def test_quota_get_and_recalc_report_the_usage(node_a, connect, new_user):
    user = new_user(quota_storage="10k")
    fill(connect(node_a, user))
    kib = (sum(len(msg) for _, _, msg in MESSAGES) + 1023) // 1024
    expected = [
        {"root": "User quota", "type": "STORAGE", "value": str(kib), "limit": "10",
         "percent": str(kib * 100 // 10)},
        {"root": "User quota", "type": "MESSAGE", "value": "3", "limit": "-", "percent": "0"}]
    assert node_a.doveadm_json("quota", "get", "-u", user) == expected
    node_a.doveadm_ok("quota", "recalc", "-u", user)
    assert node_a.doveadm_json("quota", "get", "-u", user) == expected


def test_force_resync_changes_nothing_a_client_sees(node_a, imap, user):
    imap.ok("ENABLE CONDSTORE")
    fill(imap)
    imap.ok("SELECT INBOX")
    imap.ok("UID STORE 3 +FLAGS.SILENT (\\Answered kw)")
    before = state(imap, "INBOX")
    flags_before = fetch_flags(imap)
    node_a.doveadm_ok("force-resync", "-u", user, "*")
    after = state(imap, "INBOX")
    # mdbox's resync raises HIGHESTMODSEQ (CONDSTORE allows that); rbd keeps it, which
    # the next test pins.
    assert after.pop("highestmodseq") >= before.pop("highestmodseq")
    assert after == before
    assert fetch_flags(imap) == flags_before


@pytest.mark.rbd_only("deletes the node's index cache")
def test_force_resync_rebuilds_a_deleted_cache_from_the_cluster(node_a, imap, user):
    imap.ok("ENABLE CONDSTORE")
    fill(imap)
    imap.ok("CREATE Other")
    imap.ok("SELECT INBOX")
    imap.ok("UID STORE 1 +FLAGS.SILENT ($Later)")
    before = {name: state(imap, name) for name in ("INBOX", "Other")}
    flags_before = fetch_flags(imap)
    imap.logout()
    for path in sorted(node_a.cache_dir(user).rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    node_a.doveadm_ok("force-resync", "-u", user, "*")
    guids = node_a.doveadm_json("mailbox", "status", "-u", user, "guid", "INBOX", "Other")
    assert sorted(p.name for p in node_a.cache_dir(user).iterdir()) == \
        sorted(g["guid"] for g in guids)
    again = node_a.login(user)
    try:
        again.ok("ENABLE CONDSTORE")
        assert {name: state(again, name) for name in ("INBOX", "Other")} == before
        assert fetch_flags(again) == flags_before
    finally:
        again.logout()


@pytest.mark.two_nodes
def test_doveadm_on_one_node_changes_what_the_other_node_serves(node_a, node_b, connect, user):
    on_b = connect(node_b, user)
    fill(on_b)
    on_b.ok("SELECT INBOX")
    node_a.doveadm_ok("flags", "add", "-u", user, "\\Deleted", "mailbox", "INBOX", "uid", "2")
    node_a.doveadm_ok("expunge", "-u", user, "mailbox", "INBOX", "deleted")
    node_a.doveadm_ok("flags", "add", "-u", user, "\\Answered", "mailbox", "INBOX", "uid", "3")
    # Dovecot reports the flag change (by the sequence before the expunge) first.
    assert on_b.ok("NOOP").lines() == ["* 3 FETCH (FLAGS (\\Answered))", "* 2 EXPUNGE"]
