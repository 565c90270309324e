"""Webhook signatures as docs/protocol.md describes them, shared by the emulator and receivers.

The signature is HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{raw body}`, keyed
with the account's secret minus its `whsec_` prefix (used as text, not base64-decoded),
sent as `webhook-signature: v3,<hex>`.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_VERSION = "v3"


def signing_key(secret: str) -> bytes:
    return secret.removeprefix("whsec_").encode()


def signature(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    message = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), message, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION},{digest}"


def signature_matches(
    secret: str, webhook_id: str, timestamp: str, body: bytes, header: str
) -> bool:
    """Constant-time check of a `webhook-signature` header (several may be space-separated).
    Compared as bytes: a header with characters beyond ASCII is a wrong signature, where
    `compare_digest` on text raises `TypeError`."""
    expected = signature(secret, webhook_id, timestamp, body).encode()
    return any(
        hmac.compare_digest(expected, candidate.encode("utf-8", "surrogateescape"))
        for candidate in header.split()
    )
