"""Two Dovecot nodes, A and B, on the same cluster and users: what one does, the other
sees, at once and exactly. (On mdbox each node has its own mail dir: the two_nodes tests are
skipped there, see conftest.py.)"""

import shutil
import statistics
import threading

import pytest

from imap_connection import (drop_recent, examined_status, parse_fetch, response_code,
                             select_qresync, selected_state, status_items)
from messages import numbered

two_nodes = pytest.mark.two_nodes
PUSH_WAIT = 5.0   # far below the nodes' 30 s mailbox_idle_check_interval


def snapshot(conn, mailbox="INBOX"):
    """{uid: (flags, body, guid)} and the mailbox's uidvalidity/uidnext."""
    state = selected_state(conn.ok("EXAMINE", mailbox))
    fetched = conn.fetch("1:*", "(FLAGS BODY.PEEK[] X-GUID)") if state["exists"] else {}
    conn.ok("UNSELECT")
    return ({u: (f["FLAGS"], f["BODY[]"], f["X-GUID"]) for u, f in fetched.items()},
            state["uidvalidity"], state["uidnext"])


@two_nodes
def test_append_on_a_is_seen_on_b_with_the_same_uids_bodies_and_guids(connect, node_a, node_b,
                                                                     user):
    on_a = connect(node_a, user)
    on_a.append("INBOX", numbered(1), flags=["\\Seen"])
    on_a.append("INBOX", numbered(2, size=30000))
    on_b = connect(node_b, user)
    assert snapshot(on_b) == snapshot(on_a)
    messages, _, uidnext = snapshot(on_b)
    assert sorted(messages) == [1, 2] and uidnext == 3


@two_nodes
def test_uids_allocated_alternately_on_a_and_b_are_unique_and_increasing(connect, node_a,
                                                                         node_b, user):
    on_a = connect(node_a, user)
    on_b = connect(node_b, user)
    codes = [response_code(conn.append("INBOX", numbered(i)).text)
             for i, conn in enumerate([on_a, on_b, on_a, on_b, on_b, on_a])]
    assert [c[2] for c in codes] == ["1", "2", "3", "4", "5", "6"]
    assert len({c[1] for c in codes}) == 1


@two_nodes
def test_append_on_a_reaches_a_selected_session_on_b_at_its_next_command(connect, node_a,
                                                                         node_b, user):
    on_a = connect(node_a, user)
    on_a.append("INBOX", numbered(1))
    on_b = connect(node_b, user)
    on_b.ok("SELECT", "INBOX")
    on_a.append("INBOX", numbered(2))
    on_a.append("INBOX", numbered(3))
    assert on_b.ok("NOOP").lines() == ["* 3 EXISTS"]
    assert on_b.fetch("2:3", "(BODY.PEEK[])") == {2: {"UID": "2", "BODY[]": numbered(2)},
                                                  3: {"UID": "3", "BODY[]": numbered(3)}}


@two_nodes
def test_store_on_a_is_seen_on_b(connect, node_a, node_b, user):
    on_a = connect(node_a, user)
    for i in range(1, 4):
        on_a.append("INBOX", numbered(i))
    on_b = connect(node_b, user)
    on_b.ok("SELECT", "INBOX")
    on_a.ok("SELECT", "INBOX")
    on_a.ok("STORE 1 +FLAGS.SILENT (\\Flagged $Work)")
    on_a.ok("STORE 3 +FLAGS.SILENT (\\Seen)")
    lines = on_b.ok("NOOP").lines()
    assert "* 1 FETCH (FLAGS (\\Flagged $Work))" in lines
    assert "* 3 FETCH (FLAGS (\\Seen))" in lines
    assert {u: f["FLAGS"] for u, f in on_b.fetch("1:*", "(FLAGS)").items()} == {
        1: ["\\Flagged", "$Work"], 2: [], 3: ["\\Seen"]}
    on_a.ok("STORE 1 -FLAGS.SILENT ($Work)")
    assert on_b.ok("NOOP").lines() == ["* 1 FETCH (FLAGS (\\Flagged))"]


def modseqs(conn):
    """HIGHESTMODSEQ and {uid: (MODSEQ, flags)} as one session sees them."""
    state = selected_state(conn.ok("SELECT", "INBOX"))
    fetched = conn.fetch("1:*", "(MODSEQ FLAGS)")
    return state["highestmodseq"], {u: (f["MODSEQ"], f["FLAGS"]) for u, f in fetched.items()}


@two_nodes
@pytest.mark.rbd_only("a node's index cache is deleted")
def test_every_node_reports_the_same_modseqs_after_keywords_and_expunges(
        connect, node_a, node_b, user):
    """Dovecot counts MODSEQs per log record; if a node's replay of an op wrote more
    records than the op's MODSEQ step, that node would run ahead of the others and a
    client moving between them could miss a change."""
    on_a = connect(node_a, user)
    for i in range(1, 6):
        on_a.append("INBOX", numbered(i))
    on_b = connect(node_b, user)
    on_b.ok("SELECT", "INBOX")
    on_a.ok("SELECT", "INBOX")
    on_a.ok("UID STORE 1:3 +FLAGS ($Work $Home \\Seen)")
    on_a.ok("UID STORE 2 -FLAGS.SILENT ($Home)")
    on_a.ok("UID STORE 4 +FLAGS.SILENT (\\Deleted)")
    on_a.ok("EXPUNGE")
    on_a.ok("UID STORE 1 +FLAGS.SILENT ($Later \\Answered)")
    on_a.ok("UID STORE 5 +FLAGS.SILENT (\\Deleted)")
    on_a.ok("EXPUNGE")
    on_b.ok("NOOP")
    seen_on_a = modseqs(on_a)
    assert modseqs(on_b) == seen_on_a
    shutil.rmtree(node_b.cache_dir(user), ignore_errors=True)
    assert modseqs(connect(node_b, user)) == seen_on_a


@two_nodes
def test_status_on_b_reports_the_changes_made_on_a_as_an_examine_on_b_does(connect, node_a,
                                                                           node_b, user):
    # B answers MESSAGES, RECENT, UNSEEN, UIDNEXT, UIDVALIDITY, HIGHESTMODSEQ and SIZE
    # from the cluster's index state, whether its cache of the mailbox is absent, behind or
    # current; the same as A's synced cache and an EXAMINE on B.
    items = "(MESSAGES RECENT UNSEEN UIDNEXT UIDVALIDITY HIGHESTMODSEQ SIZE)"
    on_a = connect(node_a, user)
    on_b = connect(node_b, user)
    on_a.ok("CREATE", "box")
    changes = [lambda: [on_a.append("box", numbered(n)) for n in range(4)],
               lambda: on_a.ok("STORE 1:3 +FLAGS (\\Seen $Later)"),
               lambda: on_a.ok("STORE 2 -FLAGS (\\Seen)"),
               lambda: on_b.append("box", numbered(9)),   # recent: A's SELECT took 1-4
               lambda: on_a.ok("STORE 4 +FLAGS (\\Deleted)") and on_a.ok("EXPUNGE")]
    for change in [lambda: None] + changes:
        if change is changes[1]:
            on_a.ok("SELECT", "box")
        change()
        on_b_status = status_items(on_b.ok("STATUS", "box", items))
        assert on_b_status == examined_status(on_b, "box")
        on_a.ok("NOOP")   # A's STATUS of its selected mailbox is its view
        on_a_status = status_items(on_a.ok("STATUS", "box", items))
        # RECENT of the mailbox A has selected is that session's own (it took them).
        assert {**on_b_status, "recent": None} == {**on_a_status, "recent": None}


@two_nodes
def test_expunge_on_a_is_seen_on_b(connect, node_a, node_b, user):
    on_a = connect(node_a, user)
    for i in range(1, 5):
        on_a.append("INBOX", numbered(i))
    on_b = connect(node_b, user)
    on_b.ok("SELECT", "INBOX")
    on_a.ok("SELECT", "INBOX")
    on_a.ok("UID STORE 2 +FLAGS.SILENT (\\Deleted)")
    on_a.ok("EXPUNGE")
    assert on_b.ok("NOOP").lines() == ["* 2 EXPUNGE"]
    assert sorted(on_b.fetch("1:*", "(UID)")) == [1, 3, 4]


@two_nodes
def test_mailbox_create_rename_delete_and_subscribe_on_a_are_seen_on_b(connect, node_a, node_b,
                                                                       user):
    on_a = connect(node_a, user)
    on_b = connect(node_b, user)
    on_a.ok("CREATE", "projects")
    on_a.ok("CREATE", "projects/x")
    on_a.ok("CREATE", "scratch")
    on_a.append("projects/x", numbered(1))
    on_a.ok("SUBSCRIBE", "projects")
    assert sorted(on_b.ok('LIST "" *').lines()) == sorted(on_a.ok('LIST "" *').lines())
    on_a.ok("RENAME", "projects", "archive")
    on_a.ok("DELETE", "scratch")
    assert sorted(on_b.ok('LIST "" *').lines()) == [
        '* LIST (\\HasChildren) "/" archive', '* LIST (\\HasNoChildren) "/" INBOX',
        '* LIST (\\HasNoChildren) "/" archive/x']
    assert on_b.ok('LSUB "" *').lines() == on_a.ok('LSUB "" *').lines()
    assert snapshot(on_b, "archive/x") == snapshot(on_a, "archive/x")
    assert on_b.command("SELECT", "projects/x").tagged == "NO Mailbox doesn't exist: projects/x"


@two_nodes
def test_copy_on_a_gives_b_the_messages_at_the_copyuid_uids(connect, node_a, node_b, user):
    on_a = connect(node_a, user)
    on_a.ok("CREATE", "dst")
    for i in range(1, 4):
        on_a.append("INBOX", numbered(i))
    on_a.ok("SELECT", "INBOX")
    code = response_code(on_a.ok("UID COPY 1,3 dst").text)
    assert code[2:] == ["1,3", "1:2"]
    on_b = connect(node_b, user)
    messages, validity, _ = snapshot(on_b, "dst")
    assert validity == int(code[1])
    assert {u: m[1] for u, m in messages.items()} == {1: numbered(1), 2: numbered(3)}


@two_nodes
def test_idle_on_b_receives_exists_for_an_append_on_a_by_push(connect, node_a, node_b, user,
                                                              report):
    on_a = connect(node_a, user)
    on_b = connect(node_b, user)
    on_b.ok("SELECT", "INBOX")
    latencies = []
    for i in range(1, 6):
        on_b.idle_start()
        on_a.append("INBOX", numbered(i))
        resp, waited = on_b.idle_wait(lambda r: r == b"* %d EXISTS" % i, PUSH_WAIT)
        assert resp is not None, "no '* %d EXISTS' on B within %.0f s" % (i, PUSH_WAIT)
        on_b.idle_done()
        latencies.append(waited)
    report("cross-node IDLE EXISTS latency, median of 5", statistics.median(latencies))
    report("cross-node IDLE EXISTS latency, max of 5", max(latencies))


@two_nodes
def test_idle_on_b_receives_flag_changes_and_expunges_from_a(connect, node_a, node_b, user):
    on_a = connect(node_a, user)
    for i in range(1, 4):
        on_a.append("INBOX", numbered(i))
    on_a.ok("SELECT", "INBOX")
    on_b = connect(node_b, user)
    on_b.ok("SELECT", "INBOX")
    on_b.idle_start()
    on_a.ok("STORE 2 +FLAGS.SILENT (\\Answered)")
    resp, _ = on_b.idle_wait(lambda r: r.startswith(b"* 2 FETCH"), PUSH_WAIT)
    assert drop_recent(resp.decode()) == "* 2 FETCH (FLAGS (\\Answered))"
    on_a.ok("STORE 3 +FLAGS.SILENT (\\Deleted)")
    on_a.ok("EXPUNGE")
    resp, _ = on_b.idle_wait(lambda r: r.endswith(b"EXPUNGE"), PUSH_WAIT)
    assert resp == b"* 3 EXPUNGE"
    on_b.idle_done()


@two_nodes
def test_qresync_on_b_after_changes_on_a_returns_exactly_the_changed_and_vanished_uids(
        connect, node_a, node_b, user):
    on_a = connect(node_a, user)
    for i in range(1, 7):
        on_a.append("INBOX", numbered(i))
    on_b = connect(node_b, user)
    on_b.ok("ENABLE QRESYNC")
    state = selected_state(on_b.ok("SELECT", "INBOX"))
    on_b.ok("LOGOUT")
    on_a.ok("SELECT", "INBOX")
    on_a.ok("UID STORE 2 +FLAGS.SILENT (\\Flagged)")
    on_a.ok("UID STORE 3,5 +FLAGS.SILENT (\\Deleted)")
    on_a.ok("EXPUNGE")
    on_a.append("INBOX", numbered(7))
    on_b = connect(node_b, user)
    on_b.ok("ENABLE QRESYNC")
    resp = select_qresync(on_b, state)
    assert resp.lines("VANISHED") == ["* VANISHED (EARLIER) 3,5"]
    fetched = parse_fetch(resp.untagged, key="UID")
    assert sorted(fetched) == [2, 7]
    assert (fetched[2]["FLAGS"], fetched[7]["FLAGS"]) == (["\\Flagged"], [])
    changed = on_b.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % state["highestmodseq"])
    assert changed.lines("VANISHED") == ["* VANISHED (EARLIER) 3,5"]
    assert sorted(parse_fetch(changed.untagged, key="UID")) == [2, 7]


# ---- concurrent appends ----------------------------------------------------------------

def append_concurrently(conns, per_conn, mailbox="INBOX"):
    """Each connection appends per_conn messages at the same time as the others;
    returns {Message-ID: uid} from the APPENDUIDs and the uidvalidities seen."""
    uids = {}
    validities = set()
    errors = []
    lock = threading.Lock()
    start = threading.Barrier(len(conns))

    def work(k, conn):
        try:
            start.wait()
            for i in range(per_conn):
                n = k * 1000 + i
                code = response_code(conn.append(mailbox, numbered(n)).text)
                with lock:
                    uids["<%d@test>" % n] = int(code[2])
                    validities.add(code[1])
        except Exception as e:   # reported in the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k, c)) for k, c in enumerate(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return uids, validities


def message_ids_by_uid(conn, mailbox="INBOX"):
    conn.ok("EXAMINE", mailbox)
    fetched = conn.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    conn.ok("UNSELECT")
    return {u: f["BODY[HEADER.FIELDS (MESSAGE-ID)]"].split(b": ")[1].strip().decode()
            for u, f in fetched.items()}


def check_every_message_once(uids, validities, stored, total):
    assert len(uids) == total and len(set(uids.values())) == total
    assert len(validities) == 1
    assert stored == {uid: mid for mid, uid in uids.items()}
    assert sorted(stored) == sorted(uids.values())


def test_concurrent_appends_from_several_connections_store_each_message_once(connect, node_a,
                                                                            user):
    conns = [connect(node_a, user) for _ in range(4)]
    uids, validities = append_concurrently(conns, 15)
    check_every_message_once(uids, validities, message_ids_by_uid(conns[0]), 60)


@two_nodes
def test_concurrent_appends_on_a_and_b_store_each_message_once_and_both_agree(connect, node_a,
                                                                             node_b, user):
    conns = [connect(node, user) for node in (node_a, node_b) for _ in range(3)]
    uids, validities = append_concurrently(conns, 15)
    on_a = message_ids_by_uid(conns[0])
    check_every_message_once(uids, validities, on_a, 90)
    assert message_ids_by_uid(conns[3]) == on_a
    status = [c.ok("STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY)").lines() for c in conns[::3]]
    assert status[0] == status[1]
