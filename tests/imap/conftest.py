"""Fixtures for the IMAP/POP3/LMTP suite: a local Ceph cluster (scripts/ceph-dev-cluster)
and two Dovecot nodes A and B on it (scripts/dovecot-dev), started once per session and
stopped at the end by their recorded pids.

RBD_IMAP_STORAGE=rbd (default) runs the nodes on the rbd plugin; RBD_IMAP_STORAGE=mdbox runs
the same tests on Dovecot's own mdbox (each node then has its own local mail dir), which
validates the suite itself. Tests marked rbd_only need the cluster itself (they stop it,
read its settings, delete a node's cache); tests marked two_nodes need state shared by the
two nodes through the cluster. Both are skipped on mdbox, where each node has its own
mail dir. RBD_IMAP_SINGLE_NODE=1 makes node B the same instance as node A, so the
two_nodes tests run on mdbox too: that checks their logic, not the sharing.

Already running daemons are used (and left running) when the environment names them:
RBD_IMAP_CEPH_DIR (a ceph-dev-cluster dir), RBD_IMAP_NODE_A and RBD_IMAP_NODE_B (dovecot-dev
dirs on it). Not RBD_TEST_CEPH_DIR: scripts/test leaves that set to the (stopped) cluster
of its earlier suites. RBD_KEEP_LOGS=1 keeps the temp dir with every log.
"""

import itertools
import os
import shutil
import tempfile
import threading
import uuid
from pathlib import Path

import pytest

from daemons import (IDLE_CHECK_INTERVAL, OP_TIMEOUT, OSD_MAX_OBJECT_SIZE, PASSWORD,
                     QUOTA_LIMIT, SHARD_UIDS, STRIPE_SIZE, Cluster, Node)

STORAGE = os.environ.get("RBD_IMAP_STORAGE", "rbd")
SINGLE_NODE = os.environ.get("RBD_IMAP_SINGLE_NODE") == "1"

if STORAGE not in ("rbd", "mdbox"):
    raise SystemExit("RBD_IMAP_STORAGE must be rbd or mdbox, not %r" % STORAGE)

Node.rbd_defaults["plugin_setting"] = ["rbd_shard_uids=" + SHARD_UIDS]


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "rbd_only(reason): needs the rbd storage and its cluster; skipped with "
        "RBD_IMAP_STORAGE=mdbox, never on rbd")
    config.addinivalue_line(
        "markers", "two_nodes: needs nodes A and B sharing state through the cluster; "
        "skipped with RBD_IMAP_STORAGE=mdbox unless RBD_IMAP_SINGLE_NODE=1, never on rbd")


def pytest_collection_modifyitems(config, items):
    if STORAGE == "rbd":
        return
    for item in items:
        mark = item.get_closest_marker("rbd_only")
        if mark:
            reason = mark.args[0] if mark.args else "needs the rbd storage"
            item.add_marker(pytest.mark.skip(reason="rbd only (running on %s): %s" %
                                             (STORAGE, reason)))
        elif item.get_closest_marker("two_nodes") and not SINGLE_NODE:
            item.add_marker(pytest.mark.skip(
                reason="two nodes share state only through the cluster; %s nodes have "
                "separate mail dirs (RBD_IMAP_SINGLE_NODE=1 runs these on one node)" %
                STORAGE))


def pytest_report_header(config):
    return "dovecot-rbd IMAP suite: storage %s" % STORAGE


_measurements = []


@pytest.fixture
def report(request):
    """report(what, seconds): a figure printed in the summary at the end of the run."""
    def record(what, seconds):
        _measurements.append((what, seconds, request.node.name))
    return record


def pytest_terminal_summary(terminalreporter):
    if not _measurements:
        return
    terminalreporter.section("measurements (%s)" % STORAGE)
    for what, seconds, test in _measurements:
        terminalreporter.write_line("%-45s %8.1f ms   %s" % (what, seconds * 1000, test))


# ---- session: cluster and nodes --------------------------------------------------------

@pytest.fixture(scope="session")
def work_dir():
    """A temp dir for daemons started by this session, reachable by Dovecot's users."""
    path = Path(tempfile.mkdtemp(prefix="dovecot-rbd-imap."))
    path.chmod(0o755)
    yield path
    if os.environ.get("RBD_KEEP_LOGS") == "1":
        print("\nlogs kept in %s" % path)
    else:
        shutil.rmtree(path, ignore_errors=True)


def lower_max_object_size(cluster):
    """Bodies above OSD_MAX_OBJECT_SIZE fail to store unless the storage splits them."""
    cluster.ceph("config", "set", "osd", "osd_max_object_size", str(OSD_MAX_OBJECT_SIZE))


@pytest.fixture(scope="session")
def cluster(work_dir):
    """The shared cluster (rbd), or None (mdbox)."""
    if STORAGE != "rbd":
        yield None
        return
    if os.environ.get("RBD_IMAP_CEPH_DIR"):
        c = Cluster(os.environ["RBD_IMAP_CEPH_DIR"], owned=False)
    elif os.environ.get("RBD_IMAP_NODE_A") or os.environ.get("RBD_IMAP_NODE_B"):
        raise pytest.UsageError("RBD_IMAP_NODE_A/B need RBD_IMAP_CEPH_DIR, their cluster")
    else:
        c = Cluster.start(work_dir / "ceph")
    try:
        lower_max_object_size(c)
        yield c
    finally:
        if c.owned:
            c.stop()


def start_or_attach(name, work_dir, cluster):
    given = os.environ.get("RBD_IMAP_NODE_" + name)
    if given:
        return Node(name, given, owned=False)
    return Node.start(name, work_dir / ("node-" + name.lower()), STORAGE, cluster,
                      idle_check_interval=IDLE_CHECK_INTERVAL, quota=QUOTA_LIMIT,
                      op_timeout="%ds" % OP_TIMEOUT, stripe_size=STRIPE_SIZE)


def stop_all(nodes):
    """Stop nodes at the same time: each Dovecot master takes over 2 s to shut down."""
    stoppers = [threading.Thread(target=node.stop) for node in nodes]
    for t in stoppers:
        t.start()
    for t in stoppers:
        t.join()


@pytest.fixture(scope="session")
def nodes(work_dir, cluster):
    started = []
    try:
        for name in ("A",) if SINGLE_NODE else ("A", "B"):
            started.append(start_or_attach(name, work_dir, cluster))
        yield (started[0], started[-1])
    finally:
        stop_all([node for node in started if node.owned])


@pytest.fixture(scope="session")
def node_a(nodes):
    return nodes[0]


@pytest.fixture(scope="session")
def node_b(nodes):
    return nodes[1]


# ---- per test: a fresh user and connections ----------------------------------------------

_RUN_ID = uuid.uuid4().hex[:6]
_user_numbers = itertools.count(1)


def new_user_name(prefix="t"):
    """Unique across runs too: a reused cluster keeps earlier runs' users."""
    return "%s%s-%03d" % (prefix, _RUN_ID, next(_user_numbers))


@pytest.fixture
def new_user(nodes):
    """A factory for fresh users known to every node: new_user(quota_storage=None,
    settings=None), settings being plugin settings of that user only."""
    def make(quota_storage=None, settings=None):
        name = new_user_name("q" if quota_storage else "t")
        for node in set(nodes):
            node.add_user(name, quota_storage, settings)
        return name
    return make


@pytest.fixture
def user(new_user):
    """A fresh user: every test starts with an empty account."""
    return new_user()


@pytest.fixture
def connect(request):
    """A factory for logged-in IMAP connections, closed after the test:
    connect(node, user)."""
    conns = []

    def make(node, user, password=PASSWORD):
        conn = node.login(user, password)
        conns.append(conn)
        return conn

    yield make
    for conn in conns:
        conn.logout()


@pytest.fixture
def imap(connect, node_a, user):
    """The test's user logged in on node A."""
    return connect(node_a, user)


@pytest.fixture
def imap_b(connect, node_b, user):
    """The test's user logged in on node B."""
    return connect(node_b, user)
