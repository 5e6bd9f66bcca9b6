"""Local users' passwords: the rules for a new one, and bcrypt (off the event loop).

bcrypt reads at most 72 bytes of a password and ignores the rest, so a longer password
is refused rather than silently cut (two passwords sharing their first 72 bytes would
both work); so is a NUL byte, which bcrypt cannot hash. A password is never kept or
logged in clear: only its hash (``$2b$12$...``, salt and cost inside) is stored.
"""

from __future__ import annotations

import asyncio

import bcrypt

COST = 12  # log2 rounds: ~0.2 s per check on a current core
MAX_BYTES = 72  # what bcrypt reads of a password
DUMMY_PASSWORD = "wharf-no-such-local-user"  # hashed for names that are no local user


def password_problem(password: object, min_length: int) -> str | None:
    """What is wrong with ``password`` as a new password (None: nothing)."""
    if not isinstance(password, str):
        return "must be a string"
    if len(password) < min_length:
        return f"must be at least {min_length} characters"
    if len(password.encode()) > MAX_BYTES:
        return f"must be at most {MAX_BYTES} bytes in UTF-8 (bcrypt ignores the rest)"
    if "\0" in password:
        return "must not contain a NUL character"
    return None


def hash_password(password: str, cost: int = COST) -> str:
    """A bcrypt hash of ``password`` (blocking: call from a thread)."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode()


def verify_password(password: str, hashed: str) -> bool:
    """Whether ``password`` matches ``hashed`` (blocking; constant time in bcrypt)."""
    raw = password.encode()
    if len(raw) > MAX_BYTES or b"\0" in raw:
        return False  # never accepted as a new password: cannot be anyone's
    try:
        return bcrypt.checkpw(raw, hashed.encode())
    except ValueError:  # a malformed hash
        return False


async def hash_off_loop(password: str, cost: int = COST) -> str:
    """:func:`hash_password` in a worker thread."""
    return await asyncio.to_thread(hash_password, password, cost)


async def verify_off_loop(password: str, hashed: str) -> bool:
    """:func:`verify_password` in a worker thread."""
    return await asyncio.to_thread(verify_password, password, hashed)
