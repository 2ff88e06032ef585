"""The notify plugin's users (mail_log here; push_notification takes the same events) see
every change a session makes, as on mdbox: flag and keyword changes (flag_change),
\\Deleted set and cleared (delete, undelete), saves, copies and expunges with their message's
fields. A flag change waits in the transaction until it goes to RADOS, so the
storage must show it to a mail's flags before the commit, as an index transaction does."""

import re

import pytest

from conftest import STORAGE, new_user_name
from daemons import Node
from messages import numbered

EVENTS = "delete undelete expunge save copy flag_change"
LINE = re.compile(r"imap\((?P<user>[^)]+)\)<[^>]*><[^>]*>: Info: (?P<event>\w+(?: from \S+)?): (?P<fields>box=.*)$")


@pytest.fixture(scope="module")
def log_node(work_dir, cluster):
    with Node.running("L", work_dir / "node-l", STORAGE, cluster,
                      mail_plugin=["notify", "mail_log"],
                      plugin_setting=["mail_log_events=" + EVENTS,
                                      "mail_log_fields=uid box msgid flags"]) as node:
        yield node


def logged(node, user):
    """(event, fields) of every mail_log line of the user, in order."""
    text = (node.path / "dovecot.log").read_text(errors="replace")
    return [(m["event"], m["fields"]) for m in map(LINE.search, text.splitlines())
            if m and m["user"] == user]


def test_flag_keyword_delete_and_expunge_events(connect, log_node):
    user = new_user_name("l")
    log_node.add_user(user)
    conn = connect(log_node, user)
    conn.ok("CREATE Other")
    conn.append("INBOX", numbered(1))
    conn.append("INBOX", numbered(2))
    conn.ok("SELECT INBOX")
    conn.ok("STORE 1 +FLAGS (\\Flagged)")
    conn.ok("STORE 1 +FLAGS ($Work)")
    conn.ok("STORE 1 +FLAGS (\\Flagged)")          # no change: no event
    conn.ok("STORE 2 +FLAGS (\\Deleted)")
    conn.ok("STORE 2 -FLAGS (\\Deleted)")
    conn.ok("COPY 1 Other")
    conn.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    conn.ok("EXPUNGE")
    conn.logout()

    def msgid(n):
        return "<%d@test>" % n

    got = logged(log_node, user)
    assert got == [
        ("save", "box=INBOX, uid=1, msgid=%s, flags=()" % msgid(1)),
        ("save", "box=INBOX, uid=2, msgid=%s, flags=()" % msgid(2)),
        ("flag_change", "box=INBOX, uid=1, msgid=%s, flags=(\\Flagged \\Recent)" % msgid(1)),
        ("flag_change",
         "box=INBOX, uid=1, msgid=%s, flags=(\\Flagged \\Recent $Work)" % msgid(1)),
        ("delete", "box=INBOX, uid=2, msgid=%s, flags=(\\Deleted \\Recent)" % msgid(2)),
        ("undelete", "box=INBOX, uid=2, msgid=%s, flags=(\\Recent)" % msgid(2)),
        ("copy from INBOX", "box=Other, uid=1, msgid=%s, flags=(\\Flagged $Work)" % msgid(1)),
        ("delete", "box=INBOX, uid=2, msgid=%s, flags=(\\Deleted \\Recent)" % msgid(2)),
        ("expunge", "box=INBOX, uid=2, msgid=%s, flags=(\\Deleted \\Recent)" % msgid(2)),
    ], "\n".join(map(str, got))
