#!/usr/bin/python3
"""IMAP load generator for bench/imap/run: Dovecot+rbd against Dovecot+mdbox.

Every workload runs against both storages in the same run (interleaved or in
ABBA order, so drift of a shared 2-core machine hits both alike) and prints
both figures and the ratio rbd/mdbox. It is a benchmark, not a test: no
timing is ever asserted. The exit status is 1 only when something fails
functionally (a command answered NO/BAD, a count or size that does not add
up, a missed IDLE notification, a panic in a Dovecot log).

Workloads (see --help and bench/imap/run --help):
  a  one connection: N APPENDs, then FETCH 1:* (FLAGS RFC822.SIZE) and a
     full-body FETCH on a fresh session of another node
  b  10 and 50 concurrent clients, mixed SELECT/FETCH/STORE/APPEND/EXPUNGE
  c  cold SELECT of a 100k-message mailbox on a node with an empty cache (runs last)
  d  cross-node IDLE latency
  e  RSS, threads and RADOS sessions of 100 logged-in sessions
  f  logins/s with one login per session

Standard library only; run with Debian's /usr/bin/python3.
"""

import argparse
import base64
import collections
import concurrent.futures
import contextlib
import email.utils
import json
import math
import multiprocessing as mp
import os
import random
import re
import resource
import select
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import traceback

PASSWORD = "pass"  # dovecot-dev add-user's default
CLK_TCK = os.sysconf("SC_CLK_TCK")
LITERAL_RE = re.compile(rb"\{(\d+)\}\r\n$")
EXISTS_RE = re.compile(rb"^\* (\d+) EXISTS")
EXPUNGE_RE = re.compile(rb"^\* \d+ EXPUNGE")
SIZE_RE = re.compile(rb"RFC822\.SIZE (\d+)")


class Failure(Exception):
    """Something did not work functionally (not: something was slow)."""


# ----------------------------------------------------------------------------
# Deterministic synthetic RFC 5322 messages
# ----------------------------------------------------------------------------

WORDS = (
    "the of and to in is for on that with as was by at it from this be are or an "
    "have not we you they will can all about more which their there when been has "
    "meeting report storage cluster message index object pool quarter budget draft "
    "review schedule project customer invoice release update server network backup "
    "please thanks regards attached below above tomorrow monday friday office team "
    "Ceph Dovecot mailbox latency throughput replica placement group daemon client"
).split()
NAMES = ["Alice Martin", "Bob Novak", "Carla Diaz", "Dmitri Ivanov", "Eva Lindqvist",
         "Farid Haddad", "Grace Okafor", "Hiro Tanaka", "Ines Moreau", "Jonas Weber"]
BASE_TIME = 1704067200  # 2024-01-01T00:00:00Z


class Messages:
    """Message i of a given seed is always the same bytes (CRLF line ends).

    Sizes are log-normal around `median` bytes; a fraction `attach_rate`
    carries a base64 attachment of `attach_size` decoded bytes."""

    def __init__(self, seed, median=4096, sigma=0.8, attach_rate=0.05,
                 attach_size=100 * 1024, max_text=64 * 1024):
        self.seed = seed
        self.median = median
        self.sigma = sigma
        self.attach_rate = attach_rate
        self.attach_size = attach_size
        self.max_text = max_text
        rng = random.Random(seed)
        lines = []
        for _ in range(4096):
            width = rng.randint(40, 76)
            words = []
            n = 0
            while n < width:
                w = rng.choice(WORDS)
                words.append(w)
                n += len(w) + 1
            lines.append((" ".join(words) + "\r\n").encode())
        self.lines = lines

    def get(self, i):
        rng = random.Random((self.seed << 32) ^ i)
        target = int(self.median * math.exp(rng.gauss(0.0, self.sigma)))
        target = max(400, min(self.max_text, target))
        attach = rng.random() < self.attach_rate
        sender = rng.choice(NAMES)
        subject = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8)))
        date = email.utils.formatdate(BASE_TIME + i * 97, localtime=False)
        boundary = "=_bench_%d_%d" % (self.seed, i)
        head = [
            "Return-Path: <%s@example.org>" % sender.split()[0].lower(),
            "Date: %s" % date,
            'From: "%s" <%s@example.org>' % (sender, sender.split()[0].lower()),
            "To: <bench@example.net>",
            "Subject: %s #%d" % (subject, i),
            "Message-ID: <%d.%d@bench.example>" % (i, self.seed),
            "MIME-Version: 1.0",
        ]
        if attach:
            head.append('Content-Type: multipart/mixed; boundary="%s"' % boundary)
        else:
            head.append("Content-Type: text/plain; charset=utf-8")
        out = [("\r\n".join(head) + "\r\n\r\n").encode()]
        if attach:
            out.append(("--%s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
                        % boundary).encode())
        size = sum(len(x) for x in out)
        k = rng.randrange(len(self.lines))
        while size < target:
            line = self.lines[k % len(self.lines)]
            out.append(line)
            size += len(line)
            k += 1
        if attach:
            data = rng.randbytes(self.attach_size)
            b64 = base64.encodebytes(data).replace(b"\n", b"\r\n")
            out.append(("\r\n--%s\r\nContent-Type: application/octet-stream\r\n"
                        "Content-Transfer-Encoding: base64\r\n"
                        'Content-Disposition: attachment; filename="file%d.bin"\r\n\r\n'
                        % (boundary, i)).encode())
            out.append(b64)
            out.append(("--%s--\r\n" % boundary).encode())
        return b"".join(out)


# ----------------------------------------------------------------------------
# A small IMAP client (own buffering, so IDLE can be multiplexed with select)
# ----------------------------------------------------------------------------

class ImapError(Failure):
    pass


class Response:
    __slots__ = ("status", "tagged", "untagged", "literal_bytes")

    def __init__(self, status, tagged, untagged, literal_bytes):
        self.status = status
        self.tagged = tagged
        self.untagged = untagged
        self.literal_bytes = literal_bytes


class Imap:
    def __init__(self, node, user=None, password=PASSWORD, timeout=300):
        self.name = node[0]
        self.sock = socket.create_connection(("127.0.0.1", node[1]), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.pos = 0
        self.tagn = 0
        self.exists = None
        greeting = self.readline()
        if not greeting.startswith(b"* OK"):
            raise ImapError("%s: bad greeting %r" % (self.name, greeting))
        if user is not None:
            self.command('LOGIN "%s" "%s"' % (user, password))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- buffered input
    def fill(self):
        data = self.sock.recv(262144)
        if not data:
            raise ImapError("%s: connection closed by the server" % self.name)
        if self.pos and self.pos * 2 >= len(self.buf):
            del self.buf[:self.pos]
            self.pos = 0
        self.buf += data

    def try_readline(self):
        i = self.buf.find(b"\n", self.pos)
        if i < 0:
            return None
        line = bytes(self.buf[self.pos:i + 1])
        self.pos = i + 1
        return line

    def readline(self):
        while True:
            line = self.try_readline()
            if line is not None:
                return line
            self.fill()

    def read_bytes(self, n, keep):
        out = [] if keep else None
        while n > 0:
            avail = len(self.buf) - self.pos
            if avail == 0:
                self.fill()
                continue
            take = min(avail, n)
            if keep:
                out.append(bytes(self.buf[self.pos:self.pos + take]))
            self.pos += take
            n -= take
        return b"".join(out) if keep else None

    def track(self, line):
        m = EXISTS_RE.match(line)
        if m:
            self.exists = int(m.group(1))
        elif EXPUNGE_RE.match(line) and self.exists:
            self.exists -= 1

    # -- commands
    def send(self, data):
        self.sock.sendall(data)

    def next_tag(self):
        self.tagn += 1
        return b"T%d" % self.tagn

    def read_response(self, tag, keep=True):
        """Reads up to the tagged line of `tag`. Literal data is kept in the
        untagged lines only if `keep` (else just counted)."""
        prefix = tag + b" "
        untagged = []
        literal_bytes = 0
        while True:
            first = line = self.readline()
            parts = [line]
            while True:
                m = LITERAL_RE.search(line)
                if m is None:
                    break
                n = int(m.group(1))
                data = self.read_bytes(n, keep)
                literal_bytes += n
                if keep:
                    parts.append(data)
                line = self.readline()
                parts.append(line)
            if first.startswith(prefix):
                status = first[len(prefix):].split(b" ", 1)[0]
                return Response(status, first, untagged, literal_bytes)
            if first.startswith(b"* "):
                self.track(first)
                untagged.append(b"".join(parts) if len(parts) > 1 else first)
            elif first.startswith(b"+"):
                raise ImapError("%s: unexpected continuation %r" % (self.name, first))

    def command(self, text, keep=True, check=True):
        """Sends one command (str or bytes; literals must be LITERAL+)."""
        if isinstance(text, str):
            text = text.encode()
        tag = self.next_tag()
        self.send(tag + b" " + text + b"\r\n")
        resp = self.read_response(tag, keep)
        if check and resp.status != b"OK":
            raise ImapError("%s: %s -> %s" % (self.name, text[:80].decode(errors="replace"),
                                             resp.tagged.decode(errors="replace").strip()))
        return resp

    def select(self, mailbox="INBOX"):
        self.exists = None
        resp = self.command('SELECT "%s"' % mailbox)
        if self.exists is None:
            raise ImapError("%s: SELECT %s without EXISTS" % (self.name, mailbox))
        return resp

    def append(self, mailbox, messages, flags=None):
        """APPEND (MULTIAPPEND if several) with LITERAL+: one write, one round trip."""
        parts = [b'APPEND "%s"' % mailbox.encode()]
        for i, msg in enumerate(messages):
            f = flags[i] if flags else b""
            if f:
                parts.append(b" (" + f + b")")
            parts.append(b" {%d+}\r\n" % len(msg))
            parts.append(msg)
        return self.command(b"".join(parts))

    def idle_start(self):
        tag = self.next_tag()
        self.send(tag + b" IDLE\r\n")
        while True:
            line = self.readline()
            if line.startswith(b"+"):
                return tag
            if line.startswith(b"* "):
                self.track(line)
            else:
                raise ImapError("%s: IDLE refused: %r" % (self.name, line))

    def idle_done(self, tag):
        self.send(b"DONE\r\n")
        resp = self.read_response(tag)
        if resp.status != b"OK":
            raise ImapError("%s: IDLE ended with %r" % (self.name, resp.tagged))

    def logout(self):
        try:
            self.command("LOGOUT")
        finally:
            self.close()


# ----------------------------------------------------------------------------
# Processes, CPU and the cluster, all read from /proc and the admin sockets
# ----------------------------------------------------------------------------

def read_stat(path):
    """(comm, fields after comm) of a /proc/.../stat file, or None if it is gone.
    fields[1] is the ppid, [11]+[12] own CPU ticks, [13]+[14] reaped children's."""
    try:
        with open(path) as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()


def proc_table():
    """pid -> (ppid, comm, own cpu s, waited-for children's cpu s)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = read_stat("/proc/%s/stat" % entry)
        if st is None:
            continue
        comm, fields = st
        table[int(entry)] = (int(fields[1]), comm,
                             (int(fields[11]) + int(fields[12])) / CLK_TCK,
                             (int(fields[13]) + int(fields[14])) / CLK_TCK)
    return table


def descendants(table, root):
    kids = collections.defaultdict(list)
    for pid, row in table.items():
        kids[row[0]].append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        for k in kids.get(pid, ()):
            out.append(k)
            todo.append(k)
    return out


def status_fields(pid):
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k] = v.strip()
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Pss", "Pss_Anon", "Pss_File"):
                    out[k] = v.strip()
    except OSError:
        pass
    return out


def thread_cpu(pids):
    """(pid, tid) -> (thread name, cpu s) for every thread of `pids`."""
    out = {}
    for pid in pids:
        try:
            tids = os.listdir("/proc/%d/task" % pid)
        except OSError:
            continue
        for tid in tids:
            st = read_stat("/proc/%d/task/%s/stat" % (pid, tid))
            if st is None:
                continue
            name = "main" if int(tid) == pid else st[0]
            out[(pid, int(tid))] = (name, (int(st[1][11]) + int(st[1][12])) / CLK_TCK)
    return out


def thread_cpu_split(before, after):
    """CPU seconds between two thread_cpu() snapshots, by thread name (digits dropped)."""
    out = collections.Counter()
    for key, (name, cpu) in after.items():
        if key in before:
            out[re.sub(r"-?\d+$", "", name)] += cpu - before[key][1]
    return out


def kib(v):
    return int(v.split()[0]) if v else 0


def socket_inodes(pid):
    out = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if target.startswith("socket:["):
                out.add(int(target[8:-1]))
    except OSError:
        pass
    return out


def tcp_table():
    """inode -> (state, local port, remote port) for IPv4 and IPv6 TCP sockets."""
    out = {}
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    p = line.split()
                    out[int(p[9])] = (p[3], int(p[1].rsplit(":", 1)[1], 16),
                                      int(p[2].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return out


class Node:
    """One scripts/dovecot-dev instance."""

    def __init__(self, label, path, dovecot_dev):
        self.label = label
        self.dir = path
        self.dovecot_dev = dovecot_dev
        env = {}
        with open(os.path.join(path, "node.env")) as f:
            for line in f:
                k, _, v = line.strip().partition("=")
                env[k] = v
        self.port = int(env["DOVECOT_DEV_IMAP_PORT"])
        self.index = env["DOVECOT_DEV_INDEX"]
        self.addr = (label, self.port)
        self.log_offset = 0

    def drop_cache(self, user):
        """Empties this node's index cache of `user` (no session of it may be open)."""
        path = os.path.join(self.index, user)
        if self.index != "memory" and os.path.exists(path):
            shutil.rmtree(path)

    def master_pid(self):
        with open(os.path.join(self.dir, "run", "master.pid")) as f:
            return int(f.read().strip())

    def add_users(self, names, settings=()):
        """Adds the users this node does not have yet, each with userdb `settings`
        (K=V)."""
        new = [n for n in names if not os.path.exists(os.path.join(self.dir, "users", n))]
        opts = [a for kv in settings for a in ("--setting", kv)]
        for i in range(0, len(new), 2000):
            subprocess.run([self.dovecot_dev, "add-user", self.dir] + new[i:i + 2000] + opts,
                           check=True)

    def pids(self, table=None, comm=None):
        table = table or proc_table()
        pids = descendants(table, self.master_pid())
        return [p for p in pids if comm is None or table[p][1] == comm]

    def cpu(self, table):
        """CPU seconds of the master and all its (live or reaped) descendants."""
        root = self.master_pid()
        total = table[root][2] + table[root][3]
        for pid in descendants(table, root):
            total += table[pid][2] + table[pid][3]
        return total

    def wait_no_sessions(self, timeout=20.0):
        end = time.monotonic() + timeout
        while self.pids(comm="imap"):
            if time.monotonic() > end:
                raise Failure("%s: imap processes still running %.0f s after logout"
                              % (self.label, timeout))
            time.sleep(0.1)

    def log_mark(self):
        """Remembers the log's end: log_problems() reads only what follows."""
        self.log_offset = os.path.getsize(os.path.join(self.dir, "dovecot.log"))

    def log_problems(self):
        out = []
        try:
            with open(os.path.join(self.dir, "dovecot.log"), errors="replace") as f:
                f.seek(self.log_offset)
                for line in f:
                    if re.search(r": (Panic|Fatal|Error|Warning):", line):
                        out.append(line.rstrip())
        except OSError:
            pass
        return out


class Cluster:
    """The scripts/ceph-dev-cluster instance."""

    def __init__(self, path):
        self.dir = path
        self._ports = None

    def asok(self, daemon, *cmd):
        out = subprocess.run(["ceph", "--admin-daemon",
                              os.path.join(self.dir, "run", daemon + ".asok")] + list(cmd),
                             check=True, capture_output=True, text=True).stdout
        return json.loads(out)

    def osd_ops(self):
        """Client op counters summed over all OSDs (replica writes are not counted)."""
        out = collections.Counter()
        for name in self.daemon_pids():
            if name.startswith("osd."):
                d = self.asok(name, "perf", "dump")["osd"]
                for k in ("op", "op_r", "op_w", "op_rw", "op_r_out_bytes", "op_w_in_bytes"):
                    out[k] += d[k]
        return dict(out)

    def daemon_pids(self):
        out = {}
        run = os.path.join(self.dir, "run")
        for name in os.listdir(run):
            if name.endswith(".pid"):
                with open(os.path.join(run, name)) as f:
                    out[name[:-4]] = int(f.read().strip())
        return out

    def cpu(self, table):
        return sum(table[p][2] + table[p][3] for p in self.daemon_pids().values() if p in table)

    def listen_ports(self):
        """daemon kind ('mon', 'osd', 'mgr') -> set of TCP ports it listens on."""
        if self._ports is None:
            tcp = tcp_table()
            ports = collections.defaultdict(set)
            for name, pid in self.daemon_pids().items():
                for ino in socket_inodes(pid):
                    row = tcp.get(ino)
                    if row and row[0] == "0A":
                        ports[name.split(".")[0]].add(row[1])
            self._ports = dict(ports)
        return self._ports

    def mon_client_sessions(self):
        sessions = self.asok("mon.a", "sessions")
        return sum(1 for s in sessions if str(s.get("entity_name", "")).startswith("client.dovecot"))


def osd_delta(before, after):
    return {k: after[k] - before[k] for k in before}


def cpu_snapshot(nodes, cluster):
    table = proc_table()
    out = {n.label: n.cpu(table) for n in nodes}
    if cluster is not None:
        out["ceph"] = cluster.cpu(table)
    out["loadgen"] = sum(resource.getrusage(w)[0] + resource.getrusage(w)[1]
                         for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return out


def cpu_delta(a, b):
    return {k: b[k] - a[k] for k in a}


# ----------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------

def pct(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(math.ceil(p / 100.0 * len(s))) - 1))
    return s[k]


def ms(v):
    return "%.2f ms" % (v * 1000.0)


class Report:
    """Prints figures as they come and a summary table at the end. Goals are
    printed as met or not, never asserted."""

    def __init__(self):
        self.rows = []  # (key, label, unit, rbd, mdbox or None, ratio or None, goal text)
        self.failures = []
        self.data = {}

    def say(self, text=""):
        print(text, flush=True)

    def _row(self, key, label, unit, rbd, mdbox, ratio, goal, on, value):
        g = ""
        if goal:
            met = value >= goal[1] if goal[0] == ">=" else value <= goal[1]
            g = "%s %s %g: %s" % (on, goal[0], goal[1], "met" if met else "NOT met")
        self.rows.append((key, label, unit, rbd, mdbox, ratio, g))
        self.data[key] = {"label": label, "unit": unit, "rbd": rbd, "mdbox": mdbox,
                          "ratio": ratio, "goal": g}
        return "  (goal %s)" % g if g else ""

    def pair(self, key, label, rbd, mdbox, unit, goal=None, fmt="%.1f"):
        """Both figures and rbd/mdbox; goal: (op, value) on that ratio."""
        ratio = rbd / mdbox if mdbox else float("nan")
        g = self._row(key, label, unit, rbd, mdbox, ratio, goal, "rbd/mdbox", ratio)
        self.say(("    %-34s rbd " + fmt + " %s | mdbox " + fmt + " %s | rbd/mdbox %.2f%s")
                 % (label, rbd, unit, mdbox, unit, ratio, g))

    def absolute(self, key, label, rbd, unit, goal=None, mdbox=None, fmt="%.3f"):
        """A figure whose goal is on rbd's value itself; mdbox's shown beside it."""
        ratio = rbd / mdbox if mdbox else None
        g = self._row(key, label, unit, rbd, mdbox, ratio, goal, "rbd", rbd)
        extra = (" | mdbox " + fmt + " %s") % (mdbox, unit) if mdbox is not None else ""
        self.say(("    %-34s rbd " + fmt + " %s%s%s") % (label, rbd, unit, extra, g))

    def fail(self, what):
        self.failures.append(what)
        self.say("    FAILED: %s" % what)

    def summary(self):
        self.say("")
        self.say("=" * 100)
        self.say("Summary (ratio rbd/mdbox: higher is better for rates, lower for times and sizes)")
        self.say("=" * 100)
        self.say("%-6s %-36s %-5s %11s %11s %9s  %s" % ("", "figure", "unit", "rbd", "mdbox",
                                                      "rbd/mdbox", "goal"))
        for key, label, unit, rbd, mdbox, ratio, g in self.rows:
            self.say("%-6s %-36s %-5s %11.4g %11s %9s  %s" % (
                key, label, unit, rbd, "-" if mdbox is None else "%.4g" % mdbox,
                "-" if ratio is None else "%.2f" % ratio, g))
        if self.failures:
            self.say("")
            self.say("Functional failures:")
            for f in self.failures:
                self.say("  - " + f)


# ----------------------------------------------------------------------------
# (a) one connection: APPEND, FETCH FLAGS+SIZE on another node, full-body FETCH
# ----------------------------------------------------------------------------

def workload_a(ctx, rep):
    n = ctx.args.n_append
    chunk = ctx.args.chunk
    user = "bench-a"
    for node in ctx.all_nodes:
        node.add_users([user])
    msgs = Messages(seed=11)
    rep.say("(a) one connection: %d APPENDs (LITERAL+), alternating rbd(node A)/mdbox in "
            "chunks of %d" % (n, chunk))
    conns = {"rbd": Imap(ctx.rbd_a.addr, user), "mdbox": Imap(ctx.mdbox.addr, user)}
    lat = {"rbd": [], "mdbox": []}
    sizes = []
    cpu0 = cpu_snapshot(ctx.all_nodes, ctx.cluster)
    osd0 = ctx.cluster.osd_ops()
    for start in range(0, n, chunk):
        batch = []
        for i in range(start, min(n, start + chunk)):
            m = msgs.get(i)
            flags = b"\\Seen" if (i * 7) % 10 < 7 else b""
            batch.append((m, flags))
            sizes.append(len(m))
        order = ("rbd", "mdbox") if (start // chunk) % 2 == 0 else ("mdbox", "rbd")
        for kind in order:
            c = conns[kind]
            for m, flags in batch:
                t0 = time.perf_counter()
                c.append("INBOX", [m], [flags])
                lat[kind].append(time.perf_counter() - t0)
    osd1 = ctx.cluster.osd_ops()
    cpu1 = cpu_snapshot(ctx.all_nodes, ctx.cluster)
    for c in conns.values():
        c.logout()
    total = sum(sizes)
    srt = sorted(sizes)
    rep.say("    messages: %d, %.1f MB, median %.1f KiB, p95 %.1f KiB, max %.1f KiB, "
            "%d with a 100 KiB attachment" % (
                n, total / 1e6, statistics.median(srt) / 1024, pct(srt, 95) / 1024,
                srt[-1] / 1024, sum(1 for s in sizes if s > 100 * 1024)))
    rate = {k: n / sum(v) for k, v in lat.items()}
    rep.pair("a1", "APPEND msg/s", rate["rbd"], rate["mdbox"], "/s", (">=", 0.8))
    rep.pair("a1m", "APPEND MB/s", total / sum(lat["rbd"]) / 1e6,
             total / sum(lat["mdbox"]) / 1e6, "MB/s")
    for p in (50, 90, 99):
        rep.pair("a1p%d" % p, "APPEND latency p%d" % p, pct(lat["rbd"], p) * 1e3,
                 pct(lat["mdbox"], p) * 1e3, "ms", fmt="%.2f")
    d = osd_delta(osd0, osd1)
    cpu = cpu_delta(cpu0, cpu1)
    rep.say("    OSD ops per rbd APPEND: %.2f (reads %.2f, writes %.2f, rw %.2f)" % (
        d["op"] / n, d["op_r"] / n, d["op_w"] / n, d["op_rw"] / n))
    rep.say("    server CPU per APPEND: rbd %.3f ms (imap node %.3f + ceph %.3f) | mdbox %.3f ms"
            % ((cpu["rbd-A"] + cpu["ceph"]) / n * 1e3, cpu["rbd-A"] / n * 1e3,
               cpu["ceph"] / n * 1e3, cpu["mdbox"] / n * 1e3))

    # FETCH FLAGS+SIZE on a fresh session of another node (rbd: node B, index in memory)
    rep.say("    FETCH 1:* (FLAGS RFC822.SIZE) on a fresh session (rbd: node B, empty cache; "
            "mdbox: same instance)")
    res = {}
    sessions = {}
    ctx.rbd_b.drop_cache(user)
    for kind, node in (("rbd", ctx.rbd_b), ("mdbox", ctx.mdbox)):
        o0 = ctx.cluster.osd_ops()
        t0 = time.perf_counter()
        c = Imap(node.addr, user)
        t1 = time.perf_counter()
        o1 = ctx.cluster.osd_ops()
        c.select("INBOX")
        t2 = time.perf_counter()
        o2 = ctx.cluster.osd_ops()
        resp = c.command("FETCH 1:* (FLAGS RFC822.SIZE)")
        t3 = time.perf_counter()
        o3 = ctx.cluster.osd_ops()
        sessions[kind] = c
        got = [int(m.group(1)) for m in map(SIZE_RE.search, resp.untagged) if m]
        if c.exists != n or len(got) != n or sum(got) != total:
            rep.fail("(a) %s: SELECT said %s messages, FETCH returned %d sizes summing to %d; "
                     "expected %d messages, %d bytes" % (kind, c.exists, len(got), sum(got),
                                                         n, total))
        res[kind] = {"login": t1 - t0, "select": t2 - t1, "fetch": t3 - t2,
                     "osd_login": osd_delta(o0, o1), "osd_select": osd_delta(o1, o2),
                     "osd_fetch": osd_delta(o2, o3)}
    r, m = res["rbd"], res["mdbox"]
    rep.pair("a2", "FETCH FLAGS+SIZE time", r["fetch"] * 1e3, m["fetch"] * 1e3, "ms",
             ("<=", 2.0), fmt="%.1f")
    rep.pair("a2s", "SELECT (before it) time", r["select"] * 1e3, m["select"] * 1e3, "ms",
             fmt="%.1f")
    rep.pair("a2t", "SELECT + FETCH FLAGS+SIZE", (r["select"] + r["fetch"]) * 1e3,
             (m["select"] + m["fetch"]) * 1e3, "ms", fmt="%.1f")
    rep.say("    rbd OSD ops: LOGIN %d (reads %d), SELECT %d (reads %d, %.1f KB read), "
            "FETCH FLAGS+SIZE %d (reads %d, %.1f KB read)" % (
                r["osd_login"]["op"], r["osd_login"]["op_r"], r["osd_select"]["op"],
                r["osd_select"]["op_r"], r["osd_select"]["op_r_out_bytes"] / 1e3,
                r["osd_fetch"]["op"], r["osd_fetch"]["op_r"],
                r["osd_fetch"]["op_r_out_bytes"] / 1e3))
    reads = r["osd_fetch"]["op_r"] + r["osd_select"]["op_r"]
    if reads > max(20, n // 20):
        rep.fail("(a) FETCH FLAGS+SIZE on rbd node B took %d OSD reads for %d messages "
                 "(SELECT+FETCH): bodies were read" % (reads, n))
    else:
        rep.say("    -> no body read: %d OSD reads for SELECT+FETCH of %d messages" % (reads, n))
    rep.data["a2_osd"] = {k: {kk: vv for kk, vv in v.items() if kk.startswith("osd")}
                          for k, v in res.items()}

    # full-body FETCH on the same sessions; mdbox first this time
    res = {}
    for kind in ("mdbox", "rbd"):
        c = sessions[kind]
        o0 = ctx.cluster.osd_ops()
        t0 = time.perf_counter()
        resp = c.command("FETCH 1:* BODY.PEEK[]", keep=False)
        t1 = time.perf_counter()
        o1 = ctx.cluster.osd_ops()
        fetched = sum(1 for line in resp.untagged if b" FETCH " in line)
        if resp.literal_bytes != total or fetched != n:
            rep.fail("(a) %s full-body FETCH returned %d messages, %d bytes; expected %d, %d"
                     % (kind, fetched, resp.literal_bytes, n, total))
        res[kind] = (t1 - t0, osd_delta(o0, o1))
        c.logout()
    rep.pair("a3", "full-body FETCH MB/s", total / res["rbd"][0] / 1e6,
             total / res["mdbox"][0] / 1e6, "MB/s", (">=", 0.5))
    rep.pair("a3t", "full-body FETCH time", res["rbd"][0], res["mdbox"][0], "s",
             fmt="%.2f")
    od = res["rbd"][1]
    rep.say("    rbd OSD ops for the full-body FETCH: %d (reads %d, %.1f MB read) = %.2f per message"
            % (od["op"], od["op_r"], od["op_r_out_bytes"] / 1e6, od["op"] / n))


# ----------------------------------------------------------------------------
# (b) concurrent clients, mixed workload
# ----------------------------------------------------------------------------

B_OPS = (("SELECT", 10), ("FETCH-LIST", 35), ("FETCH-BODY", 15), ("STORE", 15),
         ("APPEND", 12.5), ("EXPUNGE", 12.5))
B_PREFILL = 200


def b_one_op(c, op, rng, msgs):
    exists = c.exists or 0
    if op in ("FETCH-LIST", "FETCH-BODY", "STORE", "EXPUNGE") and exists < 25:
        op = "APPEND"
    if op == "SELECT":
        c.select("INBOX")
    elif op == "FETCH-LIST":
        a = rng.randint(1, exists - 19)
        c.command("FETCH %d:%d (UID FLAGS RFC822.SIZE INTERNALDATE "
                  "BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE)])" % (a, a + 19))
    elif op == "FETCH-BODY":
        c.command("FETCH %d BODY.PEEK[]" % rng.randint(1, exists), keep=False)
    elif op == "STORE":
        c.command("STORE %d %sFLAGS (%s)" % (rng.randint(1, exists), rng.choice("+-"),
                                             rng.choice(("\\Flagged", "\\Seen", "\\Answered"))))
    elif op == "APPEND":
        c.append("INBOX", [msgs.get(rng.randrange(1 << 30))])
    elif op == "EXPUNGE":
        c.command("STORE %d +FLAGS.SILENT (\\Deleted)" % rng.randint(1, exists))
        c.command("EXPUNGE")
    return op


def b_client(addr, user, seed, go, start_at, duration, ready_q, result_q):
    try:
        rng = random.Random(seed)
        msgs = Messages(seed=1000 + seed)
        ops = [o for o, _ in B_OPS]
        weights = [w for _, w in B_OPS]
        c = Imap(addr, user)
        c.select("INBOX")
        ready_q.put(user)
        go.wait()
        deadline = start_at.value + duration
        lat = collections.defaultdict(list)
        while True:
            t0 = time.monotonic()
            if t0 >= deadline:
                break
            op = b_one_op(c, rng.choices(ops, weights)[0], rng, msgs)
            lat[op].append(time.monotonic() - t0)
        c.logout()
        result_q.put((user, None, dict(lat)))
    except Exception as e:  # reported by the parent
        ready_q.put(user)
        result_q.put((user, "%s: %s" % (type(e).__name__, e), None))


def run_clients(target, arglists, duration, settle=1.0, timeout_extra=60.0, on_start=None,
                on_end=None):
    """Starts one process per arglist (target(*args, go, start_at, duration, ready_q,
    result_q)), waits until all are ready, starts them together, collects results.
    on_start/on_end are called right before the start and after the last result."""
    go = mp.Event()
    start_at = mp.Value("d", 0.0)
    ready_q, result_q = mp.Queue(), mp.Queue()
    procs = [mp.Process(target=target, args=tuple(a) + (go, start_at, duration, ready_q,
                                                       result_q)) for a in arglists]
    for p in procs:
        p.start()
    for _ in procs:
        ready_q.get(timeout=120)
    time.sleep(settle)
    if on_start:
        on_start()
    start_at.value = time.monotonic()
    go.set()
    results = [result_q.get(timeout=duration + timeout_extra) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    if on_end:  # after join: the clients' CPU time is in RUSAGE_CHILDREN only once reaped
        on_end()
    return start_at.value, results


def prefill(node, users, count, seed, batch=100):
    """MULTIAPPENDs `count` realistic messages into each user's INBOX."""
    msgs = Messages(seed=seed)
    for u in users:
        c = Imap(node.addr, u)
        for s in range(0, count, batch):
            c.append("INBOX", [msgs.get(i) for i in range(s, min(count, s + batch))])
        c.logout()


def workload_b(ctx, rep):
    duration = ctx.args.b_seconds
    levels = ctx.args.b_clients
    rep.say("(b) concurrent clients, each its own user and INBOX (prefilled with %d messages), "
            "sessions kept open, %g s per run; op mix: %s" % (
                B_PREFILL, duration, ", ".join("%s %g%%" % o for o in B_OPS)))
    rep.say("    one op = one IMAP command (EXPUNGE = STORE \\Deleted + EXPUNGE); "
            "rbd on node A (local index cache)")
    order_flip = False
    for ncl in levels:
        users = ["bench-b%d-%02d" % (ncl, i) for i in range(ncl)]
        for node in ctx.all_nodes:
            node.add_users(users)
        for node in (ctx.rbd_a, ctx.mdbox):
            prefill(node, users, B_PREFILL, seed=20)
        res = {}
        order = (("mdbox", ctx.mdbox), ("rbd", ctx.rbd_a)) if order_flip else \
            (("rbd", ctx.rbd_a), ("mdbox", ctx.mdbox))
        order_flip = not order_flip
        for kind, node in order:
            node.wait_no_sessions()
            args = [(node.addr, u, 100 * ncl + i) for i, u in enumerate(users)]
            snaps = []
            threads = []

            def thread_snap(node=node):
                threads.append(thread_cpu(node.pids(comm="imap")))

            def snap():
                snaps.append((cpu_snapshot(ctx.all_nodes, ctx.cluster), ctx.cluster.osd_ops()))
                if len(snaps) == 1:  # per-thread CPU of the imap processes, inside the window
                    for at in (min(1.0, duration / 4), duration - min(1.0, duration / 4)):
                        timer = threading.Timer(at, thread_snap)
                        timer.daemon = True
                        timer.start()

            _, results = run_clients(b_client, args, duration, on_start=snap, on_end=snap)
            (cpu0, o0), (cpu1, o1) = snaps
            split = ""
            if len(threads) == 2:
                by_name = thread_cpu_split(*threads)
                total = sum(by_name.values()) or 1.0
                split = ", ".join("%s %.0f%%" % (k, 100.0 * v / total)
                                  for k, v in by_name.most_common(5))
            lat = collections.defaultdict(list)
            for user, err, l in results:
                if err:
                    rep.fail("(b) %s client %s: %s" % (kind, user, err))
                    continue
                for op, v in l.items():
                    lat[op].extend(v)
            total = sum(len(v) for v in lat.values())
            res[kind] = (total / duration, lat, cpu_delta(cpu0, cpu1), osd_delta(o0, o1), split)
        rr, mr = res["rbd"], res["mdbox"]
        rep.say("  %d clients (order: %s)" % (ncl, " then ".join(k for k, _ in order)))
        rep.pair("b%d" % ncl, "%d clients ops/s" % ncl, rr[0], mr[0], "/s", (">=", 0.7))
        for op, _ in B_OPS:
            a, b = rr[1].get(op, []), mr[1].get(op, [])
            if a and b:
                rep.say("      %-11s n=%6d/%6d  mean %7.2f / %7.2f ms  p99 %7.2f / %7.2f ms"
                        % (op, len(a), len(b), statistics.mean(a) * 1e3,
                           statistics.mean(b) * 1e3, pct(a, 99) * 1e3, pct(b, 99) * 1e3))
        for kind in ("rbd", "mdbox"):
            ops = sum(len(v) for v in res[kind][1].values()) or 1
            cpu = res[kind][2]
            if kind == "rbd":
                dovecot = cpu["rbd-A"] + cpu["rbd-B"]
                split = " = dovecot %.2f + ceph %.2f" % (dovecot / ops * 1e3,
                                                        cpu["ceph"] / ops * 1e3)
                server = dovecot + cpu["ceph"]
            else:
                server, split = cpu["mdbox"], ""
            rep.say("      %-5s CPU per op %.2f ms%s (server %.1f s, loadgen %.1f s, of %.0f s "
                    "on %d cores)" % (kind, server / ops * 1e3, split, server, cpu["loadgen"],
                                      os.cpu_count() * duration, os.cpu_count()))
            if res[kind][4]:
                rep.say("            imap processes' CPU by thread: %s" % res[kind][4])
        od = rr[3]
        nops = sum(len(v) for v in rr[1].values()) or 1
        rep.say("      rbd OSD ops per IMAP op: %.2f (reads %.2f, writes %.2f, rw %.2f)" % (
            od["op"] / nops, od["op_r"] / nops, od["op_w"] / nops, od["op_rw"] / nops))
        for node in (ctx.rbd_a, ctx.mdbox):
            node.wait_no_sessions()

    # Each op type alone, one session, serial: latency and OSD ops per IMAP command
    if ctx.args.census:
        k = ctx.args.census
        rep.say("  each op alone, one session, %d in a row (rbd on node A):" % k)
        user = "bench-b-census"
        for node in ctx.all_nodes:
            node.add_users([user])
        conns = {}
        for kind, node in (("rbd", ctx.rbd_a), ("mdbox", ctx.mdbox)):
            prefill(node, [user], B_PREFILL, seed=21)
            conns[kind] = Imap(node.addr, user)
            conns[kind].select("INBOX")
        for op, _ in B_OPS:
            dt = {}
            for kind in ("rbd", "mdbox"):
                rng = random.Random(5)
                msgs = Messages(seed=22)
                o0 = ctx.cluster.osd_ops()
                t0 = time.perf_counter()
                for _ in range(k):
                    b_one_op(conns[kind], op, rng, msgs)
                dt[kind] = (time.perf_counter() - t0) / k
                if kind == "rbd":
                    d = osd_delta(o0, ctx.cluster.osd_ops())
            rep.say("      %-11s rbd %6.2f ms | mdbox %6.2f ms | rbd OSD ops per command %.2f "
                    "(r %.2f w %.2f rw %.2f)" % (op, dt["rbd"] * 1e3, dt["mdbox"] * 1e3,
                                                 d["op"] / k, d["op_r"] / k, d["op_w"] / k,
                                                 d["op_rw"] / k))
        for c in conns.values():
            c.logout()


# ----------------------------------------------------------------------------
# (c) cold SELECT of a big mailbox
# ----------------------------------------------------------------------------

def c_filler(addr, user, batches, seed, go, start_at, duration, ready_q, result_q):
    """One fill connection: MULTIAPPENDs of `batches` ((first, count) each) into INBOX,
    each made just before it is sent, so that bench/scale's million never sit in memory."""
    try:
        msgs = Messages(seed=seed, median=1024, sigma=0.5, attach_rate=0.0)
        c = Imap(addr, user)
        ready_q.put(user)
        go.wait()
        for first, count in batches:
            c.append("INBOX", [msgs.get(i) for i in range(first, first + count)])
        c.logout()
        result_q.put((user, None, time.monotonic()))
    except Exception as e:
        ready_q.put(user)
        result_q.put((user, "%s: %s" % (type(e).__name__, e), None))


def timed_select(node, user, cluster, expect, cold=False):
    if cold:
        node.wait_no_sessions()
        node.drop_cache(user)
    c = Imap(node.addr, user)
    o0 = cluster.osd_ops()
    t0 = time.perf_counter()
    c.select("INBOX")
    t1 = time.perf_counter()
    o1 = cluster.osd_ops()
    exists = c.exists
    c.logout()
    if exists != expect:
        raise Failure("%s: SELECT of the %d-message mailbox reported %s EXISTS"
                      % (node.label, expect, exists))
    return t1 - t0, osd_delta(o0, o1)


def workload_c(ctx, rep):
    n = ctx.args.c_messages
    batch = ctx.args.c_batch
    conns = ctx.args.c_conns
    user = "bench-c"
    for node in ctx.all_nodes:
        node.add_users([user])
    rep.say("(c) cold SELECT of a %d-message mailbox (small messages, median 1 KiB); fill: %d "
            "connections x MULTIAPPEND of %d messages into one INBOX" % (n, conns, batch))
    batches = [(s, min(batch, n - s)) for s in range(0, n, batch)]
    fill = {}
    for kind, node in (("rbd", ctx.rbd_a), ("mdbox", ctx.mdbox)):
        args = [(node.addr, user, batches[w::conns], 30) for w in range(conns)]
        start, results = run_clients(c_filler, args, 0, settle=0.2, timeout_extra=1800)
        errs = [e for _, e, _ in results if e]
        for e in errs:
            rep.fail("(c) %s fill: %s" % (kind, e))
        fill[kind] = max(t for _, e, t in results if not e) - start
        rep.say("    fill %-5s %d messages in %.1f s = %.0f msg/s" % (kind, n, fill[kind],
                                                                     n / fill[kind]))
    rep.pair("c0", "fill msg/s (MULTIAPPEND)", n / fill["rbd"], n / fill["mdbox"], "/s",
             fmt="%.0f")
    reps = 3
    sel = {"rbd-B": [], "rbd-A": [], "mdbox": []}
    osd = {"rbd-B": [], "rbd-A": []}
    for i in range(reps):
        for label, node in (("rbd-B", ctx.rbd_b), ("mdbox", ctx.mdbox), ("rbd-A", ctx.rbd_a)):
            t, d = timed_select(node, user, ctx.cluster, n, cold=label == "rbd-B")
            sel[label].append(t)
            if label in osd:
                osd[label].append(d)
    rep.say("    SELECT, each in a fresh session, %d times (s):" % reps)
    for label, what in (("rbd-B", "rbd node B, cache emptied first"),
                        ("rbd-A", "rbd node A, the node that filled it")):
        rep.say("      %-36s %s" % (what, "  ".join(
            "%.3f (%d OSD reads, %.1f MB)" % (t, d["op_r"], d["op_r_out_bytes"] / 1e6)
            for t, d in zip(sel[label], osd[label]))))
    rep.say("      %-36s %s" % ("mdbox", "  ".join("%.4f" % t for t in sel["mdbox"])))
    med = {k: statistics.median(v) for k, v in sel.items()}
    rep.absolute("c1", "cold SELECT %dk msgs (s)" % (n // 1000), med["rbd-B"], "s",
                 ("<=", 1.0), mdbox=med["mdbox"])
    rep.pair("c2", "SELECT, node A (median)", med["rbd-A"], med["mdbox"], "s", fmt="%.3f")


# ----------------------------------------------------------------------------
# (d) IDLE latency
# ----------------------------------------------------------------------------

def idle_samples(idle_node, append_node, user, samples, timeout, rep, kind):
    """IDLE on idle_node, APPEND on append_node: list of (from send, from OK) seconds,
    None for a notification that did not arrive within `timeout`."""
    msgs = Messages(seed=40, median=2048, sigma=0.3, attach_rate=0.0)
    b = Imap(idle_node.addr, user)
    b.select("INBOX")
    a = Imap(append_node.addr, user)
    tag = b.idle_start()
    rng = random.Random(41)
    out = []
    missed = 0
    expect = b.exists
    for i in range(samples):
        time.sleep(rng.uniform(0.01, 0.04))
        expect += 1
        m = msgs.get(i)
        atag = a.next_tag()
        t_send = time.perf_counter()
        a.send(atag + b" APPEND INBOX {%d+}\r\n" % len(m) + m + b"\r\n")
        t_ok = t_exists = None
        deadline = t_send + timeout
        while t_ok is None or t_exists is None:
            progressed = False
            if t_ok is None:
                line = a.try_readline()
                if line is not None:
                    progressed = True
                    if line.startswith(atag + b" "):
                        if not line.startswith(atag + b" OK"):
                            raise ImapError("%s APPEND: %r" % (append_node.label, line))
                        t_ok = time.perf_counter()
            if t_exists is None:
                line = b.try_readline()
                if line is not None:
                    progressed = True
                    b.track(line)
                    if b.exists is not None and b.exists >= expect:
                        t_exists = time.perf_counter()
            if progressed:
                continue
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            want = ([a.sock] if t_ok is None else []) + ([b.sock] if t_exists is None else [])
            r, _, _ = select.select(want, [], [], left)
            for s in r:
                (a if s is a.sock else b).fill()
        if t_ok is None:
            raise ImapError("%s: APPEND not answered within %g s" % (append_node.label, timeout))
        if t_exists is None:
            missed += 1
            out.append(None)
        else:
            out.append((t_exists - t_send, t_exists - t_ok))
    if missed:
        rep.fail("(d) %s: %d of %d APPENDs not announced to the IDLE session within %g s"
                 % (kind, missed, samples, timeout))
    b.idle_done(tag)
    a.logout()
    b.logout()
    return out


def workload_d(ctx, rep):
    samples = ctx.args.d_samples
    user = "bench-d"
    for node in ctx.all_nodes:
        node.add_users([user])
    msamples = ctx.args.d_mdbox_samples
    rep.say("(d) IDLE latency, mailbox_idle_check_interval 30 s (only push counts): rbd: %d "
            "samples, IDLE on node B, APPEND on node A; mdbox: %d samples (each waits ~0.5 s), "
            "both on the one instance (inotify)" % (samples, msamples))
    res = {}
    for kind, idle_node, app_node, k in (("rbd", ctx.rbd_b, ctx.rbd_a, samples),
                                         ("mdbox", ctx.mdbox, ctx.mdbox, msamples)):
        s = idle_samples(idle_node, app_node, user, k, 5.0, rep, kind)
        res[kind] = [x for x in s if x is not None]
    a_lat = {k: [x[0] - x[1] for x in v] for k, v in res.items()}
    if a_lat["rbd"] and a_lat["mdbox"]:
        rep.say("    the APPEND itself (sent to OK)     rbd p50 %s p99 %s max %s | mdbox p50 %s p99 %s"
                % (ms(pct(a_lat["rbd"], 50)), ms(pct(a_lat["rbd"], 99)), ms(max(a_lat["rbd"])),
                   ms(pct(a_lat["mdbox"], 50)), ms(pct(a_lat["mdbox"], 99))))
    for which, idx in (("APPEND sent", 0), ("APPEND OK", 1)):
        r = [x[idx] for x in res["rbd"]]
        m = [x[idx] for x in res["mdbox"]]
        if not r or not m:
            continue
        rep.say("    EXISTS after %-11s rbd p50 %s p99 %s max %s | mdbox p50 %s p99 %s max %s"
                % (which, ms(pct(r, 50)), ms(pct(r, 99)), ms(max(r)), ms(pct(m, 50)),
                   ms(pct(m, 99)), ms(max(m))))
    for key, idx, what in (("d", 0, "after APPEND sent"), ("d-ok", 1, "after APPEND OK")):
        r = [x[idx] for x in res["rbd"]]
        m = [x[idx] for x in res["mdbox"]]
        if r and m:
            rep.absolute(key + "50", "IDLE p50, %s" % what, pct(r, 50) * 1e3, "ms",
                         mdbox=pct(m, 50) * 1e3, fmt="%.2f")
            rep.absolute(key + "99", "IDLE p99, %s" % what, pct(r, 99) * 1e3, "ms",
                         ("<=", 20), mdbox=pct(m, 99) * 1e3, fmt="%.2f")
    rep.say("    (mdbox's IDLE is same-instance inotify plus Dovecot's fixed 500 ms notify "
            "delay, src/lib-storage/mailbox-watch.c NOTIFY_DELAY_MSECS)")


# ----------------------------------------------------------------------------
# (e) memory, threads, RADOS sessions of many logged-in sessions
# ----------------------------------------------------------------------------

# Seconds of CPU measured with (e)'s sessions idle: one mailbox_idle_check_interval.
E_IDLE_SECONDS = 30
# Sessions (e) opens at once.
E_OPENERS = 4


def idle_session(addr, user, conns):
    """A session of `user` with INBOX selected and in IDLE, added to `conns` once logged
    in (a SELECT or IDLE that fails leaves it there to be closed)."""
    c = Imap(addr, user)
    conns.append(c)
    c.select("INBOX")
    c.idle_start()
    return c


def measure_sessions(node, cluster):
    table = proc_table()
    imap = node.pids(table, "imap")
    everything = [node.master_pid()] + node.pids(table)
    st = {p: status_fields(p) for p in everything}
    ports = cluster.listen_ports()
    tcp = tcp_table()
    conns = collections.Counter()
    for p in everything:
        for ino in socket_inodes(p):
            row = tcp.get(ino)
            if not row or row[0] != "01":
                continue
            for kind, pset in ports.items():
                if row[2] in pset:
                    conns[kind] += 1
    def imap_sum(field):
        return sum(kib(st[p].get(field)) for p in imap)

    return {
        "imap_procs": len(imap),
        "imap_rss_anon_kib": imap_sum("RssAnon"),
        "imap_rss_file_kib": imap_sum("RssFile"),
        "imap_pss_anon_kib": imap_sum("Pss_Anon"),
        "imap_vsz_kib": imap_sum("VmSize"),
        "imap_rss_kib": sum(kib(st[p].get("VmRSS")) for p in imap),
        "imap_pss_kib": sum(kib(st[p].get("Pss")) for p in imap),
        "imap_threads": sum(int(st[p].get("Threads", 0)) for p in imap),
        "all_procs": len(everything),
        "all_rss_kib": sum(kib(st[p].get("VmRSS")) for p in everything),
        "all_pss_kib": sum(kib(st[p].get("Pss")) for p in everything),
        "all_threads": sum(int(st[p].get("Threads", 0)) for p in everything),
        "tcp_to_ceph": dict(conns),
    }


def workload_e(ctx, rep):
    counts = ctx.args.e_sessions
    users = ["bench-e%05d" % i for i in range(max(counts))]
    # IDLE without hibernation: these sessions are the ones (i) does not cover.
    for node in ctx.all_nodes:
        node.add_users(users, settings=["imap_hibernate_timeout=0"])
    for n in counts:
        # Each imap process of either storage (one uid here) watches its mailbox with
        # an inotify instance: without room, Dovecot disables its watches.
        with inotify_room(n):
            sessions_e(ctx, rep, users[:n])


def sessions_e(ctx, rep, users):
    n = len(users)
    rep.say("(e) %d concurrent sessions (distinct users, INBOX selected, in IDLE, not "
            "hibernated): memory, threads, RADOS sessions, CPU while idle (rbd on node A)" % n)
    res = {}
    for kind, node in (("rbd", ctx.rbd_a), ("mdbox", ctx.mdbox)):
        base = measure_sessions(node, ctx.cluster)
        mon0 = ctx.cluster.mon_client_sessions()
        t0 = time.perf_counter()
        conns = []
        try:
            # A few at a time: one after another, 10k sessions took most of an hour.
            with concurrent.futures.ThreadPoolExecutor(E_OPENERS) as pool:
                list(pool.map(lambda u: idle_session(node.addr, u, conns), users))
            t_open = time.perf_counter() - t0
            time.sleep(1.0)
            m = measure_sessions(node, ctx.cluster)
            m["mon_sessions"] = ctx.cluster.mon_client_sessions() - mon0
            m["open_s"] = t_open
            m["base"] = base
            # A whole mailbox_idle_check_interval (30 s): every session polls once.
            c0 = cpu_snapshot([node], ctx.cluster)
            time.sleep(E_IDLE_SECONDS)
            d = cpu_delta(c0, cpu_snapshot([node], ctx.cluster))
            m["idle_cpu"] = d[node.label] / E_IDLE_SECONDS
            m["idle_ceph_cpu"] = d["ceph"] / E_IDLE_SECONDS
        finally:
            for c in conns:
                c.close()
        # Thousands of imap processes ending at once take a while on 2 cores; one that
        # does not end is a finding, not a reason to lose the figures.
        try:
            node.wait_no_sessions(timeout=max(60.0, n / 10.0))
        except Failure as e:
            rep.fail("(e) %s: %d imap processes left: %s" % (kind, len(node.pids(comm="imap")), e))
        if m["imap_procs"] != n:
            rep.fail("(e) %s: %d imap processes for %d sessions" % (kind, m["imap_procs"], n))
        res[kind] = m
    r, m = res["rbd"], res["mdbox"]
    at = "" if n == 100 else "@%d" % n
    rep.pair("e1" + at, "imap processes RSS total", r["imap_rss_kib"] / 1024,
             m["imap_rss_kib"] / 1024, "MiB")
    rep.pair("e2" + at, "imap processes PSS total", r["imap_pss_kib"] / 1024,
             m["imap_pss_kib"] / 1024, "MiB")
    rep.pair("e3" + at, "imap RSS per session", r["imap_rss_kib"] / 1024 / n,
             m["imap_rss_kib"] / 1024 / n, "MiB", fmt="%.2f")
    rep.pair("e4" + at, "imap threads total", r["imap_threads"], m["imap_threads"], "",
             fmt="%.0f")
    rep.pair("e5" + at, "whole instance RSS", r["all_rss_kib"] / 1024, m["all_rss_kib"] / 1024,
             "MiB")
    rep.pair("e6" + at, "whole instance threads", r["all_threads"], m["all_threads"], "",
             fmt="%.0f")
    # What each session adds to the whole instance (its imap process, and on rbd its
    # share of the node's service): the instance with n sessions, less the idle one.
    rep.pair("e7" + at, "whole instance PSS per session",
             (r["all_pss_kib"] - r["base"]["all_pss_kib"]) / 1024 / n,
             (m["all_pss_kib"] - m["base"]["all_pss_kib"]) / 1024 / n, "MiB", ("<=", 1.5),
             fmt="%.2f")
    rep.pair("e8" + at, "CPU while idle, instance", 100 * r["idle_cpu"], 100 * m["idle_cpu"], "%",
             fmt="%.1f")
    for kind, x in (("rbd", r), ("mdbox", m)):
        k = max(1, x["imap_procs"]) * 1024.0
        rep.say("    %-5s per imap process: RSS %.1f MiB (anon %.1f, file-backed %.1f), PSS %.2f "
                "MiB (anon %.2f), VSZ %.0f MiB, %.1f threads; CPU while idle %.0f s: instance "
                "%.1f %%, Ceph %.1f %%" % (
                    kind, x["imap_rss_kib"] / k, x["imap_rss_anon_kib"] / k,
                    x["imap_rss_file_kib"] / k, x["imap_pss_kib"] / k, x["imap_pss_anon_kib"] / k,
                    x["imap_vsz_kib"] / k, x["imap_threads"] / max(1, x["imap_procs"]),
                    E_IDLE_SECONDS, 100 * x["idle_cpu"], 100 * x["idle_ceph_cpu"]))
    rep.say("    rbd TCP connections from the instance to Ceph: %s; MON sessions of "
            "client.dovecot: %d" % (
                ", ".join("%s %d" % kv for kv in sorted(r["tcp_to_ceph"].items())) or "none",
                r["mon_sessions"]))
    rep.say("    time to open the %d sessions (connect+LOGIN+SELECT+IDLE, %d at a time): rbd "
            "%.2f s | mdbox %.2f s" % (n, E_OPENERS, r["open_s"], m["open_s"]))
    rep.data.setdefault("e_raw", {})[n] = res


# ----------------------------------------------------------------------------
# (f) logins/s, one login per session
# ----------------------------------------------------------------------------

def f_client(addr, user, go, start_at, duration, ready_q, result_q):
    try:
        ready_q.put(user)
        go.wait()
        deadline = start_at.value + duration
        phases = collections.defaultdict(list)
        n = 0
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            c = Imap(addr)
            t1 = time.monotonic()
            c.command('LOGIN "%s" "%s"' % (user, PASSWORD))
            t2 = time.monotonic()
            c.select("INBOX")
            t3 = time.monotonic()
            c.logout()
            t4 = time.monotonic()
            for k, v in (("connect", t1 - t0), ("LOGIN", t2 - t1), ("SELECT", t3 - t2),
                         ("LOGOUT", t4 - t3)):
                phases[k].append(v)
            n += 1
        result_q.put((user, None, (n, dict(phases))))
    except Exception as e:
        result_q.put((user, "%s: %s" % (type(e).__name__, e), None))


def workload_f(ctx, rep):
    seg = ctx.args.f_seconds / 2.0
    ncl = ctx.args.f_clients
    users = ["bench-f%d" % i for i in range(ncl)]
    for node in ctx.all_nodes:
        node.add_users(users)
    for node in (ctx.rbd_a, ctx.mdbox):
        prefill(node, users, 20, seed=50)
    rep.say("(f) logins/s: %d parallel clients, each: connect, LOGIN, SELECT INBOX (20 msgs), "
            "LOGOUT; %g s per storage in ABBA segments of %g s (rbd on node A)"
            % (ncl, 2 * seg, seg))
    count = {"rbd": 0, "mdbox": 0}
    phases = {"rbd": collections.defaultdict(list), "mdbox": collections.defaultdict(list)}
    cpu = {"rbd": 0.0, "mdbox": 0.0}
    for kind in ("rbd", "mdbox", "mdbox", "rbd"):
        node = ctx.rbd_a if kind == "rbd" else ctx.mdbox
        node.wait_no_sessions()
        c0 = cpu_snapshot(ctx.all_nodes, ctx.cluster)
        _, results = run_clients(f_client, [(node.addr, u) for u in users], seg, settle=0.2)
        node.wait_no_sessions()
        d = cpu_delta(c0, cpu_snapshot(ctx.all_nodes, ctx.cluster))
        cpu[kind] += d["rbd-A"] + d["rbd-B"] + d["ceph"] if kind == "rbd" else d["mdbox"]
        for user, err, res in results:
            if err:
                rep.fail("(f) %s client %s: %s" % (kind, user, err))
                continue
            count[kind] += res[0]
            for k, v in res[1].items():
                phases[kind][k].extend(v)
    rate = {k: v / (2 * seg) for k, v in count.items()}
    rep.pair("f1", "logins/s", rate["rbd"], rate["mdbox"], "/s", (">=", 0.8))
    rep.say("    per phase, %d parallel clients:" % ncl)
    for k in ("connect", "LOGIN", "SELECT", "LOGOUT"):
        a, b = phases["rbd"][k], phases["mdbox"][k]
        if a and b:
            rep.say("      %-8s mean %6.2f / %6.2f ms  p99 %6.2f / %6.2f ms (rbd / mdbox)"
                    % (k, statistics.mean(a) * 1e3, statistics.mean(b) * 1e3,
                       pct(a, 99) * 1e3, pct(b, 99) * 1e3))
    for kind in ("rbd", "mdbox"):
        rep.say("      %-5s server CPU per login (incl. process exit after LOGOUT): %.2f ms"
                % (kind, cpu[kind] / max(1, count[kind]) * 1e3))
    # The same loop with one client, no concurrency: where a login's time goes
    serial = {}
    for kind, node in (("rbd", ctx.rbd_a), ("mdbox", ctx.mdbox)):
        node.wait_no_sessions()
        _, results = run_clients(f_client, [(node.addr, users[0])], seg / 2, settle=0.2)
        user, err, res = results[0]
        if err:
            rep.fail("(f) %s serial client: %s" % (kind, err))
            return
        serial[kind] = res
    rep.say("    one client alone: rbd %.1f logins/s | mdbox %.1f logins/s" % (
        serial["rbd"][0] / (seg / 2), serial["mdbox"][0] / (seg / 2)))
    for k in ("connect", "LOGIN", "SELECT", "LOGOUT"):
        a, b = serial["rbd"][1][k], serial["mdbox"][1][k]
        rep.say("      %-8s mean %6.2f / %6.2f ms (rbd / mdbox)" % (
            k, statistics.mean(a) * 1e3, statistics.mean(b) * 1e3))


# ----------------------------------------------------------------------------

# ----------------------------------------------------------------------------
# (g) large messages: memory of a huge APPEND, a 20-byte partial FETCH at the
#     end of a large message, BINARY.SIZE
# ----------------------------------------------------------------------------

G_LINE = 98  # bytes per body line: 96 base64 characters and CRLF
G_PIECE_LINES = 8 * 1024 * 1024 // G_LINE


def g_body_piece(first, n):
    """Lines first..first+n-1 of a large base64 body, each starting with its number."""
    fill = b"A" * 84 + b"\r\n"
    return b"".join(b"%012d" % k + fill for k in range(first, first + n))


def g_append(c, size):
    """APPENDs a single-part base64 message of about `size` bytes, sent in pieces with
    LITERAL+ so the client never holds it whole; returns its exact size."""
    head = (b"From: a@example.org\r\nSubject: large\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n")
    lines = (size - len(head)) // G_LINE
    total = len(head) + lines * G_LINE
    tag = c.next_tag()
    c.send(tag + b' APPEND "INBOX" {%d+}\r\n' % total + head)
    for first in range(0, lines, G_PIECE_LINES):
        c.send(g_body_piece(first, min(G_PIECE_LINES, lines - first)))
    c.send(b"\r\n")
    resp = c.read_response(tag)
    if resp.status != b"OK":
        raise Failure("%s: APPEND of %d bytes: %r" % (c.name, total, resp.tagged))
    return total


def workload_g(ctx, rep):
    huge = ctx.args.g_huge_mib * 1024 * 1024
    large = ctx.args.g_large_mib * 1024 * 1024
    user = "bench-g"
    for node in ctx.all_nodes:
        node.add_users([user])
    rep.say("(g) large messages: VmHWM of the imap process during a %d MiB APPEND (RSS before "
            "it in brackets); then a %d MiB message: 20-byte partial FETCH at its end and "
            "BINARY.SIZE in fresh sessions (rbd: node B, which did not save it)"
            % (huge // 2**20, large // 2**20))
    res = {}
    for kind, node, reader in (("rbd", ctx.rbd_a, ctx.rbd_b), ("mdbox", ctx.mdbox, ctx.mdbox)):
        node.wait_no_sessions()
        c = Imap(node.addr, user)
        c.select("INBOX")
        pid = node.pids(comm="imap")[0]
        before = kib(status_fields(pid).get("VmRSS"))
        # On rbd the node's service writes the chunks: its memory counts too.
        service = node.pids(comm="rbd")
        service_before = kib(status_fields(service[0]).get("VmRSS")) if service else 0
        t0 = time.perf_counter()
        g_append(c, huge)
        t_huge = time.perf_counter() - t0
        hwm = kib(status_fields(pid).get("VmHWM"))
        if service:
            rep.say("    rbd service during it: VmRSS %.1f MiB before, VmHWM %.1f MiB after" % (
                service_before / 1024, kib(status_fields(service[0]).get("VmHWM")) / 1024))
        large_size = g_append(c, large)
        c.logout()
        timings = {"partial": [], "binary_size": [], "binary_size_again": []}
        for _ in range(3):
            r = Imap(reader.addr, user)
            r.command('EXAMINE "INBOX"')
            t0 = time.perf_counter()
            resp = r.command("FETCH 2 (BODY.PEEK[]<%d.20>)" % (large_size - 20))
            timings["partial"].append(time.perf_counter() - t0)
            if resp.literal_bytes != 20:
                rep.fail("(g) %s: partial FETCH returned %d bytes" % (kind, resp.literal_bytes))
            for key in ("binary_size", "binary_size_again"):
                t0 = time.perf_counter()
                r.command("FETCH 2 (BINARY.SIZE[1])")
                timings[key].append(time.perf_counter() - t0)
            r.logout()
        # The first BINARY.SIZE on the node parses the message; later ones, in any
        # session of the node, find the sizes in its cache file.
        res[kind] = {"hwm_kib": hwm, "before_kib": before, "append_s": t_huge,
                     "partial_first_s": timings["partial"][0],
                     "partial_s": statistics.median(timings["partial"]),
                     "binary_size_first_s": timings["binary_size"][0],
                     "binary_size_s": statistics.median(timings["binary_size"][1:] +
                                                        timings["binary_size_again"])}
        rep.say("    %-6s APPEND %d MiB in %.1f s: VmHWM %.1f MiB [%.1f]" % (
            kind, huge // 2**20, t_huge, hwm / 1024, before / 1024))
    r, m = res["rbd"], res["mdbox"]
    rep.pair("g.hwm", "imap VmHWM, %d MiB APPEND" % (huge // 2**20), r["hwm_kib"] / 1024,
             m["hwm_kib"] / 1024, "MiB", goal=("<=", 2.0))
    rep.pair("g.grow", "imap growth over its RSS before", (r["hwm_kib"] - r["before_kib"]) / 1024,
             (m["hwm_kib"] - m["before_kib"]) / 1024, "MiB")
    rep.pair("g.partial1", "20-byte FETCH at the end, first", r["partial_first_s"] * 1000,
             m["partial_first_s"] * 1000, "ms", fmt="%.2f")
    rep.pair("g.partial", "20-byte FETCH at the end, %d MiB" % (large // 2**20),
             r["partial_s"] * 1000, m["partial_s"] * 1000, "ms", goal=("<=", 2.0), fmt="%.2f")
    rep.pair("g.bsize1", "BINARY.SIZE, first on the node", r["binary_size_first_s"] * 1000,
             m["binary_size_first_s"] * 1000, "ms", fmt="%.1f")
    rep.pair("g.bsize", "BINARY.SIZE, cached", r["binary_size_s"] * 1000,
             m["binary_size_s"] * 1000, "ms", fmt="%.2f")


# ----------------------------------------------------------------------------
# (h) keyword storms (issue 10): many keywords on one message, many in a mailbox
# ----------------------------------------------------------------------------

H_BATCH = 500  # keywords per STORE: well inside imap_max_line_length


def h_keyword(i):
    return "kw%06d" % i


def h_storm_one_message(ctx, rep, node, reader, user, keywords):
    """K keywords on one message, set in STOREs of H_BATCH; then STORE \\Seen on it
    and a cold SELECT + FETCH FLAGS on `reader`."""
    msg = Messages(11).get(0)
    c = Imap(node.addr, user)
    c.append("INBOX", [msg])
    c.select("INBOX")
    t0 = time.perf_counter()
    for first in range(0, keywords, H_BATCH):
        names = " ".join(h_keyword(i) for i in range(first, min(keywords, first + H_BATCH)))
        c.command("STORE 1 +FLAGS.SILENT (%s)" % names)
    t_set = time.perf_counter() - t0
    t0 = time.perf_counter()
    c.command("STORE 1 +FLAGS.SILENT (\\Seen)")
    t_seen = time.perf_counter() - t0
    c.logout()
    if reader is not node:
        reader.wait_no_sessions()
        reader.drop_cache(user)
    r = Imap(reader.addr, user)
    t0 = time.perf_counter()
    r.select("INBOX")
    t_select = time.perf_counter() - t0
    resp = r.command("FETCH 1 (FLAGS)")
    r.logout()
    flags = b"".join(resp.untagged)
    if flags.count(b"kw") != keywords or b"\\Seen" not in flags:
        rep.fail("(h) %s: FETCH FLAGS shows %d of %d keywords" % (node.label, flags.count(b"kw"),
                                                                  keywords))
    return t_set, t_seen, t_select


def h_select(rep, node, user, appends):
    r = Imap(node.addr, user)
    t0 = time.perf_counter()
    r.select("INBOX")
    t_select = time.perf_counter() - t0
    exists = r.exists
    resp = r.command("FETCH %d (FLAGS)" % appends)
    r.logout()
    if exists != appends or h_keyword(appends - 1).encode() not in b"".join(resp.untagged):
        rep.fail("(h) %s: SELECT after the storm: %s EXISTS, last FLAGS %r"
                 % (node.label, exists, resp.untagged[:1]))
    return t_select


def h_storm_appends(ctx, rep, node, reader, user, appends):
    """N APPENDs, each with a keyword the mailbox has not seen; then SELECT in a new
    session on the same node, and a cold SELECT on `reader` (rbd: node B with its cache
    emptied; mdbox: the new session's figure again)."""
    msgs = Messages(12)
    c = Imap(node.addr, user)
    t0 = time.perf_counter()
    for i in range(appends):
        c.append("INBOX", [msgs.get(i % 64)], flags=[h_keyword(i).encode()])
    t_append = time.perf_counter() - t0
    c.logout()
    node.wait_no_sessions()
    t_select = h_select(rep, node, user, appends)
    if reader is node:
        return t_append, t_select, t_select
    reader.wait_no_sessions()
    reader.drop_cache(user)
    return t_append, t_select, h_select(rep, reader, user, appends)


def workload_h(ctx, rep):
    keywords = ctx.args.h_keywords
    appends = ctx.args.h_appends
    rep.say("(h) keyword storms: %d keywords on one message (STOREs of %d), then STORE \\Seen "
            "and a cold SELECT on another node; %d APPENDs each adding a new keyword, then a "
            "cold SELECT (rbd: node B, cache emptied; mdbox: a new session)"
            % (keywords, H_BATCH, appends))
    res = {}
    for kind, node, reader in (("rbd", ctx.rbd_a, ctx.rbd_b), ("mdbox", ctx.mdbox, ctx.mdbox)):
        one, many = "bench-h1-" + kind, "bench-h2-" + kind
        for n in ctx.all_nodes:
            n.add_users([one, many])
        res[kind] = h_storm_one_message(ctx, rep, node, reader, one, keywords) + \
            h_storm_appends(ctx, rep, node, reader, many, appends)
        rep.say("    %-6s set %.1f s, STORE \\Seen %.3f s, SELECT %.3f s; %d APPENDs %.1f s, "
                "SELECT %.3f s, cold %.3f s" % ((kind,) + res[kind][:3] + (appends,) + res[kind][3:]))
    r, m = res["rbd"], res["mdbox"]
    rep.pair("h.set", "set %d keywords on one message" % keywords, r[0], m[0], "s", fmt="%.2f")
    rep.pair("h.seen", "STORE \\Seen on it", r[1] * 1000, m[1] * 1000, "ms", fmt="%.1f")
    rep.pair("h.select1", "cold SELECT of it", r[2] * 1000, m[2] * 1000, "ms", fmt="%.1f")
    rep.pair("h.append", "%d APPENDs, new keyword each" % appends, r[3], m[3], "s", fmt="%.1f")
    rep.pair("h.select", "SELECT after the keyword storm", r[4] * 1000, m[4] * 1000, "ms",
             goal=("<=", 2.0), fmt="%.1f")
    rep.pair("h.select_cold", "... cold, cache rebuilt (rbd node B)", r[5] * 1000, m[5] * 1000,
             "ms", fmt="%.1f")


class Ctx:
    pass


# ----------------------------------------------------------------------------
# (i) hibernated IDLE sessions
# ----------------------------------------------------------------------------

I_USERS = 100     # the sessions' users: each has i_sessions / I_USERS of them
I_PROBES = 20     # users of one session each, woken by an APPEND from the other node


@contextlib.contextmanager
def inotify_room(instances):
    """Each hibernated client, and each imap process in IDLE, holds an inotify instance of
    the mail uid: Linux allows 128 per uid by default, which operators of many sessions
    raise. Raised here for the run, and put back."""
    names = ("max_user_instances", "max_user_watches")
    saved = {}
    for name in names:
        path = "/proc/sys/fs/inotify/" + name
        with open(path) as f:
            saved[path] = f.read().strip()
        if int(saved[path]) < 4 * instances:
            with open(path, "w") as f:
                f.write(str(4 * instances))
    try:
        yield
    finally:
        for path, value in saved.items():
            with open(path, "w") as f:
                f.write(value)


def wake_latency(idle, writer, user, n):
    """Seconds from the writer's APPEND OK to the hibernated session's EXISTS."""
    msgs = Messages(seed=n, median=1024, sigma=0.2, attach_rate=0.0)
    writer_c = Imap(writer.addr, user)
    writer_c.append("INBOX", [msgs.get(0)])
    t_ok = time.perf_counter()
    writer_c.logout()
    while not idle.readline().rstrip().endswith(b"EXISTS"):
        pass
    return time.perf_counter() - t_ok


def workload_i(ctx, rep):
    n = ctx.args.i_sessions
    users = ["bench-i%03d" % u for u in range(I_USERS)]
    probes = ["bench-ip%02d" % u for u in range(I_PROBES)]
    for node in ctx.all_nodes:
        node.add_users(users + probes)
    # One socket per session here; imap-hibernate holds two descriptors per session,
    # within the hard limit Dovecot's master inherits (20000 on this machine).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if 2 * (n + I_PROBES) + 1000 > hard:
        raise Failure("(i) %d sessions need %d descriptors in imap-hibernate; the hard limit "
                      "is %d" % (n, 2 * (n + I_PROBES), hard))
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + I_PROBES + 1000)), hard))
    rep.say("(i) %d IDLE sessions hibernated (imap_hibernate_timeout 2s; %d users, INBOX "
            "selected), and %d more woken one at a time by an APPEND (rbd: sessions on node A, "
            "APPEND on node B; mdbox: the one instance)" % (n, I_USERS, I_PROBES))
    res = {}
    with inotify_room(n + I_PROBES):
        for kind, node, writer in (("rbd", ctx.rbd_a, ctx.rbd_b), ("mdbox", ctx.mdbox, ctx.mdbox)):
            node.wait_no_sessions(timeout=120)
            base = measure_sessions(node, ctx.cluster)
            mon0 = ctx.cluster.mon_client_sessions()
            conns = []
            try:
                t0 = time.perf_counter()
                for i in range(n + I_PROBES):
                    idle_session(node.addr, users[i % I_USERS] if i < n else probes[i - n], conns)
                t_open = time.perf_counter() - t0
                deadline = time.monotonic() + 120
                while node.pids(comm="imap") and time.monotonic() < deadline:
                    time.sleep(0.5)
                m = measure_sessions(node, ctx.cluster)
                m["base"] = base
                m["open_s"] = t_open
                m["mon_sessions"] = ctx.cluster.mon_client_sessions() - mon0
                c0 = cpu_snapshot([node], ctx.cluster)
                time.sleep(10)
                d = cpu_delta(c0, cpu_snapshot([node], ctx.cluster))
                m["idle_cpu"] = d[node.label] / 10
                m["idle_ceph_cpu"] = d["ceph"] / 10
                m["wake"] = [wake_latency(conns[n + p], writer, probes[p], p)
                             for p in range(I_PROBES)]
            finally:
                for c in conns:
                    c.close()
            res[kind] = m
    r, md = res["rbd"], res["mdbox"]
    for kind, x in (("rbd", r), ("mdbox", md)):
        rep.say("    %-5s %d sessions opened in %.1f s; imap processes left hibernated: %d; "
                "whole instance PSS %.0f MiB (idle instance %.0f), %d processes, %d threads; "
                "CPU while idle: instance %.1f %%, Ceph %.1f %%; wake p50 %s max %s" % (
                    kind, n + I_PROBES, x["open_s"], x["imap_procs"], x["all_pss_kib"] / 1024,
                    x["base"]["all_pss_kib"] / 1024, x["all_procs"], x["all_threads"],
                    100 * x["idle_cpu"], 100 * x["idle_ceph_cpu"], ms(pct(x["wake"], 50)),
                    ms(max(x["wake"]))))
    rep.say("    rbd MON sessions of client.dovecot: %d; TCP to Ceph: %s" % (
        r["mon_sessions"], ", ".join("%s %d" % kv for kv in sorted(r["tcp_to_ceph"].items()))))
    per = {k: (x["all_pss_kib"] - x["base"]["all_pss_kib"]) / 1024 / (n + I_PROBES)
           for k, x in res.items()}
    rep.pair("i1", "whole instance PSS per hibernated session", per["rbd"], per["mdbox"], "MiB",
             ("<=", 1.5), fmt="%.3f")
    rep.pair("i2", "imap processes left with every session hibernated", r["imap_procs"],
             md["imap_procs"], "", fmt="%.0f")
    rep.pair("i3", "whole instance threads", r["all_threads"], md["all_threads"], "", fmt="%.0f")
    rep.absolute("i4", "hibernated IDLE woken by the other node, p99", pct(r["wake"], 99) * 1e3,
                 "ms", ("<=", 100), mdbox=pct(md["wake"], 99) * 1e3, fmt="%.1f")
    rep.data["i_raw"] = res


WORKLOADS = {"a": workload_a, "b": workload_b, "c": workload_c, "d": workload_d,
             "e": workload_e, "f": workload_f, "g": workload_g,
             "h": workload_h, "i": workload_i}


def parse_args():
    ap = argparse.ArgumentParser(
        description="IMAP load generator: the same workloads against Dovecot+rbd and "
                    "Dovecot+mdbox, printing both and the ratio rbd/mdbox. Normally run "
                    "through bench/imap/run, which starts the instances.")
    ap.add_argument("--ceph-dir", required=True, help="scripts/ceph-dev-cluster DIR")
    ap.add_argument("--rbd-a", required=True, help="dovecot-dev DIR of rbd node A (local cache)")
    ap.add_argument("--rbd-b", required=True, help="dovecot-dev DIR of rbd node B (its cache is emptied before cold sessions)")
    ap.add_argument("--mdbox", required=True, help="dovecot-dev DIR of the mdbox instance")
    ap.add_argument("--dovecot-dev", required=True, help="path of scripts/dovecot-dev")
    ap.add_argument("--quick", action="store_true", help="small N, short runs (~1 minute)")
    ap.add_argument("--only", default="abcdefghi", help="workloads to run, e.g. 'ad' (default all)")
    ap.add_argument("--json", help="also write every figure to this file")
    ap.add_argument("--n-append", type=int, help="(a) APPEND count (10000; quick 1000)")
    ap.add_argument("--chunk", type=int, default=500, help="(a) alternate storages every N")
    ap.add_argument("--b-seconds", type=float, help="(b) seconds per run (30; quick 4)")
    ap.add_argument("--b-clients", help="(b) client counts, comma separated (10,50; quick 4,10)")
    ap.add_argument("--census", type=int, help="(b) OSD ops per command, N of each (50; quick 10; 0 off)")
    ap.add_argument("--c-messages", type=int, help="(c) mailbox size (100000; quick 5000)")
    ap.add_argument("--c-batch", type=int, default=250, help="(c) messages per MULTIAPPEND")
    ap.add_argument("--c-conns", type=int, default=4, help="(c) fill connections")
    ap.add_argument("--d-samples", type=int, help="(d) rbd samples (200; quick 30)")
    ap.add_argument("--d-mdbox-samples", type=int, help="(d) mdbox samples (40; quick 10)")
    ap.add_argument("--e-sessions", help="(e) concurrent sessions, comma separated, e.g. "
                    "1000,5000,10000 (100; quick 20)")
    ap.add_argument("--f-seconds", type=float, help="(f) seconds per storage (15; quick 4)")
    ap.add_argument("--f-clients", type=int, default=4, help="(f) parallel clients")
    ap.add_argument("--g-huge-mib", type=int, help="(g) size of the APPEND whose memory is measured (1024; quick 128)")
    ap.add_argument("--g-large-mib", type=int, help="(g) size of the partially fetched message (100; quick 20)")
    ap.add_argument("--h-keywords", type=int, help="(h) keywords on one message (32000; quick 2000)")
    ap.add_argument("--h-appends", type=int, help="(h) APPENDs, each with a new keyword (20000; quick 2000)")
    ap.add_argument("--i-sessions", type=int, help="(i) hibernated sessions (1000; quick 100)")
    args = ap.parse_args()
    q = args.quick
    defaults = {"n_append": (10000, 1000), "b_seconds": (30.0, 4.0), "b_clients": ("10,50", "4,10"),
                "census": (50, 10), "c_messages": (100000, 5000), "d_samples": (200, 30),
                "d_mdbox_samples": (40, 10),
                "e_sessions": (100, 20), "f_seconds": (15.0, 4.0),
                "g_huge_mib": (1024, 128), "g_large_mib": (100, 20),
                "h_keywords": (32000, 2000), "h_appends": (20000, 2000),
                "i_sessions": (1000, 100)}
    for k, (full, quick) in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, quick if q else full)
    args.b_clients = [int(x) for x in str(args.b_clients).split(",") if x]
    args.e_sessions = [int(x) for x in str(args.e_sessions).split(",") if x]
    bad = set(args.only) - set(WORKLOADS)
    if bad:
        ap.error("unknown workload(s): %s" % "".join(sorted(bad)))
    return args


def main():
    args = parse_args()
    ctx = Ctx()
    ctx.args = args
    ctx.cluster = Cluster(args.ceph_dir)
    ctx.rbd_a = Node("rbd-A", args.rbd_a, args.dovecot_dev)
    ctx.rbd_b = Node("rbd-B", args.rbd_b, args.dovecot_dev)
    ctx.mdbox = Node("mdbox", args.mdbox, args.dovecot_dev)
    ctx.all_nodes = [ctx.rbd_a, ctx.rbd_b, ctx.mdbox]
    for node in ctx.all_nodes:
        node.log_mark()
    rep = Report()
    rep.say("loadgen: rbd node A imap port %d (local index cache), node B %d (cache emptied "
            "before each cold session), mdbox %d; %s mode" % (ctx.rbd_a.port, ctx.rbd_b.port, ctx.mdbox.port,
                                   "quick" if args.quick else "full"))
    t_all = time.monotonic()
    # (c) last: its 100k-message fill leaves the OSD compacting for a while, which
    # would show up in the latencies of whatever ran next.
    for key in "abdefghic":
        if key not in args.only:
            continue
        rep.say("")
        t0 = time.monotonic()
        try:
            WORKLOADS[key](ctx, rep)
        except Exception as e:  # one broken workload must not hide the others
            traceback.print_exc()
            rep.fail("(%s) aborted: %s: %s" % (key, type(e).__name__, e))
        for node in (ctx.rbd_a, ctx.rbd_b, ctx.mdbox):
            try:
                node.wait_no_sessions()
            except Failure as e:
                rep.fail(str(e))
        rep.say("    [(%s) took %.0f s]" % (key, time.monotonic() - t0))
    rep.say("")
    rep.say("Dovecot log lines at Warning or above, written during the workloads:")
    for node in ctx.all_nodes:
        problems = node.log_problems()
        for line in problems[:20]:
            rep.say("  %s: %s" % (node.label, line))
        if len(problems) > 20:
            rep.say("  %s: ... %d more" % (node.label, len(problems) - 20))
        if any(re.search(r": (Panic|Fatal):", l) for l in problems):
            rep.fail("%s: Panic/Fatal in dovecot.log" % node.label)
    rep.summary()
    rep.say("total loadgen time %.0f s" % (time.monotonic() - t_all))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"figures": rep.data, "failures": rep.failures,
                       "quick": args.quick}, f, indent=1, default=str)
    return 1 if rep.failures else 0


if __name__ == "__main__":
    sys.exit(main())
