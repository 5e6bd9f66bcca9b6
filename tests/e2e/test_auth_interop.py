"""The reference registry (Debian's docker-registry, distribution 2.8) trusts Wharf's
built-in token service: skopeo pushes and pulls there with Wharf-issued tokens."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.auth import PASSWORDS, start_token_server
from tests.support.clients import CommandFailed, Skopeo
from tests.support.images import ImageSet
from tests.support.server import WharfServer, free_port

pytestmark = pytest.mark.e2e


@pytest.fixture
def wharf_tokens(tmp_path: Path) -> Iterator[WharfServer]:
    server = start_token_server(tmp_path / "wharf")
    yield server
    server.stop()


@pytest.fixture
def reference(wharf_tokens: WharfServer, tmp_path: Path) -> Iterator[str]:
    """docker-registry on a free port, trusting Wharf's token service; yields host:port."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry is not installed: run ./scripts/install.sh --test")
    port = free_port()
    token = wharf_tokens.config["auth"]["token"]
    config = {
        "version": 0.1,
        "log": {"level": "info"},
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "ref-data")}},
        "http": {"addr": f"127.0.0.1:{port}"},
        "auth": {
            "token": {
                "realm": token["realm"],
                "service": token["service"],
                "issuer": token["issuer"],
                "rootcertbundle": token["rootcertbundle"],
            }
        },
    }
    cfg = tmp_path / "ref.yml"
    cfg.write_text(yaml.safe_dump(config))
    log = (tmp_path / "ref.log").open("wb")
    proc = subprocess.Popen(
        [binary, "serve", str(cfg)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 401:
                    break
            time.sleep(0.1)
        else:
            raise RuntimeError((tmp_path / "ref.log").read_text()[-3000:])
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


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
