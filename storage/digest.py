"""Content digests (``algorithm:hex``) as the OCI image spec defines them."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Protocol

_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")


class InvalidDigest(ValueError):
    """Raised for a string that is not a digest this registry supports."""


class Hasher(Protocol):
    """The part of :mod:`hashlib` objects used here."""

    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Digest:
    """A validated digest. ``str(d)`` is the canonical ``algorithm:hex`` form."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, value: str) -> Digest:
        """Parse ``value``; raise :class:`InvalidDigest` unless it is sha256 or sha512."""
        m = _DIGEST_RE.match(value)
        if not m:
            raise InvalidDigest(f"invalid digest {value[:200]!r}")
        algorithm, hexpart = m.group(1), m.group(2)
        length = _HEX_LENGTH.get(algorithm)
        if length is None:
            raise InvalidDigest(f"unsupported digest algorithm {algorithm[:50]!r}")
        if len(hexpart) != length or any(c not in "0123456789abcdef" for c in hexpart):
            raise InvalidDigest(f"invalid {algorithm} digest {value[:200]!r}")
        return cls(algorithm, hexpart)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """The digest of ``data``."""
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> Hasher:
        """A fresh hash object of this digest's algorithm."""
        return new_hasher(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def new_hasher(algorithm: str = "sha256") -> Hasher:
    """A fresh hash object; ``algorithm`` must be sha256 or sha512."""
    if algorithm not in _HEX_LENGTH:
        raise InvalidDigest(f"unsupported digest algorithm {algorithm!r}")
    return hashlib.new(algorithm)


SUPPORTED_ALGORITHMS = tuple(_HEX_LENGTH)
