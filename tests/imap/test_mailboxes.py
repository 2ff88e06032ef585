"""LIST/LSUB, CREATE/DELETE/RENAME, SUBSCRIBE, SELECT/EXAMINE, STATUS."""

import pytest

from imap_connection import examined_status, quote, response_code, selected_state, status_items
from messages import numbered

SYSTEM_FLAGS = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"]


def listing(conn, *args):
    """LIST's responses, sorted by mailbox name (the order is not specified), without
    \\Marked: it means "has \\Recent messages", which is session-specific."""
    lines = [line.replace(" \\Marked", "").replace("(\\Marked)", "()")
             for line in conn.ok("LIST", *(args or ('""', "*"))).lines()]
    return sorted(lines, key=lambda line: line.rsplit('"/" ', 1)[1])


def uids_and_subjects(conn, mailbox):
    conn.ok("EXAMINE", quote(mailbox))
    fetched = conn.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    conn.ok("UNSELECT")
    return {uid: f["BODY[HEADER.FIELDS (SUBJECT)]"] for uid, f in fetched.items()}


# ---- LIST / CREATE ----------------------------------------------------------------------

def test_created_mailbox_is_listed_with_hasnochildren(imap):
    assert imap.ok("CREATE", "Projects").text == "Create completed"
    assert listing(imap) == ['* LIST (\\HasNoChildren) "/" INBOX',
                             '* LIST (\\HasNoChildren) "/" Projects']


def test_parent_is_listed_with_haschildren_and_child_with_hasnochildren(imap):
    imap.ok("CREATE", "a")
    imap.ok("CREATE", "a/b")
    imap.ok("CREATE", "a/b/c")
    assert listing(imap) == ['* LIST (\\HasNoChildren) "/" INBOX',
                             '* LIST (\\HasChildren) "/" a',
                             '* LIST (\\HasChildren) "/" a/b',
                             '* LIST (\\HasNoChildren) "/" a/b/c']


def test_list_percent_lists_one_level_only(imap):
    imap.ok("CREATE", "a")
    imap.ok("CREATE", "a/b")
    imap.ok("CREATE", "a/b/c")
    assert listing(imap, '""', "%") == ['* LIST (\\HasNoChildren) "/" INBOX',
                                        '* LIST (\\HasChildren) "/" a']
    assert listing(imap, '""', "a/%") == ['* LIST (\\HasChildren) "/" a/b']


def test_create_of_a_deep_name_makes_its_parents_visible_as_haschildren(imap):
    imap.ok("CREATE", "x/y/z")
    lines = {line.rsplit(" ", 1)[1]: line for line in listing(imap)}
    assert lines["x/y/z"] == '* LIST (\\HasNoChildren) "/" x/y/z'
    for parent in ("x", "x/y"):
        # RFC 3501 lets a server leave implied parents non-selectable.
        assert lines[parent] in ('* LIST (\\HasChildren) "/" ' + parent,
                                 '* LIST (\\Noselect \\HasChildren) "/" ' + parent,
                                 '* LIST (\\NonExistent \\HasChildren) "/" ' + parent)


def test_create_of_an_existing_mailbox_fails_with_alreadyexists(imap):
    imap.ok("CREATE", "dup")
    assert imap.command("CREATE", "dup").tagged == "NO [ALREADYEXISTS] Mailbox already exists"


def test_create_with_trailing_separator_creates_a_name_for_children(imap):
    imap.ok("CREATE", "folder/")
    # RFC 3501: the client "intends to create mailbox names under this name"; Dovecot's
    # own storages make it a \\Noselect name.
    assert listing(imap)[1] in ('* LIST (\\HasNoChildren) "/" folder',
                                '* LIST (\\Noselect \\HasNoChildren) "/" folder')
    imap.ok("CREATE", "folder/sub")
    assert listing(imap)[2] == '* LIST (\\HasNoChildren) "/" folder/sub'


@pytest.mark.parametrize("name, listed", [("with space", '"with space"'),
                                          ("dot.ted", "dot.ted"),
                                          ("&APw-mlaut", "&APw-mlaut")])  # "ümlaut"
def test_mailbox_names_with_spaces_dots_and_utf7_round_trip(imap, name, listed):
    imap.ok("CREATE", quote(name))
    assert listing(imap, '""', quote(name)) == ['* LIST (\\HasNoChildren) "/" ' + listed]
    imap.append(name, numbered(1))
    assert uids_and_subjects(imap, name) == {1: b"Subject: msg 1\r\n\r\n"}


def test_special_use_mailboxes_carry_their_attribute(imap):
    for name in ("Drafts", "Sent", "Trash", "Junk", "Other"):
        imap.ok("CREATE", name)
    assert listing(imap, "(SPECIAL-USE)", '""', "*") == [
        '* LIST (\\Drafts) "/" Drafts', '* LIST (\\Junk) "/" Junk',
        '* LIST (\\Sent) "/" Sent', '* LIST (\\Trash) "/" Trash']
    assert listing(imap, '""', "*", "RETURN", "(SPECIAL-USE)") == [
        '* LIST (\\Drafts) "/" Drafts', '* LIST () "/" INBOX', '* LIST (\\Junk) "/" Junk',
        '* LIST () "/" Other', '* LIST (\\Sent) "/" Sent', '* LIST (\\Trash) "/" Trash']


def test_special_use_mailboxes_are_not_created_automatically(imap):
    imap.ok("SELECT", "INBOX")
    assert listing(imap) == ['* LIST (\\HasNoChildren) "/" INBOX']
    assert imap.command("SELECT", "Sent").tagged == "NO Mailbox doesn't exist: Sent"


def test_list_return_status_reports_counts_of_every_mailbox(imap):
    imap.ok("CREATE", "box")
    imap.append("box", numbered(1))
    imap.append("box", numbered(2), flags=["\\Seen"])
    resp = imap.ok('LIST "" "box" RETURN (CHILDREN STATUS (MESSAGES UNSEEN))')
    assert [line.replace(" \\Marked", "") for line in resp.lines()] == [
        '* LIST (\\HasNoChildren) "/" box', "* STATUS box (MESSAGES 2 UNSEEN 1)"]


# ---- SUBSCRIBE / LSUB ---------------------------------------------------------------------

def test_lsub_lists_exactly_the_subscribed_mailboxes(imap):
    for name in ("a", "b", "c"):
        imap.ok("CREATE", name)
    assert imap.ok("SUBSCRIBE", "a").text == "Subscribe completed"
    imap.ok("SUBSCRIBE", "c")
    assert imap.ok('LSUB "" *').lines() == ['* LSUB () "/" a', '* LSUB () "/" c']
    assert imap.ok("UNSUBSCRIBE", "a").text == "Unsubscribe completed"
    assert imap.ok('LSUB "" *').lines() == ['* LSUB () "/" c']


def test_list_subscribed_marks_subscriptions_and_their_children(imap):
    imap.ok("CREATE", "p")
    imap.ok("CREATE", "p/q")
    imap.ok("SUBSCRIBE", "p")
    imap.ok("SUBSCRIBE", "p/q")
    assert listing(imap, "(SUBSCRIBED)", '""', "*") == ['* LIST (\\Subscribed) "/" p',
                                                        '* LIST (\\Subscribed) "/" p/q']
    assert listing(imap, "(SUBSCRIBED)", '""', "*", "RETURN", "(CHILDREN)") == [
        '* LIST (\\Subscribed \\HasChildren) "/" p',
        '* LIST (\\Subscribed \\HasNoChildren) "/" p/q']


def test_subscriptions_survive_a_new_session(imap, connect, node_a, user):
    imap.ok("CREATE", "keep")
    imap.ok("SUBSCRIBE", "keep")
    imap.logout()
    again = connect(node_a, user)
    assert again.ok('LSUB "" *').lines() == ['* LSUB () "/" keep']


def test_subscription_of_a_deleted_mailbox_stays_and_is_nonexistent(imap):
    imap.ok("CREATE", "gone")
    imap.ok("SUBSCRIBE", "gone")
    imap.ok("DELETE", "gone")
    assert listing(imap, "(SUBSCRIBED)", '""', "*") == [
        '* LIST (\\Subscribed \\NonExistent) "/" gone']


# ---- DELETE ----------------------------------------------------------------------------

def test_delete_removes_the_mailbox_and_its_messages(imap):
    imap.ok("CREATE", "tmp")
    imap.append("tmp", numbered(1))
    old_validity = int(response_code(imap.append("tmp", numbered(2)).text)[1])
    assert imap.ok("DELETE", "tmp").text == "Delete completed"
    assert listing(imap) == ['* LIST (\\HasNoChildren) "/" INBOX']
    imap.ok("CREATE", "tmp")
    state = selected_state(imap.ok("SELECT", "tmp"))
    assert state["exists"] == 0
    # RFC 3501 2.3.1.1: a new mailbox of an old name gets a new UIDVALIDITY, or keeps
    # the old one and never reuses the old UIDs
    assert state["uidvalidity"] != old_validity or state["uidnext"] > 2
    assert imap.ok("UID FETCH 1:2 (UID)").untagged == []


def test_delete_of_a_parent_keeps_its_children_and_makes_it_noselect(imap):
    imap.ok("CREATE", "p")
    imap.ok("CREATE", "p/child")
    imap.append("p", numbered(1))
    imap.append("p/child", numbered(2))
    imap.ok("DELETE", "p")
    assert listing(imap) == ['* LIST (\\HasNoChildren) "/" INBOX',
                             '* LIST (\\Noselect \\HasChildren) "/" p',
                             '* LIST (\\HasNoChildren) "/" p/child']
    assert uids_and_subjects(imap, "p/child") == {1: b"Subject: msg 2\r\n\r\n"}
    assert imap.command("SELECT", "p").status == "NO"


def test_delete_of_inbox_is_refused(imap):
    assert imap.command("DELETE", "INBOX").tagged == "NO INBOX can't be deleted"


def test_delete_of_a_missing_mailbox_fails_with_nonexistent(imap):
    assert imap.command("DELETE", "nope").tagged == "NO [NONEXISTENT] Mailbox doesn't exist: nope"


# ---- RENAME ----------------------------------------------------------------------------

def test_rename_moves_the_whole_subtree_with_messages_and_uids(imap):
    imap.ok("CREATE", "a")
    imap.ok("CREATE", "a/b")
    imap.ok("CREATE", "a/b/c")
    for i, box in enumerate(("a", "a/b", "a/b/c")):
        imap.append(box, numbered(i))
    validity = {box: selected_state(imap.ok("EXAMINE", box))["uidvalidity"]
                for box in ("a", "a/b", "a/b/c")}
    imap.ok("UNSELECT")
    assert imap.ok("RENAME", "a", "z").text == "Rename completed"
    assert listing(imap) == ['* LIST (\\HasNoChildren) "/" INBOX',
                             '* LIST (\\HasChildren) "/" z',
                             '* LIST (\\HasChildren) "/" z/b',
                             '* LIST (\\HasNoChildren) "/" z/b/c']
    for i, box in enumerate(("z", "z/b", "z/b/c")):
        assert uids_and_subjects(imap, box) == {1: b"Subject: msg %d\r\n\r\n" % i}
        old = "a" + box[1:]
        assert selected_state(imap.ok("EXAMINE", box))["uidvalidity"] == validity[old]
    assert imap.command("SELECT", "a").tagged == "NO Mailbox doesn't exist: a"


def test_rename_to_a_new_parent_creates_the_hierarchy(imap):
    imap.ok("CREATE", "leaf")
    imap.append("leaf", numbered(1))
    imap.ok("RENAME", "leaf", "archive/2024/leaf")
    lines = listing(imap)
    assert '* LIST (\\HasNoChildren) "/" archive/2024/leaf' in lines
    assert not any(line.endswith('"/" leaf') for line in lines)
    assert uids_and_subjects(imap, "archive/2024/leaf") == {1: b"Subject: msg 1\r\n\r\n"}


def test_rename_onto_an_existing_mailbox_fails_with_alreadyexists(imap):
    imap.ok("CREATE", "one")
    imap.ok("CREATE", "two")
    assert imap.command("RENAME", "one", "two").tagged == \
        "NO [ALREADYEXISTS] Target mailbox already exists"


def test_rename_of_a_missing_mailbox_fails_with_nonexistent(imap):
    assert imap.command("RENAME", "nope", "x").tagged == \
        "NO [NONEXISTENT] Mailbox doesn't exist: nope"


def test_rename_of_a_mailbox_into_its_own_subtree_is_refused(imap):
    imap.ok("CREATE", "self")
    assert imap.command("RENAME", "self", "self/inner").status == "NO"
    assert listing(imap, '""', "self*") == ['* LIST (\\HasNoChildren) "/" self']


def test_rename_of_inbox_moves_its_messages_and_leaves_inbox_empty(imap):
    for i in range(3):
        imap.append("INBOX", numbered(i), flags=["\\Seen"] if i == 1 else None)
    inbox_validity = selected_state(imap.ok("EXAMINE", "INBOX"))["uidvalidity"]
    imap.ok("UNSELECT")
    assert imap.ok("RENAME", "INBOX", "old-inbox").text == "Rename completed"
    assert listing(imap) == ['* LIST (\\HasNoChildren) "/" INBOX',
                             '* LIST (\\HasNoChildren) "/" old-inbox']
    assert uids_and_subjects(imap, "old-inbox") == {
        i + 1: b"Subject: msg %d\r\n\r\n" % i for i in range(3)}
    imap.ok("EXAMINE", "old-inbox")
    assert imap.fetch("1:*", "(FLAGS)")[2]["FLAGS"] == ["\\Seen"]
    imap.ok("UNSELECT")
    state = selected_state(imap.ok("SELECT", "INBOX"))
    assert state["exists"] == 0
    # a new INBOX: new UIDVALIDITY, or the old one without reusing UIDs (RFC 3501 2.3.1.1)
    assert state["uidvalidity"] != inbox_validity or state["uidnext"] > 3
    appended = imap.append("INBOX", numbered(9))
    assert response_code(appended.text) == ["APPENDUID", str(state["uidvalidity"]),
                                            str(state["uidnext"])]


# ---- SELECT / EXAMINE / STATUS -------------------------------------------------------------

def test_select_reports_flags_counts_uidvalidity_and_uidnext(imap):
    imap.append("INBOX", numbered(1), flags=["\\Seen"])
    imap.append("INBOX", numbered(2))
    imap.append("INBOX", numbered(3), flags=["\\Flagged", "$Important"])
    resp = imap.ok("SELECT", "INBOX")
    assert resp.tagged == "OK [READ-WRITE] Select completed"
    state = selected_state(resp)
    validity = state["uidvalidity"]
    assert validity > 0
    # (a server that always tracks modseqs may send HIGHESTMODSEQ without CONDSTORE)
    assert [line for line in resp.lines() if "[HIGHESTMODSEQ " not in line] == [
        "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Important)",
        "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Important \\*)]"
        " Flags permitted.",
        "* 3 EXISTS",
        "* OK [UNSEEN 2] First unseen.",
        "* OK [UIDVALIDITY %d] UIDs valid" % validity,
        "* OK [UIDNEXT 4] Predicted next UID"]


def test_select_with_condstore_reports_highestmodseq(imap):
    imap.append("INBOX", numbered(1))
    state = selected_state(imap.ok("SELECT", "INBOX", "(CONDSTORE)"))
    assert state["highestmodseq"] >= 1


def test_examine_is_read_only_with_no_permanent_flags(imap):
    imap.append("INBOX", numbered(1))
    resp = imap.ok("EXAMINE", "INBOX")
    assert resp.tagged == "OK [READ-ONLY] Examine completed"
    assert "* OK [PERMANENTFLAGS ()] Read-only mailbox." in resp.lines()
    assert selected_state(resp)["exists"] == 1
    imap.fetch("1", "(BODY[])")
    assert imap.fetch("1", "(FLAGS)")[1]["FLAGS"] == []


def test_select_of_a_missing_mailbox_fails_with_doesnt_exist(imap):
    assert imap.command("SELECT", "nope").tagged == "NO Mailbox doesn't exist: nope"


def test_select_of_another_mailbox_closes_the_previous_one(imap):
    imap.ok("CREATE", "other")
    imap.ok("SELECT", "INBOX")
    resp = imap.ok("SELECT", "other")
    assert resp.lines()[0] == "* OK [CLOSED] Previous mailbox closed."


def test_status_reports_exact_counts_size_and_the_select_uidvalidity(imap):
    msgs = [numbered(1), numbered(2, size=500), numbered(3)]
    imap.append("INBOX", msgs[0], flags=["\\Seen"])
    imap.append("INBOX", msgs[1])
    imap.append("INBOX", msgs[2])
    imap.ok("CREATE", "other")
    resp = imap.ok("STATUS INBOX (MESSAGES UIDNEXT UNSEEN SIZE)")
    assert resp.lines() == ["* STATUS INBOX (MESSAGES 3 UIDNEXT 4 UNSEEN 2 SIZE %d)" %
                            sum(map(len, msgs))]
    status = imap.ok("STATUS INBOX (UIDVALIDITY)").lines()
    state = selected_state(imap.ok("SELECT", "INBOX"))
    assert status == ["* STATUS INBOX (UIDVALIDITY %d)" % state["uidvalidity"]]


def test_status_highestmodseq_grows_with_every_change(imap):
    imap.append("INBOX", numbered(1))
    first = int(imap.ok("STATUS INBOX (HIGHESTMODSEQ)").lines()[0].split()[-1][:-1])
    imap.append("INBOX", numbered(2))
    second = int(imap.ok("STATUS INBOX (HIGHESTMODSEQ)").lines()[0].split()[-1][:-1])
    assert second > first


STATE_ITEMS = "(MESSAGES RECENT UNSEEN UIDNEXT UIDVALIDITY HIGHESTMODSEQ SIZE)"


def test_status_of_counts_uids_and_modseq_is_what_an_examine_reports(imap):
    # rbd answers these from the index state without syncing the node's cache: the
    # values must be those the synced cache reports, from a new mailbox on.
    def in_box(*commands):
        imap.ok("SELECT", "box")
        for command in commands:
            imap.ok(command)
        imap.ok("UNSELECT")

    imap.ok("CREATE", "box")
    steps = [lambda: None,
             lambda: [imap.append("box", numbered(n)) for n in range(4)],
             lambda: imap.append("box", numbered(4), flags=["\\Seen"]),
             lambda: in_box("STORE 1:2 +FLAGS (\\Seen $Work)"),   # takes \\Recent
             lambda: imap.append("box", numbered(5)),
             lambda: in_box("STORE 2 -FLAGS ($Work)", "STORE 1 -FLAGS (\\Seen)"),
             lambda: in_box("FETCH 3 BODY[]"),
             lambda: in_box("STORE 2:3 +FLAGS (\\Deleted)", "EXPUNGE")]
    for step in steps:
        step()
        assert status_items(imap.ok("STATUS", "box", STATE_ITEMS)) == examined_status(imap, "box")


def test_status_of_a_missing_mailbox_fails_with_doesnt_exist(imap):
    assert imap.command("STATUS nope (MESSAGES)").tagged == "NO Mailbox doesn't exist: nope"
