"""A message larger than the cluster's osd_max_object_size (lowered to 1 MiB by the cluster
fixture; the nodes use rbd_stripe_size = 256k): APPEND, full and partial FETCH."""

import base64
import hashlib

import pytest

from daemons import OSD_MAX_OBJECT_SIZE
from imap_connection import Literal
from messages import message

SIZE = 3 * 1024 * 1024 + 12345
STRIPE = 256 * 1024


def large_message(size=SIZE):
    """Deterministic, incompressible base64 lines, padded to exactly `size` bytes."""
    chunks = []
    total = 0
    block = hashlib.sha256(b"seed").digest()
    while total < size:
        block = hashlib.sha256(block).digest()
        line = base64.b64encode(block * 2)[:76] + b"\r\n"
        chunks.append(line)
        total += len(line)
    msg = message(subject="large", body=b"".join(chunks),
                  headers=("MIME-Version: 1.0", "Content-Type: text/plain"))
    return msg[:size - 2] + b"\r\n"


LARGE = large_message()
# (offset, length): start, stripe boundaries, the 1 MiB object-size boundary, the end
RANGES = [(0, 100), (STRIPE - 10, 20), (3 * STRIPE - 1, 2), (OSD_MAX_OBJECT_SIZE - 5, 10),
          (OSD_MAX_OBJECT_SIZE, STRIPE + 7), (SIZE - 50, 50), (SIZE - 10, 100)]


@pytest.fixture
def appended(imap):
    resp = imap.ok("APPEND", "INBOX", Literal(LARGE))
    assert resp.text.endswith(" 1] Append completed")
    return imap


@pytest.mark.rbd_only("checks the cluster's setting")
def test_the_cluster_limits_objects_to_less_than_the_message(cluster):
    out = cluster.ceph("config", "get", "osd", "osd_max_object_size")
    assert int(out.strip()) == OSD_MAX_OBJECT_SIZE < len(LARGE)


def test_large_message_is_returned_byte_equal_with_its_size(appended):
    appended.ok("EXAMINE", "INBOX")
    fetched = appended.fetch("1", "(RFC822.SIZE BODY.PEEK[])")[1]
    assert int(fetched["RFC822.SIZE"]) == SIZE
    assert fetched["BODY[]"] == LARGE


def test_partial_fetches_of_a_large_message_return_exact_ranges(appended, connect, node_a,
                                                                user):
    fresh = connect(node_a, user)  # a new session: nothing of the body in memory
    fresh.ok("EXAMINE", "INBOX")
    items = " ".join("BODY.PEEK[]<%d.%d>" % r for r in RANGES)
    fetched = fresh.fetch("1", "(%s)" % items)[1]
    for offset, length in RANGES:
        assert fetched["BODY[]<%d>" % offset] == LARGE[offset:offset + length], (offset, length)


def test_copy_of_a_large_message_has_the_same_text(appended):
    appended.ok("CREATE", "copy")
    appended.ok("SELECT", "INBOX")
    appended.ok("COPY 1 copy")
    appended.ok("EXAMINE", "copy")
    fetched = appended.fetch("1", "(BODY.PEEK[TEXT]<1000000.100000> RFC822.SIZE)")[1]
    text = LARGE.split(b"\r\n\r\n", 1)[1]
    assert fetched["BODY[TEXT]<1000000>"] == text[1000000:1100000]
    assert int(fetched["RFC822.SIZE"]) == SIZE


@pytest.mark.two_nodes
def test_large_message_appended_on_a_is_byte_equal_on_b(appended, connect, node_b, user):
    on_b = connect(node_b, user)
    on_b.ok("EXAMINE", "INBOX")
    fetched = on_b.fetch("1", "(BODY.PEEK[] BODY.PEEK[]<%d.%d>)" % (SIZE - 300000, 300000))[1]
    assert fetched["BODY[]"] == LARGE
    assert fetched["BODY[]<%d>" % (SIZE - 300000)] == LARGE[-300000:]
