"""A mailbox that spans index shards.

The suite runs rbd with rbd_shard_uids = 16: once UIDNEXT is two shards past a range of 16
UIDs, their records live in a shard object, and changes to them are overrides and tombstones
in the index object until a fold (doc/design.md, "Index shards"). Sixty messages leave UIDs
1-31 sealed and 32-60 in the index object. mdbox answers the same commands as the baseline.
"""

import pytest

from imap_connection import parse_fetch, select_qresync, selected_state
from messages import numbered
from test_doveadm_rbd import doveadm_ok, table

MESSAGES = 60
FLAGGED = [5, 31, 32, 50]      # both sides of the boundary at 32
EXPUNGED = [15, 16, 33, 47]


def fill(conn):
    for i in range(1, MESSAGES + 1):
        conn.append("INBOX", numbered(i))


def flags_and_modseqs(conn):
    return {uid: (sorted(f["FLAGS"]), f["MODSEQ"])
            for uid, f in conn.fetch("1:*", "(FLAGS MODSEQ)").items()}


@pytest.mark.two_nodes
def test_changes_across_shards_and_qresync_read_the_same_on_both_nodes(
        connect, node_a, node_b, user):
    on_a = connect(node_a, user)
    fill(on_a)
    on_a.ok("ENABLE QRESYNC")
    state = selected_state(on_a.ok("SELECT INBOX"))
    watcher = connect(node_b, user)
    watcher.ok("ENABLE QRESYNC")
    watcher.ok("SELECT INBOX")

    on_a.ok("UID STORE %s +FLAGS.SILENT (\\Flagged)" % ",".join(map(str, FLAGGED)))
    on_a.ok("UID STORE %s +FLAGS.SILENT (\\Deleted)" % ",".join(map(str, EXPUNGED)))
    on_a.ok("UID EXPUNGE %s" % ",".join(map(str, EXPUNGED)))
    for i in range(MESSAGES + 1, MESSAGES + 6):
        on_a.append("INBOX", numbered(i))
    on_a.ok("NOOP")

    # A session on B that last saw the mailbox before the changes.
    on_b = connect(node_b, user)
    on_b.ok("ENABLE QRESYNC")
    resp = select_qresync(on_b, state)
    assert resp.lines("VANISHED") == ["* VANISHED (EARLIER) 15:16,33,47"]
    changed = parse_fetch(resp.untagged, key="UID")
    assert sorted(changed) == FLAGGED + list(range(MESSAGES + 1, MESSAGES + 6))
    for uid in FLAGGED:
        assert "\\Flagged" in changed[uid]["FLAGS"]

    expected_uids = [u for u in range(1, MESSAGES + 6) if u not in EXPUNGED]
    on_a_now = flags_and_modseqs(on_a)
    assert sorted(on_a_now) == expected_uids
    assert flags_and_modseqs(on_b) == on_a_now
    watcher.ok("NOOP")
    assert flags_and_modseqs(watcher) == on_a_now
    assert selected_state(resp)["highestmodseq"] == selected_state(
        on_a.ok("SELECT INBOX"))["highestmodseq"]


@pytest.mark.rbd_only("shards are RADOS objects")
def test_stat_shows_the_shards_of_a_mailbox_and_their_size(connect, node_a, user):
    conn = connect(node_a, user)
    fill(conn)
    [row] = table(doveadm_ok(node_a, "-f", "tab", "rbd", "stat", "-u", user, "INBOX"))
    # Two shards of 16 UIDs, each with its records and inline bodies (UID 0 does not exist).
    assert (row["shards"], row["shard-keys"]) == ("2", "32")
    assert row["objects"] == "3"
    # The index object: 29 records and bodies, 60 change-log entries.
    assert row["omap-keys"] == str(2 * 29 + 60)
