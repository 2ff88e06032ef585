"""IDLE on one node: changes from another session arrive while idling.

The nodes poll only every 30 s (mailbox_idle_check_interval), so anything that arrives
within IDLE_WAIT came from a change notification."""

from imap_connection import drop_recent
from messages import numbered

IDLE_WAIT = 5.0


def idle_until(conn, expected, timeout=IDLE_WAIT):
    """Wait while idling for the untagged response `expected` (\\Recent ignored);
    returns the latency in seconds, or fails after timeout."""
    resp, waited = conn.idle_wait(lambda r: drop_recent(r.decode()) == expected, timeout)
    assert resp is not None, "no %r within %.0f s of IDLE" % (expected, timeout)
    return waited


def test_idle_is_acknowledged_and_done_completes_it(imap):
    imap.ok("SELECT", "INBOX")
    assert imap.idle_start() == b"+ idling"
    resp = imap.idle_done()
    assert (resp.untagged, resp.tagged) == ([], "OK Idle completed")


def test_idle_reports_exists_for_an_append_by_another_session(imap, connect, node_a, user,
                                                             report):
    imap.append("INBOX", numbered(1))
    imap.ok("SELECT", "INBOX")
    other = connect(node_a, user)
    imap.idle_start()
    other.append("INBOX", numbered(2))
    report("IDLE EXISTS latency, same node", idle_until(imap, "* 2 EXISTS"))
    imap.idle_done()
    assert sorted(imap.fetch("1:*", "(UID)")) == [1, 2]


def test_idle_reports_flag_changes_by_another_session(imap, connect, node_a, user, report):
    imap.append("INBOX", numbered(1))
    imap.ok("SELECT", "INBOX")
    other = connect(node_a, user)
    other.ok("SELECT", "INBOX")
    imap.idle_start()
    other.ok("STORE 1 +FLAGS.SILENT (\\Seen \\Flagged)")
    report("IDLE FETCH FLAGS latency, same node",
           idle_until(imap, "* 1 FETCH (FLAGS (\\Flagged \\Seen))"))
    imap.idle_done()


def test_idle_reports_expunges_by_another_session(imap, connect, node_a, user):
    for i in range(1, 4):
        imap.append("INBOX", numbered(i))
    imap.ok("SELECT", "INBOX")
    other = connect(node_a, user)
    other.ok("SELECT", "INBOX")
    imap.idle_start()
    other.ok("UID STORE 2 +FLAGS.SILENT (\\Deleted)")
    other.ok("EXPUNGE")
    idle_until(imap, "* 2 EXPUNGE")
    imap.idle_done()
    assert sorted(imap.fetch("1:*", "(UID)")) == [1, 3]


def test_idle_reports_a_copy_into_the_selected_mailbox(imap, connect, node_a, user):
    imap.ok("CREATE", "src")
    imap.append("src", numbered(1))
    imap.ok("SELECT", "INBOX")
    other = connect(node_a, user)
    other.ok("SELECT", "src")
    imap.idle_start()
    other.ok("COPY 1 INBOX")
    idle_until(imap, "* 1 EXISTS")
    imap.idle_done()
