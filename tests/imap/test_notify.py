"""NOTIFY (RFC 5465): every event type, for a mailbox other than the selected one and for
the selected one, made by a second session on the same node and by a session on the other
node. The expected untagged responses are Dovecot's own on mdbox (RBD_IMAP_STORAGE=mdbox
runs this file there; RBD_IMAP_SINGLE_NODE=1 runs the other-node cases on one node).

The nodes poll only every 30 s (mailbox_idle_check_interval): a notification that arrives
within WAIT came from a push. Dovecot re-arms the selected mailbox's watch 1 s after a
command ends (IMAP_NOTIFY_WATCH_ADD_DELAY_MSECS), so changes to the selected mailbox wait
that long first. After the expected responses a NOOP (which flushes delayed notifications)
must report nothing more.

mdbox reports a mailbox's status items as all new (UIDVALIDITY too) when its list index
has no status of it yet: mailboxes are STATUSed before NOTIFY SET so that the answers do
not depend on that, except where a test is about a mailbox created afterwards."""

import os
import re
import time

import pytest

from daemons import OP_TIMEOUT, Node
from imap_connection import drop_recent
from messages import message

WAIT = 5.0
WATCH_REARM = 1.5
STORAGE = os.environ.get("RBD_IMAP_STORAGE", "rbd")
RECENT_COUNT = re.compile(r"\* \d+ RECENT$")

PERSONAL = "NOTIFY SET (personal (MessageNew MessageExpunge FlagChange))"


@pytest.fixture(params=["same node", pytest.param("other node", marks=pytest.mark.two_nodes)])
def other(request, connect, node_a, node_b, user):
    """The session that makes the change: on node A beside the notified session, or on
    node B."""
    return connect(node_a if request.param == "same node" else node_b, user)


@pytest.fixture
def watcher(imap, other):
    """The notified session, on node A."""
    return imap


def prepare(conn, *mailboxes):
    """Creates the mailboxes and STATUSes them and INBOX (see the module doc)."""
    for name in mailboxes:
        conn.ok("CREATE", name)
    for name in ("INBOX",) + mailboxes:
        conn.ok("STATUS", name, "(MESSAGES)")


def pushed(conn, count, timeout=WAIT):
    """Up to `count` untagged responses received without a command within timeout
    (without \\Recent: see Response.lines), and the seconds until the last one came."""
    lines = []
    t0 = time.monotonic()
    while len(lines) < count:
        resp, _ = conn.idle_wait(lambda r: True, timeout - (time.monotonic() - t0))
        if resp is None:
            break
        if not RECENT_COUNT.match(resp.decode()):
            lines.append(drop_recent(resp.decode()))
    return lines, time.monotonic() - t0


def expect(conn, expected, push=True, report=None, what=None):
    """The notifications `expected` arrive, pushed (within WAIT) unless push is false,
    and nothing more: a NOOP then reports nothing."""
    lines, waited = pushed(conn, len(expected))
    if not push:
        lines += conn.ok("NOOP").lines()
    assert lines == expected
    assert conn.ok("NOOP").lines() == []
    if report is not None:
        report(what, waited)


def status_value(conn, mailbox, item):
    line = conn.ok("STATUS", mailbox, "(%s)" % item).lines("STATUS")[0]
    return int(re.search(r"%s (\d+)" % item, line).group(1))


# ---- mailboxes other than the selected one ---------------------------------------------

def test_notify_message_new_in_another_mailbox(watcher, other, report, request):
    prepare(watcher, "box")
    watcher.ok(PERSONAL)
    other.append("box", message())
    expect(watcher, ["* STATUS box (MESSAGES 1 UIDNEXT 2 UNSEEN 1)"], report=report,
           what="NOTIFY MessageNew latency, " + request.node.callspec.id)
    other.append("box", message("two"), flags=["\\Seen"])
    expect(watcher, ["* STATUS box (MESSAGES 2 UIDNEXT 3 UNSEEN 1)"])


def test_notify_message_expunge_in_another_mailbox(watcher, other):
    prepare(watcher, "box")
    watcher.append("box", message("one"), flags=["\\Seen"])
    watcher.append("box", message("two"))
    watcher.ok("NOTIFY SET (personal (MessageNew MessageExpunge))")
    other.ok("SELECT", "box")
    other.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    other.ok("EXPUNGE")
    expect(watcher, ["* STATUS box (MESSAGES 1 UIDNEXT 3 UNSEEN 1)"])


def test_notify_seen_flag_change_in_another_mailbox(watcher, other):
    prepare(watcher, "box")
    watcher.append("box", message("one"))
    watcher.append("box", message("two"))
    watcher.ok(PERSONAL)
    other.ok("SELECT", "box")
    other.ok("STORE 1 +FLAGS.SILENT (\\Seen)")
    expect(watcher, ["* STATUS box (UNSEEN 1)"])
    # Without CONDSTORE a change of another flag has nothing to report.
    other.ok("STORE 2 +FLAGS.SILENT (\\Flagged)")
    expect(watcher, [])


def test_notify_flag_change_reports_highestmodseq_with_condstore(watcher, other):
    prepare(watcher, "box")
    watcher.append("box", message())
    watcher.ok("ENABLE CONDSTORE")
    watcher.ok(PERSONAL)
    other.ok("SELECT", "box")
    other.ok("STORE 1 +FLAGS.SILENT (\\Flagged)")
    lines, _ = pushed(watcher, 1)
    assert lines == ["* STATUS box (HIGHESTMODSEQ %d)" %
                     status_value(watcher, "box", "HIGHESTMODSEQ")]
    assert watcher.ok("NOOP").lines() == []


def test_notify_set_status_reports_every_mailbox_at_once(watcher, other):
    prepare(watcher, "box")
    watcher.append("box", message())
    uidvalidity = {name: status_value(watcher, name, "UIDVALIDITY") for name in ("INBOX", "box")}
    resp = watcher.ok("NOTIFY SET STATUS (personal (MessageNew MessageExpunge))")
    assert sorted(resp.lines("STATUS")) == [
        "* STATUS INBOX (MESSAGES 0 UIDNEXT 1 UIDVALIDITY %d UNSEEN 0)" % uidvalidity["INBOX"],
        "* STATUS box (MESSAGES 1 UIDNEXT 2 UIDVALIDITY %d UNSEEN 1)" % uidvalidity["box"]]


def test_notify_mailbox_create_rename_and_delete(watcher, other, report, request):
    prepare(watcher)
    watcher.ok("NOTIFY SET (personal (MailboxName))")
    other.ok("CREATE", "made")
    expect(watcher, ['* LIST (\\HasNoChildren) "/" made'], report=report,
           what="NOTIFY MailboxName latency, " + request.node.callspec.id)
    other.ok("RENAME", "made", "moved")
    # mdbox writes a rename to its list index log only at its next refresh: its NOTIFY
    # reports it at the next NOOP, not at once.
    expect(watcher, ['* LIST (\\HasNoChildren) "/" moved ("OLDNAME" (made))'],
           push=STORAGE != "mdbox")
    other.ok("DELETE", "moved")
    expect(watcher, ['* LIST (\\NonExistent) "/" moved'])


def test_notify_delete_and_create_under_the_same_name(watcher, other):
    prepare(watcher, "box")
    watcher.ok("NOTIFY SET (personal (MailboxName))")
    other.ok("DELETE", "box")
    expect(watcher, ['* LIST (\\NonExistent) "/" box'])
    other.ok("CREATE", "box")
    expect(watcher, ['* LIST (\\HasNoChildren) "/" box'])


def test_notify_a_mailbox_created_later_reports_all_its_status(watcher, other):
    prepare(watcher)
    watcher.ok("NOTIFY SET (personal (MessageNew MessageExpunge MailboxName))")
    other.ok("CREATE", "later")
    expect(watcher, ['* LIST (\\HasNoChildren) "/" later'])
    other.append("later", message())
    lines, _ = pushed(watcher, 1)
    assert lines == ["* STATUS later (MESSAGES 1 UIDNEXT 2 UIDVALIDITY %d UNSEEN 1)" %
                     status_value(watcher, "later", "UIDVALIDITY")]
    assert watcher.ok("NOOP").lines() == []


def test_notify_a_mailbox_created_and_appended_to_at_once_reports_both(watcher, other):
    prepare(watcher)
    watcher.ok("NOTIFY SET (personal (MessageNew MessageExpunge MailboxName))")
    other.ok("CREATE", "later")
    other.append("later", message())
    lines, _ = pushed(watcher, 2)
    assert lines == ['* LIST (\\HasNoChildren) "/" later',
                     "* STATUS later (MESSAGES 1 UIDNEXT 2 UIDVALIDITY %d UNSEEN 1)" %
                     status_value(watcher, "later", "UIDVALIDITY")]
    assert watcher.ok("NOOP").lines() == []

def test_notify_subscription_change(watcher, other, report, request):
    prepare(watcher, "box")
    watcher.ok("NOTIFY SET (personal (SubscriptionChange))")
    other.ok("SUBSCRIBE", "box")
    expect(watcher, ['* LIST (\\Subscribed \\HasNoChildren) "/" box'], report=report,
           what="NOTIFY SubscriptionChange latency, " + request.node.callspec.id)
    other.ok("UNSUBSCRIBE", "box")
    expect(watcher, ['* LIST (\\HasNoChildren) "/" box'])


def test_notify_rename_of_a_subscribed_mailbox_is_reported_as_the_rename_alone(watcher,
                                                                               other):
    prepare(watcher, "a")
    watcher.ok("SUBSCRIBE", "a")
    watcher.ok("NOTIFY SET (personal (MailboxName SubscriptionChange))")
    other.ok("RENAME", "a", "b")
    expect(watcher, ['* LIST (\\HasNoChildren) "/" b ("OLDNAME" (a))'],
           push=STORAGE != "mdbox")

def test_notify_reports_only_the_mailboxes_and_events_asked_for(watcher, other):
    prepare(watcher, "quiet", "loud")
    watcher.ok("NOTIFY SET (mailboxes loud (MessageNew MessageExpunge))")
    other.append("quiet", message("one"))
    other.ok("CREATE", "new")
    other.ok("SUBSCRIBE", "loud")
    other.append("loud", message("two"))
    expect(watcher, ["* STATUS loud (MESSAGES 1 UIDNEXT 2 UNSEEN 1)"])


def test_notify_none_stops_notifications(watcher, other):
    prepare(watcher, "box")
    watcher.ok(PERSONAL)
    watcher.ok("NOTIFY NONE")
    other.append("box", message())
    expect(watcher, [])


# ---- the selected mailbox --------------------------------------------------------------

SELECTED = "NOTIFY SET (selected (MessageNew (UID FLAGS) MessageExpunge FlagChange))"


def test_notify_selected_message_new_flag_change_and_expunge(watcher, other, report,
                                                             request):
    watcher.append("INBOX", message("one"))
    watcher.ok("SELECT", "INBOX")
    watcher.ok(SELECTED)
    other.ok("SELECT", "INBOX")
    time.sleep(WATCH_REARM)
    other.append("INBOX", message("two"))
    expect(watcher, ["* 2 EXISTS", "* 2 FETCH (UID 2 FLAGS ())"], report=report,
           what="NOTIFY selected MessageNew latency, " + request.node.callspec.id)
    time.sleep(WATCH_REARM)
    other.ok("STORE 1 +FLAGS.SILENT (\\Seen)")
    expect(watcher, ["* 1 FETCH (FLAGS (\\Seen))"])
    time.sleep(WATCH_REARM)
    other.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    expect(watcher, ["* 1 FETCH (FLAGS (\\Deleted \\Seen))"])
    time.sleep(WATCH_REARM)
    other.ok("EXPUNGE")
    expect(watcher, ["* 1 EXPUNGE"])


def test_notify_selected_mailbox_is_not_reported_as_status(watcher, other):
    prepare(watcher, "box")
    watcher.ok("SELECT", "box")
    watcher.ok("NOTIFY SET (selected (MessageNew (UID) MessageExpunge)) "
               "(personal (MessageNew MessageExpunge))")
    time.sleep(WATCH_REARM)
    other.append("box", message())
    expect(watcher, ["* 1 EXISTS", "* 1 FETCH (UID 1)"])


@pytest.mark.rbd_only("mdbox reports a change made while imap re-arms its watch only at the "
                      "next poll (30 s) or NOOP")
def test_notify_selected_change_while_imap_rearms_its_watch_comes_at_once(watcher, other):
    watcher.append("INBOX", message("one"))
    watcher.ok("SELECT", "INBOX")
    other.ok("SELECT", "INBOX")
    watcher.ok(SELECTED)
    time.sleep(WATCH_REARM)
    other.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert pushed(watcher, 1)[0] == ["* 1 FETCH (FLAGS (\\Deleted))"]
    # imap reported that as a command of its own: its watch is off for a second now.
    other.ok("EXPUNGE")
    expect(watcher, ["* 1 EXPUNGE"])

# ---- without a watch -------------------------------------------------------------------

POLL_INTERVAL = 1


@pytest.fixture(scope="module")
def polling_node(work_dir, cluster):
    """A node on the shared cluster that polls every POLL_INTERVAL s."""
    with Node.running("P", work_dir / "node-p", "rbd", cluster, op_timeout="%ds" % OP_TIMEOUT,
                      idle_check_interval=POLL_INTERVAL) as node:
        yield node


@pytest.mark.rbd_only("a node of its own on the cluster; reads the user's objects")
def test_notify_without_a_list_watch_polls_and_misses_nothing(polling_node, cluster,
                                                              connect, node_b, user):
    polling_node.add_user(user)
    watcher = connect(polling_node, user)
    # A new user has no mailbox list object yet: there is nothing to watch.
    watcher.ok("NOTIFY SET (personal (MailboxName))")
    assert "r" not in cluster.objects("mail-index", user)
    connect(node_b, user).ok("CREATE", "box")
    lines, _ = pushed(watcher, 1, timeout=POLL_INTERVAL * 3 + 2)
    assert lines == ['* LIST (\\HasNoChildren) "/" box']
