"""Signs a webhook payload with the official Stripe library's own signing function.

Usage: sign.py <secret> <unix timestamp>  (payload on stdin); prints the Stripe-Signature header.
"""
import sys

from stripe import WebhookSignature

payload = sys.stdin.buffer.read().decode("utf-8")
print(WebhookSignature.generate_signature_header(payload, sys.argv[1], int(sys.argv[2])), end="")
