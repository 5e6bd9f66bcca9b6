"""Users and groups from an LDAP directory, with ldap3 (the only module that imports it).

:class:`LdapDirectory` does the blocking LDAP work: a simple bind as the user (its DN
from a template, or found by a search with the service account), then the user's groups
by ``cn`` (``groupOfNames`` with ``member=DN``, the user's ``memberOf``, ``posixGroup``
with ``memberUid=NAME``). Every value put in a filter is escaped with ldap3's
``escape_filter_chars`` and every value put in a DN with ``escape_rdn``, so a user name
such as ``*)(uid=*`` is only ever a literal. An empty password is refused before any
bind (LDAP would take it as an anonymous bind). The service account's connections are
kept in a small pool of bound connections, and so are connections for the users' binds
(a bind on an open TLS connection is one round trip, not a TLS handshake). The servers
are tried in turn (a refused connection moves on to the next), with StartTLS or LDAPS
checked against ``cacert``.

:class:`~auth.ldap_cache.LdapAuthenticator` keeps the logins, their caches and the
background group refresh.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from ldap3 import BASE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn, parse_dn

log = logging.getLogger("wharf.auth")

GROUP_KINDS = ("groupOfNames", "memberOf", "posixGroup")
MAX_NAME = 256
_SEARCH_LIMIT = 1000  # groups of one user, at most


class LdapUnavailable(Exception):
    """No LDAP server answered (or the service account cannot bind)."""


@dataclass(frozen=True)
class LdapOptions:
    """What :class:`LdapDirectory` needs (``auth.ldap``)."""

    urls: tuple[str, ...]
    starttls: bool = False
    cacert: str = ""
    binddn: str = ""
    bindpassword: str = ""
    userdn: str = ""  # "uid={user},ou=people,..." : bind directly
    userbase: str = ""
    userfilter: str = "(objectClass=*)"
    userattr: str = "uid"
    groupbase: str = ""
    groupfilter: str = ""
    groupkinds: tuple[str, ...] = ("groupOfNames",)
    timeout: float = 5.0
    poolsize: int = 4


@dataclass(frozen=True)
class LdapUser:
    """A user found in the directory: its name (the ``userattr`` value), DN and groups."""

    name: str
    dn: str
    groups: frozenset[str]


def _and(*parts: str) -> str:
    kept = [p if p.startswith("(") else f"({p})" for p in parts if p]
    return kept[0] if len(kept) == 1 else "(&" + "".join(kept) + ")"


def valid_name(user: str) -> bool:
    """A user name worth asking the directory about (printable, not too long)."""
    return 0 < len(user) <= MAX_NAME and user.isprintable()


class LdapDirectory:
    """Blocking LDAP operations (call them from a worker thread)."""

    def __init__(
        self, options: LdapOptions, on_operation: Callable[[str], None] | None = None
    ) -> None:
        self.options = options
        self.on_operation = on_operation or (lambda _op: None)
        tls = Tls(
            validate=ssl.CERT_REQUIRED,
            version=ssl.PROTOCOL_TLS_CLIENT,
            ca_certs_file=options.cacert or None,
        )
        self._tls = tls
        # tried in turn, starting with the last that answered (not ldap3's ServerPool: it
        # sleeps 10 s after a round of unreachable servers)
        self.urls = list(options.urls)
        self._next = 0
        self._idle: queue.LifoQueue[Connection] = queue.LifoQueue(options.poolsize)
        # connections (TLS already set up) kept for the users' binds: a bind on one is a
        # single round trip instead of a TCP and TLS handshake; used for nothing else
        self._binders: queue.LifoQueue[Connection] = queue.LifoQueue(options.poolsize)

    # -- connections ---------------------------------------------------------

    def _connect(self, dn: str, password: str) -> Connection | None:
        """A connection bound as ``dn``; None if the directory refused the credentials.
        Raises :class:`LdapUnavailable` when no server can be reached."""
        errors: list[str] = []
        start = self._next
        for i in range(len(self.urls)):
            index = (start + i) % len(self.urls)
            try:
                conn = self._connect_to(self.server(self.urls[index]), dn, password)
            except LdapUnavailable as e:
                errors.append(f"{self.urls[index]}: {e}")
                continue
            self._next = index
            return conn
        raise LdapUnavailable("; ".join(errors))

    def server(self, url: str) -> Server:
        # a new one each time: ldap3 marks an address that failed once as unusable
        # for minutes, which would outlast a directory restart
        return Server(
            url,
            use_ssl=url.lower().startswith("ldaps://"),
            tls=self._tls,
            get_info="NO_INFO",
            connect_timeout=self.options.timeout,
        )

    def _connect_to(self, server: Server, dn: str, password: str) -> Connection | None:
        conn = Connection(
            server,
            user=dn,
            password=password,
            auto_bind="NONE",
            read_only=True,
            raise_exceptions=False,
            receive_timeout=max(1, math.ceil(self.options.timeout)),  # whole seconds only
            auto_referrals=False,
        )
        try:
            conn.open()
            if self.options.starttls and not conn.server.ssl:
                try:
                    started = conn.start_tls()
                except LDAPException as e:
                    raise LdapUnavailable(f"StartTLS failed (auth.ldap.cacert?): {e}") from None
                if not started:
                    raise LdapUnavailable(f"StartTLS refused: {conn.result}")
            self.on_operation("bind")
            if conn.bind():
                return conn
        except (LDAPException, OSError) as e:
            _close(conn)
            raise LdapUnavailable(f"{type(e).__name__}: {e}") from None
        except LdapUnavailable:
            _close(conn)
            raise
        code = (conn.result or {}).get("result")
        _close(conn)
        if code in (49, 50, 53):  # invalidCredentials, insufficientAccessRights, unwilling
            return None
        raise LdapUnavailable(f"bind failed: {conn.result}")

    @contextmanager
    def service(self) -> Iterator[Connection]:
        """A pooled connection bound as the service account (``binddn``)."""
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            found = self._connect(self.options.binddn, self.options.bindpassword)
            if found is None:
                raise LdapUnavailable("the service account (binddn) cannot bind") from None
            conn = found
        healthy = True
        try:
            yield conn
        except LDAPException:
            healthy = False
            raise
        finally:
            if healthy and not conn.closed:
                try:
                    self._idle.put_nowait(conn)
                except queue.Full:
                    _close(conn)
            else:
                _close(conn)

    def _bind_as(self, dn: str, password: str) -> Connection | None:
        """A connection bound as ``dn`` (from the binders pool when one is idle), or
        None if the password is wrong."""
        try:
            conn = self._binders.get_nowait()
        except queue.Empty:
            return self._connect(dn, password)
        try:
            self.on_operation("bind")
            if conn.rebind(user=dn, password=password, read_server_info=False):
                return conn
        except LDAPException:  # the connection broke: a fresh one
            _close(conn)
            return self._connect(dn, password)
        code = (conn.result or {}).get("result")
        if code in (49, 50, 53):
            self._release(conn)
            return None
        _close(conn)  # a connection the server dropped, or another error: a fresh one
        return self._connect(dn, password)

    def _release(self, conn: Connection) -> None:
        """Keep a user's connection for the next bind (or close it)."""
        if conn.closed:
            return
        try:
            self._binders.put_nowait(conn)
        except queue.Full:
            _close(conn)

    def close(self) -> None:
        for pool in (self._idle, self._binders):
            while True:
                try:
                    _close(pool.get_nowait())
                except queue.Empty:
                    break

    def _search(
        self,
        conn: Connection,
        base: str,
        flt: str,
        attributes: list[str],
        scope: Literal["BASE", "LEVEL", "SUBTREE"] = SUBTREE,
    ) -> list[dict[str, Any]]:
        self.on_operation("search")
        ok = conn.search(base, flt, scope, attributes=attributes, size_limit=_SEARCH_LIMIT)
        code = (conn.result or {}).get("result")
        if not ok and code not in (0, 4, 32):  # success, sizeLimitExceeded, noSuchObject
            if conn.closed or code is None:
                raise LdapUnavailable(f"search failed: {conn.result}")
            log.warning("LDAP search %s under %s failed: %s", flt, base, conn.result)
        return [r for r in (conn.response or []) if r.get("type") == "searchResEntry"]

    def _with_service(self, fn: Callable[[Connection], Any]) -> Any:
        """``fn`` on a service connection, again on a fresh one if the pooled one broke."""
        while True:
            pooled = not self._idle.empty()  # an idle connection may have been dropped
            try:
                with self.service() as conn:
                    return fn(conn)
            except (LDAPException, LdapUnavailable) as e:
                if not pooled:
                    raise LdapUnavailable(str(e)) from None

    # -- users and groups ------------------------------------------------------

    def _find(self, conn: Connection, user: str) -> tuple[str, str] | None:
        """(DN, name) of the one user whose ``userattr`` is ``user``."""
        o = self.options
        flt = _and(o.userfilter, f"({o.userattr}={escape_filter_chars(user)})")
        found = self._search(conn, o.userbase, flt, [o.userattr])
        if len(found) != 1:
            if len(found) > 1:
                log.warning("LDAP: %d entries match user %r; refused", len(found), user[:100])
            return None
        entry = found[0]
        values = entry.get("attributes", {}).get(o.userattr) or [user]
        name = values[0] if isinstance(values, list) else values
        return str(entry["dn"]), str(name)

    def _groups(self, conn: Connection, dn: str, name: str) -> frozenset[str]:
        o = self.options
        base = o.groupbase or o.userbase or dn.split(",", 1)[-1]
        groups: set[str] = set()
        kinds = set(o.groupkinds)
        if "groupOfNames" in kinds:
            flt = _and(
                o.groupfilter, "(objectClass=groupOfNames)", f"(member={escape_filter_chars(dn)})"
            )
            groups |= {_cn(e) for e in self._search(conn, base, flt, ["cn"])}
        if "posixGroup" in kinds:
            flt = _and(
                o.groupfilter,
                "(objectClass=posixGroup)",
                f"(memberUid={escape_filter_chars(name)})",
            )
            groups |= {_cn(e) for e in self._search(conn, base, flt, ["cn"])}
        if "memberOf" in kinds:
            for entry in self._search(conn, dn, "(objectClass=*)", ["memberOf"], BASE):
                for group_dn in entry.get("attributes", {}).get("memberOf") or []:
                    rdn = parse_dn(str(group_dn))[0]
                    if rdn[0].lower() == "cn":
                        groups.add(rdn[1])
        groups.discard("")
        return frozenset(groups)

    def authenticate(self, user: str, password: str) -> LdapUser | None:
        """The user if ``password`` is theirs, else None. Raises :class:`LdapUnavailable`."""
        if not password or not valid_name(user):
            return None
        o = self.options
        if o.userdn:
            dn, name = o.userdn.replace("{user}", escape_rdn(user)), user
        else:
            found = self._with_service(lambda c: self._find(c, user))
            if found is None:
                return None
            dn, name = found
        conn = self._bind_as(dn, password)
        if conn is None:
            return None
        try:
            if o.binddn:
                self._release(conn)
                groups = self._with_service(lambda c: self._groups(c, dn, name))
            else:  # no service account: read the groups as the user
                groups = self._groups(conn, dn, name)
                self._release(conn)
        except LDAPException as e:
            _close(conn)
            raise LdapUnavailable(str(e)) from None
        return LdapUser(name, dn, groups)

    def probe(self) -> str | None:
        """Bind as the service account (anonymously without one) and find a user under
        ``userbase`` matching ``userfilter``: its name, or None. For ``wharf check``;
        raises :class:`LdapUnavailable`."""
        o = self.options
        flt = _and(o.userfilter, f"({o.userattr}=*)")
        found = self._with_service(lambda c: self._search(c, o.userbase, flt, [o.userattr]))
        if not found:
            return None
        values = found[0].get("attributes", {}).get(o.userattr) or [""]
        return str(values[0] if isinstance(values, list) else values)

    def groups_of(self, user: str) -> frozenset[str] | None:
        """The groups of ``user`` found with the service account (no password: for
        ``wharf policy explain``); None if no such user. Raises :class:`LdapUnavailable`."""
        if not valid_name(user):
            return None
        o = self.options
        if o.userdn:
            dn, name = o.userdn.replace("{user}", escape_rdn(user)), user
            return self.lookup(dn, name)
        found = self._with_service(lambda c: self._find(c, user))
        if found is None:
            return None
        dn, name = found
        groups: frozenset[str] = self._with_service(lambda c: self._groups(c, dn, name))
        return groups

    def lookup(self, dn: str, name: str) -> frozenset[str] | None:
        """The current groups of a known user (service account); None if it is gone."""

        def read(conn: Connection) -> frozenset[str] | None:
            if not self._search(conn, dn, "(objectClass=*)", ["objectClass"], BASE):
                return None
            return self._groups(conn, dn, name)

        result: frozenset[str] | None = self._with_service(read)
        return result


def _close(conn: Connection) -> None:
    """Unbind, ignoring a connection that is already broken."""
    with contextlib.suppress(LDAPException, OSError):
        conn.unbind()


def _cn(entry: dict[str, Any]) -> str:
    value = entry.get("attributes", {}).get("cn") or [""]
    return str(value[0] if isinstance(value, list) else value)
