"""Fixtures shared by all tests: real registry processes on free ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.postgres import PostgresCluster, find_bindir
from tests.support.s3 import RadosGateway, missing_binaries
from tests.support.server import WharfServer, forget_stopped, started_servers
from tests.support.slapd import Slapd


@pytest.fixture(autouse=True)
def no_unexpected_5xx(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test during which any registry answered a 5xx (read from its access log),
    unless the test is marked ``expect_5xx(status, ...)`` for those statuses (a dependency
    it takes down, a disk it fills): an unexpected 500 anywhere is a bug."""
    offsets = {id(s): s.log_size() for s in started_servers()}
    yield
    marker = request.node.get_closest_marker("expect_5xx")
    allowed = set(marker.args) if marker is not None else set()
    errors = [
        f"{s.host}: {line}"
        for s in started_servers()
        for status, line in s.server_errors(offsets.get(id(s), 0))
        if status not in allowed and not (marker is not None and not marker.args)
    ]
    forget_stopped()
    if errors:
        shown = "\n".join(errors[:20])
        pytest.fail(f"the registry answered {len(errors)} unexpected 5xx:\n{shown}", False)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A private PostgreSQL cluster (Debian's binaries) for the session, stopped at the end."""
    bindir = find_bindir()
    if bindir is None:
        pytest.fail("PostgreSQL is not installed: run ./scripts/install.sh --test")
    cluster = PostgresCluster(bindir).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def s3() -> Iterator[RadosGateway]:
    """A private Ceph radosgw (S3) for the session with a bucket ``wharf``, stopped at the end."""
    missing = missing_binaries()
    if missing:
        pytest.fail(f"Ceph is missing ({', '.join(missing)}): run ./scripts/install.sh --test")
    gateway = RadosGateway().start()
    try:
        gateway.create_bucket("wharf")
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """A private OpenLDAP server (users, groups; StartTLS and LDAPS) for the session."""
    server = Slapd(tmp_path_factory.mktemp("slapd")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def wharf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WharfServer]:
    """A registry with the default configuration, shared by the whole session."""
    server = WharfServer(tmp_path_factory.mktemp("wharf")).start()
    yield server
    server.stop()


@pytest.fixture
def client(wharf: WharfServer) -> Iterator[httpx.Client]:
    """An httpx client on the shared registry."""
    with wharf.client() as c:
        yield c


@pytest.fixture
def make_wharf(tmp_path: Path) -> Iterator[Callable[..., WharfServer]]:
    """Start registries with custom configuration; all are stopped afterwards."""
    started: list[WharfServer] = []

    def factory(config: dict[str, Any] | None = None, name: str = "wharf") -> WharfServer:
        server = WharfServer(tmp_path / f"{name}{len(started)}", config).start()
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()
