"""QUOTA with the count backend (quota_vsizes): usage, limits, the standard refusal."""

import pytest

from imap_connection import Literal
from messages import numbered

OVER_QUOTA = "NO [OVERQUOTA] Quota exceeded (mailbox for user is full)"
MSG = numbered(1, size=4000)   # about 4 KiB: two fit into 10k, three do not


def kib(nbytes):
    """Dovecot reports STORAGE in KiB, rounded up."""
    return (nbytes + 1023) // 1024


def quota_lines(conn):
    return conn.ok("GETQUOTAROOT INBOX").lines()


@pytest.fixture
def quota_user(new_user):
    return new_user(quota_storage="10k")


@pytest.fixture
def limited(connect, node_a, quota_user):
    return connect(node_a, quota_user)


def test_getquotaroot_reports_root_usage_and_limit(limited):
    assert quota_lines(limited) == ['* QUOTAROOT INBOX "User quota"',
                                    '* QUOTA "User quota" (STORAGE 0 10)']
    assert limited.ok('GETQUOTA "User quota"').lines() == ['* QUOTA "User quota" (STORAGE 0 10)']


def test_usage_is_the_total_message_size_rounded_up_to_kib(limited):
    limited.ok("CREATE", "other")
    limited.append("INBOX", numbered(1, size=1500))
    limited.append("other", numbered(2, size=2500))
    total = len(numbered(1, size=1500)) + len(numbered(2, size=2500))
    assert quota_lines(limited)[1] == '* QUOTA "User quota" (STORAGE %d 10)' % kib(total)


def test_append_over_quota_is_refused_with_overquota(limited):
    limited.append("INBOX", MSG)
    limited.append("INBOX", MSG)
    assert limited.command("APPEND", "INBOX", Literal(MSG)).tagged == OVER_QUOTA
    assert limited.ok("STATUS INBOX (MESSAGES)").lines() == ["* STATUS INBOX (MESSAGES 2)"]
    assert quota_lines(limited)[1] == '* QUOTA "User quota" (STORAGE %d 10)' % kib(2 * len(MSG))


def test_multiappend_over_quota_stores_none_of_the_messages(limited):
    resp = limited.command("APPEND", "INBOX", Literal(MSG), Literal(MSG), Literal(MSG))
    assert resp.tagged == OVER_QUOTA
    assert limited.ok("STATUS INBOX (MESSAGES)").lines() == ["* STATUS INBOX (MESSAGES 0)"]


def test_copy_over_quota_is_refused(limited):
    limited.ok("CREATE", "copy")
    limited.append("INBOX", MSG)
    limited.append("INBOX", MSG)
    limited.ok("SELECT", "INBOX")
    assert limited.command("COPY 1 copy").tagged == OVER_QUOTA
    assert limited.ok("STATUS copy (MESSAGES)").lines() == ["* STATUS copy (MESSAGES 0)"]


def test_expunge_frees_quota_so_append_succeeds_again(limited):
    limited.append("INBOX", MSG)
    limited.append("INBOX", MSG)
    limited.ok("SELECT", "INBOX")
    limited.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    limited.ok("EXPUNGE")
    assert quota_lines(limited)[1] == '* QUOTA "User quota" (STORAGE %d 10)' % kib(len(MSG))
    assert limited.append("INBOX", MSG).status == "OK"


def test_move_within_the_account_is_allowed_at_the_limit(limited):
    limited.ok("CREATE", "moved")
    limited.append("INBOX", MSG)
    limited.append("INBOX", MSG)
    limited.ok("SELECT", "INBOX")
    assert limited.ok("MOVE 1 moved").status == "OK"
    assert quota_lines(limited)[1] == '* QUOTA "User quota" (STORAGE %d 10)' % kib(2 * len(MSG))


def test_user_without_a_quota_rule_has_no_limit(imap):
    resp = imap.ok("GETQUOTAROOT INBOX")
    assert (resp.untagged, resp.text) == ([], "No quota")


@pytest.mark.two_nodes
def test_both_nodes_report_the_same_usage(connect, node_a, node_b, quota_user):
    on_a = connect(node_a, quota_user)
    on_a.append("INBOX", MSG)
    on_b = connect(node_b, quota_user)
    assert quota_lines(on_b) == quota_lines(on_a) == [
        '* QUOTAROOT INBOX "User quota"',
        '* QUOTA "User quota" (STORAGE %d 10)' % kib(len(MSG))]
    on_b.append("INBOX", MSG)
    assert on_a.command("APPEND", "INBOX", Literal(MSG)).tagged == OVER_QUOTA
