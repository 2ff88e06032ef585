"""zlib and mail_crypt: the storage keeps what they write (compressed, encrypted), and every
node reads the message back as it was saved, through Dovecot's stream hooks: byte-exact
BODY[], partial FETCH, RFC822.SIZE the decoded size, SEARCH in the text.

Nodes Z1 and Z2 load both plugins; mail_crypt has global keys (an EC pair made with
openssl, as Dovecot's documentation says) and saves nothing encrypted unless a user's
mail_crypt_save_version says so; zlib saves nothing compressed unless a user's zlib_save
says so. Each case is one user with its own userdb fields. A message is saved on Z1 and
read on Z2 and Z1. On mdbox the two nodes share one mail root (mdbox's own two-process
case). The stored form is checked in the storage itself (RADOS body objects, mdbox
files): it holds the format's magic bytes once per body, so a plugin that wrote nothing
could not pass."""

import base64
import hashlib
import subprocess

import pytest

from conftest import STORAGE, new_user_name
from daemons import STRIPE_SIZE, Node
from imap_connection import status_items
from messages import message

PLUGINS = ["zlib", "mail_crypt"]
# The stored form's first bytes (Dovecot's lz4 has a header of its own).
GZ, BZ2, LZ4, ZSTD = b"\x1f\x8b", b"BZh", b"Dovecot-LZ4\r\x2a\x9b\xc5", b"\x28\xb5\x2f\xfd"
CRYPTED = b"CRYPTED\x03\x07"


def text_message(subject, size, word, seed):
    """A message of exactly `size` bytes of incompressible base64 lines with `word` on a
    line of its own, nine tenths in."""
    lines, total, block = [], 0, hashlib.sha256(seed.encode()).digest()
    while total < size:
        block = hashlib.sha256(block).digest()
        line = base64.b64encode(block * 2)[:76] + b"\r\n"
        lines.append(line)
        total += len(line)
    lines.insert(len(lines) * 9 // 10, word.encode() + b"\r\n")
    msg = message(subject=subject, body=b"".join(lines))
    return msg[:size - 2] + b"\r\n"


RANGES = [(0, 40), (1000, 500), (300 * 1024 - 30, 100), (5 * 1024 * 1024 + 7, 3000)]

# Inline in the index; split over several objects; above what a transaction keeps in
# memory even when compressed (4 MiB), so it is streamed to RADOS and read by range.
SMALL = message(subject="small", body="A zebra crossed.\r\n")
MEDIUM = text_message("medium", 300 * 1024, "quokka", "medium")
LARGE = text_message("large", 6 * 1024 * 1024, "wombat", "large")
WORDS = {"zebra": SMALL, "quokka": MEDIUM, "wombat": LARGE}

# The case's userdb fields, what its stored bodies start with, and its messages: the
# large one (seconds per read) where it is streamed through the plugin's range reads.
CASES = {
    "gz": ({"zlib_save": "gz"}, GZ, [SMALL, MEDIUM, LARGE]),
    "bz2": ({"zlib_save": "bz2"}, BZ2, [SMALL, MEDIUM]),
    "lz4": ({"zlib_save": "lz4"}, LZ4, [SMALL, MEDIUM]),
    "zstd": ({"zlib_save": "zstd"}, ZSTD, [SMALL, MEDIUM]),
    "mail_crypt": ({"mail_crypt_save_version": "2"}, CRYPTED, [SMALL, MEDIUM, LARGE]),
    # encryption is the outer layer
    "zstd+mail_crypt": ({"zlib_save": "zstd", "mail_crypt_save_version": "2"}, CRYPTED,
                        [SMALL, MEDIUM]),
}


@pytest.fixture(scope="module")
def plugin_nodes(work_dir, cluster):
    keys = work_dir / "mail-crypt-keys"
    keys.mkdir()
    key = subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey"],
                         check=True, stdout=subprocess.PIPE).stdout
    subprocess.run(["openssl", "pkey", "-out", keys / "private.pem"], input=key, check=True)
    subprocess.run(["openssl", "pkey", "-in", keys / "private.pem", "-pubout", "-out",
                    keys / "public.pem"], check=True)
    # The cluster's objects are smaller than the plugin's default stripe.
    options = dict(mail_plugin=PLUGINS, stripe_size=STRIPE_SIZE, plugin_setting=[
        "mail_crypt_global_private_key=<%s" % (keys / "private.pem"),
        "mail_crypt_global_public_key=<%s" % (keys / "public.pem"),
        "mail_crypt_save_version=0"])
    if STORAGE == "mdbox":
        options["mail_root"] = work_dir / "mail-z"
    started = []
    try:
        for name in ("Z1", "Z2"):
            started.append(Node.start(name, work_dir / ("node-" + name.lower()), STORAGE,
                                      cluster, **options))
        yield started
    finally:
        for node in started:
            node.stop()


def check_reads_back(conn, expected, mailbox="INBOX"):
    """expected: {uid: message}. Every read a client makes returns the saved bytes, and
    SEARCH TEXT finds each of them by its word."""
    conn.ok("EXAMINE", mailbox)
    uids = ",".join(map(str, expected))
    fetched = conn.fetch(uids, "(RFC822.SIZE BODY.PEEK[] BODY.PEEK[TEXT])")
    assert sorted(fetched) == sorted(expected)
    for uid, msg in expected.items():
        assert int(fetched[uid]["RFC822.SIZE"]) == len(msg), uid
        assert fetched[uid]["BODY[]"] == msg, uid
        assert fetched[uid]["BODY[TEXT]"] == msg[msg.index(b"\r\n\r\n") + 4:], uid
    for uid, msg in expected.items():
        for offset, length in [r for r in RANGES if r[0] < len(msg)]:
            got = conn.fetch(str(uid), "(BODY.PEEK[]<%d.%d>)" % (offset, length))[uid]
            assert got["BODY[]<%d>" % offset] == msg[offset:offset + length], (uid, offset)
    for word, msg in WORDS.items():
        uids = [str(uid) for uid, m in expected.items() if m == msg]
        if uids:
            (found,) = conn.ok("UID SEARCH TEXT", word).lines("SEARCH")
            assert found.split()[2:] == uids, word


def stored_bytes(cluster, work_dir, user):
    """Everything the storage keeps of the user's message bodies: on rbd the body
    objects (bodies above the inline size), on mdbox the storage files."""
    if STORAGE == "mdbox":
        return b"".join(p.read_bytes()
                        for p in (work_dir / "mail-z" / user / "storage").glob("m.*"))
    rados = cluster.rados_args("mail", user)
    return b"".join(subprocess.run(rados + ["get", name, "-"], check=True,
                                   stdout=subprocess.PIPE).stdout
                    for name in cluster.objects("mail", user) if name.startswith("m."))


@pytest.mark.parametrize("case", list(CASES))
def test_mail_reads_back_as_saved_on_both_nodes(case, plugin_nodes, connect, cluster,
                                                 work_dir):
    fields, magic, messages = CASES[case]
    saver, reader = plugin_nodes
    user = new_user_name("z")
    for node in plugin_nodes:
        node.add_user(user)
        node.set_user_fields(user, **fields)
    on_saver = connect(saver, user)
    for msg in messages:
        on_saver.append("INBOX", msg)
    saved = dict(enumerate(messages, 1))
    on_reader = connect(reader, user)
    check_reads_back(on_reader, saved)
    check_reads_back(on_saver, saved)
    # SIZE is the decoded sizes' sum, as RFC822.SIZE gives them (rbd: the index state's).
    assert status_items(connect(reader, user).ok("STATUS INBOX (MESSAGES SIZE)")) == {
        "messages": len(messages), "size": sum(map(len, messages))}
    # A copy shares the stored body.
    on_reader.ok("CREATE Copies")
    on_reader.ok("UID COPY 1:2 Copies")
    check_reads_back(on_saver, {1: SMALL, 2: MEDIUM}, "Copies")
    # What is stored is what the plugin made of the messages above the inline size.
    assert stored_bytes(cluster, work_dir, user).count(magic) >= len(messages) - 1

    # Mail saved while the plugin was on stays readable once it saves no more.
    for node in plugin_nodes:
        node.set_user_fields(user, **{name: None for name in fields})
    plain = message(subject="plain", body="Nothing to decode.\r\n")
    connect(reader, user).append("INBOX", plain)
    check_reads_back(connect(saver, user), {1: SMALL, 2: MEDIUM, len(saved) + 1: plain})
