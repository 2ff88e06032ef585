"""Fault injection and growth for the stress checker (README.md, doc/design.md "Fault
injection"): while the sessions run, the runner injects one fault at a time, chosen by
the seed, waits until the system is whole again, and then takes a checkpoint.

Each fault opens a window (kind, node or None for the cluster, start, end). A command
that overlaps a window, widened by the storage's answer deadline, may fail the way that
fault allows (README.md); outside every window it may not fail at all."""

import datetime
import os
import random
import re
import signal
import time
from pathlib import Path

from daemons import CEPH_DEV_CLUSTER, DOVECOT_DEV, run

FAULTS = ("osd-stop", "osd-kill", "cluster-restart", "osd-stutter", "imap-kill", "lmtp-kill",
          "master-kill")
OSD_FAULTS = {"osd-stop", "osd-kill", "cluster-restart", "osd-stutter"}
# A command overlapping one of these may be answered NO [UNAVAILABLE] (outcome unknown).
# Not osd-stutter: it only slows the cluster down.
STORAGE_FAULTS = {"osd-stop", "osd-kill", "cluster-restart"}
# A session on the node may lose its connection (no BYE) or fail to connect.
PROCESS_FAULTS = {"imap-kill", "lmtp-kill", "master-kill"}
# verbose_proctitle: "dovecot/imap [user 127.0.0.1 UID MOVE]", "dovecot/lmtp [...DATA...]"
IN_WRITE = {"imap": re.compile(r"^dovecot/imap \[\S+ \S+ (?:UID )?(?:APPEND|COPY|MOVE)\]"),
            "lmtp": re.compile(r"^dovecot/lmtp \[.*DATA")}
KILL_WAIT = 8           # seconds a kill waits for a write in progress


class Window:
    __slots__ = ("kind", "node", "what", "start", "end", "wall_start", "wall_end")

    def __init__(self, kind, node, what):
        self.kind = kind
        self.node = node        # a node name, or None: the cluster
        self.what = what
        self.start = time.monotonic()
        self.end = None         # None while the fault lasts
        self.wall_start = time.time()   # for log lines
        self.wall_end = None

    def __str__(self):
        return "%s %s" % (self.kind, self.what)


def parse_faults(text):
    """--faults: 'all' or a comma-separated list of FAULTS; returns the list or raises
    ValueError."""
    if text == "all":
        return list(FAULTS)
    kinds = text.split(",")
    unknown = set(kinds) - set(FAULTS)
    if unknown:
        raise ValueError("unknown --faults: %s (known: all, %s)" % (
            ",".join(sorted(unknown)), ",".join(FAULTS)))
    return sorted(set(kinds), key=FAULTS.index)


class Faults:
    def __init__(self, runner, kinds, cluster, deadline):
        self.runner = runner
        self.kinds = kinds
        self.cluster = cluster
        self.rng = random.Random("%d/faults" % runner.args.seed)
        self.order = []
        self.grace = deadline or 0      # a command may end this long after its fault
        self.injected = []              # Window of every fault, in order
        self.killed = set()             # pids of the imap and lmtp processes killed

    # ---- what a window excuses ----------------------------------------------------------

    def covering(self, rec, kinds, node=None):
        """The window of one of kinds (on node, or cluster-wide) that rec overlaps."""
        end = rec.t_ack if rec.t_ack is not None else time.monotonic()
        for w in list(self.injected):
            w_end = (w.end if w.end is not None else float("inf")) + self.grace
            if w.kind in kinds and (w.node is None or w.node == node) and \
                    rec.t_send <= w_end and end >= w.start:
                return w
        return None

    def master_down_at(self, node, stamp):
        """Was node's master killed around the time of log stamp ('Dec 06 02:33:22',
        whole seconds)?"""
        t = datetime.datetime.strptime("%d %s" % (datetime.date.today().year, stamp),
                                       "%Y %b %d %H:%M:%S").timestamp()
        return any(w.kind == "master-kill" and w.node == node and
                   w.wall_start - 1 <= t <= (w.wall_end or time.time()) + self.grace + 1
                   for w in list(self.injected))

    def storage_down_at(self, stamp):
        """Was a storage fault in progress around the time of log stamp (as
        master_down_at)?"""
        t = datetime.datetime.strptime("%d %s" % (datetime.date.today().year, stamp),
                                       "%Y %b %d %H:%M:%S").timestamp()
        return any(w.kind in STORAGE_FAULTS and
                   w.wall_start - 1 <= t <= (w.wall_end or time.time()) + self.grace + 1
                   for w in list(self.injected))

    def orphaned(self, node, connected_at):
        """Was node's master killed after a connection made at connected_at (its process
        outlives that master)?"""
        return any(w.kind == "master-kill" and w.node == node and w.start > connected_at
                   for w in list(self.injected))

    def node_down(self, node):
        """Is a master-kill of node in progress (or just over)?"""
        now = time.monotonic()
        return any(w.kind == "master-kill" and w.node == node and
                   (w.end is None or now <= w.end + self.grace) for w in list(self.injected))

    # ---- injection ---------------------------------------------------------------------

    def pause(self):
        """Seconds of plain load before the next fault."""
        return self.rng.uniform(3, 8)

    def settle(self):
        """Seconds of load after a fault before its checkpoint."""
        return self.rng.uniform(2, 5)

    def inject(self):
        """Injects the next fault (the seed orders them: each kind once per round) and
        returns when the system is whole again."""
        if not self.order:
            self.order = list(self.kinds)
            self.rng.shuffle(self.order)
        kind = self.order.pop(0)
        self.runner.model.note("fault %s" % kind)
        try:
            getattr(self, "fault_" + kind.replace("-", "_"))()
        finally:
            w = self.injected[-1]
            w.end = time.monotonic()
            w.wall_end = time.time()
        return w

    def open(self, kind, node, what):
        w = Window(kind, node, what)
        self.injected.append(w)
        return w

    def osd_ids(self):
        return sorted(int(p.name[4:-5]) for p in self.cluster.path.glob("osd.*.uuid"))

    def osd_pid(self, osd):
        return int((self.cluster.path / ("osd.%d.pid" % osd)).read_text())

    def fault_osd_stop(self):
        """SIGSTOP an OSD for longer than rbd_op_timeout, then SIGCONT: ops it holds are
        applied after the client gave up on them."""
        osd = self.rng.choice(self.osd_ids())
        pid = self.osd_pid(osd)
        pause = self.grace + self.rng.uniform(0, 3)
        w = self.open("osd-stop", None, "osd.%d for %.1f s" % (osd, pause))
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(pause)
        finally:
            os.kill(pid, signal.SIGCONT)
        self.wait_clean(w)

    def fault_osd_kill(self):
        osd = self.rng.choice(self.osd_ids())
        down = self.rng.uniform(1, 6)
        w = self.open("osd-kill", None, "osd.%d, restarted after %.1f s" % (osd, down))
        run(CEPH_DEV_CLUSTER, "kill-osd", self.cluster.path, osd)
        time.sleep(down)
        run(CEPH_DEV_CLUSTER, "start-osd", self.cluster.path, osd)
        self.wait_clean(w)

    def fault_osd_stutter(self):
        """SIGSTOP and SIGCONT random OSDs in quick succession for 8-15 s: every op may
        wait a few tenths of a second, at random, which widens each window between a
        read and the lock or write that relies on it (CI growth profile, seed 86365: a
        sync's records were read before another process of the node synced newer ones).
        Pauses stay far below the op timeout and the heartbeat grace: no command may fail
        or take longer than the deadline."""
        length = self.rng.uniform(8, 15)
        w = self.open("osd-stutter", None, "for %.1f s" % length)
        ids = self.osd_ids()
        end = time.monotonic() + length
        pauses = 0
        while time.monotonic() < end:
            pid = self.osd_pid(self.rng.choice(ids))
            os.kill(pid, signal.SIGSTOP)
            try:
                time.sleep(self.rng.uniform(0.05, 0.4))
            finally:
                os.kill(pid, signal.SIGCONT)
            pauses += 1
            time.sleep(self.rng.uniform(0.05, 0.3))
        w.what += ", %d pauses" % pauses
        self.wait_clean(w)

    def fault_cluster_restart(self):
        down = self.rng.uniform(2, 10)
        self.open("cluster-restart", None, "every daemon stopped, restarted after %.1f s"
                  % down)
        self.cluster.stop()
        time.sleep(down)
        self.cluster.restart()      # returns with every PG active+clean

    def wait_clean(self, w):
        t0 = time.monotonic()
        run(CEPH_DEV_CLUSTER, "wait-clean", self.cluster.path, 120)
        w.what += ", clean %.1f s later" % (time.monotonic() - t0)

    def fault_imap_kill(self):
        """SIGKILL 1-3 imap processes, each while it runs an APPEND, COPY or MOVE."""
        self.kill_writers("imap")

    def fault_lmtp_kill(self):
        """SIGKILL 1-3 lmtp processes, each while it takes a DATA."""
        self.kill_writers("lmtp")

    def kill_writers(self, service):
        count = self.rng.randint(1, 3)
        node = self.rng.choice(self.runner.nodes)
        w = self.open("%s-kill" % service, node.name, "on %s:" % node.name)
        killed = 0
        deadline = time.monotonic() + KILL_WAIT
        while killed < count and time.monotonic() < deadline:
            found = self.in_write(node, IN_WRITE[service])
            if not found:
                time.sleep(0.01)
                continue
            pid, title = self.rng.choice(found)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            killed += 1
            self.killed.add(pid)
            w.what += " [%s]" % title[title.index("[") + 1:-1]
        if not killed:
            w.what += " no write in progress within %d s" % KILL_WAIT

    def in_write(self, node, pattern):
        """(pid, title) of node's processes whose title matches pattern."""
        out = []
        for pid in children(node.master_pid()):
            title = cmdline(pid)
            if pattern.match(title):
                out.append((pid, title))
        return out

    def fault_master_kill(self):
        """SIGKILL a node's Dovecot master, start it again: the imap processes it left
        keep serving their clients; new connections are refused meanwhile."""
        node = self.rng.choice(self.runner.nodes)
        down = self.rng.uniform(0.5, 4)
        self.open("master-kill", node.name, "on %s, restarted after %.1f s" % (node.name,
                                                                             down))
        os.kill(node.master_pid(), signal.SIGKILL)
        time.sleep(down)
        run(DOVECOT_DEV, "restart", node.path)

    def summary(self):
        return ["%s %s" % (w.kind, w.what) for w in self.injected]


def children(pid):
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def cmdline(pid):
    try:
        return Path("/proc/%d/cmdline" % pid).read_bytes().replace(b"\0", b" ") \
            .decode(errors="replace").strip()
    except OSError:
        return ""


def grow(cluster, pools):
    """What an operator does to grow a 1-OSD cluster to 3 replicas under load: add two
    OSDs, raise every pool to size 3, wait until every PG is active+clean, then min_size
    2. Returns the steps with their times."""
    steps = []
    t0 = time.monotonic()

    def step(what):
        steps.append("%s (%.1f s)" % (what, time.monotonic() - t0))

    for _ in range(2):
        osd = run(CEPH_DEV_CLUSTER, "add-osd", cluster.path).split()[-1]
        step("osd.%s up" % osd)
    for pool in pools:
        cluster.ceph("osd", "pool", "set", pool, "size", "3")
    step("size 3")
    run(CEPH_DEV_CLUSTER, "wait-clean", cluster.path, 300)
    step("active+clean")
    for pool in pools:
        cluster.ceph("osd", "pool", "set", pool, "min_size", "2")
    step("min_size 2")
    return steps
