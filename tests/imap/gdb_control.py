"""gdb attached to a node's imap process, for tests that need one interleaving every time:
the process is held at a breakpoint while other sessions act, then let go (or killed)."""

import re
import subprocess
import time


def session_pid(node, user, other_than=()):
    """The pid of the user's newest imap process on `node` not in other_than, from its login
    line (Dovecot's log process writes it shortly after the login is answered)."""
    pattern = re.compile(r"Login: user=<%s>.*mpid=(\d+)" % re.escape(user))
    deadline = time.monotonic() + 10
    while True:
        found = [int(pid) for pid in
                 pattern.findall((node.path / "dovecot.log").read_text(errors="replace"))
                 if int(pid) not in other_than]
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert found, "no new login line for %s on %s" % (user, node.name)
    return found[-1]


def process_lines(node, pid):
    """The log lines of the process, including the master's report of its end."""
    log = (node.path / "dovecot.log").read_text(errors="replace")
    return [line for line in log.splitlines() if "<%d>" % pid in line or
            "child %d " % pid in line]


def hold_at(pid, function, out, commands=""):
    """gdb attached to process `pid`, stopping it at each call of `function` (a symbol it
    exports), where gdb runs `commands` (lines of gdb commands) and prints HELD; returns
    once the breakpoint is set. A "continue" or "detach" line sent lets it go on."""
    gdb = Gdb("""set pagination off
set confirm off
attach %d
break %s
commands
%secho HELD\\n
end
continue
""" % (pid, function, commands), out)
    gdb.wait_for("Breakpoint 1 at", 60)
    return gdb


class Gdb:
    """gdb running `script` (attach commands first) on stdin-driven terms: not -batch, so
    it keeps handling the process's events, and reads further commands from send()."""

    def __init__(self, script, out):
        self.out = out
        script_path = out.with_suffix(".cmds")
        script_path.write_text(script)
        self.proc = subprocess.Popen(["gdb", "-q", "-nx", "-x", str(script_path)],
                                     stdin=subprocess.PIPE, stdout=out.open("w"),
                                     stderr=subprocess.STDOUT)

    def wait_for(self, marker, timeout):
        """Waits until gdb's output contains marker."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in self.out.read_text(errors="replace"):
                return
            time.sleep(0.05)
        raise AssertionError("gdb never printed %r:\n%s" % (
            marker, self.out.read_text(errors="replace")[-3000:]))

    def send(self, commands):
        self.proc.stdin.write(commands.encode())
        self.proc.stdin.flush()

    def close(self):
        """gdb quits at the end of its input, detaching from a process still attached."""
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
