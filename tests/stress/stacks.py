"""Stacks of the imap process serving a late command, for triage: a command still pending
past its time limit is stuck somewhere in the server, and once it has been answered the
evidence is gone. The checker finds the process by the connection's socket and has gdb
print every thread's stack into the run's work dir (kept when the run fails)."""

import os
import shutil
import subprocess
import threading


TCP_ESTABLISHED = "01"   # the `st` column of /proc/net/tcp


def _socket_inode(client_port, server_port):
    """The inode of the server's end of the established local TCP connection from
    client_port. An earlier connection from the same client port may still be listed in
    TIME_WAIT, with no socket (inode 0): a long run reuses client ports."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if state == TCP_ESTABLISHED and int(local.split(":")[1], 16) == server_port and \
                    int(remote.split(":")[1], 16) == client_port:
                return inode
    return None


def server_pid(sock, server_port):
    """The pid of the process holding the server's end of `sock`, or None."""
    inode = _socket_inode(sock.getsockname()[1], server_port)
    if inode is None:
        return None
    target = "socket:[%s]" % inode
    for pid in filter(str.isdigit, os.listdir("/proc")):
        fd_dir = "/proc/%s/fd" % pid
        try:
            for fd in os.listdir(fd_dir):
                if os.readlink(os.path.join(fd_dir, fd)) == target:
                    return int(pid)
        except OSError:
            continue
    return None


class LateWatch:
    """A context for one command: if it is still pending `after` seconds after entry, the
    serving process's stacks go to `path`, and rec.stacks names that file."""

    def __init__(self, sock, server_port, after, path, rec):
        self.sock, self.server_port, self.path, self.rec = sock, server_port, path, rec
        self.timer = threading.Timer(after, self._dump)
        self.timer.daemon = True

    def __enter__(self):
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.cancel()

    def _dump(self):
        try:
            pid = server_pid(self.sock, self.server_port)
        except OSError:
            return
        if pid is None or shutil.which("gdb") is None:
            return
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        # Named before gdb runs: the command may be answered (and its lateness reported)
        # while gdb still writes.
        self.rec.stacks = self.path
        with open(self.path, "w") as out:
            subprocess.run(["gdb", "-batch", "-p", str(pid), "-ex", "thread apply all bt"],
                           stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                           timeout=60, check=False)
