"""A session closed while librados is running its watch callback (issue #8, stress seed 101:
an imap process killed with signal 11 after "IMAP session state is inconsistent").

librados calls a watch's callbacks on its own finisher thread; unwatch2 stops new ones but
does not wait for one already started. A session on node A whose mailbox node B deletes is
closed just as the last notifies and the OSD's disconnect for that mailbox arrive, so a
callback could still run on the freed watch. The race is a few instructions wide; gdb
(non-stop: only the finisher thread stops) holds the callback for STALL seconds so that
the close happens inside it, every time."""

import re
import shutil
import subprocess
import time

import pytest

from imap_connection import ImapError
from messages import numbered

STALL = 3


def session_pid(node, user):
    """The pid of the user's only imap process on `node`, from its login line."""
    log = (node.path / "dovecot.log").read_text(errors="replace")
    return int(re.findall(r"Login: user=<%s>.*mpid=(\d+)" % re.escape(user), log)[-1])


def process_lines(node, pid):
    log = (node.path / "dovecot.log").read_text(errors="replace")
    return [line for line in log.splitlines() if "<%d>" % pid in line or
            "child %d " % pid in line]


def wait_for_output(path, marker, timeout):
    """Waits until the file at path (gdb's output) contains marker."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker in path.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise AssertionError("gdb never printed %r:\n%s" % (marker, path.read_text()[-3000:]))


@pytest.mark.two_nodes
@pytest.mark.rbd_only("stops a librados thread of node A's imap process in gdb")
@pytest.mark.skipif(shutil.which("gdb") is None, reason="needs gdb")
def test_a_session_closed_by_a_delete_waits_for_a_running_watch_callback(connect, node_a,
                                                                        node_b, user,
                                                                        tmp_path):
    on_b = connect(node_b, user)
    on_b.ok("CREATE", "gone")
    on_b.append("gone", numbered(1))
    on_b.ok("SELECT", "gone")
    on_a = connect(node_a, user)
    on_a.ok("EXAMINE", "gone")
    on_a.idle_start()            # watches the mailbox's index object; the watch stays open
    on_a.idle_done()
    pid = session_pid(node_a, user)

    out = tmp_path / "gdb.out"
    script = tmp_path / "gdb.cmds"
    script.write_text("""set pagination off
set non-stop on
attach %d
break rbd::MailboxWatch::handle_notify
commands
shell sleep %d
echo RESUMED\\n
continue &
end
set confirm off
continue -a &
echo READY\\n
""" % (pid, STALL))
    # Not -batch: gdb must keep handling the process's events until its stdin closes.
    gdb = subprocess.Popen(["gdb", "-q", "-nx", "-x", str(script)], stdin=subprocess.PIPE,
                           stdout=out.open("w"), stderr=subprocess.STDOUT)
    try:
        wait_for_output(out, "READY", 60)
        # gdb reports the threads it stopped on attach after its script ran: once it has,
        # all of them run again.
        time.sleep(2)
        gdb.stdin.write(b"continue -a &\necho GO\\n\n")
        gdb.stdin.flush()
        wait_for_output(out, "GO", 30)
        # B's STORE notifies the index object: A's finisher thread enters the callback
        # and stays there, past the point where unwatch2 could stop it.
        on_b.ok("UID STORE 1 +FLAGS (\\Seen)")
        wait_for_output(out, "Breakpoint 1,", 30)
        on_b.ok("CLOSE")
        on_b.ok("DELETE", "gone")
        with pytest.raises(ImapError) as bye:
            on_a.command("NOOP")
        assert b"* BYE IMAP session state is inconsistent" in b"".join(bye.value.untagged)
        wait_for_output(out, "RESUMED", 30)
    finally:
        gdb.stdin.close()           # gdb quits, detaching from the process
        try:
            gdb.wait(timeout=30)
        except subprocess.TimeoutExpired:
            gdb.kill()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(
            "Disconnected" in line for line in process_lines(node_a, pid)):
        time.sleep(0.1)
    time.sleep(1)
    lines = process_lines(node_a, pid)
    assert any("Disconnected: IMAP session state is inconsistent" in line for line in lines)
    assert [line for line in lines if re.search(r"killed with signal|Panic:|Fatal:", line)] == []
