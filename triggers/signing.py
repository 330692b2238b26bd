"""HMAC-SHA256 signatures on outgoing webhooks (and how receivers check them).

The signed message is ``f"{timestamp}.".encode() + body``: binding the
timestamp stops a captured request from being replayed later. Headers:

- ``X-Driftd-Timestamp``: Unix seconds, as an integer string;
- ``X-Driftd-Signature``: ``v1=`` and the hex HMAC-SHA256 of the message;
- ``Idempotency-Key``: the same for every attempt of one decision.

A receiver verifies with the shared key (and drops a key it has seen)::

    >>> body = b'{"rule":"retrain"}'
    >>> sig = sign(b"k3y", 1767225600, body)
    >>> sig
    'v1=ea1d687c8653707e2d7699407f85c9dd8854e1362a5b0372768296941a27c0cd'
    >>> verify(b"k3y", "1767225600", body, sig, now=1767225660)
    True
    >>> verify(b"k3y", "1767225600", body + b" ", sig, now=1767225660)
    False
    >>> verify(b"k3y", "1767225600", body, sig, now=1767229999)  # too old
    False
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Driftd-Signature"
TIMESTAMP_HEADER = "X-Driftd-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def sign(key: bytes, timestamp: int, body: bytes) -> str:
    mac = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(
    key: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    tolerance_seconds: float = 300.0,
    now: float | None = None,
) -> bool:
    """Check a request's signature and that its timestamp is recent."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(key, ts, body), signature)
