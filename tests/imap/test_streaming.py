"""Messages far larger than the memory a session may use (issue 10): APPEND and LMTP
stream bodies with bounded memory, a FETCH of a whole large body streams it, partial FETCH,
BODY[section] and BINARY read by range, a message over the size limit is refused before
its data is read, and a save that fails half way leaves nothing behind. The nodes use
rbd_stripe_size = 256k, so every body here has many chunks."""

import base64
import os
import signal
import smtplib
import socket

import pytest

from daemons import wait_for
from messages import message, multipart

MiB = 1024 * 1024
HUGE = 160 * MiB
# What one session may grow by while it saves or reads HUGE (a body held whole grew it by
# more than HUGE): a small constant (the "few MiB", plus Dovecot's own buffers),
# never a fraction of the message.
MAX_GROWTH = 64 * MiB
STRIPE = 256 * 1024


def numbered_body(size):
    """`size` bytes of 100-byte lines, each starting with its line number: a range read
    from the wrong place or a chunk out of order cannot pass for the right bytes."""
    lines = size // 100
    filler = b"." * 87 + b"\r\n"
    body = b"".join(b"%011d" % i + filler for i in range(lines))
    return body + b"x" * (size - len(body) - 2) + b"\r\n" if size > len(body) else body


def huge_message(size):
    head = message(subject="huge", body=b"")
    return head + numbered_body(size - len(head))


def imap_pid(node, user):
    """The pid of the user's only imap process (doveadm who)."""
    out = node.doveadm_ok("who", "-1", user)
    pids = [line.split()[2] for line in out.splitlines()[1:] if line.split()[1:2] == ["imap"]]
    assert len(pids) == 1, out
    return int(pids[0])


def status_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no %s for %d" % (field, pid))


@pytest.mark.two_nodes
def test_huge_append_and_fetch_keep_the_session_small_and_bytes_exact(node_a, node_b, user,
                                                                      connect):
    msg = huge_message(HUGE)
    on_a = connect(node_a, user)
    on_a.ok("SELECT", "INBOX")
    pid = imap_pid(node_a, user)
    before = status_kib(pid, "VmHWM")
    assert on_a.append("INBOX", msg).text.endswith(" 1] Append completed")
    grown = status_kib(pid, "VmHWM") - before
    assert grown < MAX_GROWTH, "APPEND of %d MiB grew the imap process by %d MiB" % (
        HUGE // MiB, grown // MiB)

    on_b = connect(node_b, user)
    on_b.ok("EXAMINE", "INBOX")
    pid_b = imap_pid(node_b, user)
    ranges = [(0, 20), (STRIPE - 7, 20), (HUGE // 2, 20), (HUGE - 20, 20), (HUGE - 5, 100)]
    items = " ".join("BODY.PEEK[]<%d.%d>" % r for r in ranges)
    fetched = on_b.fetch("1", "(RFC822.SIZE %s)" % items)[1]
    assert int(fetched["RFC822.SIZE"]) == HUGE
    for offset, length in ranges:
        assert fetched["BODY[]<%d>" % offset] == msg[offset:offset + length], offset
    before = status_kib(pid_b, "VmHWM")
    assert on_b.fetch("1", "BODY.PEEK[]")[1]["BODY[]"] == msg
    grown = status_kib(pid_b, "VmHWM") - before
    assert grown < MAX_GROWTH, "FETCH of %d MiB grew the imap process by %d MiB" % (
        HUGE // MiB, grown // MiB)


@pytest.mark.two_nodes
def test_sections_and_binary_of_a_large_attachment_are_exact_on_the_other_node(
        node_a, node_b, user, connect):
    attachment = numbered_body(6 * MiB + 333)
    msg = multipart(attachment)
    connect(node_a, user).append("INBOX", msg)
    on_b = connect(node_b, user)
    on_b.ok("EXAMINE", "INBOX")
    encoded = base64.encodebytes(attachment).replace(b"\n", b"\r\n")
    fetched = on_b.fetch("1", "(BINARY.SIZE[2] BINARY.PEEK[2]<%d.50> BODY.PEEK[2]<%d.30> "
                              "BODY.PEEK[1])" % (4 * MiB, 3 * MiB))[1]
    assert int(fetched["BINARY.SIZE[2]"]) == len(attachment)
    assert fetched["BINARY[2]<%d>" % (4 * MiB)] == attachment[4 * MiB:4 * MiB + 50]
    assert fetched["BODY[2]<%d>" % (3 * MiB)] == encoded[3 * MiB:3 * MiB + 30]
    assert fetched["BODY[1]"] == b"See the attachment.\r\n"
    again = on_b.fetch("1", "(BINARY.SIZE[2] BINARY.PEEK[2] BODY.PEEK[TEXT]<0.10>)")[1]
    assert int(again["BINARY.SIZE[2]"]) == len(attachment)
    assert again["BINARY[2]"] == attachment


@pytest.mark.two_nodes
def test_large_lmtp_delivery_is_exact_on_the_other_node(node_a, node_b, user, connect):
    msg = huge_message(9 * MiB + 17)
    with smtplib.LMTP("127.0.0.1", node_a.lmtp_port, timeout=60) as lmtp:
        lmtp.ehlo()
        assert lmtp.mail("sender@example.org")[0] == 250
        assert lmtp.rcpt("%s@example.org" % user)[0] == 250
        assert lmtp.data(msg)[0] == 250
    on_b = connect(node_b, user)
    on_b.ok("EXAMINE", "INBOX")
    body = on_b.fetch("1", "BODY.PEEK[TEXT]")[1]["BODY[TEXT]"]
    assert body == msg.split(b"\r\n\r\n", 1)[1]


@pytest.mark.rbd_only("mdbox has no size limit of its own")
def test_a_message_over_the_limit_is_refused_before_its_literal_is_read(node_a, user,
                                                                        connect):
    imap = connect(node_a, user)
    imap.send("a1 APPEND INBOX {3000000000}\r\n")
    resp = imap.read_response()
    assert not resp.startswith(b"+"), "the server asked for the literal"
    assert resp.startswith(b"a1 NO [LIMIT] Message is larger than the maximum of "
                           b"2147483648 bytes"), resp
    imap.ok("NOOP")
    assert imap.ok("STATUS", "INBOX", "(MESSAGES)").lines("STATUS")[0].endswith(
        "(MESSAGES 0)")


def append_half(node, user, size, sent):
    """Starts an APPEND of `size` bytes on a new connection and sends `sent` of them."""
    conn = node.login(user)
    conn.send("a1 APPEND INBOX {%d}\r\n" % size)
    assert conn.read_response().startswith(b"+")
    conn.send(huge_message(size)[:sent])
    return conn


def user_mail_objects(cluster, user):
    return [o for o in cluster.objects("mail", user) if o.startswith("m.")]


@pytest.mark.rbd_only("reads the cluster's objects")
def test_an_append_cut_off_half_way_leaves_no_chunks(node_a, user, cluster):
    conn = append_half(node_a, user, 20 * MiB, 12 * MiB)
    pid = imap_pid(node_a, user)
    assert wait_for(lambda: user_mail_objects(cluster, user), 30)
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    assert wait_for(lambda: not os.path.exists("/proc/%d" % pid), 30)
    assert user_mail_objects(cluster, user) == []


@pytest.mark.rbd_only("kills an imap process and reads the cluster's objects")
def test_chunks_of_a_process_killed_mid_append_are_removed_by_the_service(node_a, user,
                                                                           cluster, connect):
    # The imap process dies; the node's rbd service, which writes the chunks for it, sees
    # its connection end and frees the body writer, which removes what it wrote.
    conn = append_half(node_a, user, 20 * MiB, 12 * MiB)
    pid = imap_pid(node_a, user)
    assert wait_for(lambda: len(user_mail_objects(cluster, user)) >= 8, 30)
    os.kill(pid, signal.SIGKILL)
    conn.close()
    assert wait_for(lambda: user_mail_objects(cluster, user) == [], 30), \
        user_mail_objects(cluster, user)
    imap = connect(node_a, user)
    assert imap.ok("STATUS", "INBOX", "(MESSAGES)").lines("STATUS")[0].endswith(
        "(MESSAGES 0)")


def test_chunks_of_a_service_killed_mid_append_are_reclaimed_by_gc(node_a, user, cluster,
                                                                   connect):
    # The service itself dies while it writes the chunks: nothing removes them but gc.
    conn = append_half(node_a, user, 20 * MiB, 12 * MiB)
    assert wait_for(lambda: len(user_mail_objects(cluster, user)) >= 8, 30)
    os.kill(node_a.service_pid(), signal.SIGKILL)
    conn.close()
    left = user_mail_objects(cluster, user)
    assert left and all(o.count(".") == 2 for o in left), "chunks only, no head: %s" % left
    out = node_a.doveadm_ok("-o", "plugin/rbd_gc_grace=0", "rbd", "gc", "-u", user)
    assert user_mail_objects(cluster, user) == [], out
    imap = connect(node_a, user)
    assert imap.ok("STATUS", "INBOX", "(MESSAGES)").lines("STATUS")[0].endswith(
        "(MESSAGES 0)")
