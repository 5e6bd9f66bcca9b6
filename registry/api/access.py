"""Access checks for Wharf's own API and pages (``/api/``, ``/ui/``).

The auth middleware leaves the caller in ``scope["wharf.caller"]``. Without any ``auth``
configured the app leaves :data:`OPEN` there instead: the registry is open, and every
caller may do everything, as on ``/v2/``. A request that carries no caller at all was
never identified: it is refused (anonymous, may nothing), never taken for an open registry.
"""

from __future__ import annotations

from starlette.types import Scope

from registry.errors import Denied, Unauthorized
from registry.middleware.auth import Caller

CALLER_KEY = "wharf.caller"


def _anything(*_args: str) -> bool:
    return True


# The caller of every request when no ``auth`` is configured (an open registry).
OPEN = Caller(None, _anything, True, _anything, admin=True)


def caller_of(scope: Scope) -> Caller | None:
    """The identified caller (:data:`OPEN` on an open registry); None if the request was
    never identified, which is treated as an anonymous caller who may do nothing."""
    found = scope.get(CALLER_KEY)
    return found if isinstance(found, Caller) else None


def is_open(scope: Scope) -> bool:
    """True when no auth is configured (then everyone may do everything)."""
    return scope.get(CALLER_KEY) is OPEN


def may(scope: Scope, repository: str, action: str) -> bool:
    """Whether the caller may ``action`` (pull, push, delete) on ``repository``."""
    caller = caller_of(scope)
    return is_open(scope) or (caller is not None and caller.may(repository, action))


def require_admin(scope: Scope) -> None:
    """Raise :class:`Unauthorized` (anonymous) or :class:`Denied` unless the caller is an
    administrator (``auth.policy.admins``) or the registry is open."""
    if is_open(scope):
        return
    caller = caller_of(scope)
    if caller is None or caller.name is None:
        raise Unauthorized("administrator credentials required")
    if not caller.admin:
        raise Denied(f"{caller.name} is not an administrator")
