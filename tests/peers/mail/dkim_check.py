"""Verifies the DKIM signature of a message with dkimpy, the DNS lookup answered with the record
the platform publishes (GET /admin/v1/email/dkim), and prints the signed header names.
Exit status 0: the signature verifies; 1: it does not.

usage: dkim_check.py <message.eml> <txt name> <txt value>
"""
import sys

import email

import dkim
from dkim.util import parse_tag_value


def main():
    path, name, value = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(path, "rb") as f:
        message = f.read()

    def dns(qname, timeout=5):
        if qname.decode().rstrip(".") == name:
            return value.encode()
        return None

    d = dkim.DKIM(message)
    ok = d.verify(dnsfunc=dns)
    sig = email.message_from_bytes(message)["DKIM-Signature"] or ""
    tags = parse_tag_value(sig.encode()) if sig else {}
    signed = b"".join(tags.get(b"h", b"").split()).decode()
    print(("verified" if ok else "failed") + " h=" + signed)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
