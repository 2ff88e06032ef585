"""Test messages, built as exact bytes (CRLF line ends, as IMAP stores and returns them)."""

import base64


def message(subject="hello", body="Hello there.\r\n", sender="Alice <alice@example.org>",
            to="Bob <bob@example.org>", date="Mon, 1 Jan 2024 10:00:00 +0000",
            message_id=None, headers=()):
    """A single-part text/plain message. body may be str or bytes (8-bit allowed)."""
    lines = ["From: " + sender, "To: " + to, "Subject: " + subject, "Date: " + date]
    if message_id:
        lines.append("Message-ID: " + message_id)
    lines += list(headers)
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
    return head + (body if isinstance(body, bytes) else body.encode("utf-8"))


def multipart(attachment, subject="with attachment", text="See the attachment.\r\n",
              filename="data.bin", boundary="b1"):
    """multipart/mixed: a text/plain part, then `attachment` (bytes) base64-encoded as
    application/octet-stream."""
    encoded = base64.encodebytes(attachment).replace(b"\n", b"\r\n")
    return (
        b"From: Alice <alice@example.org>\r\n"
        b"To: Bob <bob@example.org>\r\n"
        b"Subject: " + subject.encode() + b"\r\n"
        b"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=\"" + boundary.encode() + b"\"\r\n"
        b"\r\n"
        b"--" + boundary.encode() + b"\r\n"
        b"Content-Type: text/plain; charset=us-ascii\r\n"
        b"\r\n" + text.encode() + b"\r\n"
        b"--" + boundary.encode() + b"\r\n"
        b"Content-Type: application/octet-stream; name=\"" + filename.encode() + b"\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"\r\n" + encoded +
        b"--" + boundary.encode() + b"--\r\n")


def numbered(n, size=0):
    """Message number n: Subject 'msg <n>', Message-ID <n@test>, body padded to at
    least `size` bytes."""
    body = "Message number %d.\r\n" % n
    if size > len(body):
        line = "x" * 70 + "\r\n"
        body += line * ((size - len(body)) // len(line) + 1)
    return message(subject="msg %d" % n, message_id="<%d@test>" % n, body=body)
