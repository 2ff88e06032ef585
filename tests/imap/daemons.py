"""The Python faces of scripts/ceph-dev-cluster (Cluster) and scripts/dovecot-dev (Node)."""

import contextlib
import json
import smtplib
import subprocess
import time
from pathlib import Path

from imap_connection import ImapConnection

ROOT = Path(__file__).resolve().parents[2]
CEPH_DEV_CLUSTER = ROOT / "scripts" / "ceph-dev-cluster"
DOVECOT_DEV = ROOT / "scripts" / "dovecot-dev"
PASSWORD = "pass"
RBD_ONLY_OPTIONS = ("op_timeout", "stripe_size")

# How the suite sets up its cluster and nodes.
# Large-message tests store bodies bigger than this: the storage must split them.
OSD_MAX_OBJECT_SIZE = 1048576
STRIPE_SIZE = "256k"
# Only push notifications can reach an idling client before this.
IDLE_CHECK_INTERVAL = 30
OP_TIMEOUT = 5
QUOTA_LIMIT = "100k"
# The suite's mailboxes hold tens of messages: with shards of 16 UIDs most tests read and
# change messages in sealed shards and the index object alike.
SHARD_UIDS = "16"


def run(*cmd, **kw):
    """Run a command; on failure show its output in the assertion."""
    proc = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, **kw)
    assert proc.returncode == 0, "%s failed (%d):\n%s" % (
        " ".join(map(str, cmd)), proc.returncode, proc.stdout)
    return proc.stdout


def as_list(value):
    return value if isinstance(value, list) else [value]


def parse_env(text):
    """The KEY=VALUE pairs of 'export KEY=VALUE' lines (values without spaces)."""
    env = {}
    for line in text.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            env[key] = value.strip("'\"")
    return env


class Cluster:
    """A scripts/ceph-dev-cluster cluster."""

    def __init__(self, path, owned):
        self.path = Path(path)
        self.owned = owned
        self.env = parse_env(run(CEPH_DEV_CLUSTER, "env", self.path))

    @classmethod
    def start(cls, path, osds=1):
        run(CEPH_DEV_CLUSTER, "start", path, "--osds", osds)
        return cls(path, owned=True)

    def stop(self):
        run(CEPH_DEV_CLUSTER, "stop", self.path)

    def restart(self):
        """Start the stopped daemons again in place (same dir, ports, data); returns when
        all PGs are active+clean."""
        run(CEPH_DEV_CLUSTER, "restart", self.path)

    def ceph(self, *args):
        """The ceph CLI as client.admin."""
        return run("ceph", "-c", self.env["RBD_TEST_CEPH_CONF"], "-n", "client.admin",
                   "--keyring", self.env["RBD_TEST_ADMIN_KEYRING"], *args)

    def rados_args(self, pool, namespace):
        return ["rados", "-c", self.env["RBD_TEST_CEPH_CONF"], "-n", "client.admin",
                "--keyring", self.env["RBD_TEST_ADMIN_KEYRING"], "-p", pool, "-N", namespace]

    def rados(self, pool, namespace, *args):
        """`rados` as client.admin on one namespace of a pool; its output."""
        return run(*self.rados_args(pool, namespace), *args)

    def copy_object(self, pool, namespace, source, target, xattrs):
        """Copies an object's data and the named xattrs (binary) to a new name."""
        rados = self.rados_args(pool, namespace)
        data = subprocess.run(rados + ["get", source, "-"], check=True,
                              stdout=subprocess.PIPE).stdout
        subprocess.run(rados + ["put", target, "-"], input=data, check=True)
        for name in xattrs:
            value = subprocess.run(rados + ["getxattr", source, name], check=True,
                                   stdout=subprocess.PIPE).stdout
            subprocess.run(rados + ["setxattr", target, name], input=value, check=True)

    def objects(self, pool, namespace):
        """The names of the objects in one namespace of a pool."""
        return sorted(self.rados(pool, namespace, "ls").split())

    def osd_pid(self, osd):
        return int((self.path / "run" / ("osd.%d.pid" % osd)).read_text())

    def osd_reads(self, osd=0):
        """(client read ops, bytes they returned) that the OSD served so far, from its
        admin socket (the CLI's `tell` cuts long answers)."""
        out = run("ceph", "--admin-daemon", self.path / "run" / ("osd.%d.asok" % osd),
                  "perf", "dump")
        counters = json.loads(out)["osd"]
        return counters["op_r"], counters["op_r_out_bytes"]


class Node:
    """A scripts/dovecot-dev Dovecot instance."""

    # dovecot-dev options every rbd node gets on top of its own (a list value joins the
    # node's): the IMAP suite and the stress run shard at a few UIDs so that their small
    # mailboxes span shards; bench/ keeps the plugin's defaults.
    rbd_defaults = {}

    def __init__(self, name, path, owned):
        self.name = name
        self.path = Path(path)
        self.owned = owned
        env = parse_env(run(DOVECOT_DEV, "env", self.path))
        self.storage = env["DOVECOT_DEV_STORAGE"]
        self.index = env["DOVECOT_DEV_INDEX"]
        self.imap_port = int(env["DOVECOT_DEV_IMAP_PORT"])
        self.pop3_port = int(env["DOVECOT_DEV_POP3_PORT"])
        self.lmtp_port = int(env["DOVECOT_DEV_LMTP_PORT"])
        self.sieve_port = int(env.get("DOVECOT_DEV_SIEVE_PORT", 0)) or None   # --sieve on

    @classmethod
    def start(cls, name, path, storage, cluster=None, **options):
        """dovecot-dev start; options are its flags: op_timeout="5s" is --op-timeout 5s,
        a list value repeats the flag.
        The rbd-only options (op_timeout, stripe_size) are dropped for mdbox."""
        args = [DOVECOT_DEV, "start", path, "--storage", storage]
        if storage == "rbd":
            args += ["--ceph-dir", cluster.path]
            for key, value in cls.rbd_defaults.items():
                if key not in options:
                    options[key] = value
                elif isinstance(value, list):
                    options[key] = value + as_list(options[key])
        else:
            options = {k: v for k, v in options.items() if k not in RBD_ONLY_OPTIONS}
        for key, value in options.items():
            for one in as_list(value):
                args += ["--" + key.replace("_", "-"), one]
        run(*args)
        return cls(name, path, owned=True)

    @classmethod
    @contextlib.contextmanager
    def running(cls, name, path, storage, cluster=None, **options):
        """Node.start(), stopped again when the block ends (a module's node fixture)."""
        node = cls.start(name, path, storage, cluster, **options)
        try:
            yield node
        finally:
            node.stop()

    def stop(self):
        run(DOVECOT_DEV, "stop", self.path)

    def master_pid(self):
        return int((self.path / "run" / "master.pid").read_text())

    def service_pid(self, timeout=10):
        """The pid of the node's rbd service (a child of the master titled dovecot/rbd);
        waits for the master to start one."""
        master = self.master_pid()

        def find():
            for proc in Path("/proc").iterdir():
                try:
                    ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                    title = (proc / "cmdline").read_bytes().split(b"\0")[0]
                except (OSError, ValueError, IndexError):
                    continue
                if ppid == master and title.split()[0:1] == [b"dovecot/rbd"]:
                    return int(proc.name)
            return None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = find()
            if pid:
                return pid
            time.sleep(0.05)
        raise AssertionError("node %s has no rbd service" % self.name)

    def add_user(self, user, quota_storage=None, settings=None):
        """settings: plugin settings of this user only, {name: value}."""
        args = [DOVECOT_DEV, "add-user", self.path, user, "--password", PASSWORD]
        if quota_storage:
            args += ["--quota-storage", quota_storage]
        for name, value in (settings or {}).items():
            args += ["--setting", "%s=%s" % (name, value)]
        run(*args)

    def set_user_fields(self, user, **fields):
        """Sets the user's userdb fields (extra fields `userdb_NAME=VALUE` in their
        passwd-file, DIR/users/NAME; None drops one) and returns when auth answers with
        the change: Dovecot rereads a changed passwd-file at most once a second. A userdb
        field that is no setting is a plugin setting of the user (zlib_save, say)."""
        path = self.path / "users" / user
        columns = path.read_text().rstrip("\n").split(":", 7)
        # dovecot-dev writes only userdb_ fields there.
        given = {f.partition("=")[0][len("userdb_"):]: f.partition("=")[2]
                 for f in columns[7].split(" ") if f}
        changed = {name: self.user_field(user, name) for name, value in fields.items()
                   if given.get(name) != value}
        given.update(fields)
        columns[7] = " ".join("userdb_%s=%s" % item for item in given.items()
                              if item[1] is not None)
        path.write_text(":".join(columns) + "\n")
        for name, before in changed.items():
            want = fields[name]
            assert wait_for(lambda: self.user_field(user, name) == want if want is not None
                            else self.user_field(user, name) != before, 5), \
                (name, want, self.user_field(user, name))

    def user_field(self, user, name):
        """The user's userdb field as auth answers it now (`doveadm user -f`)."""
        return self.doveadm_ok("user", "-f", name, user).strip()

    def doveadm(self, *args):
        """doveadm on this instance (with the build tree's doveadm rbd plugin):
        (exit status, stdout and stderr)."""
        proc = subprocess.run([DOVECOT_DEV, "doveadm", str(self.path)] + [str(a) for a in args],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return proc.returncode, proc.stdout

    def doveadm_ok(self, *args):
        """doveadm that must succeed: its output."""
        status, out = self.doveadm(*args)
        assert status == 0, out
        return out

    def doveadm_json(self, *args):
        """doveadm with the json formatter that must succeed: the parsed output."""
        return json.loads(self.doveadm_ok("-f", "json", *args))

    def cache_dir(self, user):
        """The user's index cache directory on this node: on rbd under the plugin's escaped
        username (doc/design.md, "Index cache on each node"), on mdbox under %u."""
        if self.storage != "rbd":
            return Path(self.index) / user
        safe = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@-"
        return Path(self.index) / "".join(
            chr(b) if b in safe else "=%02X" % b for b in user.encode())

    def connect(self):
        return ImapConnection(self.imap_port)

    def login(self, user, password=PASSWORD):
        conn = self.connect()
        conn.login(user, password)
        return conn

    def log_tail(self, lines=30):
        text = (self.path / "dovecot.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def __repr__(self):
        return "Node(%s, imap %d)" % (self.name, self.imap_port)


def deliver(node, recipients, msg, sender="sender@example.org"):
    """One LMTP transaction. LMTP answers DATA once per recipient, which smtplib's
    sendmail does not expect: read the extra replies here."""
    with smtplib.LMTP("127.0.0.1", node.lmtp_port, timeout=20) as lmtp:
        lmtp.ehlo()                                  # LHLO for smtplib.LMTP
        assert lmtp.mail(sender)[0] == 250
        for r in recipients:
            assert lmtp.rcpt("%s@example.org" % r)[0] == 250
        replies = [lmtp.data(msg)] + [lmtp.getreply() for _ in recipients[1:]]
    assert [code for code, _ in replies] == [250] * len(recipients), replies


def wait_for(predicate, timeout, interval=0.05):
    """Poll predicate() until it returns a true value; returns it, or None on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
