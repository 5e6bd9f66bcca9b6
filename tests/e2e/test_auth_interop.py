"""The reference registry (Debian's docker-registry, distribution 2.8) trusts Wharf's
built-in token service: skopeo pushes and pulls there with Wharf-issued tokens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.auth import PASSWORDS, start_token_server
from tests.support.clients import CommandFailed, Skopeo
from tests.support.images import ImageSet
from tests.support.reference import ReferenceRegistry
from tests.support.server import WharfServer

pytestmark = pytest.mark.e2e


@pytest.fixture
def wharf_tokens(tmp_path: Path) -> Iterator[WharfServer]:
    server = start_token_server(tmp_path / "wharf")
    yield server
    server.stop()


@pytest.fixture
def reference(wharf_tokens: WharfServer, tmp_path: Path) -> Iterator[str]:
    """docker-registry on a free port, trusting Wharf's token service; yields host:port."""
    token = wharf_tokens.config["auth"]["token"]
    trust = {key: token[key] for key in ("realm", "service", "issuer", "rootcertbundle")}
    ref = ReferenceRegistry(tmp_path / "ref", extra={"auth": {"token": trust}})
    try:
        ref.start()
        yield ref.host
    finally:
        ref.stop()


def test_reference_registry_accepts_wharf_tokens(
    reference: str, skopeo: Skopeo, images: ImageSet
) -> None:
    small = images["small"]
    ref = f"docker://{reference}/team-a/interop:v1"
    alice = f"alice:{PASSWORDS['alice']}"
    skopeo.copy(images.ref("small"), ref, "--dest-tls-verify=false", "--dest-creds", alice)
    info = skopeo.inspect(ref, "--tls-verify=false", "--creds", f"bob:{PASSWORDS['bob']}")
    assert info["Digest"] == small.digest
    # bob's token carries only pull: the reference registry refuses his push
    with pytest.raises(CommandFailed):
        skopeo.copy(
            images.ref("small"),
            f"docker://{reference}/team-a/interop:bob",
            "--dest-tls-verify=false",
            "--dest-creds",
            f"bob:{PASSWORDS['bob']}",
        )
