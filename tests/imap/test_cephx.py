"""The README's cephx key is what the whole suite runs with, and it can do
nothing outside the mail pools.

scripts/ceph-dev-cluster gives client.dovecot its caps; running the README's
`ceph auth get-or-create` line against the same cluster succeeds only if the
caps are identical (Ceph refuses a get-or-create whose caps differ), so the
documented line and the tested key cannot drift apart.
"""

import re
import shlex
import subprocess
from pathlib import Path

import pytest

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
