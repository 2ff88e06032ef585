"""APPEND (MULTIAPPEND, flags, INTERNALDATE, 8-bit, BINARY) and FETCH of every item."""

from datetime import datetime

from imap_connection import Literal, response_code, selected_state
from messages import message, multipart, numbered

MIXED = multipart(bytes(range(256)) * 4, subject="report")
EIGHT_BIT = message(subject="=?utf-8?q?Gr=C3=BC=C3=9Fe?=",
                    body="Grüße aus Köln – 8-bit UTF-8 body.\r\n".encode("utf-8") +
                    b"Latin-1 too: \xe9t\xe9\r\n",
                    headers=("Content-Type: text/plain; charset=utf-8",
                             "Content-Transfer-Encoding: 8bit"))


def imap_date(text):
    return datetime.strptime(text.decode().strip(), "%d-%b-%Y %H:%M:%S %z")


def appenduid(resp):
    """(uidvalidity, [uids]) from an APPEND's [APPENDUID v uids] code."""
    code = response_code(resp.text)
    assert code[0] == "APPENDUID", resp.tagged
    lo, _, hi = code[2].partition(":")
    return int(code[1]), list(range(int(lo), int(hi or lo) + 1))


# ---- APPEND ------------------------------------------------------------------------------

def test_append_returns_appenduid_with_the_mailbox_uidvalidity_and_next_uid(imap):
    first = imap.append("INBOX", numbered(1))
    second = imap.append("INBOX", numbered(2))
    validity = selected_state(imap.ok("SELECT", "INBOX"))["uidvalidity"]
    assert first.tagged == "OK [APPENDUID %d 1] Append completed" % validity
    assert second.tagged == "OK [APPENDUID %d 2] Append completed" % validity


def test_appended_message_is_returned_byte_equal(imap):
    msgs = [numbered(1), MIXED, EIGHT_BIT, numbered(4, size=20000)]
    for m in msgs:
        imap.append("INBOX", m)
    imap.ok("SELECT", "INBOX")
    fetched = imap.fetch("1:*", "(BODY.PEEK[] RFC822.SIZE)")
    assert [fetched[uid]["BODY[]"] for uid in (1, 2, 3, 4)] == msgs
    assert [int(fetched[uid]["RFC822.SIZE"]) for uid in (1, 2, 3, 4)] == [len(m) for m in msgs]


def test_multiappend_stores_all_messages_with_one_uid_range(imap):
    imap.append("INBOX", numbered(0))
    resp = imap.ok("APPEND", "INBOX", Literal(numbered(1)), "(\\Seen)", Literal(numbered(2)),
                   "(\\Flagged) \"02-Feb-2021 03:04:05 +0000\"", Literal(numbered(3)))
    validity = selected_state(imap.ok("SELECT", "INBOX"))["uidvalidity"]
    assert resp.tagged == "OK [APPENDUID %d 2:4] Append completed" % validity
    fetched = imap.fetch("2:4", "(FLAGS INTERNALDATE BODY.PEEK[])")
    assert [fetched[u]["BODY[]"] for u in (2, 3, 4)] == [numbered(1), numbered(2), numbered(3)]
    assert [fetched[u]["FLAGS"] for u in (2, 3, 4)] == [[], ["\\Seen"], ["\\Flagged"]]
    assert fetched[4]["INTERNALDATE"] == b"02-Feb-2021 03:04:05 +0000"


def test_multiappend_with_one_bad_message_stores_none(imap):
    imap.append("INBOX", numbered(0))
    resp = imap.command("APPEND", "INBOX", Literal(numbered(1)), "(\\Bogus)",
                        Literal(numbered(2)))
    assert resp.tagged == "BAD Error in IMAP command APPEND: Invalid system flag \\BOGUS"
    assert imap.ok("STATUS INBOX (MESSAGES)").lines() == ["* STATUS INBOX (MESSAGES 1)"]


def test_append_keeps_flags_and_keywords(imap):
    imap.append("INBOX", numbered(1), flags=["\\Seen", "\\Answered", "\\Draft", "$Label1",
                                             "custom"])
    imap.ok("SELECT", "INBOX")
    # system flags first, in Dovecot's fixed order, then keywords as created
    assert imap.fetch("1", "(FLAGS)")[1]["FLAGS"] == [
        "\\Answered", "\\Seen", "\\Draft", "$Label1", "custom"]


def test_append_keeps_internaldate_to_the_second(imap):
    imap.append("INBOX", numbered(1), date="01-Jan-2020 10:00:00 +0100")
    imap.append("INBOX", numbered(2), date="31-Dec-1999 23:59:59 -0800")
    imap.ok("SELECT", "INBOX")
    fetched = imap.fetch("1:2", "(INTERNALDATE)")
    assert imap_date(fetched[1]["INTERNALDATE"]) == imap_date(b"01-Jan-2020 10:00:00 +0100")
    assert imap_date(fetched[2]["INTERNALDATE"]) == imap_date(b"31-Dec-1999 23:59:59 -0800")


def test_append_without_date_uses_the_arrival_time(imap):
    before = datetime.now().astimezone().replace(microsecond=0)
    imap.append("INBOX", numbered(1))
    after = datetime.now().astimezone()
    imap.ok("SELECT", "INBOX")
    assert before <= imap_date(imap.fetch("1", "(INTERNALDATE)")[1]["INTERNALDATE"]) <= after


def test_append_to_a_missing_mailbox_fails_with_trycreate(imap):
    resp = imap.command("APPEND", "nope", Literal(numbered(1)))
    assert resp.tagged == "NO [TRYCREATE] Mailbox doesn't exist: nope"


def test_append_to_the_selected_mailbox_reports_exists(imap):
    imap.ok("SELECT", "INBOX")
    resp = imap.append("INBOX", numbered(1))
    assert "* 1 EXISTS" in resp.lines()


def test_8bit_message_is_stored_and_returned_unchanged(imap):
    imap.append("INBOX", EIGHT_BIT)
    imap.ok("SELECT", "INBOX")
    assert imap.fetch("1", "(BODY.PEEK[])")[1]["BODY[]"] == EIGHT_BIT
    assert imap.fetch("1", "(BODY.PEEK[TEXT])")[1]["BODY[TEXT]"] == \
        EIGHT_BIT.split(b"\r\n\r\n", 1)[1]


def test_binary_append_with_literal8_and_fetch_binary_round_trip_nul_bytes(imap):
    raw = b"binary \x00\x01\x02\xff data\r\nline two \x00\r\n"
    msg = (b"From: a@example.org\r\nSubject: binary\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: application/octet-stream\r\n"
           b"Content-Transfer-Encoding: binary\r\n\r\n" + raw)
    resp = imap.ok("APPEND", "INBOX", Literal(msg, binary=True))
    assert response_code(resp.text)[0] == "APPENDUID"
    imap.ok("SELECT", "INBOX")
    fetched = imap.fetch("1", "(BINARY.PEEK[1] BINARY.SIZE[1] RFC822.SIZE)")[1]
    assert fetched["BINARY[1]"] == raw
    assert fetched["BINARY.SIZE[1]"] == str(len(raw))


def test_fetch_binary_decodes_a_base64_part(imap):
    attachment = bytes(range(256)) * 4
    imap.append("INBOX", multipart(attachment))
    imap.ok("SELECT", "INBOX")
    resp = imap.ok("UID FETCH 1 (BINARY.PEEK[2] BINARY.SIZE[2])")
    assert b"BINARY[2] ~{1024}\r\n" in resp.untagged[0]   # literal8: it has NULs
    fetched = imap.fetch("1", "(BINARY.PEEK[2] BINARY.SIZE[2] BINARY.PEEK[1])")[1]
    assert fetched["BINARY[2]"] == attachment
    assert fetched["BINARY.SIZE[2]"] == "1024"
    assert fetched["BINARY[1]"] == b"See the attachment.\r\n"


# ---- FETCH ------------------------------------------------------------------------------

def test_fetch_partial_body_returns_exactly_the_requested_range(imap):
    msg = numbered(1, size=5000)
    imap.append("INBOX", msg)
    imap.ok("SELECT", "INBOX")
    fetched = imap.fetch("1", "(BODY.PEEK[]<0.10> BODY.PEEK[]<100.1000>)")[1]
    assert fetched["BODY[]<0>"] == msg[:10]
    assert fetched["BODY[]<100>"] == msg[100:1100]
    tail = imap.fetch("1", "(BODY.PEEK[]<%d.100>)" % (len(msg) - 7))[1]
    assert tail["BODY[]<%d>" % (len(msg) - 7)] == msg[-7:]
    beyond = imap.fetch("1", "(BODY.PEEK[]<%d.10>)" % (len(msg) + 5))[1]
    assert beyond["BODY[]<%d>" % (len(msg) + 5)] == b""


def test_fetch_partial_text_and_part_ranges(imap):
    imap.append("INBOX", MIXED)
    imap.ok("SELECT", "INBOX")
    text = MIXED.split(b"\r\n\r\n", 1)[1]
    fetched = imap.fetch("1", "(BODY.PEEK[TEXT]<5.20> BODY.PEEK[2]<4.8>)")[1]
    assert fetched["BODY[TEXT]<5>"] == text[5:25]
    part2 = MIXED.split(b"Content-Transfer-Encoding: base64\r\n\r\n")[1].split(b"--b1--")[0]
    assert fetched["BODY[2]<4>"] == part2[4:12]


def test_fetch_header_text_and_mime_sections(imap):
    imap.append("INBOX", MIXED)
    imap.ok("SELECT", "INBOX")
    head, text = MIXED.split(b"\r\n\r\n", 1)
    fetched = imap.fetch("1", "(BODY.PEEK[HEADER] BODY.PEEK[TEXT] BODY.PEEK[1] "
                              "BODY.PEEK[1.MIME] BODY.PEEK[2.MIME] "
                              "BODY.PEEK[HEADER.FIELDS (Subject From)] "
                              "BODY.PEEK[HEADER.FIELDS.NOT (Subject From To Date)])")[1]
    assert fetched["BODY[HEADER]"] == head + b"\r\n\r\n"
    assert fetched["BODY[TEXT]"] == text
    assert fetched["BODY[1]"] == b"See the attachment.\r\n"
    assert fetched["BODY[1.MIME]"] == b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    assert fetched["BODY[2.MIME]"] == (b'Content-Type: application/octet-stream; '
                                       b'name="data.bin"\r\n'
                                       b"Content-Transfer-Encoding: base64\r\n\r\n")
    # the fields in the message's order, not the request's
    assert fetched["BODY[HEADER.FIELDS (SUBJECT FROM)]"] == \
        b"From: Alice <alice@example.org>\r\nSubject: report\r\n\r\n"
    assert fetched["BODY[HEADER.FIELDS.NOT (SUBJECT FROM TO DATE)]"] == (
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n')


def test_fetch_rfc822_items(imap):
    msg = numbered(1)
    imap.append("INBOX", msg)
    imap.ok("SELECT", "INBOX")
    head, text = msg.split(b"\r\n\r\n", 1)
    fetched = imap.fetch("1", "(RFC822.HEADER RFC822.TEXT RFC822.SIZE)")[1]
    assert fetched["RFC822.HEADER"] == head + b"\r\n\r\n"
    assert fetched["RFC822.TEXT"] == text
    assert fetched["RFC822.SIZE"] == str(len(msg))


def test_fetch_bodystructure_of_a_single_part_message(imap):
    msg = numbered(1, size=300)
    imap.append("INBOX", msg)
    imap.ok("SELECT", "INBOX")
    text = msg.split(b"\r\n\r\n", 1)[1]
    resp = imap.ok("FETCH 1 (BODYSTRUCTURE)")
    assert resp.lines() == ['* 1 FETCH (BODYSTRUCTURE ("text" "plain" ("charset" "us-ascii") '
                            'NIL NIL "7bit" %d %d NIL NIL NIL NIL))' %
                            (len(text), text.count(b"\n"))]


def test_fetch_bodystructure_and_body_of_a_multipart_message(imap):
    imap.append("INBOX", MIXED)
    imap.ok("SELECT", "INBOX")
    base64_part = MIXED.split(b"base64\r\n\r\n")[1].split(b"\r\n--b1--")[0]
    resp = imap.ok("FETCH 1 (BODYSTRUCTURE BODY)")
    assert resp.lines() == [
        '* 1 FETCH (BODYSTRUCTURE (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 21 1'
        ' NIL NIL NIL NIL)("application" "octet-stream" ("name" "data.bin") NIL NIL "base64"'
        ' {0} NIL NIL NIL NIL) "mixed" ("boundary" "b1") NIL NIL NIL)'
        ' BODY (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 21 1)'
        '("application" "octet-stream" ("name" "data.bin") NIL NIL "base64" {0}) "mixed"))'
        .format(len(base64_part))]


def test_fetch_envelope(imap):
    msg = message(subject="Meeting", sender='"Alice A." <alice@example.org>',
                  to="Bob <bob@example.org>, carol@example.net",
                  message_id="<m1@example.org>",
                  headers=("Cc: Dave <dave@example.com>", "In-Reply-To: <m0@example.org>"))
    imap.append("INBOX", msg)
    imap.ok("SELECT", "INBOX")
    assert imap.ok("FETCH 1 (ENVELOPE)").lines() == [
        '* 1 FETCH (ENVELOPE ("Mon, 1 Jan 2024 10:00:00 +0000" "Meeting" '
        '(("Alice A." NIL "alice" "example.org")) (("Alice A." NIL "alice" "example.org")) '
        '(("Alice A." NIL "alice" "example.org")) '
        '(("Bob" NIL "bob" "example.org")(NIL NIL "carol" "example.net")) '
        '(("Dave" NIL "dave" "example.com")) NIL "<m0@example.org>" "<m1@example.org>"))']


def test_fetch_x_guid_is_unique_per_message_and_stable_across_sessions(imap, connect, node_a,
                                                                      user):
    for i in range(3):
        imap.append("INBOX", numbered(i))
    imap.ok("SELECT", "INBOX")
    guids = {uid: f["X-GUID"] for uid, f in imap.fetch("1:*", "(X-GUID)").items()}
    assert len(set(guids.values())) == 3
    assert all(len(g) >= 16 and g.isalnum() for g in guids.values())
    other = connect(node_a, user)
    other.ok("EXAMINE", "INBOX")
    assert {uid: f["X-GUID"] for uid, f in other.fetch("1:*", "(X-GUID)").items()} == guids


def test_fetch_modseq_and_uid_with_condstore(imap):
    imap.append("INBOX", numbered(1))
    imap.append("INBOX", numbered(2))
    highest = selected_state(imap.ok("SELECT", "INBOX", "(CONDSTORE)"))["highestmodseq"]
    fetched = imap.fetch("1:*", "(MODSEQ)")
    assert sorted(fetched) == [1, 2]
    assert all(1 <= int(f["MODSEQ"][0]) <= highest for f in fetched.values())


def test_fetch_of_all_fast_full_macros(imap):
    msg = numbered(1)
    imap.append("INBOX", msg, flags=["\\Seen"], date="05-Mar-2022 12:00:00 +0000")
    imap.ok("SELECT", "INBOX")
    fast = imap.ok("FETCH 1 FAST").lines()
    assert fast == ['* 1 FETCH (FLAGS (\\Seen) INTERNALDATE "05-Mar-2022 12:00:00 +0000" '
                    'RFC822.SIZE %d)' % len(msg)]
    full = imap.fetch("1", "FULL", uid=False)[1]
    assert set(full) == {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"}


def test_fetch_body_sets_seen_and_body_peek_does_not(imap):
    imap.append("INBOX", numbered(1))
    imap.append("INBOX", numbered(2))
    imap.ok("SELECT", "INBOX")
    imap.fetch("1", "(BODY.PEEK[])")
    fetched = imap.fetch("2", "(BODY[])")[2]   # the implicit \\Seen comes with the body
    assert (fetched["BODY[]"], fetched["FLAGS"]) == (numbered(2), ["\\Seen"])
    assert {u: f["FLAGS"] for u, f in imap.fetch("1:*", "(FLAGS)").items()} == {
        1: [], 2: ["\\Seen"]}


def test_fetch_by_sequence_number_and_by_uid_after_an_expunge(imap):
    for i in range(1, 5):
        imap.append("INBOX", numbered(i))
    imap.ok("SELECT", "INBOX")
    imap.ok("UID STORE 2 +FLAGS.SILENT (\\Deleted)")
    imap.ok("EXPUNGE")
    resp = imap.ok("FETCH 1:* (UID)")
    assert resp.lines() == ["* 1 FETCH (UID 1)", "* 2 FETCH (UID 3)", "* 3 FETCH (UID 4)"]
    resp = imap.ok("UID FETCH 2:4 (UID)")
    assert resp.lines() == ["* 2 FETCH (UID 3)", "* 3 FETCH (UID 4)"]


def test_fetch_of_a_missing_uid_returns_nothing(imap):
    imap.append("INBOX", numbered(1))
    imap.ok("SELECT", "INBOX")
    resp = imap.ok("UID FETCH 7 (FLAGS)")
    assert resp.untagged == []


def test_bodies_are_equal_in_a_new_session(imap, connect, node_a, user):
    msgs = [numbered(i, size=300 * i) for i in range(1, 6)]
    for m in msgs:
        imap.append("INBOX", m)
    other = connect(node_a, user)
    other.ok("EXAMINE", "INBOX")
    fetched = other.fetch("1:*", "(BODY.PEEK[])")
    assert [fetched[u]["BODY[]"] for u in range(1, 6)] == msgs
