#!/usr/bin/python3
"""Scale benchmark for bench/scale/run: one mailbox filled to a million messages,
and one user with ten thousand folders, on Dovecot+rbd against Dovecot+mdbox.

It reuses bench/imap's harness (bench/imap/run starts the cluster and the three
instances; loadgen.py's IMAP client, counters and report). Every figure is printed
for both storages where mdbox has one, with the ratio rbd/mdbox and the goal of
issue 12; nothing is asserted. The exit status is 1 only when something fails
functionally (a NO, a count that does not add up, a Panic in a log).

Figures, in the order they are measured:
  fill      MULTIAPPEND from several connections up to each level, timed
  append    APPEND rate of one connection at 0, N/10, N/2 and N messages
  warm      a new session on the node that filled it: SELECT + FETCH 1:* (FLAGS RFC822.SIZE)
  cold      SELECT on a node whose cache was emptied
  busy      the same cold SELECT while another node appends to the mailbox all along
  status    STATUS of the big mailbox from another selected mailbox, warm and cold:
            OSD reads and time, for the state's items and a client's
  stat      doveadm rbd stat of the big mailbox: omap keys and change-log length
  scrub     deep-scrub of every index PG, then LARGE_OMAP_OBJECTS in ceph health detail
  expunge   STORE +FLAGS \\Deleted and EXPUNGE of N/10 messages in one command each
  folders   LIST of a user with F folders in a new session
"""

import argparse
import json
import multiprocessing as mp
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "imap"))
from loadgen import (Cluster, Failure, Imap, Messages, Node, Report,  # noqa: E402
                     c_filler, kib, osd_delta, run_clients, status_fields)

USER = "scale-big"
FOLDER_USER = "scale-folders"


def appender(addr, user, stop, result_q):
    """Single APPENDs into `user`'s INBOX until `stop` is set; puts the count."""
    msgs = Messages(seed=99, median=1024, sigma=0.5, attach_rate=0.0)
    n = 0
    try:
        c = Imap(addr, user)
        while not stop.is_set():
            c.append("INBOX", [msgs.get(n)])
            n += 1
        c.logout()
        result_q.put((n, None))
    except Exception as e:
        result_q.put((n, "%s: %s" % (type(e).__name__, e)))


class Scale:
    def __init__(self, args, rep):
        self.args = args
        self.rep = rep
        self.cluster = Cluster(args.ceph_dir)
        self.rbd_a = Node("rbd-A", args.rbd_a, args.dovecot_dev)
        self.rbd_b = Node("rbd-B", args.rbd_b, args.dovecot_dev)
        self.mdbox = Node("mdbox", args.mdbox, args.dovecot_dev)
        self.nodes = [self.rbd_a, self.rbd_b, self.mdbox]
        self.filled = 0  # messages in the big INBOX, the same on both storages

    def storages(self):
        return (("rbd", self.rbd_a), ("mdbox", self.mdbox))

    def settle(self):
        for node in self.nodes:
            node.wait_no_sessions(timeout=120)

    # -- fill and APPEND rate --------------------------------------------------

    def fill_to(self, level):
        n = level - self.filled
        if n <= 0:
            return
        batch, conns = self.args.batch, self.args.conns
        batches = [(s, min(batch, level - s)) for s in range(self.filled, level, batch)]
        for kind, node in self.storages():
            work = [(node.addr, USER, batches[w::conns], 77) for w in range(conns)]
            start, results = run_clients(c_filler, work, 0, settle=0.2, timeout_extra=7200)
            for _, err, _ in results:
                if err:
                    self.rep.fail("fill %s: %s" % (kind, err))
            took = max(t for _, err, t in results if not err) - start
            self.fill_time[kind] += took
            self.rep.say("    fill %-5s %d -> %d messages in %.1f s = %.0f msg/s" % (
                kind, self.filled, level, took, n / took))
        self.filled = level

    def append_rate(self, node):
        """Single APPENDs on one connection into the big INBOX: messages per second."""
        msgs = Messages(seed=self.filled + 5, median=1024, sigma=0.5, attach_rate=0.0)
        c = Imap(node.addr, USER)
        t0 = time.perf_counter()
        for i in range(self.args.probe):
            c.append("INBOX", [msgs.get(i)])
        took = time.perf_counter() - t0
        c.logout()
        return self.args.probe / took

    def fill_and_probe(self):
        n = self.args.messages
        levels = [0, n // 10, n // 2, n]
        self.rep.say("fill: %d connections x MULTIAPPEND of %d (median 1 KiB); at each level "
                     "%d single APPENDs on one connection" % (self.args.conns, self.args.batch,
                                                             self.args.probe))
        for node in self.nodes:
            node.add_users([USER, FOLDER_USER])
        self.fill_time = {"rbd": 0.0, "mdbox": 0.0}
        rates = {}
        for level in levels:
            self.fill_to(level)
            self.settle()
            rates[level] = {kind: self.append_rate(node) for kind, node in self.storages()}
            self.filled += self.args.probe
            self.rep.pair("append@%d" % level, "APPEND rate at %d msgs" % level,
                          rates[level]["rbd"], rates[level]["mdbox"], "/s", fmt="%.0f")
        self.rep.pair("fill", "fill rate (MULTIAPPEND)", self.filled / self.fill_time["rbd"],
                      self.filled / self.fill_time["mdbox"], "/s", fmt="%.0f")
        self.rep.say("    fill time: rbd %.0f s, mdbox %.0f s" % (self.fill_time["rbd"],
                                                                self.fill_time["mdbox"]))
        base = rates[0]["rbd"]
        for level in levels[1:]:
            self.rep.absolute("flat@%d" % level, "rbd APPEND rate at %d / at 0" % level,
                              rates[level]["rbd"] / base, "x", (">=", 0.8),
                              mdbox=rates[level]["mdbox"] / rates[0]["mdbox"], fmt="%.2f")

    # -- reading the big mailbox -----------------------------------------------

    def select_fetch(self, node):
        """(SELECT s, FETCH 1:* (FLAGS RFC822.SIZE) s, OSD delta, VmHWM MiB of its imap
        process) of a new session."""
        self.settle()
        c = Imap(node.addr, USER)
        o0 = self.cluster.osd_ops()
        t0 = time.perf_counter()
        c.select("INBOX")
        t1 = time.perf_counter()
        resp = c.command("FETCH 1:* (FLAGS RFC822.SIZE)", keep=False)
        t2 = time.perf_counter()
        o1 = self.cluster.osd_ops()
        if c.exists != self.filled or len(resp.untagged) != self.filled:
            raise Failure("%s: %s EXISTS, %d FETCH lines for %d messages" % (
                node.label, c.exists, len(resp.untagged), self.filled))
        hwm = max(kib(status_fields(pid).get("VmHWM", "0 kB")) for pid in
                  node.pids(comm="imap")) / 1024
        c.logout()
        return t1 - t0, t2 - t1, osd_delta(o0, o1), hwm

    def warm_and_cold(self):
        # The fill's APPENDs did not select the mailbox, so node A's cache has none of
        # it yet: its first SELECT lists every record, as a new node's does.
        first, fetch, d, mib = self.select_fetch(self.rbd_a)
        self.rep.say("    first SELECT on node A after the fill: %.2f s + FETCH %.2f s, %d OSD "
                     "reads, VmHWM %.0f MiB" % (first, fetch, d["op_r"], mib))
        reps = 3
        warm = {"rbd": [], "mdbox": []}
        hwm = {"rbd": [], "mdbox": []}
        cold = []
        for _ in range(reps):
            for kind, node in self.storages():
                sel, fetch, _, mib = self.select_fetch(node)
                warm[kind].append(sel + fetch)
                hwm[kind].append(mib)
            self.rbd_b.wait_no_sessions()
            self.rbd_b.drop_cache(USER)
            sel, fetch, d, mib = self.select_fetch(self.rbd_b)
            cold.append((sel, fetch, d, mib))
        self.rep.say("    new session, warm cache (s): rbd %s | mdbox %s" % (
            " ".join("%.2f" % t for t in warm["rbd"]), " ".join("%.2f" % t for t in warm["mdbox"])))
        self.rep.pair("warm", "SELECT+FETCH FLAGS SIZE, warm",
                      statistics.median(warm["rbd"]), statistics.median(warm["mdbox"]), "s",
                      ("<=", 2.0), fmt="%.2f")
        self.rep.pair("warm-mem", "imap VmHWM, warm", statistics.median(hwm["rbd"]),
                      statistics.median(hwm["mdbox"]), "MiB", fmt="%.1f")
        self.rep.say("    cold node B: %s" % "; ".join(
            "SELECT %.2f s + FETCH %.2f s, %d OSD reads, %.0f MB, VmHWM %.0f MiB" % (
                s, f, d["op_r"], d["op_r_out_bytes"] / 1e6, m) for s, f, d, m in cold))
        self.rep.absolute("cold", "cold SELECT on node B", statistics.median(
            [s for s, _, _, _ in cold]), "s", ("<=", 3.0), fmt="%.2f")
        self.rep.absolute("cold-mem", "imap VmHWM, cold SELECT+FETCH", statistics.median(
            [m for _, _, _, m in cold]), "MiB", mdbox=statistics.median(hwm["mdbox"]),
            fmt="%.1f")
        self.cold_with_bigger_omap_pages(reps)

    # What README.Debian recommends for mailboxes this large: the OSD answers an omap
    # read with up to 16384 entries instead of 1024 (the plugin asks for 16384).
    OMAP_ENTRIES = 16384

    def set_omap_entries(self, entries):
        for name in self.cluster.daemon_pids():
            if name.startswith("osd."):
                self.cluster.asok(name, "config", "set", "osd_max_omap_entries_per_request",
                                  str(entries))

    def cold_with_bigger_omap_pages(self, reps):
        """The cold SELECT again with osd_max_omap_entries_per_request raised, then back
        to Ceph's default for the steps after."""
        default = self.cluster.asok("osd.0", "config", "get",
                                    "osd_max_omap_entries_per_request")
        self.set_omap_entries(self.OMAP_ENTRIES)
        cold = []
        try:
            for _ in range(reps):
                self.rbd_b.wait_no_sessions()
                self.rbd_b.drop_cache(USER)
                cold.append(self.select_fetch(self.rbd_b))
        finally:
            self.set_omap_entries(default["osd_max_omap_entries_per_request"])
        self.rep.say("    cold node B, OSD omap pages of %d: %s" % (self.OMAP_ENTRIES, "; ".join(
            "SELECT %.2f s + FETCH %.2f s, %d OSD reads, VmHWM %.0f MiB" % (
                s, f, d["op_r"], m) for s, f, d, m in cold)))
        self.rep.absolute("cold-16k", "cold SELECT on node B, OSD omap pages of %d"
                          % self.OMAP_ENTRIES, statistics.median([s for s, _, _, _ in cold]),
                          "s", ("<=", 3.0), fmt="%.2f")

    def busy(self):
        """A cold SELECT on node B while node A appends to the mailbox all along: does
        the listing finish, and how long does it take?"""
        self.settle()
        self.rbd_b.drop_cache(USER)
        stop, result_q = mp.Event(), mp.Queue()
        writer = mp.Process(target=appender, args=(self.rbd_a.addr, USER, stop, result_q))
        writer.start()
        time.sleep(1)
        c = Imap(self.rbd_b.addr, USER)
        t0 = time.perf_counter()
        resp = c.command('SELECT "INBOX"', check=False)
        took = time.perf_counter() - t0
        c.logout()
        stop.set()
        appended, err = result_q.get(timeout=120)
        writer.join(timeout=30)
        if err:
            self.rep.fail("busy: appender: %s" % err)
        self.filled += appended
        answer = resp.tagged.decode(errors="replace").strip()
        self.rep.say("    cold SELECT on node B beside %d APPENDs on node A: %s after %.2f s"
                     % (appended, answer, took))
        if resp.status == b"OK":
            self.rep.absolute("busy", "cold SELECT beside a writer", took, "s", ("<=", 3.0),
                              fmt="%.2f")
        else:
            self.rep.fail("busy: cold SELECT beside a writer: %s" % answer)
        # mdbox has the same count now: the writer's messages went to rbd only.
        c = Imap(self.mdbox.addr, USER)
        msgs = Messages(seed=98, median=1024, sigma=0.5, attach_rate=0.0)
        for i in range(appended):
            c.append("INBOX", [msgs.get(i)])
        c.logout()

    # What clients poll other folders with: what the index state answers
    # alone, and Thunderbird's items.
    STATUS_ITEMS = (("state", "(MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)"),
                    ("client", "(UIDNEXT MESSAGES UNSEEN RECENT)"))

    def status_probe(self, node, items, cold=False):
        """Three STATUS of the big INBOX from a session with another (empty) mailbox
        selected, each from a node cache emptied first when `cold`: OSD reads (rbd
        only, the most of the three) and the median time."""
        reads, times = [], []
        for _ in range(3):
            if cold:
                node.wait_no_sessions()
                node.drop_cache(USER)
            c = Imap(node.addr, USER)
            c.command('CREATE "probe"', check=False)
            c.select("probe")
            o0 = self.cluster.osd_ops()
            t0 = time.perf_counter()
            resp = c.command("STATUS INBOX %s" % items)
            times.append(time.perf_counter() - t0)
            reads.append(osd_delta(o0, self.cluster.osd_ops())["op_r"])
            if b"MESSAGES %d" % self.filled not in b"".join(resp.untagged):
                raise Failure("%s: STATUS %r" % (node.label, resp.untagged))
            c.logout()
        return max(reads), statistics.median(times)

    def status(self):
        """STATUS of the big INBOX, on a node whose cache has it and on one whose cache
        was emptied: OSD reads and time."""
        for name, items in self.STATUS_ITEMS:
            reads, took = self.status_probe(self.rbd_a, items)
            _, md_took = self.status_probe(self.mdbox, items)
            self.rep.absolute("status-%s" % name, "OSD reads per STATUS %s" % name, reads, "",
                              ("<=", 1), fmt="%d")
            self.rep.pair("status-%s-t" % name, "STATUS %s time" % name, took, md_took, "s",
                          fmt="%.4f")
            reads, took = self.status_probe(self.rbd_b, items, cold=True)
            self.rep.absolute("status-%s-cold" % name, "STATUS %s, node B cold: reads" % name,
                              reads, "", fmt="%d")
            self.rep.absolute("status-%s-cold-t" % name, "STATUS %s, node B cold: time" % name,
                              took, "s", fmt="%.4f")

    def stat(self):
        out = subprocess.run([self.args.dovecot_dev, "doveadm", self.rbd_a.dir, "rbd", "stat",
                              "-u", USER], capture_output=True, text=True)
        for line in (out.stdout + out.stderr).splitlines():
            self.rep.say("    doveadm rbd stat: %s" % line)

    def ceph(self, *args):
        return subprocess.run(["ceph", "-c", os.path.join(self.args.ceph_dir, "ceph.conf")] +
                              list(args), check=True, capture_output=True, text=True).stdout

    def scrub(self):
        """Deep-scrubs every PG of the index pool, then reads ceph health detail."""
        pgs = json.loads(self.ceph("pg", "ls-by-pool", "mail-index", "-f", "json"))
        pgs = pgs["pg_stats"] if isinstance(pgs, dict) else pgs
        before = {p["pgid"]: p["last_deep_scrub_stamp"] for p in pgs}
        for pgid in before:
            self.ceph("pg", "deep-scrub", pgid)
        t0 = time.monotonic()
        while True:
            now = json.loads(self.ceph("pg", "ls-by-pool", "mail-index", "-f", "json"))
            now = now["pg_stats"] if isinstance(now, dict) else now
            if all(p["last_deep_scrub_stamp"] != before[p["pgid"]] for p in now):
                break
            if time.monotonic() - t0 > 1800:
                self.rep.fail("scrub: PGs not deep-scrubbed after 30 min")
                return
            time.sleep(2)
        self.rep.say("    deep-scrub of %d index PGs took %.0f s" % (len(before),
                                                                  time.monotonic() - t0))
        # The MGR reports health a few seconds after the scrub's stats reach it.
        time.sleep(10)
        detail = self.ceph("health", "detail")
        for line in detail.splitlines():
            if "omap" in line.lower():
                self.rep.say("    health: %s" % line.strip())
        large = re.search(r"LARGE_OMAP_OBJECTS: (\d+) large omap objects", detail)
        self.rep.absolute("omap", "large omap objects after deep-scrub",
                          int(large.group(1)) if large else 0, "", ("<=", 0), fmt="%d")

    def expunge(self):
        n = self.args.messages // 10
        stores, expunges = {}, {}
        for kind, node in self.storages():
            self.settle()
            c = Imap(node.addr, USER)
            c.select("INBOX")
            t0 = time.perf_counter()
            c.command("STORE 1:%d +FLAGS.SILENT (\\Deleted)" % n)
            t1 = time.perf_counter()
            c.command("EXPUNGE", keep=False)
            t2 = time.perf_counter()
            left = c.exists
            c.logout()
            if left != self.filled - n:
                raise Failure("%s: %s messages left after expunging %d of %d" % (
                    node.label, left, n, self.filled))
            stores[kind], expunges[kind] = t1 - t0, t2 - t1
        self.filled -= n
        self.rep.pair("store-del", "STORE \\Deleted on %d" % n, stores["rbd"],
                      stores["mdbox"], "s", fmt="%.2f")
        self.rep.pair("expunge", "EXPUNGE of %d" % n, expunges["rbd"], expunges["mdbox"], "s",
                      fmt="%.2f")

    def folders(self):
        f = self.args.folders
        names = ["f%05d" % i for i in range(f)]
        created = {}
        for kind, node in self.storages():
            t0 = time.perf_counter()
            for first in range(0, f, 1000):
                subprocess.run([self.args.dovecot_dev, "doveadm", node.dir, "mailbox", "create",
                                "-u", FOLDER_USER] + names[first:first + 1000], check=True)
            created[kind] = time.perf_counter() - t0
        self.rep.pair("create", "doveadm mailbox create of %d" % f, created["rbd"],
                      created["mdbox"], "s", fmt="%.1f")
        times = {"rbd": [], "mdbox": []}
        for _ in range(3):
            for kind, node in self.storages():
                self.settle()
                c = Imap(node.addr, FOLDER_USER)
                t0 = time.perf_counter()
                resp = c.command('LIST "" "*"', keep=False)
                times[kind].append(time.perf_counter() - t0)
                c.logout()
                if len(resp.untagged) != f + 1:
                    raise Failure("%s: LIST gave %d lines for %d folders and INBOX" % (
                        node.label, len(resp.untagged), f))
        self.rep.absolute("list", "LIST of %d folders" % f, statistics.median(times["rbd"]), "s",
                          ("<=", 0.5), mdbox=statistics.median(times["mdbox"]), fmt="%.3f")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ceph-dir", required=True)
    ap.add_argument("--rbd-a", required=True)
    ap.add_argument("--rbd-b", required=True)
    ap.add_argument("--mdbox", required=True)
    ap.add_argument("--dovecot-dev", required=True)
    ap.add_argument("--quick", action="store_true", help="20k messages, 1k folders")
    ap.add_argument("--messages", type=int, help="size of the big mailbox (1000000)")
    ap.add_argument("--folders", type=int, help="folders of the folder user (10000)")
    ap.add_argument("--probe", type=int, default=1000, help="single APPENDs per rate probe")
    ap.add_argument("--batch", type=int, default=250, help="messages per fill MULTIAPPEND")
    ap.add_argument("--conns", type=int, default=4, help="fill connections")
    ap.add_argument("--skip", default="", help="comma-separated figures not to measure "
                    "(warm, busy, status, stat, scrub, expunge, folders)")
    args = ap.parse_args()
    if args.messages is None:
        args.messages = 20000 if args.quick else 1000000
    if args.folders is None:
        args.folders = 1000 if args.quick else 10000
    if args.quick:
        args.probe = min(args.probe, 200)
    args.skip = set(filter(None, args.skip.split(",")))
    return args


def main():
    args = parse_args()
    rep = Report()
    scale = Scale(args, rep)
    for node in scale.nodes:
        node.log_mark()
    t_all = time.monotonic()
    steps = [("fill", scale.fill_and_probe), ("warm", scale.warm_and_cold),
             ("busy", scale.busy), ("status", scale.status), ("stat", scale.stat), ("scrub", scale.scrub),
             ("expunge", scale.expunge), ("folders", scale.folders)]
    for name, step in steps:
        if name in args.skip:
            continue
        rep.say("")
        rep.say("(%s)" % name)
        t0 = time.monotonic()
        try:
            step()
        except Exception as e:  # one broken step must not hide the others' figures
            rep.fail("(%s) aborted: %s: %s" % (name, type(e).__name__, e))
            if name == "fill":
                break
        rep.say("    [(%s) took %.0f s]" % (name, time.monotonic() - t0))
    for node in scale.nodes:
        for line in node.log_problems()[:20]:
            rep.say("  %s: %s" % (node.label, line))
        if any(": Panic:" in l or ": Fatal:" in l for l in node.log_problems()):
            rep.fail("%s: Panic/Fatal in dovecot.log" % node.label)
    rep.summary()
    rep.say("total %.0f s" % (time.monotonic() - t_all))
    return 1 if rep.failures else 0


if __name__ == "__main__":
    sys.exit(main())
