"""QUOTA with the dict backend, which counts usage itself rather than asking the storage:
usage goes down on EXPUNGE, MOVE out of the quota root does not count twice, and DELETE of
a mailbox frees its messages. On rbd the dict is `rbd:` (in the cluster), so two nodes
keep one count: an expunge on one node is subtracted once, not once per node. On mdbox
(the baseline) the same commands run on one node with a file dict."""

import pytest

from conftest import STORAGE, new_user_name
from daemons import Node
from messages import numbered

MSG = numbered(1, size=4000)


def kib(nbytes):
    return (nbytes + 1023) // 1024


@pytest.fixture(scope="module")
def dict_nodes(work_dir, cluster):
    """Nodes Q1 and Q2 (rbd; on mdbox only Q1) with quota = dict."""
    quota_dict = "rbd:" if STORAGE == "rbd" else "file:%h/quota"
    started = []
    try:
        for name in ("Q1", "Q2") if STORAGE == "rbd" else ("Q1",):
            started.append(Node.start(name, work_dir / ("node-" + name.lower()), STORAGE,
                                      cluster, quota="100k", quota_dict=quota_dict))
        yield started[0], started[-1]
    finally:
        for node in started:
            node.stop()


@pytest.fixture
def quota_user(dict_nodes):
    name = new_user_name("d")
    for node in set(dict_nodes):
        node.add_user(name, "100k")
    return name


def storage_kib(conn):
    (line,) = conn.ok("GETQUOTA", '"User quota"').lines("QUOTA ")
    return int(line.split("(STORAGE ")[1].split()[0])


def test_usage_goes_down_on_expunge_and_delete_on_every_node(connect, dict_nodes, quota_user):
    node_1, node_2 = dict_nodes
    on_1 = connect(node_1, quota_user)
    on_1.ok("CREATE Other")
    for _ in range(3):
        on_1.append("INBOX", MSG)
    on_1.append("Other", MSG)
    on_1.append("Other", MSG)
    on_2 = connect(node_2, quota_user)
    assert storage_kib(on_1) == storage_kib(on_2) == kib(5 * len(MSG))

    on_2.ok("SELECT INBOX")
    on_2.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    on_2.ok("EXPUNGE")
    assert storage_kib(on_2) == kib(4 * len(MSG))
    on_1.ok("SELECT INBOX")      # node Q1 applies the expunge to its cache: no second free
    on_1.ok("NOOP")
    assert storage_kib(on_1) == storage_kib(on_2) == kib(4 * len(MSG))

    on_1.ok("MOVE 1 Other")       # within the quota root: unchanged
    assert storage_kib(on_1) == kib(4 * len(MSG))

    on_1.ok("UNSELECT")
    on_1.ok("DELETE Other")
    assert storage_kib(on_1) == storage_kib(on_2) == kib(1 * len(MSG))
