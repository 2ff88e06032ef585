"""RADOS operations as Dovecot events (issue 11): every op the storage waits for is an
rbd_request_finished event (fields op, object, result, bytes, rados_usecs), so an
operator's metric { } block and `doveadm stats dump` show RADOS counts and latencies."""

import pytest

from conftest import STORAGE, new_user_name
from daemons import Node
from messages import numbered

rbd_only = pytest.mark.rbd_only("the rbd storage's own events")

METRICS = """
metric rbd_ops {
  filter = event=rbd_request_finished
  fields = rados_usecs bytes
  group_by = op
}
metric rbd_errors {
  filter = event=rbd_request_finished AND result=timeout
}
"""


@pytest.fixture(scope="module")
def stats_node(work_dir, cluster):
    conf = work_dir / "metrics.conf"
    conf.write_text(METRICS)
    with Node.running("M", work_dir / "node-m", STORAGE, cluster, include=str(conf)) as node:
        yield node


def stats(node):
    """metric name -> (count, {field: sum}) from `doveadm stats dump`."""
    out = node.doveadm_ok("-f", "tab", "stats", "dump")
    rows = [line.split("\t") for line in out.splitlines()]
    header, rows = rows[0], rows[1:]
    result = {}
    for row in rows:
        d = dict(zip(header, row))
        count, sums = result.setdefault(d["metric_name"], (int(d["count"]), {}))
        if d.get("field"):
            sums[d["field"]] = int(d["sum"])
    return result


@rbd_only
def test_rados_ops_are_counted_per_type_with_their_latency(connect, stats_node):
    user = new_user_name("m")
    stats_node.add_user(user)
    conn = connect(stats_node, user)
    for n in range(3):
        conn.append("INBOX", numbered(n))
    conn.ok("SELECT INBOX")
    conn.ok("FETCH 1:3 BODY[]")
    conn.logout()

    got = stats(stats_node)
    for name in ("rbd_ops_read", "rbd_ops_write"):
        count, sums = got[name]
        print("[ info ] doveadm stats dump: %s count %d, rados_usecs avg %.0f, bytes %d" % (
            name, count, sums["rados_usecs"] / count, sums["bytes"]))
    ops, fields = got["rbd_ops"]
    assert ops >= 6, got      # three appends, then at least the reads of the bodies
    assert fields["rados_usecs"] > 0, got
    assert got["rbd_ops_write"][0] >= 3, got
    assert got["rbd_ops_read"][0] >= 1, got
    assert got["rbd_errors"][0] == 0, got
