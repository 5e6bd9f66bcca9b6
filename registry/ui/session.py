"""The web UI's session: a signed cookie holding the user and a CSRF token.

The cookie is signed (itsdangerous, with a key kept in the database so that every worker
and node accepts it) and expires after :data:`MAX_AGE`; it is ``HttpOnly``,
``SameSite=Lax``, limited to ``/ui`` and ``Secure`` when the request came over TLS.
Every form carries the session's CSRF token, checked on each POST.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "wharf_ui"
MAX_AGE = 12 * 3600
SALT = "wharf-ui-session"


def _token() -> str:
    return secrets.token_urlsafe(24)


@dataclass
class Session:
    """Who signed in (None: anonymous) and the CSRF token of their forms."""

    user: str | None = None
    groups: tuple[str, ...] = ()
    csrf: str = field(default_factory=_token)
    changed: bool = False  # a new cookie must be sent

    def check_csrf(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf, str(token))


class SessionCodec:
    """Turns sessions into cookie values and back."""

    def __init__(self, secret: str) -> None:
        self.serializer = URLSafeTimedSerializer(secret, salt=SALT)

    def load(self, cookie: str | None) -> Session:
        """The session of a cookie; a fresh anonymous one if absent, forged or expired."""
        if cookie:
            try:
                data = self.serializer.loads(cookie, max_age=MAX_AGE)
            except BadSignature:
                data = None
            if isinstance(data, dict) and isinstance(data.get("c"), str):
                user = data.get("u")
                groups = data.get("g") or []
                return Session(
                    user if isinstance(user, str) else None,
                    tuple(str(g) for g in groups) if isinstance(groups, list) else (),
                    data["c"],
                )
        return Session(changed=True)

    def dump(self, session: Session) -> str:
        return self.serializer.dumps(
            {"u": session.user, "g": list(session.groups), "c": session.csrf}
        )

    def header(self, session: Session | None, secure: bool) -> str:
        """The ``Set-Cookie`` value (``session`` None: remove the cookie)."""
        value, age = (self.dump(session), MAX_AGE) if session is not None else ("", 0)
        parts = [f"{COOKIE}={value}", "Path=/ui", f"Max-Age={age}", "HttpOnly", "SameSite=Lax"]
        if secure:
            parts.append("Secure")
        return "; ".join(parts)
