"""Repository names, tags and references, as the distribution spec's grammar defines them."""

from __future__ import annotations

import re

from registry.errors import NameInvalid
from storage.digest import Digest, InvalidDigest

NAME_RE = re.compile(
    r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*"
)
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
MAX_NAME_LENGTH = 255


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid repository name, else raise :class:`NameInvalid`."""
    if len(name) > MAX_NAME_LENGTH or not NAME_RE.fullmatch(name):
        raise NameInvalid(detail={"name": name[:300]})
    return name


def is_tag(reference: str) -> bool:
    """True if ``reference`` is a syntactically valid tag."""
    return TAG_RE.fullmatch(reference) is not None


def parse_reference(reference: str) -> tuple[str | None, Digest | None]:
    """Split a manifest reference into (tag, None) or (None, digest).

    Raises ``InvalidDigest`` for something that is neither.
    """
    if ":" in reference:
        return None, Digest.parse(reference)
    if is_tag(reference):
        return reference, None
    raise InvalidDigest(f"invalid tag or digest {reference[:200]!r}")


def project_of(repository: str, default: str) -> str:
    """The project (issue #15) a repository belongs to: its first path component
    (``team-a`` for ``team-a/app``), or ``default`` (``projects.default``) for a name
    without a slash. One rule for every feature that groups repositories by project."""
    head, slash, _ = repository.partition("/")
    return head if slash else default
