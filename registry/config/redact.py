"""Settings as they may be shown (``wharf config``, the web pages' system page): every
credential hidden."""

from __future__ import annotations

from typing import Any

SECRET_KEYS = ("password", "secret", "secretkey", "accesskey", "authorization", "token")


def redact(value: Any) -> Any:
    """``value`` with every credential (passwords, secrets, keys, Authorization headers)
    replaced by ``***``, for printing."""
    if isinstance(value, dict):
        return {
            k: "***" if isinstance(k, str) and k.lower().endswith(SECRET_KEYS) and v else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value
