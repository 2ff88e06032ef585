"""FTS on rbd: each node keeps its own FTS index beside its index cache (doc/design.md,
"Dovecot's plugins on rbd"). Dovecot's fts plugin switches itself off, without a word,
for a namespace whose index is in memory; the rbd storage says so at the start of the
session. Node T1 has its index in memory and loads fts with squat (the backend Debian
ships); T2 has a cache directory and the same fts setting, but loads no fts plugin:
Debian's 2.3.19 fts with squat crashes in fts_mailbox_allocated() on mdbox as on rbd."""

import pytest

from conftest import STORAGE, new_user_name
from daemons import Node
from messages import message

pytestmark = pytest.mark.rbd_only("the warning is the rbd storage's")

WARNING = ("rbd: fts = squat has no effect: FTS keeps its index in Dovecot's index "
           "directory, which INDEX=MEMORY does not have (give the location a cache "
           "directory)")


@pytest.fixture(scope="module")
def fts_nodes(work_dir, cluster):
    started = []
    try:
        for name, options in (("T1", {"index": "memory", "mail_plugin": ["fts", "fts_squat"]}),
                              ("T2", {})):
            started.append(Node.start(name, work_dir / ("node-" + name.lower()), STORAGE,
                                      cluster, plugin_setting=["fts=squat"], **options))
        yield started
    finally:
        for node in started:
            node.stop()


def warnings_of(node, user):
    log = (node.path / "dovecot.log").read_text(errors="replace").splitlines()
    return [line.split(": Warning: ", 1)[1] for line in log
            if "(%s)<" % user in line and ": Warning: " in line]


def test_fts_with_the_index_in_memory_is_a_warning_each_session(fts_nodes, connect):
    in_memory, cached = fts_nodes
    user = new_user_name("f")
    for node in fts_nodes:
        node.add_user(user)
    found = []
    for n in (1, 2):
        conn = connect(in_memory, user)
        conn.append("INBOX", message(subject="msg %d" % n, body="A quokka smiles.\r\n"))
        conn.ok("SELECT INBOX")
        # Without FTS Dovecot searches the bodies itself.
        found += conn.ok("SEARCH BODY quokka").lines("SEARCH")
        conn.logout()
    assert found == ["* SEARCH 1", "* SEARCH 1 2"]
    assert warnings_of(in_memory, user) == [WARNING, WARNING]
    # Not where FTS can have its index.
    connect(cached, user).ok("SELECT INBOX")
    assert warnings_of(cached, user) == []
