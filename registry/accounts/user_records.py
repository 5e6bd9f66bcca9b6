"""A local user: its record and the rules for its name and e-mail address.

A name is 1 to 255 characters: ASCII letters, digits, ``.``, ``_``, ``-`` and ``@``,
starting with a letter or a digit (so an e-mail address is a name, and no name holds
``:``, which Basic credentials cannot carry, nor ``$``: ``robot$...`` is a robot's).
Names are case-sensitive, as htpasswd's. A name of the htpasswd file is refused too:
that file would answer for it (see :mod:`auth.logins`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from registry.accounts.records import PREFIX as ROBOT_PREFIX
from registry.accounts.records import _iso

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]*")
MAX_NAME = 255
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+")
MAX_EMAIL = 255
NAME_RULE = "1-255 ASCII letters, digits, '.', '_', '-' or '@', starting with a letter or digit"


@dataclass(frozen=True)
class User:
    """A local user (never with its password hash)."""

    name: str
    email: str
    admin: bool
    disabled: bool
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    password_changed_at: datetime

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "email": self.email,
            "admin": self.admin,
            "disabled": self.disabled,
            "created_by": self.created_by,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "password_changed_at": _iso(self.password_changed_at),
        }


@dataclass(frozen=True)
class StoredUser:
    """A user with its password hash, as a login check reads it."""

    user: User
    password_hash: str


def name_problem(name: object) -> str | None:
    """What is wrong with ``name`` for a new local user (None: nothing); the htpasswd
    file is checked apart."""
    if not isinstance(name, str) or not name:
        return "is required (a string)"
    if name.startswith(ROBOT_PREFIX):
        return "robot$... names are robot accounts' (use /api/robots)"
    if len(name) > MAX_NAME:
        return f"must be at most {MAX_NAME} characters"
    if not name.isascii() or not NAME_RE.fullmatch(name):
        return f"must be {NAME_RULE}"
    if name == "me":
        return "is reserved (/api/users/me is the caller)"
    return None


def email_problem(email: object) -> str | None:
    if not isinstance(email, str):
        return "must be a string"
    if email and (len(email) > MAX_EMAIL or not EMAIL_RE.fullmatch(email)):
        return f"must be an address such as name@example.org, at most {MAX_EMAIL} characters"
    return None
