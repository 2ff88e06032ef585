"""Migration with doveadm backup/sync: from Maildir (the layout the nodes' users come
from) to the nodes' storage, then from there to mdbox, losing nothing: mailboxes and
their GUIDs, UIDVALIDITY and UIDNEXT, every message's UID, GUID, flags, keywords,
INTERNALDATE and bytes, and the subscriptions. README.md "Migrating users from Maildir"
runs the same commands.

A test user starts on Maildir the way an operator's users do: the userdb field `mail`
points at it (dovecot-dev's per-user passwd-file, DIR/users/NAME), and the mail is made
over IMAP on node A. The migration writes the node's own mail_location, and the switch
drops the `mail` field again. Runs on mdbox too (RBD_IMAP_STORAGE=mdbox): there the
nodes' storage is mdbox.
"""

import poplib

import pytest

from daemons import PASSWORD
from imap_connection import parse, quote, selected_state
from messages import message, numbered

MAILDIR = "maildir:~/Maildir"
MDBOX = "mdbox:~/mdbox"
# Above the suite's rbd_stripe_size (256k): a body split over several objects.
BIG = 300 * 1024
# Every mailbox the seed makes, by IMAP name (Entw&APw-rfe is "Entwürfe").
MAILBOXES = ["INBOX", "Work", "Work/Projects", "Archive/2019", "Entw&APw-rfe",
             "Lists/dovecot", "Empty", "Emptied"]
SUBSCRIBED = ["INBOX", "Work/Projects", "Entw&APw-rfe", "Lists/dovecot"]


def text(value):
    return value.decode() if isinstance(value, bytes) else value


def location_of(node, user):
    """The mail location userdb gives the user on this node, %variables expanded."""
    return node.doveadm_ok("user", "-f", "mail", user).strip()


def set_mail_location(nodes, user, location):
    """Sets the user's userdb field `mail` on every node (None: drops it, so the node's
    mail_location applies), as an operator switches a user; returns when auth answers
    with the new value. Dovecot rereads a changed passwd-file at most once a second."""
    for node in set(nodes):
        node.set_user_fields(user, mail=location)


def seed(conn):
    """Mailboxes (nested, non-ASCII, empty, emptied), messages with every system flag,
    keywords and INTERNALDATEs in several zones, UIDs with gaps and UIDNEXT above the
    last UID (expunged at the end), a body above the stripe size, and subscriptions."""
    for name in MAILBOXES[1:]:
        conn.ok("CREATE", quote(name))
    for name in SUBSCRIBED:
        conn.ok("SUBSCRIBE", quote(name))
    inbox = [
        (["\\Seen", "\\Answered", "$Forwarded"], "01-Feb-2020 10:11:12 +0100"),
        (["\\Seen"], "02-Feb-2020 10:11:12 +0100"),
        (["\\Flagged", "$Label1", "custom"], "31-Dec-1999 23:59:59 +0000"),
        (["\\Draft"], "15-Jun-2023 12:00:00 -0700"),
        (["\\Seen", "\\Deleted", "NonJunk", "$MDNSent"], "29-Feb-2024 08:30:00 +0530"),
        ([], "01-Jan-2024 00:00:00 +0000"),
    ]
    for n, (flags, date) in enumerate(inbox, 1):
        conn.append("INBOX", numbered(n), flags=flags, date=date)
    conn.append("Work/Projects", numbered(7, size=BIG), flags=["$Label2"],
                date="10-Oct-2010 10:10:10 +0200")
    conn.append("Work/Projects", numbered(8), flags=["\\Answered", "\\Flagged"],
                date="11-Oct-2010 10:10:10 +0200")
    conn.append("Entw&APw-rfe", message(subject="Entwurf", body="Gr\u00fc\u00dfe\r\n"),
                flags=["\\Draft", "\\Seen"], date="24-Dec-2022 18:00:00 +0100")
    for n in (9, 10, 11):
        conn.append("Lists/dovecot", numbered(n), flags=["\\Seen"],
                    date="0%d-Mar-2021 09:00:00 +0000" % (n - 8))
    conn.append("Archive/2019", numbered(12), date="05-May-2019 05:05:05 -0500")
    for n in (13, 14):
        conn.append("Emptied", numbered(n))
    expunge(conn, "INBOX", "2,6")
    expunge(conn, "Emptied", "1:*")
    conn.ok("UNSELECT")


def expunge(conn, mailbox, uids):
    conn.ok("SELECT", quote(mailbox))
    conn.ok("UID STORE", uids, "+FLAGS.SILENT (\\Deleted)")
    conn.ok("UID EXPUNGE", uids)


@pytest.fixture
def maildir_user(nodes, node_a, new_user, connect):
    """A fresh user on Maildir, seeded over IMAP on node A; returns (name, the node's
    own location for the user, which the migration writes)."""
    user = new_user()
    target = location_of(node_a, user)
    set_mail_location(nodes, user, MAILDIR)
    seed(connect(node_a, user))
    return user, target


def flags(value):
    return sorted(f for f in value.split(" ") if f and f != "\\Recent")


def snapshot(node, user, location=None):
    """Everything doveadm reports of the user's mail at `location` (default: the user's
    own): per mailbox its GUID, UIDVALIDITY, UIDNEXT and message count; per message
    (by mailbox and UID) its GUID, flags, INTERNALDATE, virtual size and text (with LF
    line ends: Maildir and mdbox store LF, rbd what IMAP sent); the subscriptions."""
    opts = ["-o", "mail_location=" + location] if location else []
    boxes = {}
    for row in node.doveadm_json(*opts, "mailbox", "status", "-u", user,
                                 "guid uidvalidity uidnext messages", "*"):
        boxes[row.pop("mailbox")] = row
    messages = {}
    for row in node.doveadm_json(*opts, "fetch", "-u", user,
                                 "mailbox uid guid flags date.received.unixtime size.virtual text",
                                 "all"):
        messages[row["mailbox"], int(row["uid"])] = (
            row["guid"], flags(row["flags"]), row["date.received.unixtime"],
            row["size.virtual"], row["text"].replace("\r\n", "\n"))
    subscribed = node.doveadm_ok(*opts, "mailbox", "list", "-s", "-u", user)
    return {"mailboxes": boxes, "messages": messages,
            "subscriptions": sorted(subscribed.splitlines())}


def check_seeded(snap):
    """The seed as Maildir reports it: what a lossless copy must reproduce."""
    assert sorted(snap["mailboxes"]) == sorted(
        ["INBOX", "Work", "Work/Projects", "Archive/2019", "Entw\u00fcrfe", "Lists/dovecot",
         "Empty", "Emptied"])
    inbox = snap["mailboxes"]["INBOX"]
    assert (inbox["uidnext"], inbox["messages"]) == ("7", "4")
    assert (snap["mailboxes"]["Emptied"]["uidnext"],
            snap["mailboxes"]["Emptied"]["messages"]) == ("3", "0")
    assert sorted(uid for box, uid in snap["messages"] if box == "INBOX") == [1, 3, 4, 5]
    assert snap["messages"]["INBOX", 5][1] == sorted(
        ["\\Seen", "\\Deleted", "NonJunk", "$MDNSent"])
    assert snap["subscriptions"] == sorted(
        ["INBOX", "Work/Projects", "Entw\u00fcrfe", "Lists/dovecot"])


def imap_view(conn):
    """What a client sees: per mailbox UIDVALIDITY, UIDNEXT and, per UID, FLAGS,
    INTERNALDATE, X-GUID and the whole message; the subscriptions."""
    names = []
    for line in conn.ok('LIST "" "*"').lines():
        list_flags, _, name = parse(line[len("* LIST "):].encode())
        if not {"\\nonexistent", "\\noselect"} & {f.lower() for f in list_flags}:
            names.append(text(name))
    view = {}
    for name in sorted(names):
        state = selected_state(conn.ok("EXAMINE", quote(name)))
        fetched = conn.fetch("1:*", "(FLAGS INTERNALDATE X-GUID BODY.PEEK[])") \
            if state["exists"] else {}
        view[name] = (state["uidvalidity"], state["uidnext"], {
            uid: (sorted(m["FLAGS"]), text(m["INTERNALDATE"]), text(m["X-GUID"]), m["BODY[]"])
            for uid, m in fetched.items()})
    conn.ok("UNSELECT")
    lsub = sorted(text(parse(line[len("* LSUB "):].encode())[2])
                  for line in conn.ok('LSUB "" "*"').lines())
    return view, lsub


def pop3_uidls(node, user):
    conn = poplib.POP3("127.0.0.1", node.pop3_port, timeout=20)
    try:
        conn.user(user)
        conn.pass_(PASSWORD)
        return conn.uidl()[1]
    finally:
        conn.quit()


def test_backup_from_maildir_copies_everything(node_a, maildir_user):
    user, target = maildir_user
    source = snapshot(node_a, user)
    check_seeded(source)
    node_a.doveadm_ok("backup", "-u", user, target)
    assert snapshot(node_a, user, target) == source


def test_backup_again_carries_later_maildir_changes(node_a, connect, maildir_user):
    user, target = maildir_user
    node_a.doveadm_ok("backup", "-u", user, target)
    conn = connect(node_a, user)
    conn.append("INBOX", numbered(20), flags=["$Later"], date="01-Aug-2024 08:00:00 +0000")
    conn.ok("SELECT INBOX")
    conn.ok("UID STORE 1 -FLAGS.SILENT (\\Answered)")
    conn.ok("UID STORE 1 +FLAGS.SILENT ($Label2)")
    conn.ok("UID STORE 3 -FLAGS.SILENT ($Label1 custom)")
    conn.ok("UID STORE 4 +FLAGS.SILENT (\\Deleted)")
    conn.ok("UID EXPUNGE 4")
    conn.ok("CREATE New")
    conn.ok("RENAME Work Job")
    conn.ok("UNSUBSCRIBE", quote("Entw&APw-rfe"))
    conn.ok("SUBSCRIBE New")
    source = snapshot(node_a, user)
    assert sorted(uid for box, uid in source["messages"] if box == "INBOX") == [1, 3, 5, 7]
    assert "Job/Projects" in source["mailboxes"]
    # IMAP RENAME leaves the subscriptions alone: Work/Projects stays subscribed,
    # a subscription without a mailbox, which the copy must keep too.
    assert source["subscriptions"] == ["INBOX", "Lists/dovecot", "New", "Work/Projects"]

    node_a.doveadm_ok("backup", "-u", user, target)
    assert snapshot(node_a, user, target) == source


def test_sync_after_the_switch_carries_what_reached_maildir_meanwhile(nodes, node_a, connect,
                                                                     maildir_user):
    """The README's switch: the last changes on Maildir (a late delivery, a flag set by
    a session still open) come over with a two-way sync once the user is switched."""
    user, target = maildir_user
    node_a.doveadm_ok("backup", "-u", user, target)
    late = connect(node_a, user)
    late.append("INBOX", numbered(50), flags=["$Late"], date="03-Mar-2025 03:03:03 +0000")
    late.ok("SELECT INBOX")
    late.ok("UID STORE 4 +FLAGS.SILENT (\\Seen)")
    source = snapshot(node_a, user)
    set_mail_location(nodes, user, None)
    node_a.doveadm_ok("sync", "-u", user, MAILDIR)
    assert snapshot(node_a, user) == source
    assert source["messages"]["INBOX", 7][1] == ["$Late"]
    assert source["messages"]["INBOX", 4][1] == ["\\Draft", "\\Seen"]


def test_backup_into_an_inbox_the_storage_already_created(node_a, maildir_user):
    """A user who logged in on the new storage before the migration has an empty INBOX
    there with a GUID and UIDVALIDITY of its own: the backup gives it Maildir's."""
    user, target = maildir_user
    created = node_a.doveadm_json("-o", "mail_location=" + target, "mailbox", "status",
                                  "-u", user, "guid uidvalidity messages", "INBOX")[0]
    source = snapshot(node_a, user)
    assert created["messages"] == "0"
    assert created["guid"] != source["mailboxes"]["INBOX"]["guid"]
    node_a.doveadm_ok("backup", "-u", user, target)
    assert snapshot(node_a, user, target) == source


def test_switched_user_sees_the_same_mail_over_imap_and_pop3(nodes, node_a, connect,
                                                             maildir_user):
    user, target = maildir_user
    before = imap_view(connect(node_a, user))
    uidls = pop3_uidls(node_a, user)
    node_a.doveadm_ok("backup", "-u", user, target)
    set_mail_location(nodes, user, None)
    conn = connect(node_a, user)
    assert imap_view(conn) == before
    assert pop3_uidls(node_a, user) == uidls
    uidvalidity = before[0]["INBOX"][0]
    assert conn.append("INBOX", numbered(30)).text.startswith(
        "[APPENDUID %d 7]" % uidvalidity)


@pytest.mark.two_nodes
def test_switched_user_sees_the_same_mail_on_the_other_node(nodes, node_a, node_b, connect,
                                                            maildir_user):
    user, target = maildir_user
    before = imap_view(connect(node_a, user))
    node_a.doveadm_ok("backup", "-u", user, target)
    set_mail_location(nodes, user, None)
    assert imap_view(connect(node_b, user)) == before


def test_backup_to_mdbox_copies_everything(nodes, node_a, maildir_user):
    user, target = maildir_user
    source = snapshot(node_a, user)
    node_a.doveadm_ok("backup", "-u", user, target)
    set_mail_location(nodes, user, None)
    node_a.doveadm_ok("backup", "-u", user, MDBOX)
    assert snapshot(node_a, user) == source
    assert snapshot(node_a, user, MDBOX) == source


def test_sync_with_mdbox_carries_changes_both_ways(nodes, node_a, connect, maildir_user):
    user, target = maildir_user
    node_a.doveadm_ok("backup", "-u", user, target)
    set_mail_location(nodes, user, None)
    node_a.doveadm_ok("backup", "-u", user, MDBOX)

    conn = connect(node_a, user)
    conn.ok("SELECT INBOX")
    conn.ok("UID STORE 3 +FLAGS.SILENT (\\Seen $Done)")
    conn.ok("UID STORE 5 +FLAGS.SILENT (\\Deleted)")
    conn.ok("UID EXPUNGE 5")
    conn.append("INBOX", numbered(40), flags=["\\Flagged"], date="02-Jan-2025 02:02:02 +0000")
    conn.ok("CREATE", quote("From rbd"))
    node_a.doveadm_ok("-o", "mail_location=" + MDBOX, "flags", "add", "-u", user, "$FromMdbox",
                      "mailbox", "Lists/dovecot", "uid", "2")

    node_a.doveadm_ok("sync", "-u", user, MDBOX)
    here = snapshot(node_a, user)
    assert snapshot(node_a, user, MDBOX) == here
    assert sorted(uid for box, uid in here["messages"] if box == "INBOX") == [1, 3, 4, 7]
    assert here["messages"]["INBOX", 3][1] == sorted(
        ["\\Flagged", "\\Seen", "$Done", "$Label1", "custom"])
    assert here["messages"]["INBOX", 7][1] == ["\\Flagged"]
    assert here["messages"]["Lists/dovecot", 2][1] == sorted(["\\Seen", "$FromMdbox"])
    assert "From rbd" in here["mailboxes"]
