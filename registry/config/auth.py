"""``auth``: htpasswd, tokens and the built-in token service, policy, LDAP, throttling."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from registry.config.base import Duration, _Section, duration


class HtpasswdSettings(_Section):
    """``auth.htpasswd``: Basic auth against an htpasswd file (bcrypt)."""

    realm: str = "wharf"
    path: str


class TokenSettings(_Section):
    """``auth.token``: bearer tokens from a token service (the reference's keys)."""

    realm: str
    service: str
    issuer: str
    rootcertbundle: str = ""
    jwks: str = ""
    autoredirect: bool = False


class TokenServerSettings(_Section):
    """``auth.tokenserver`` (Wharf's own): the built-in token service at ``auth.token.realm``.

    It signs with ``key``; ``certificate`` is the key's certificate chain (leaf first),
    sent as ``x5c``. Users come from ``auth.htpasswd``.
    """

    enabled: bool = True
    key: str
    certificate: str
    expiration: Duration = duration("5m")
    refreshexpiration: Duration = duration("720h")


class SubjectSettings(_Section):
    users: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)


class PolicyRuleSettings(_Section):
    """One access rule: ``actions`` on ``repository`` globs for the named subjects."""

    repository: str | list[str]
    actions: list[Literal["pull", "push", "delete", "*"]]
    users: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    authenticated: bool = False
    anonymous: bool = False

    @property
    def repositories(self) -> list[str]:
        return [self.repository] if isinstance(self.repository, str) else self.repository


class PolicySettings(_Section):
    """``auth.policy``: who may do what (without it, any authenticated user may do all)."""

    admins: SubjectSettings = SubjectSettings()
    catalog: SubjectSettings = SubjectSettings()
    groups: dict[str, list[str]] = Field(default_factory=dict)
    rules: list[PolicyRuleSettings] = Field(default_factory=list)


class LdapSettings(_Section):
    """``auth.ldap`` (Wharf's own): users and groups from an LDAP directory (ldap3).

    Either ``userdn`` (a template such as ``uid={user},ou=people,dc=example,dc=org``:
    bind as the user directly) or a search under ``userbase`` for
    ``(&userfilter(userattr=NAME))`` with the service account ``binddn``, then a bind
    as the DN found. Groups (by ``cn``) come from ``groupkinds``: ``groupOfNames``
    (``member=DN`` under ``groupbase``), ``memberOf`` (the user's attribute) and
    ``posixGroup`` (``memberUid=NAME``). Every ``refresh`` the groups of the users
    seen lately are read again (needs ``binddn``).
    """

    url: str | list[str]
    starttls: bool = False
    cacert: str = ""
    binddn: str = ""
    bindpassword: str = Field(default="", exclude=True)  # never printed by `wharf config`
    userdn: str = ""
    userbase: str = ""
    userfilter: str = "(objectClass=*)"
    userattr: str = "uid"
    groupbase: str = ""
    groupfilter: str = ""
    groupkinds: list[Literal["groupOfNames", "memberOf", "posixGroup"]] = ["groupOfNames"]
    timeout: Duration = duration("5s")
    poolsize: int = Field(default=4, ge=1, le=64)
    refresh: Duration = duration("5m")
    realm: str = "wharf"

    @model_validator(mode="after")
    def _how_to_find_users(self) -> LdapSettings:
        if not self.userdn and not (self.userbase and self.binddn):
            raise ValueError("auth.ldap needs userdn, or userbase with binddn")
        if self.userdn and "{user}" not in self.userdn:
            raise ValueError("auth.ldap.userdn must contain {user}")
        if not self.urls:
            raise ValueError("auth.ldap.url is empty")
        for url in self.urls:
            if not url.lower().startswith(("ldap://", "ldaps://")):
                raise ValueError(f"auth.ldap.url must be ldap://... or ldaps://..., not {url!r}")
        return self

    @property
    def urls(self) -> list[str]:
        return [self.url] if isinstance(self.url, str) else list(self.url)

    @property
    def timeout_seconds(self) -> float:
        return max(self.timeout, 0.1)

    @property
    def refresh_seconds(self) -> float:
        return max(self.refresh, 1.0)


class LocalSettings(_Section):
    """``auth.local`` (Harbor's "database" auth mode): users kept in the database, beside
    htpasswd and LDAP (see docs/auth.md). A verified password is remembered for
    ``refresh``: a user disabled, deleted or given a new password on another worker or
    node stops working within it (at once on the worker that made the change)."""

    selfregistration: bool = False
    minpasswordlength: int = Field(default=8, ge=1, le=72)
    refresh: Duration = duration("30s")

    @property
    def refresh_seconds(self) -> float:
        return max(self.refresh, 0.0)


class ThrottleInFlightSettings(_Section):
    """``auth.throttle.maxinflight``: password checks in flight at once, per worker."""

    user: int = Field(default=4, ge=1)
    address: int = Field(default=8, ge=1)


class ThrottleSettings(_Section):
    """``auth.throttle`` (Wharf's own): after ``free`` failures within ``window``, a
    failure's answer waits ``base``, doubling per failure up to ``cap``; an attempt
    beyond ``maxinflight`` is refused with 429 (see ``auth/throttle.py``)."""

    free: int = Field(default=3, ge=0)
    base: Duration = duration("250ms")
    cap: Duration = duration("4s")
    window: Duration = duration("15m")
    maxinflight: ThrottleInFlightSettings = ThrottleInFlightSettings()

    @property
    def base_seconds(self) -> float:
        return max(self.base, 0.0)

    @property
    def cap_seconds(self) -> float:
        return max(self.cap, 0.0)

    @property
    def window_seconds(self) -> float:
        return max(self.window, 0.0)


class AuthSettings(BaseModel):
    """``auth``: none (the default, open), ``htpasswd`` (Basic) or ``token`` (Bearer)."""

    # unknown methods (silly ...) must not leave the registry silently open
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    htpasswd: HtpasswdSettings | None = None
    token: TokenSettings | None = None
    tokenserver: TokenServerSettings | None = None
    policy: PolicySettings | None = None
    ldap: LdapSettings | None = None
    local: LocalSettings | None = None
    throttle: ThrottleSettings = ThrottleSettings()

    @model_validator(mode="after")
    def _consistent(self) -> AuthSettings:
        if self.tokenserver is not None and self.tokenserver.enabled and self.token is None:
            raise ValueError("auth.tokenserver needs auth.token (realm, service, issuer)")
        if self.token is not None and not (
            self.token.rootcertbundle or self.token.jwks or self.tokenserver
        ):
            raise ValueError("auth.token needs rootcertbundle or jwks (or auth.tokenserver)")
        return self

    @property
    def mode(self) -> Literal["none", "htpasswd", "token"]:
        """How the registry checks callers: bearer tokens win over Basic auth (then
        ``auth.htpasswd`` only gives the built-in token service its users)."""
        if self.token is not None:
            return "token"
        if self.htpasswd is not None or self.ldap is not None or self.local is not None:
            return "htpasswd"  # Basic auth: htpasswd, LDAP and/or local users (and robots)
        return "none"
