"""A session closed while librados is running its watch callback (issue #8, stress seed 101:
an imap process killed with signal 11 after "IMAP session state is inconsistent").

librados calls a watch's callbacks on its own finisher thread; unwatch2 stops new ones but
does not wait for one already started. A session on node A whose mailbox node B deletes is
closed just as the last notifies and the OSD's disconnect for that mailbox arrive, so a
callback could still run on the freed watch. The race is a few instructions wide; gdb
(non-stop: only the finisher thread stops) holds the callback for STALL seconds so that
the close happens inside it, every time. The watch lives in node A's rbd service, which
serves every session of the node: it must survive, and the session must end cleanly."""

import re
import shutil
import time

import pytest

from gdb_control import Gdb, process_lines, session_pid
from imap_connection import ImapError
from messages import numbered

STALL = 3


@pytest.mark.two_nodes
@pytest.mark.rbd_only("stops a librados thread of node A's rbd service in gdb")
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
    service = node_a.service_pid()
    log = node_a.path / "dovecot.log"
    logged = log.stat().st_size

    gdb = Gdb("""set pagination off
set non-stop on
attach %d
break rbd::MailboxWatch::Shared::handle_notify
commands
shell sleep %d
echo RESUMED\\n
continue &
end
set confirm off
continue -a &
echo READY\\n
""" % (service, STALL), tmp_path / "gdb.out")
    try:
        gdb.wait_for("READY", 60)
        # gdb reports the threads it stopped on attach after its script ran: once it has,
        # all of them run again.
        time.sleep(2)
        gdb.send("continue -a &\necho GO\\n\n")
        gdb.wait_for("GO", 30)
        # B's STORE notifies the index object: A's finisher thread enters the callback
        # and stays there, past the point where unwatch2 could stop it.
        on_b.ok("UID STORE 1 +FLAGS (\\Seen)")
        gdb.wait_for("Breakpoint 1,", 30)
        on_b.ok("CLOSE")
        on_b.ok("DELETE", "gone")
        with pytest.raises(ImapError) as bye:
            on_a.command("NOOP")
        assert b"* BYE IMAP session state is inconsistent" in b"".join(bye.value.untagged)
        gdb.wait_for("RESUMED", 30)
    finally:
        gdb.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(
            "Disconnected" in line for line in process_lines(node_a, pid)):
        time.sleep(0.1)
    time.sleep(1)
    lines = process_lines(node_a, pid)
    assert any("Disconnected: IMAP session state is inconsistent" in line for line in lines)
    with open(log, errors="replace") as f:
        f.seek(logged)
        since = f.read().splitlines()
    assert [line for line in since if re.search(r"killed with signal|Panic:|Fatal:", line)] == []
    assert node_a.service_pid() == service, "the rbd service was restarted"
