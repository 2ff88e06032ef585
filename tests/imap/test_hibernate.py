"""imap-hibernate (issue 13): an IDLE session whose imap process Dovecot hands over to
imap-hibernate, and that wakes when another node changes its mailbox.

Node H runs with imap_hibernate_timeout = 1s. imap hands a hibernated client over with
the inotify fd of the mailbox's watched files (mailbox_watch_extract_notify_fd); rbd
watches a file in the mailbox's cache directory, which the node's rbd service writes at
every change of the mailbox once the session's process has gone
(rbd_watch_close_lingering, plugin/rbd-notify.c). On mdbox Dovecot watches its own index
files; the other node is then a second session of the same instance."""

import pytest

from conftest import STORAGE, new_user_name
from daemons import Cluster, Node, wait_for
from messages import numbered

two_nodes = pytest.mark.two_nodes
PUSH_WAIT = 10

HIBERNATE_CONF = """
imap_hibernate_timeout = 1s
service imap-hibernate {
  unix_listener imap-hibernate {
    mode = 0666
  }
}
service imap {
  unix_listener imap-master {
    mode = 0666
  }
}
"""


@pytest.fixture(scope="module")
def node_h(work_dir, cluster):
    """A node whose IDLE sessions hibernate after a second."""
    conf = work_dir / "hibernate.conf"
    conf.write_text(HIBERNATE_CONF)
    with Node.running("Hib", work_dir / "node-hibernate", STORAGE, cluster, include=str(conf),
                      log_debug="event=imap_client_hibernated") as node:
        yield node


def hibernations(node, user):
    """How many times the user's sessions on `node` were hibernated."""
    log = (node.path / "dovecot.log").read_text(errors="replace")
    return sum(1 for line in log.splitlines()
               if "imap(%s)" % user in line and "Successfully hibernated" in line)


@two_nodes
def test_a_hibernated_idle_wakes_at_a_change_from_another_node(connect, node_h, node_a,
                                                               report):
    user = new_user_name("h")
    node_h.add_user(user)
    node_a.add_user(user)
    writer = connect(node_a, user)
    writer.append("INBOX", numbered(1))
    idle = connect(node_h, user)
    idle.ok("SELECT", "INBOX")
    latencies = []
    for n in range(2, 5):
        idle.idle_start()
        assert wait_for(lambda: hibernations(node_h, user) == n - 1, 10), \
            "the IDLE session was not hibernated"
        writer.append("INBOX", numbered(n))
        resp, waited = idle.idle_wait(lambda r: r == b"* %d EXISTS" % n, PUSH_WAIT)
        assert resp is not None, "no '* %d EXISTS' from the hibernated session" % n
        latencies.append(waited)
        assert idle.idle_done().status == "OK"
        # Woken, the session goes on in a new imap process.
        assert idle.ok("FETCH %d (BODY.PEEK[])" % n).lines()
    report("hibernated IDLE woken by another node, max of 3", max(latencies))


@two_nodes
def test_a_hibernated_idle_ends_with_done_and_sees_what_changed_meanwhile(connect, node_h,
                                                                          node_a):
    user = new_user_name("i")
    node_h.add_user(user)
    node_a.add_user(user)
    writer = connect(node_a, user)
    for n in range(1, 4):
        writer.append("INBOX", numbered(n))
    idle = connect(node_h, user)
    idle.ok("SELECT", "INBOX")
    idle.idle_start()
    assert wait_for(lambda: hibernations(node_h, user) == 1, 10), \
        "the IDLE session was not hibernated"
    writer.ok("SELECT", "INBOX")
    writer.ok("STORE 2 +FLAGS.SILENT (\\Flagged)")
    resp, _ = idle.idle_wait(lambda r: r.startswith(b"* 2 FETCH"), PUSH_WAIT)
    assert resp is not None and b"\\Flagged" in resp
    assert idle.idle_done().status == "OK"
    assert "\\Flagged" in idle.ok("FETCH 2 (FLAGS)").lines()[0]


def hibernate_attempts(node, user):
    """What imap said of each try to hibernate the user's sessions: its debug lines."""
    log = (node.path / "dovecot.log").read_text(errors="replace")
    return [line.split(": ", 2)[-1] for line in log.splitlines()
            if "imap(%s)" % user in line and "hibernate" in line.lower()]


@pytest.mark.rbd_only("stops a cluster of its own")
def test_a_session_exports_its_state_for_hibernation_while_the_cluster_is_away(work_dir):
    # imap exports a hibernating session's state, its mailbox's GUID included. For 2 s
    # after a command met the cluster away the plugin fails fast, and the GUID of an open
    # mailbox must not need the cluster: the fault soak with --hibernate (seed 1503)
    # logged "Couldn't hibernate imap client: Couldn't export state: Mail storage
    # temporarily unavailable". (The session does not hibernate even so: imap finds no
    # notify file on a mailbox whose IDLE began while the cluster was away. Not
    # understood yet; the session stays in its process.)
    cluster = Cluster.start(work_dir / "ceph-hibernate")
    try:
        conf = work_dir / "hibernate-outage.conf"
        conf.write_text(HIBERNATE_CONF)
        with Node.running("Hout", work_dir / "node-hibernate-outage", "rbd", cluster,
                          include=str(conf), op_timeout="1s",
                          log_debug="event=imap_client_hibernated") as node:
            user = new_user_name("o")
            node.add_user(user)
            conn = node.login(user)
            conn.append("INBOX", numbered(1))
            conn.ok("SELECT", "INBOX")
            # A first IDLE opens the mailbox's watch, which stays open across commands:
            # a session without one cannot hibernate (it polls).
            conn.idle_start()
            assert conn.idle_done().status == "OK"
            cluster.stop()
            assert conn.command("STORE 1 +FLAGS (\\Seen)").tagged.startswith("NO [UNAVAILABLE]")
            conn.idle_start()
            assert wait_for(lambda: hibernate_attempts(node, user), 5)
            assert not [a for a in hibernate_attempts(node, user) if "export" in a], \
                hibernate_attempts(node, user)
            cluster.restart()
            assert conn.idle_done().status == "OK"
            assert conn.ok("FETCH 1 (FLAGS)").lines()
            conn.logout()
    finally:
        cluster.stop()
