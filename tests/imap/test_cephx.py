"""The README's cephx key is what the whole suite runs with, and it can do
nothing outside the mail pools. A key, keyring or setting that cannot work is
reported at the first use, in a log line naming the setting, pool or keyring,
and the client gets a NO, never a late or misleading failure.

scripts/ceph-dev-cluster gives client.dovecot its caps; running the README's
`ceph auth get-or-create` line against the same cluster succeeds only if the
caps are identical (Ceph refuses a get-or-create whose caps differ), so the
documented line and the tested key cannot drift apart.
"""

import contextlib
import re
import shlex
import subprocess
import uuid
from pathlib import Path

import pytest

from daemons import Node, wait_for

pytestmark = pytest.mark.rbd_only("checks the cluster's cephx key")

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_auth_line():
    lines = [l.strip() for l in README.read_text().splitlines()
             if l.strip().startswith("ceph auth get-or-create client.dovecot ")]
    assert len(lines) == 1, lines
    return shlex.split(lines[0])


def as_dovecot(cluster, *cmd):
    """A command run with client.dovecot's key: (exit status, output)."""
    proc = subprocess.run(list(cmd) + ["-c", cluster.env["RBD_TEST_CEPH_CONF"], "-n",
                                       "client.dovecot", "--keyring",
                                       cluster.env["RBD_TEST_KEYRING"]],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc.returncode, proc.stdout


def test_the_readme_key_is_the_key_every_test_uses(cluster):
    args = readme_auth_line()
    assert args[:4] == ["ceph", "auth", "get-or-create", "client.dovecot"]
    cluster.ceph(*args[1:])
    caps = cluster.ceph("auth", "get", "client.dovecot")
    assert 'caps mon = "profile simple-rados-client"' in caps
    assert 'caps osd = "allow rw pool=mail, allow rwx pool=mail-index"' in caps


def test_the_key_cannot_write_outside_the_mail_pools(cluster, tmp_path):
    cluster.ceph("osd", "pool", "create", "outside", "8")
    payload = tmp_path / "payload"
    payload.write_text("x")
    status, out = as_dovecot(cluster, "rados", "-p", "outside", "put", "intruder", str(payload))
    assert status != 0 and re.search(r"Operation not permitted|\(1\)", out), out
    assert "intruder" not in cluster.ceph("osd", "pool", "stats", "outside") and \
        cluster.rados("outside", "", "ls").split() == []
    status, out = as_dovecot(cluster, "ceph", "osd", "pool", "create", "mine", "8")
    assert status != 0 and "access denied" in out.lower(), out
    status, out = as_dovecot(cluster, "ceph", "auth", "ls")
    assert status != 0 and "access denied" in out.lower(), out
    # ...while the mail pools work with it.
    status, out = as_dovecot(cluster, "rados", "-p", "mail", "-N", "cephx-test", "put", "ok",
                             str(payload))
    assert status == 0, out
    cluster.rados("mail", "cephx-test", "rm", "ok")


# ---- operator errors: a user whose settings (userdb fields) are wrong ----------------------

def user_with_settings(nodes, new_user, **settings):
    """A fresh user whose userdb carries these plugin settings (rbd_pool="x" etc.) on every
    node; written before the user's first login, so auth reads them at once."""
    user = new_user()
    for node in set(nodes):
        path = node.path / "users" / user
        fields = path.read_text().rstrip("\n").split(":", 7)
        fields[7] = " ".join([f for f in fields[7].split(" ") if f] +
                             ["userdb_%s=%s" % item for item in settings.items()])
        path.write_text(":".join(fields) + "\n")
    return user


def ceph_conf_with_key(cluster, work_dir, caps=None, keyring_text=None):
    """A ceph.conf for a new cephx user (its name) whose keyring holds a key with these
    OSD caps, or the given text ({name}: the user's name): (conf path, cephx user name)."""
    name = "t" + uuid.uuid4().hex[:10]
    keyring = work_dir / ("%s.keyring" % name)
    if keyring_text is None:
        cluster.ceph("auth", "get-or-create", "client." + name,
                     "mon", "profile simple-rados-client", "osd", caps, "-o", str(keyring))
    else:
        keyring.write_text(keyring_text.format(name=name))
    keyring.chmod(0o644)
    conf = work_dir / ("%s.conf" % name)
    base = Path(cluster.env["RBD_TEST_CEPH_CONF"]).read_text()
    conf.write_text(base + "\n[client.%s]\nkeyring = %s\n" % (name, keyring))
    conf.chmod(0o644)
    return str(conf), name


@contextlib.contextmanager
def node_with_key(cluster, work_dir, conf, name):
    """A node of its own whose rbd service connects with this ceph.conf and cephx user:
    they are the service's own settings (plugin { }), which no user's can change
    (doc/service.md). Yields (node, a user of it)."""
    with Node.running("K", work_dir / ("node-" + name), "rbd", cluster,
                      plugin_setting=["rbd_ceph_conf=" + conf, "rbd_ceph_user=" + name]) as node:
        node.add_user("u" + name)
        yield node, "u" + name


def log_lines(node, user):
    return [l for l in (node.path / "dovecot.log").read_text(errors="replace").splitlines()
            if "(%s)" % user in l]


def assert_logged(node, user, *words):
    """A log line of the user's names every word. Dovecot's log process writes it a moment
    after the client has its answer."""
    found = wait_for(lambda: [l for l in log_lines(node, user) if all(w in l for w in words)], 5)
    assert found, "\n".join(log_lines(node, user))
    return found


def select_fails_naming(connect, node, user, *words):
    """SELECT INBOX gets a clean NO and a log line of the user's names every word."""
    resp = connect(node, user).command("SELECT", "INBOX")
    assert resp.status == "NO", resp.tagged
    assert_logged(node, user, *words)
    return resp


def test_a_key_without_caps_on_the_body_pool_fails_at_once_naming_pool_and_setting(
        cluster, connect, work_dir):
    conf, name = ceph_conf_with_key(cluster, work_dir, caps="allow rwx pool=mail-index")
    with node_with_key(cluster, work_dir, conf, name) as (node, user):
        # Before the fix only the first message too large to inline failed.
        resp = select_fails_naming(connect, node, user, "rbd_pool", "pool 'mail'",
                                   "client." + name, "Operation not permitted")
        assert resp.text.startswith("[UNAVAILABLE]"), resp.tagged


def test_a_key_without_caps_on_the_index_pool_fails_naming_pool_and_setting(
        cluster, connect, work_dir):
    conf, name = ceph_conf_with_key(cluster, work_dir, caps="allow rw pool=mail")
    with node_with_key(cluster, work_dir, conf, name) as (node, user):
        resp = select_fails_naming(connect, node, user, "rbd_index_pool", "pool 'mail-index'",
                                   "client." + name)
        assert resp.text.startswith("[UNAVAILABLE]"), resp.tagged


def test_a_malformed_key_names_the_keyring(cluster, connect, work_dir):
    conf, name = ceph_conf_with_key(cluster, work_dir,
                                    keyring_text="[client.{name}]\n\tkey = not base64!\n")
    keyring = str(work_dir / ("%s.keyring" % name))
    with node_with_key(cluster, work_dir, conf, name) as (node, user):
        select_fails_naming(connect, node, user, "keyring " + keyring, "cannot be decoded")


def test_a_namespace_rados_cannot_hold_is_refused_naming_the_setting(nodes, node_a, new_user,
                                                                     connect):
    user = user_with_settings(nodes, new_user, rbd_namespace="n" * 300)
    select_fails_naming(connect, node_a, user, "rbd_namespace", "300 bytes", "at most 256")
    assert not [l for l in log_lines(node_a, user) if "File name too long" in l]


def test_an_unknown_rbd_setting_is_warned_about_naming_the_closest_known_one(
        nodes, node_a, new_user, connect):
    user = user_with_settings(nodes, new_user, rbd_inline_maxx="1")
    connect(node_a, user).select("INBOX")
    assert_logged(node_a, user, "Warning", "unknown setting rbd_inline_maxx",
                  "did you mean rbd_inline_max?")
