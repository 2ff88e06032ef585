"""The install test's IMAP part (run by tests/install/run with Debian's python3).

Logs in to the installed Dovecot as a UNIX user (PAM), appends a small message (stored
inline in the mailbox index) and a large one (a body object of its own), then logs in
again and reads both back. The password comes from RBD_INSTALL_PASSWORD, not argv.
"""

import argparse
import imaplib
import os
import sys

# 64 KiB: above rbd_inline_max (8k), so the body gets an object of its own.
LARGE_BODY = ("x" * 62 + "\r\n") * 1024


def message(subject, body):
    return ("From: install-test@example.org\r\nSubject: %s\r\n\r\n%s" % (subject, body)).encode()


def login(port, user, password):
    imap = imaplib.IMAP4("127.0.0.1", port, timeout=30)
    imap.login(user, password)
    return imap


def check(condition, what):
    if not condition:
        sys.exit("imap_session: FAILED: " + what)
    print("imap_session: " + what)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    args = parser.parse_args()
    password = os.environ["RBD_INSTALL_PASSWORD"]
    sent = [message("small", "inline body\r\n"), message("large", LARGE_BODY)]

    refused = False
    try:
        login(args.port, args.user, password + "-wrong").logout()
    except imaplib.IMAP4.error:
        refused = True
    check(refused, "a wrong password is refused")

    imap = login(args.port, args.user, password)
    check(True, "LOGIN with the UNIX password")
    for msg in sent:
        typ, data = imap.append("INBOX", None, None, msg)
        check(typ == "OK", "APPEND of %d bytes: %s" % (len(msg), data[0].decode()))
    imap.logout()

    imap = login(args.port, args.user, password)
    typ, data = imap.select("INBOX")
    check(typ == "OK" and int(data[0]) == len(sent),
          "SELECT INBOX in a new session: %s messages" % data[0].decode())
    typ, data = imap.fetch("1:*", "(BODY.PEEK[])")
    got = [part[1] for part in data if isinstance(part, tuple)]
    check(typ == "OK" and got == sent, "FETCH BODY[] returns what was appended")
    imap.logout()


if __name__ == "__main__":
    main()
