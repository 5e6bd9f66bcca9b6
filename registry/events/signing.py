"""HMAC-SHA256 signatures of notification requests (documented in docs/events.md).

The signed message is the decimal Unix timestamp, a dot, and the exact body bytes;
the headers are ``Wharf-Timestamp: <seconds>`` and ``Wharf-Signature: sha256=<hex>``.
"""

from __future__ import annotations

import hashlib
import hmac
import time

TIMESTAMP_HEADER = "Wharf-Timestamp"
SIGNATURE_HEADER = "Wharf-Signature"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def sign(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The two headers a signed request carries."""
    timestamp = str(int(time.time() if now is None else now))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature(secret, timestamp, body)}


def verify(
    secret: str,
    timestamp: str,
    header: str,
    body: bytes,
    tolerance: float = 300,
    now: float | None = None,
) -> bool:
    """What a receiver checks: the signature matches and the timestamp is recent."""
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance and hmac.compare_digest(signature(secret, timestamp, body), header)
