"""mail_attachment_dir: dbox stores each attachment once, as a file in that directory; the
rbd storage keeps messages whole in RADOS and refuses the setting when the session
starts, naming it, rather than ignore it. The setting is the user's (a userdb field), so
the suite's nodes serve the test."""

import os

import pytest

from conftest import STORAGE
from daemons import wait_for
from imap_connection import ImapError
from messages import multipart

# Above mail_attachment_min_size (128k by default).
ATTACHMENT = b"".join(i.to_bytes(4, "big") for i in range(64 * 1024))
MSG = multipart(ATTACHMENT)
REFUSAL = ("Namespace '': rbd: mail_attachment_dir is not supported by the rbd storage "
           "(attachments stay inside the message in RADOS): remove the setting")


@pytest.fixture
def attachment_dir(nodes, user, work_dir):
    path = work_dir / ("attachments-" + user)
    path.mkdir()
    os.chown(path, 65534, 65534)
    for node in set(nodes):
        node.set_user_fields(user, mail_attachment_dir=str(path))
    return path


@pytest.mark.skipif(STORAGE != "rbd", reason="the rbd storage's refusal")
def test_rbd_refuses_mail_attachment_dir_at_session_start(nodes, node_a, connect, user,
                                                         attachment_dir):
    with pytest.raises((ImapError, OSError)):
        connect(node_a, user).ok("SELECT INBOX")
    def errors():
        log = (node_a.path / "dovecot.log").read_text(errors="replace").splitlines()
        return [line.split(": Error: ", 1)[1] for line in log
                if "imap(%s)" % user in line and ": Error: " in line]
    # Dovecot's log process writes the line after the client saw the disconnect.
    wait_for(errors, 5)
    assert errors() == [REFUSAL]
    # Without the setting the same user works, and nothing went to the directory.
    for node in set(nodes):
        node.set_user_fields(user, mail_attachment_dir=None)
    connect(node_a, user).append("INBOX", MSG)
    assert list(attachment_dir.iterdir()) == []


@pytest.mark.skipif(STORAGE != "mdbox", reason="dbox's single-instance store")
def test_mdbox_stores_an_attachment_once(node_a, connect, user, attachment_dir):
    conn = connect(node_a, user)
    conn.append("INBOX", MSG)
    conn.append("INBOX", MSG)
    conn.ok("EXAMINE INBOX")
    fetched = conn.fetch("1:2", "(BODY.PEEK[])")
    assert [fetched[uid]["BODY[]"] for uid in (1, 2)] == [MSG, MSG]
    files = [p for p in attachment_dir.rglob("*") if p.is_file()]
    assert files and len({p.stat().st_ino for p in files}) == 1
