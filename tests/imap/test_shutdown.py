"""Every imap process exits cleanly: no librados callback runs once teardown has begun.

A session's APPEND sends a notify to the mailbox's watchers on every node; its completion is
signalled before librados has run the handler that cancels the notify's linger op, and an
imap process that logged out right then shut librados down under that handler and died
with SIGSEGV (`killed with signal 11`, about 9 in 1100 short sessions). The test runs many
short sessions that append and log out while long sessions append through both nodes and
IDLE sessions on both nodes watch the mailbox, then reads both nodes' logs.
"""

import threading
import time

import pytest

from messages import message

pytestmark = pytest.mark.rbd_only("the crash was librados's, at process exit")

SESSIONS = 1000
# Bounded for the full run: the sessions stop at the deadline, and at least MIN_SESSIONS
# must have ended by then for the test to mean something.
DEADLINE = 120
MIN_SESSIONS = 100
WORKERS = 8


def log_size(node):
    return (node.path / "dovecot.log").stat().st_size


def log_since(node, offset):
    with open(node.path / "dovecot.log", "rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", "replace")


def test_short_sessions_appending_through_two_nodes_never_crash_at_exit(node_a, node_b, user,
                                                                        report):
    nodes = (node_a, node_b)
    offsets = [log_size(node) for node in nodes]
    stop = threading.Event()
    errors = []

    def keep(what, *args):
        try:
            what(*args)
        except Exception as e:  # reported below: a worker must not die silently
            errors.append("%s: %r" % (what.__name__, e))

    def appender(node):
        conn = node.login(user)
        while not stop.is_set():
            conn.append("INBOX", message(subject="long"))
        conn.logout()

    def watcher(node):
        conn = node.login(user)
        conn.select("INBOX")
        conn.idle_start()
        while not stop.is_set():
            conn.idle_wait(lambda resp: False, 0.5)
        conn.idle_done()
        conn.logout()

    started = []
    lock = threading.Lock()
    deadline = time.monotonic() + DEADLINE

    def short_sessions(node):
        while time.monotonic() < deadline:
            with lock:
                if len(started) >= SESSIONS:
                    return
                started.append(node.name)
            conn = node.login(user)
            conn.select("INBOX")
            conn.append("INBOX", message(subject="short"))
            conn.logout()

    background = [threading.Thread(target=keep, args=(f, node))
                  for node in nodes for f in (appender, watcher)]
    for t in background:
        t.start()
    t0 = time.monotonic()
    workers = [threading.Thread(target=keep, args=(short_sessions, nodes[i % 2]))
               for i in range(WORKERS)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    elapsed = time.monotonic() - t0
    stop.set()
    for t in background:
        t.join()
    report("%d short sessions" % len(started), elapsed)

    assert not errors, errors
    assert len(started) >= MIN_SESSIONS, "only %d sessions in %d s" % (len(started), DEADLINE)
    # The master logs a crashed child when it reaps it, a moment after the client is gone.
    time.sleep(2)
    crashes = [line for node, offset in zip(nodes, offsets)
               for line in log_since(node, offset).splitlines()
               if "killed with signal" in line or "Panic" in line]
    assert not crashes, "\n".join(crashes)
