"""The Dockerfile, built and run: no base-image registry is reachable here, so the test
makes a Debian base with mmdebstrap, imports it into podman, builds Wharf's wheels on the
host into the wheelhouse the build copies in, and builds the image with the base as a
build argument. The container serves, takes a skopeo push and pull, runs as its
non-root user, keeps its data in its volume across a restart and passes its own
healthcheck."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.clients import Podman, Skopeo
from tests.support.images import ImageSet, read_index
from tests.support.server import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BASE = "localhost/wharf-test-base:bookworm"
IMAGE = "localhost/wharf:test"
MIRROR = "http://deb.debian.org/debian"
PLAIN_PUSH = "--dest-tls-verify=false"
PLAIN_PULL = "--src-tls-verify=false"


def _context(workdir: Path) -> Path:
    """The build context: the committed files the Dockerfile copies, and a wheelhouse of
    Wharf and its dependencies built on the host."""
    context = workdir / "context"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "Dockerfile", "pyproject.toml", "README.md", "registry",
         "storage", "auth", "replicator", "deploy"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.split(b"\0")  # fmt: skip
    for name in filter(None, listed):
        source = ROOT / name.decode()
        if source.is_file():
            (context / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, context / name.decode())
    wheelhouse = context / "deploy" / "wheelhouse"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(wheelhouse), str(ROOT)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    assert any(p.name.startswith("wharf-") for p in wheelhouse.glob("*.whl"))
    return context


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    mmdebstrap = shutil.which("mmdebstrap")
    assert mmdebstrap, "mmdebstrap is missing: scripts/install.sh --test installs it"
    workdir = tmp_path_factory.mktemp("container")
    short = Path(tempfile.mkdtemp(prefix="wharf-ctr-"))  # podman: a runroot under 50 chars
    podman = Podman(short)
    base = workdir / "base.tar"
    subprocess.run(
        [mmdebstrap, "--variant=apt", "--include=python3,python3-venv,passwd,ca-certificates",
         "--format=tar", "bookworm", str(base), MIRROR],
        check=True, capture_output=True, timeout=900,
    )  # fmt: skip
    podman("import", str(base), BASE)
    base.unlink()
    context = _context(workdir)
    built = podman(
        "build", "--layers=false", "--format", "docker", "--build-arg", f"BASE={BASE}",
        "-t", IMAGE, str(context),
    )  # fmt: skip
    assert "Successfully tagged" in built.stdout + built.stderr
    try:
        yield podman
    finally:
        podman("rm", "--force", "--all", check=False)
        podman.reset()
        shutil.rmtree(short, ignore_errors=True)


def _run(podman: Podman, name: str, port: int) -> None:
    podman(
        "run", "--detach", "--name", name, "--network", "host",
        "--env", f"REGISTRY_HTTP_ADDR=127.0.0.1:{port}",
        "--volume", "wharf-data:/var/lib/wharf", IMAGE,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            logs = podman("logs", name, check=False)
            raise AssertionError(f"the container did not serve:\n{logs.stdout}{logs.stderr}")
        time.sleep(0.3)


def test_the_image_serves_as_its_user_keeps_its_volume_and_is_healthy(
    built: Podman, skopeo: Skopeo, images: ImageSet, tmp_path: Path
) -> None:
    podman = built
    inspected = json.loads(podman("image", "inspect", IMAGE).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == "wharf:wharf"
    assert "/var/lib/wharf" in config["Volumes"]
    assert inspected["Healthcheck"]["Test"][:2] == ["CMD", "/opt/wharf/bin/python"]
    port = free_port()
    podman("volume", "create", "wharf-data")
    _run(podman, "wharf-1", port)
    # the server runs as the image's unprivileged user, every process of it
    users = podman("top", "wharf-1", "user", "comm").stdout.split("\n")[1:]
    assert {line.split()[0] for line in users if line.strip()} == {"wharf"}
    assert podman("exec", "wharf-1", "id", "-u").stdout.strip() == "10001"
    assert podman("healthcheck", "run", "wharf-1", check=False).returncode == 0
    src = images["small"]
    ref = f"docker://127.0.0.1:{port}/container/small:v1"
    skopeo.copy(images.ref("small"), ref, PLAIN_PUSH)
    assert skopeo.inspect(ref, "--tls-verify=false")["Digest"] == src.digest
    # a restart: a new container on the same volume still has the image
    podman("rm", "--force", "wharf-1")
    _run(podman, "wharf-2", port)
    back = tmp_path / "back"
    skopeo.copy(ref, f"oci:{back}:pulled", PLAIN_PULL)
    assert read_index(back)["pulled"]["digest"] == src.digest
    assert podman("healthcheck", "run", "wharf-2", check=False).returncode == 0
    # the data is in the volume: the database and the blobs
    mountpoint = Path(podman("volume", "inspect", "wharf-data", "--format",
                             "{{.Mountpoint}}").stdout.strip())  # fmt: skip
    assert (mountpoint / "wharf.db").is_file()
    assert any(p.is_file() for p in (mountpoint / "blobs").rglob("*"))
