"""LOGIN, CAPABILITY, NAMESPACE, LOGOUT."""

import imaplib
import random

from imap_connection import ImapConnection

POST_LOGIN_CAPABILITIES = {
    "IMAP4rev1", "IDLE", "SORT", "THREAD=REFERENCES", "THREAD=ORDEREDSUBJECT", "MULTIAPPEND",
    "UNSELECT", "CHILDREN", "NAMESPACE", "UIDPLUS", "LIST-EXTENDED", "CONDSTORE", "QRESYNC",
    "ESEARCH", "BINARY", "MOVE", "SPECIAL-USE", "LITERAL+", "STATUS=SIZE", "QUOTA"}


def test_imaplib_login_is_answered_with_capabilities_and_logged_in(node_a, user):
    client = imaplib.IMAP4("127.0.0.1", node_a.imap_port)
    try:
        assert client.login(user, "pass") == ("OK", [b"Logged in"])
        typ, caps = client.response("CAPABILITY")   # the response code of the OK
        assert POST_LOGIN_CAPABILITIES <= set(caps[0].decode().split())
        typ, data = client.select("INBOX")
        assert (typ, data) == ("OK", [b"0"])
    finally:
        client.logout()


def connect_from_another_address(node):
    """Dovecot delays logins from an address after failed ones (auth penalty, up to
    15 s): fail from an address of our own, not the 127.0.0.1 all other tests use."""
    return ImapConnection(node.imap_port, source="127.0.%d.%d" % (random.randrange(1, 255),
                                                                  random.randrange(2, 255)))


def test_login_with_wrong_password_fails_with_authenticationfailed(node_a, user):
    conn = connect_from_another_address(node_a)
    try:
        resp = conn.command("LOGIN", user, "wrong")
        assert resp.tagged == "NO [AUTHENTICATIONFAILED] Authentication failed."
    finally:
        conn.close()


def test_login_of_unknown_user_fails_like_a_wrong_password(node_a):
    conn = connect_from_another_address(node_a)
    try:
        resp = conn.command("LOGIN", "nosuchuser", "pass")
        assert resp.tagged == "NO [AUTHENTICATIONFAILED] Authentication failed."
    finally:
        conn.close()


def test_capability_after_login_lists_the_extensions_the_storage_must_support(imap):
    resp = imap.ok("CAPABILITY")
    caps = set(resp.lines("CAPABILITY")[0].split()[2:])
    assert POST_LOGIN_CAPABILITIES <= caps


def test_namespace_is_one_personal_namespace_with_slash_separator(imap):
    resp = imap.ok("NAMESPACE")
    assert resp.lines() == ['* NAMESPACE (("" "/")) NIL NIL']
    assert resp.text == "Namespace completed"


def test_new_user_sees_only_an_empty_inbox(imap):
    assert imap.ok('LIST "" *').lines() == ['* LIST (\\HasNoChildren) "/" INBOX']
    resp = imap.ok("STATUS INBOX (MESSAGES UIDNEXT UNSEEN)")
    assert resp.lines() == ["* STATUS INBOX (MESSAGES 0 UIDNEXT 1 UNSEEN 0)"]


def test_logout_says_bye_then_ok(imap):
    resp = imap.ok("LOGOUT")
    assert resp.lines() == ["* BYE Logging out"]
    assert resp.text == "Logout completed"
