"""Reaching what the configuration names: each probe returns the rows it found and never
raises (a failure is a row)."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable

import httpx

from registry.check.results import Result
from registry.config import ConfigError, NotificationEndpointSettings, Settings
from registry.drivers import make_driver
from registry.meta.migrate import current_revision, head_revision

TIMEOUT = 10.0
PROBE_DIR = "_wharf_check"


def _why(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}"[:300] if text else type(e).__name__


async def _guarded(check: str, target: str, probe: Callable[[], Awaitable[str]]) -> Result:
    try:
        detail = await asyncio.wait_for(probe(), TIMEOUT * 3)
    except TimeoutError:
        return Result(check, target, "fail", f"no answer in {TIMEOUT * 3:.0f}s")
    except Exception as e:
        return Result(check, target, "fail", _why(e))
    return Result(check, target, "ok", detail)


async def storage(settings: Settings) -> Result:
    """Write, read back and delete a probe object."""
    target = settings.storage.driver
    if settings.storage.s3 is not None:
        target = f"s3://{settings.storage.s3.bucket}/{settings.storage.s3.rootdirectory}"
    elif settings.storage.filesystem is not None:
        target = settings.storage.filesystem.rootdirectory

    async def probe() -> str:
        driver = make_driver(settings)
        path = f"{PROBE_DIR}/{secrets.token_hex(8)}"
        body = secrets.token_bytes(64)
        await driver.put_content(path, body)
        try:
            if await driver.get_content(path) != body:
                raise RuntimeError("read back other bytes than written")
        finally:
            await driver.delete(path)
        return "wrote, read back and deleted a probe object"

    return await _guarded("storage", target, probe)


async def database(settings: Settings) -> Result:
    """Connect, read the schema revision, compare it with this Wharf's."""
    url = settings.database_url
    scheme, _, rest = url.partition("://")
    target = f"{scheme}://{rest.rpartition('@')[2]}"  # without the credentials

    async def probe() -> str:
        revision = await current_revision(url)
        head = head_revision()
        if revision is None:
            return f"reached; empty (the schema {head} is created at the first start)"
        if revision != head:
            raise RuntimeError(
                f"schema at revision {revision}, this Wharf needs {head}: run wharf db upgrade"
            )
        return f"reached; schema at revision {revision} (current)"

    return await _guarded("database", target, probe)


async def ldap(settings: Settings) -> Result | None:
    """Bind with the service account and find one user."""
    if settings.auth.ldap is None:
        return None
    from auth.ldap import LdapDirectory
    from registry.accounts.setup import ldap_options

    cfg = settings.auth.ldap
    directory = LdapDirectory(ldap_options(cfg))

    async def probe() -> str:
        try:
            found = await asyncio.to_thread(directory.probe)
        finally:
            await asyncio.to_thread(directory.close)
        if found is None:
            raise RuntimeError("bound, but no user under the userbase matches the userfilter")
        who = "service account" if cfg.binddn else "anonymously"
        return f"bound {who}; found user {found}"

    return await _guarded("ldap", ", ".join(cfg.urls), probe)


async def token_keys(settings: Settings) -> Result | None:
    """Sign a token with the token service's key and verify it as the registry would."""
    auth = settings.auth
    if auth.tokenserver is None or not auth.tokenserver.enabled or auth.token is None:
        return None
    from registry.accounts.setup import build_auth
    from registry.accounts.token import build_token_endpoint
    from registry.middleware.auth import TokenGate

    async def probe() -> str:
        try:
            setup = build_auth(auth)
            assert setup is not None
            endpoint = build_token_endpoint(auth, setup)
        except ConfigError as e:
            raise RuntimeError(str(e)) from None
        assert endpoint is not None and isinstance(setup.gate, TokenGate)
        token, _, _ = endpoint.issuer.access_token("wharf-check", endpoint.service, [])
        setup.gate.verifier.verify(token)
        return f"signed a token ({endpoint.issuer.signing.algorithm}) and verified it"

    return await _guarded("token", "auth.tokenserver.key", probe)


async def endpoints(settings: Settings) -> list[Result]:
    """POST an empty event envelope to each notification endpoint."""
    found: list[Result] = []
    for endpoint in settings.notifications.endpoints:
        if endpoint.disabled:
            found.append(Result("notifications", endpoint.name, "skip", "disabled"))
        else:
            found.append(await _guarded("notifications", endpoint.name, _post(endpoint)))
    return found


def _post(endpoint: NotificationEndpointSettings) -> Callable[[], Awaitable[str]]:
    async def probe() -> str:
        sent = {k: ", ".join(v) for k, v in endpoint.headers.items()}
        sent["Content-Type"] = "application/vnd.docker.distribution.events.v2+json"
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            r = await client.post(endpoint.url, content=json.dumps({"events": []}), headers=sent)
        if not 200 <= r.status_code < 300:
            raise RuntimeError(f"{endpoint.url} answered {r.status_code} to an empty envelope")
        return f"{endpoint.url} accepted an empty envelope ({r.status_code})"

    return probe


async def remotes(settings: Settings) -> list[Result]:
    """``GET /v2/`` of each mirror upstream and replication target, with its credentials."""
    from replicator.client import RegistryClient
    from replicator.mirror_upstreams import upstreams

    found: list[Result] = []
    for upstream in upstreams(settings):
        name = f"mirror {upstream.prefix or '(proxy)'}"
        found.append(await _guarded("upstream", name, _ping(upstream.client)))
    for rule in settings.replication.rules:
        remote = rule.remote
        client = RegistryClient(
            remote.url, remote.username, remote.password,
            insecure=remote.insecure, cacert=remote.cacert, timeout=TIMEOUT,
        )  # fmt: skip
        found.append(await _guarded("replication", f"rule {rule.name}", _ping(client)))
    return found


def _ping(client: object) -> Callable[[], Awaitable[str]]:
    from replicator.client import RegistryClient

    assert isinstance(client, RegistryClient)

    async def probe() -> str:
        try:
            await client.ping()
        finally:
            await client.close()
        return f"{client.url}/v2/ answered (credentials accepted)"

    return probe


async def everything(settings: Settings) -> list[Result]:
    """Every probe the settings call for, in the table's order."""
    results = [await storage(settings), await database(settings)]
    for optional in (await ldap(settings), await token_keys(settings)):
        if optional is not None:
            results.append(optional)
    results += await endpoints(settings)
    results += await remotes(settings)
    return results
