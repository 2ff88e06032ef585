"""The node's rbd service killed under load (doc/service.md, "Failures").

Every mail process of a node reaches the cluster through the node's rbd service. When the
service dies, the commands in flight get a tagged NO, never a hang or a disconnect; the
master starts a new service, and the sessions connect to it on their own: the next
commands succeed, and an IDLE that was watching hears changes again."""

import os
import re
from collections import Counter
import signal
import subprocess
import threading
import time

import pytest

from daemons import OP_TIMEOUT, wait_for
from imap_connection import ImapError, Literal
from messages import numbered

pytestmark = pytest.mark.rbd_only("kills the node's rbd service")

# A command that waited for the dead service is answered at once; one that needs the
# cluster waits at most for the op timeout.
SLACK = 2.0
# After a failure whose outcome is unknown (the APPEND in flight) a session answers NO at
# once for 2 s instead of asking the cluster (RBD_UNAVAILABLE_FAST_FAIL_SECS).
FAIL_FAST = 2.0


class Appender(threading.Thread):
    """APPENDs numbered messages to INBOX in a session of its own until stopped; records
    each command's tagged response and its time."""

    def __init__(self, conn):
        super().__init__(daemon=True)
        self.conn = conn
        self.results = []       # (n, status, tagged, seconds, started)
        self.failure = None
        self.stop = threading.Event()

    def run(self):
        n = 0
        try:
            while not self.stop.is_set():
                n += 1
                t0 = time.monotonic()
                resp = self.conn.command("APPEND", "INBOX", Literal(numbered(n)))
                self.results.append((n, resp.status, resp.tagged, time.monotonic() - t0, t0))
        except (ImapError, OSError) as e:
            self.failure = e


def test_a_killed_service_costs_the_commands_in_flight_a_no_and_sessions_carry_on(
        node_a, user, connect, report):
    watcher = connect(node_a, user)
    watcher.append("INBOX", numbered(0))
    watcher.ok("SELECT", "INBOX")
    watcher.idle_start()        # its watch lives in the service that is killed
    reader = connect(node_a, user)
    reader.ok("SELECT", "INBOX")
    appender = Appender(connect(node_a, user))
    appender.start()
    assert wait_for(lambda: len(appender.results) >= 20, 30), appender.results

    old = node_a.service_pid()
    os.kill(old, signal.SIGKILL)
    t0 = time.monotonic()
    assert wait_for(lambda: node_a.service_pid() != old, 10)
    report("rbd service restarted by the master after", time.monotonic() - t0)
    # Keep appending across the restart, and past the fail-fast window.
    time.sleep(FAIL_FAST + 2)
    appender.stop.set()
    appender.join(30)
    assert not appender.is_alive(), "an APPEND hung"
    assert appender.failure is None, "the appending session broke: %r" % appender.failure

    answers = Counter(r[2] if r[1] != "OK" else "OK" for r in appender.results)
    refused = [r for r in appender.results if r[1] != "OK"]
    assert all(r[1] == "NO" and r[2].startswith("NO [UNAVAILABLE]") for r in refused), answers
    late = [r for r in refused if r[4] > t0 + FAIL_FAST + SLACK]
    assert late == [], "NO after the restart and the fail-fast window: %s" % late[:3]
    slowest = max(r[3] for r in appender.results)
    assert slowest < OP_TIMEOUT + SLACK, "an APPEND took %.1f s" % slowest
    # The session that appended goes on: its APPENDs succeed again.
    assert [r[1] for r in appender.results[-5:]] == ["OK"] * 5, appender.results[-5:]

    # Every APPEND answered OK is in the mailbox exactly once, seen by a session that
    # was idle while the service died (its next command connects to the new one).
    reader.ok("NOOP")
    headers = reader.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    stored = Counter(int(m.group(1)) for fields in headers.values()
                     for value in fields.values()
                     for m in [re.search(r"<(\d+)@test>", str(value))] if m)
    for n, status, tagged, _, _ in appender.results:
        if status == "OK":
            assert stored[n] == 1, (n, tagged, stored[n])
    messages = len(headers)

    # The IDLE that was watching when the service died hears changes again: its watch
    # was opened again in the new service.
    other = connect(node_a, user)
    other.append("INBOX", numbered(1000))
    seen = []

    def pushed(resp):
        seen.append(resp)
        return resp.endswith(b" EXISTS") and int(resp.split()[1]) > messages
    found, _ = watcher.idle_wait(pushed, 10)
    assert found is not None, "no EXISTS above %d within 10 s: the watch did not come back: %s" % (
        messages, seen[-3:])
    watcher.idle_done()


def test_a_session_on_a_new_service_still_writes_only_under_its_mailbox_name(
        node_a, user, connect):
    # The service that opens a session's mailbox again after a restart binds its writes
    # to the mailbox's name again (rbd_index_guard_name): a STORE after a rename made
    # elsewhere fails, and changes nothing under the new name.
    conn = connect(node_a, user)
    conn.ok("CREATE", "X")
    conn.append("X", numbered(1))
    conn.ok("SELECT", "X")
    conn.ok("STORE 1 +FLAGS (\\Seen)")
    old = node_a.service_pid()
    os.kill(old, signal.SIGKILL)
    assert wait_for(lambda: node_a.service_pid() not in (None, old), 10)
    time.sleep(FAIL_FAST + 0.5)
    conn.ok("NOOP")
    other = connect(node_a, user)
    other.ok("RENAME", "X", "Y")
    resp = conn.command("STORE 1 +FLAGS (\\Flagged)")
    assert (resp.status, resp.text) == ("NO", "Mailbox was deleted under us")
    other.ok("SELECT", "Y")
    assert other.fetch("1", "(FLAGS)")[1]["FLAGS"] == ["\\Seen"]


def test_the_cluster_and_key_are_the_services_own_whatever_a_user_says(node_a, new_user,
                                                                       connect):
    # A mail process could otherwise point the service at another ceph.conf (and through
    # it another key the service's user can read). The service takes rbd_ceph_conf and
    # rbd_ceph_user from its own configuration: this user's, which exist nowhere, change
    # nothing.
    user = new_user(settings={"rbd_ceph_conf": "/nonexistent/ceph.conf",
                              "rbd_ceph_user": "nobody-has-this-key"})
    conn = connect(node_a, user)
    conn.append("INBOX", numbered(1))
    assert conn.ok("SELECT", "INBOX").lines("1 EXISTS") == ["* 1 EXISTS"]


def test_a_node_serves_many_sessions_within_a_small_address_space(node_a, user, connect):
    """Each connection to the service is a thread; Dovecot's vsz_limit bounds the
    service's address space (RLIMIT_AS). With glibc's 8 MiB stacks the shipped limit
    held a node to about 400 sessions: here 90 sessions (the per-user limit is 100) must
    fit in 512 MiB more than the service maps now (8 MiB stacks take 720 MiB; 512 KiB
    ones 45 MiB, and glibc's malloc arenas up to 192 MiB more)."""
    pid = node_a.service_pid()
    with open("/proc/%d/status" % pid) as f:
        vsz_kib = int(re.search(r"^VmSize:\s+(\d+) kB", f.read(), re.M).group(1))
    limit = (vsz_kib + 512 * 1024) * 1024
    # As the service's own user: lowering a limit of one's own process takes no
    # capability (a container may deny root CAP_SYS_RESOURCE).
    owner = os.stat("/proc/%d" % pid)
    subprocess.run(["setpriv", "--reuid=%d" % owner.st_uid, "--regid=%d" % owner.st_gid,
                    "--clear-groups", "prlimit", "--pid", str(pid),
                    "--as=%d:%d" % (limit, limit)], check=True)
    sessions = []
    for _ in range(90):
        conn = connect(node_a, user)
        conn.ok("SELECT", "INBOX")
        sessions.append(conn)
    sessions[0].append("INBOX", numbered(1))
    for conn in sessions:
        conn.ok("NOOP")
    found = [c.ok("UID SEARCH ALL").lines("SEARCH")[0].split()[2:] for c in sessions]
    assert found == [["1"]] * len(sessions), found
    assert node_a.service_pid() == pid, "the service died"
