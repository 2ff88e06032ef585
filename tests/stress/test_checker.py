#!/usr/bin/python3
"""Unit tests of the checker's own reasoning (pure logic, no daemons): the cases where a
run on Dovecot's mdbox proved the checker wrong. Run: python3 tests/stress/test_checker.py"""

import os
import socket
import sys
import unittest
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "imap")]

from checkpoint import DELETED_BOX_ERROR, MASTER_GONE, Checker, Snapshot, qresync_arg  # noqa: E402
from model import Created, FlagOp, Model, Trace  # noqa: E402
from session import Selected, Session  # noqa: E402
from stacks import server_pid  # noqa: E402

USER = "u1"
WHERE = (USER, "m2")


class CheckerCase(unittest.TestCase):
    """A model with one mailbox, UIDVALIDITY 7, and the checker on it."""

    def setUp(self):
        self.trace = Trace()
        self.model = Model(self.trace)
        self.model.keep_going = True
        self.checker = Checker(SimpleNamespace(model=self.model, users=[USER]))
        self.box = self.model.box(USER, "m2", 7)

    def command(self, text, result):
        """A command, sent and answered."""
        rec = self.trace.begin("s01", "A", USER, text, {WHERE})
        self.trace.end(rec, result)
        return rec


class UnknownOutcomes(CheckerCase):

    def maybe_stored(self, rec, *msgids):
        for msgid in msgids:
            self.model.maybe_copied[WHERE][msgid].append(rec)

    def check(self, msgs):
        """A checkpoint that finds msgs ({uid: (modseq, msgid)}), and every UID that
        ever carried a MODSEQ."""
        snap = Snapshot(7, 200, 300, {uid: (modseq, frozenset(), 100, msgid)
                                      for uid, (modseq, msgid) in msgs.items()})
        self.checker.check_messages(self.box, snap, WHERE)
        self.checker.check_modseq_groups(self.box, WHERE)
        return sorted(v.prop for v in self.model.violations)

    def test_partly_committed_append_then_a_refused_copy_of_one_of_its_messages(self):
        # seed 32061 on mdbox: a MULTIAPPEND cut off by the server stored 3 of its 4
        # messages under one MODSEQ; one of them was moved away and a COPY of it back
        # was refused. The refused COPY must not hide that the APPEND stored it.
        append = self.command("APPEND m2 (4 messages)", "DISCONNECTED")
        self.maybe_stored(append, "a", "b", "c", "d")
        self.model.saw_message(self.box, 168, "a", "s00")
        for uid in (168, 169, 170):
            self.model.saw_state(self.box, uid, 235, frozenset(), "s00")
        copy = self.command("UID COPY 178 m2", "NO [EXPUNGEISSUED]")
        self.model.refused.add(copy.id)
        self.maybe_stored(copy, "a")
        self.box.expunges.append(SimpleNamespace(send=0, ack=None, uids=None, forced=True))
        self.assertEqual(self.check({169: (235, "b"), 170: (235, "c")}), [])

    def test_a_refused_command_alone_cannot_explain_a_message(self):
        copy = self.command("UID COPY 5 m2", "NO [UNAVAILABLE]")
        self.model.refused.add(copy.id)
        self.maybe_stored(copy, "a")
        self.assertEqual(self.check({169: (235, "a")}), ["no-but-applied"])


class RefusedStores(CheckerCase):
    """A flag change that only STOREs answered NO could have made (issue 9)."""

    def setUp(self):
        super().setUp()
        append = self.command("APPEND m2 (\\Seen) {a}", "OK [APPENDUID 7 1]")
        self.box.created[1] = Created(append.send, append.ack, "append", "a",
                                      frozenset({"\\seen"}), append.id)
        self.flag_op(append, "add", ["\\Seen"])

    def flag_op(self, rec, kind, flags):
        op = FlagOp(kind, flags, rec.send, rec.id)
        op.ack = rec.ack
        op.modified = not rec.result.startswith("OK")
        self.box.flag_ops[1].append(op)

    def store(self, kind, flags, answer):
        rec = self.command("UID STORE 1 %sFLAGS (%s)" % (kind, " ".join(flags)), answer)
        if answer.startswith("NO"):
            self.model.refused.add(rec.id)
        self.flag_op(rec, {"+": "add", "-": "remove"}[kind], flags)

    def check(self, flags):
        snap = Snapshot(7, 2, 9, {1: (9, frozenset(flags), 100, "a")})
        self.checker.check_flags(self.box, snap, WHERE)
        return sorted(v.prop for v in self.model.violations)

    def test_a_keyword_only_a_refused_store_set(self):
        self.store("+", ["k1"], "NO [UNAVAILABLE]")
        self.assertEqual(self.check({"\\seen", "k1"}), ["no-but-applied"])

    def test_a_flag_only_a_refused_store_removed(self):
        self.store("-", ["\\Seen"], "NO [UNAVAILABLE]")
        self.assertEqual(self.check(set()), ["no-but-applied"])

    def test_a_refused_store_and_one_that_succeeded(self):
        self.store("+", ["k1"], "NO [UNAVAILABLE]")
        self.store("+", ["k1"], "OK")
        self.store("-", ["\\Seen"], "NO [UNAVAILABLE]")
        self.assertEqual(self.check({"\\seen", "k1"}), [])


class ExpungedButPresent(CheckerCase):
    """A message a session heard expunged that a checkpoint still finds (seed 86365: a
    node's cache dropped messages the cluster had, and its sessions heard EXPUNGE)."""

    def check(self, uids):
        snap = Snapshot(7, 20, 30, {uid: (9, frozenset(), 100, "m%d" % uid) for uid in uids})
        self.checker.check_expunged_present(self.box, snap, WHERE)
        return sorted(v.prop for v in self.model.violations)

    def test_an_expunge_heard_of_a_message_still_there(self):
        self.model.saw_expunged(self.box, 4, 0, "s03", "EXPUNGE")
        self.assertEqual(self.check([3, 4, 5]), ["expunged-but-present"])

    def test_an_expunge_heard_of_a_message_gone(self):
        self.model.saw_expunged(self.box, 4, 0, "s03", "VANISHED")
        self.assertEqual(self.check([3, 5]), [])

    def test_vanished_earlier_may_name_a_uid_not_used_yet(self):
        self.model.saw_expunged(self.box, 6, 0, "s03", "VANISHED (EARLIER)")
        self.assertEqual(self.check([5, 6]), [])


class HighestModseqBeforeItsChanges(CheckerCase):
    """seed 80184 on mdbox: a STORE (UNCHANGEDSINCE) answered MODIFIED came with
    `* OK [HIGHESTMODSEQ 3758]` before the FETCHes of another node's change at 3758.
    A CHANGEDSINCE 3758 then carried them as unsolicited updates: not a violation."""

    def test_a_changedsince_at_an_untagged_highestmodseq(self):
        runner = SimpleNamespace(model=self.model, trace=self.trace, ops=[])
        session = Session(runner, 4, SimpleNamespace(name="A"), USER, 1)
        session.selected = Selected("m2", self.box, True, 1, 0)
        session.selected.view = [2363]
        store = self.command("UID STORE 2363 (UNCHANGEDSINCE 3717) +FLAGS ($S)",
                             "OK [MODIFIED 2363] Conditional store failed")
        session.process(["* OK [HIGHESTMODSEQ 3758] Highest"], store)
        since = session.selected.view_hms   # what op_changedsince starts from
        fetch = self.command("UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE %d)" % since, "OK")
        session.process(["* 1 FETCH (UID 2363 MODSEQ (3758) FLAGS (\\Deleted))"], fetch,
                        changed_since=since)
        self.assertEqual([v.prop for v in self.model.violations], [])


class ARepeatAfterAFailedSync(CheckerCase):
    """seed 1601 (faults): a FETCH during an outage showed UID 374 at MODSEQ 1314 (Dovecot
    reads a message's newest flags), and its closing sync failed. The next command's sync
    reported that change again, unsolicited, within a CHANGEDSINCE 1314."""

    def setUp(self):
        super().setUp()
        runner = SimpleNamespace(model=self.model, trace=self.trace, ops=[])
        self.session = Session(runner, 4, SimpleNamespace(name="A"), USER, 1)
        self.session.selected = Selected("m2", self.box, True, 1, 0)
        self.session.selected.view = [364, 374, 375]
        fetch = self.command("FETCH 1:* (UID FLAGS MODSEQ)", "OK")
        self.session.process(["* 1 FETCH (UID 364 FLAGS (\\Seen) MODSEQ (1316))",
                              "* 2 FETCH (UID 374 FLAGS (\\Answered) MODSEQ (1314))",
                              "* 3 FETCH (UID 375 FLAGS () MODSEQ (1200))",
                              "* NO Mail storage temporarily unavailable"], fetch)

    def changedsince(self, *lines):
        fetch = self.command("UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE 1314)", "OK")
        self.session.process(list(lines), fetch, changed_since=1314)
        return [v.prop for v in self.model.violations]

    def test_the_sync_repeats_what_the_fetch_showed(self):
        self.assertEqual(self.changedsince("* 1 FETCH (UID 364 FLAGS (\\Seen) MODSEQ (1316))",
                                           "* 1 FETCH (MODSEQ (1316) FLAGS (\\Seen))",
                                           "* 2 FETCH (MODSEQ (1314) FLAGS (\\Answered))",
                                           "* 2 FETCH (UID 374 MODSEQ (1314) FLAGS (\\Answered))"),
                         [])

    def test_an_answer_at_the_modseq_asked_about(self):
        self.assertEqual(self.changedsince("* 2 FETCH (UID 374 FLAGS (\\Answered) MODSEQ (1314))"),
                         ["changedsince-not-changed"])

    def test_a_sync_reporting_an_old_change_never_shown(self):
        self.assertEqual(self.changedsince("* 3 FETCH (MODSEQ (1300) FLAGS ())"),
                         ["changedsince-not-changed"])


class QresyncFromAnEmptySnapshot(unittest.TestCase):

    def test_an_empty_mailbox_is_resynced_with_a_uid_no_message_has(self):
        # seed 1303 on rbd, reproduced on mdbox: with no known-UIDs list, Dovecot takes
        # every UID as known and rightly reports all expunged since as VANISHED.
        self.assertEqual(qresync_arg(Snapshot(7, 140, 204, {})), "(QRESYNC (7 204 4294967295))")

    def test_known_uids_are_listed_in_order(self):
        msgs = {3: (9, frozenset(), 100, "c"), 1: (8, frozenset(), 100, "a")}
        self.assertEqual(qresync_arg(Snapshot(7, 4, 9, msgs)), "(QRESYNC (7 9 1,3))")


class MasterGoneLines(unittest.TestCase):
    """What a node's processes log while the fault's killed master is away: allowed (during
    a master-kill of that node) only for the lines below, with their time."""

    def test_the_lines_a_dead_master_leaves(self):
        for line in (
                "Dec 06 09:21:25 imap-login: Error: net_connect_unix(stats-writer) failed: "
                "Connection refused",
                "Dec 06 09:21:25 imap-login: Fatal: Error reading configuration: "
                "read(/tmp/d/node-b/run/config) failed: read(size=8192) failed: Connection "
                "reset by peer - Also failed to read config by executing doveconf: "
                "/tmp/d/node-b/run/config is a UNIX socket (path is from CONFIG_FILE "
                "environment)",
                "Dec 06 09:21:26 imap-login: Error: master(imap): read() failed: Remote closed "
                "connection (destination service { process_limit } reached?)",
                "Dec 06 09:57:08 master: Fatal: Dovecot is already running? Socket already "
                "exists: /tmp/d/node-b/run/login/imap",
                "Dec 06 10:37:01 master: Error: service(imap-login): listen(127.0.0.1, 29216) "
                "failed: Address already in use",
                "Dec 06 10:37:01 master: Fatal: Failed to start listeners"):
            m = MASTER_GONE.search(line)
            self.assertIsNotNone(m, line)
            self.assertTrue(line.startswith(m.group(1)))

    def test_a_storage_error_is_not_one_of_them(self):
        self.assertIsNone(MASTER_GONE.search(
            "Dec 06 09:21:25 imap(u1)<1><s>: Error: Mailbox m1: Fixed index file "
            "/tmp/d/dovecot.index: log_file_seq 1 -> 3"))


class DeletedBoxErrors(unittest.TestCase):
    """Errors Dovecot logs for a mailbox another session deleted meanwhile, on every storage:
    the user and mailbox they name, so that the checker can find the DELETE."""

    def test_each_form_names_the_user_and_the_mailbox(self):
        for line in (
                "Dec 07 18:14:12 imap(u1)<2><s>: Error: Mailbox tmp34: Mailbox was deleted "
                "under us",
                "Dec 07 18:14:12 imap(u1)<2><s>: Error: imap-master: Failed to import client "
                "state: Mailbox tmp34: Couldn't open mailbox: Mailbox doesn't exist: tmp34",
                "Dec 07 18:14:12 imap(u1)<2><s>: Error: unlink(/tmp/d/u1/tmp34/"
                "dovecot.index.tmp) failed: No such file or directory"):
            m = DELETED_BOX_ERROR.search(line)
            self.assertIsNotNone(m, line)
            self.assertEqual((m.group(1), m.group(2) or m.group(3) or m.group(4)),
                             ("u1", "tmp34"))

    def test_an_import_error_of_another_kind_is_not_one_of_them(self):
        self.assertIsNone(DELETED_BOX_ERROR.search(
            "Dec 07 18:14:12 imap(u1)<2><s>: Error: imap-master: Failed to import client "
            "state: Mailbox INBOX state corrupted: Invalid UIDNEXT"))


class LateStacks(unittest.TestCase):
    """The process a late command's stacks are taken from is the one holding the server's
    end of the connection."""

    def test_the_server_end_of_a_local_connection_is_found(self):
        with socket.create_server(("127.0.0.1", 0)) as listener:
            port = listener.getsockname()[1]
            with socket.create_connection(("127.0.0.1", port)) as client:
                served, _ = listener.accept()
                with served:
                    self.assertEqual(server_pid(client, port), os.getpid())
                    self.assertIsNone(server_pid(client, port + 1 if port < 65535 else 1))


if __name__ == "__main__":
    unittest.main()
