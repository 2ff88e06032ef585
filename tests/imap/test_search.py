"""SEARCH (and ESEARCH), SORT, THREAD on a fixed set of messages."""

import pytest

from conftest import STORAGE

from imap_connection import Literal
from messages import message

# (subject, from, Date header, internal date, body, flags, extra headers)
MESSAGES = [
    ("apple pie", "Alice <alice@example.org>", "Wed, 3 Jan 2024 10:00:00 +0000",
     "01-Feb-2024 12:00:00 +0000", "cinnamon and sugar\r\n", ["\\Seen"],
     ("Message-ID: <1@t>",)),
    ("Re: apple pie", "Bob <bob@example.org>", "Mon, 1 Jan 2024 10:00:00 +0000",
     "02-Feb-2024 12:00:00 +0000", "yes please\r\n", ["\\Flagged"],
     ("Message-ID: <2@t>", "In-Reply-To: <1@t>", "References: <1@t>")),
    ("banana", "Carol <carol@example.org>", "Tue, 2 Jan 2024 10:00:00 +0000",
     "03-Feb-2024 12:00:00 +0000", "long\r\n" + "banana split " * 400 + "\r\n", ["$Work"],
     ("Message-ID: <3@t>",)),
    ("cherry", "Alice <alice@example.org>", "Sun, 31 Dec 2023 10:00:00 +0000",
     "04-Feb-2024 12:00:00 +0000", "an apple mention\r\n", ["\\Seen", "\\Answered"],
     ("Message-ID: <4@t>",)),
    ("Re: Re: apple pie", "Alice <alice@example.org>", "Thu, 4 Jan 2024 10:00:00 +0000",
     "05-Feb-2024 12:00:00 +0000", "Grüße\r\n", [],
     ("Message-ID: <5@t>", "In-Reply-To: <2@t>", "References: <1@t> <2@t>",
      "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit")),
]


def build(subject, sender, date, _internal, body, _flags, headers):
    return message(subject=subject, sender=sender, date=date, body=body, headers=headers)


@pytest.fixture
def mailbox(imap):
    for spec in MESSAGES:
        imap.append("INBOX", build(*spec), flags=spec[5], date=spec[3])
    imap.ok("SELECT", "INBOX")
    return imap


def search(conn, criteria, command="SEARCH"):
    lines = conn.ok(command, criteria).lines()
    assert len(lines) == 1 and lines[0].startswith("* %s" % command.split()[-1]), lines
    return lines[0]


@pytest.mark.parametrize("criteria, expected", [
    ("ALL", "1 2 3 4 5"),
    ("SEEN", "1 4"),
    ("UNSEEN", "2 3 5"),
    ("FLAGGED", "2"),
    ("ANSWERED", "4"),
    ("KEYWORD $Work", "3"),
    ("UNKEYWORD $Work", "1 2 4 5"),
    ("FROM alice", "1 4 5"),
    ("SUBJECT apple", "1 2 5"),
    ("BODY apple", "4"),
    ("TEXT apple", "1 2 4 5"),
    ("HEADER Message-ID <3@t>", "3"),
    ("LARGER 1000", "3"),
    ("SMALLER 1000", "1 2 4 5"),
    ("SENTBEFORE 2-Jan-2024", "2 4"),
    ("SENTON 2-Jan-2024", "3"),
    ("SINCE 3-Feb-2024", "3 4 5"),
    ("BEFORE 2-Feb-2024", "1"),
    ("ON 2-Feb-2024", "2"),
    ("OR FROM bob FROM carol", "2 3"),
    ("NOT SEEN", "2 3 5"),
    ("UNSEEN FROM alice", "5"),
    ("2:4", "2 3 4"),
    ("UID 4:*", "4 5"),
    ("SUBJECT nothing-matches", ""),
])
def test_search_criteria_select_exactly_the_matching_messages(mailbox, criteria, expected):
    assert search(mailbox, criteria) == ("* SEARCH " + expected).rstrip()


def test_search_for_8bit_text_with_charset_utf8(mailbox):
    resp = mailbox.ok("SEARCH", "CHARSET", "UTF-8", "BODY", Literal("Grüße".encode()))
    assert resp.lines() == ["* SEARCH 5"]


def test_uid_search_returns_uids_not_sequence_numbers(mailbox):
    mailbox.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    mailbox.ok("EXPUNGE")
    assert search(mailbox, "SEEN") == "* SEARCH 3"
    assert search(mailbox, "SEEN", "UID SEARCH") == "* SEARCH 4"


def test_esearch_returns_min_max_count_and_all(mailbox):
    resp = mailbox.ok("SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN")
    tag = "a%04d" % mailbox.tag_counter
    assert resp.lines() == ['* ESEARCH (TAG "%s") MIN 2 MAX 5 ALL 2:3,5 COUNT 3' % tag]


def test_search_by_modseq_finds_changed_messages(mailbox):
    mailbox.ok("ENABLE CONDSTORE")
    highest = max(int(f["MODSEQ"][0]) for f in mailbox.fetch("1:*", "(MODSEQ)").values())
    mailbox.ok("STORE 3 +FLAGS.SILENT (\\Seen)")
    lines = mailbox.ok("SEARCH MODSEQ %d" % (highest + 1)).lines()
    changed = int(mailbox.fetch("3", "(MODSEQ)")[3]["MODSEQ"][0])
    assert lines == ["* SEARCH 3 (MODSEQ %d)" % changed]


def sizes():
    return [len(build(*spec)) for spec in MESSAGES]


@pytest.mark.parametrize("criteria, expected", [
    ("(ARRIVAL)", "1 2 3 4 5"),
    ("(REVERSE ARRIVAL)", "5 4 3 2 1"),
    ("(DATE)", "4 2 3 1 5"),
    ("(REVERSE DATE)", "5 1 3 2 4"),
    ("(SUBJECT)", "1 2 5 3 4"),
    ("(FROM)", "1 4 5 2 3"),
    ("(FROM DATE)", "4 1 5 2 3"),
    ("(SIZE)", " ".join(str(i + 1) for i in sorted(range(5), key=lambda i: sizes()[i]))),
])
def test_sort_orders_by_the_given_keys(mailbox, criteria, expected):
    assert mailbox.ok("SORT", criteria, "UTF-8", "ALL").lines() == ["* SORT " + expected]


def test_uid_sort_of_a_search_subset(mailbox):
    mailbox.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    mailbox.ok("EXPUNGE")
    assert mailbox.ok("UID SORT (REVERSE DATE) UTF-8 NOT FLAGGED").lines() == ["* SORT 5 3 4"]
    assert mailbox.ok("SORT (REVERSE DATE) UTF-8 NOT FLAGGED").lines() == ["* SORT 4 2 3"]


# Only mdbox shows the bug; on rbd the test must pass.
@pytest.mark.xfail(STORAGE == "mdbox", strict=False,
                   reason="Dovecot 2.3.19.1 bug, seen on mdbox: the first "
                   "SORT (DATE) with a header criterion in a fresh mailbox caches message 1 "
                   "as having no Date header (BODY[HEADER.FIELDS (DATE)] then comes back "
                   "empty)")
def test_sort_by_date_with_a_header_criterion(mailbox):
    assert mailbox.ok("UID SORT (DATE) UTF-8 FROM alice").lines() == ["* SORT 4 1 5"]


def test_thread_references_links_replies_to_their_parents(mailbox):
    assert mailbox.ok("THREAD REFERENCES UTF-8 ALL").lines() == ["* THREAD (4)(3)(1 2 5)"]


def test_thread_orderedsubject_groups_by_base_subject(mailbox):
    assert mailbox.ok("THREAD ORDEREDSUBJECT UTF-8 ALL").lines() == [
        "* THREAD (4)(2 (1)(5))(3)"]
