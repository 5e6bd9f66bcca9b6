"""wharf over HTTPS with a self-signed certificate that clients verify."""

from __future__ import annotations

import shutil
import ssl
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.clients import Skopeo, make_self_signed_cert
from tests.support.images import ImageSet
from tests.support.server import WharfServer

pytestmark = pytest.mark.e2e


def test_skopeo_over_verified_https(
    make_wharf: Callable[..., WharfServer], skopeo: Skopeo, images: ImageSet, tmp_path: Path
) -> None:
    cert, key = make_self_signed_cert(tmp_path / "tls")
    server = make_wharf({"http": {"tls": {"certificate": str(cert), "key": str(key)}}})
    assert server.url.startswith("https://")
    certs = tmp_path / "certs.d"  # skopeo reads *.crt in a cert dir as CAs
    certs.mkdir()
    shutil.copy(cert, certs / "ca.crt")

    # a plain client verifying against the CA reaches the API over TLS
    ctx = ssl.create_default_context(cafile=str(cert))
    r = httpx.get(f"{server.url}/v2/", verify=ctx, timeout=10)
    assert r.status_code == 200
    assert r.headers["docker-distribution-api-version"] == "registry/2.0"

    small = images["small"]
    ref = f"docker://{server.host}/e2e/tls:v1"
    skopeo.copy(images.ref("small"), ref, "--dest-cert-dir", str(certs))
    info = skopeo.inspect(ref, "--cert-dir", str(certs))
    assert info["Digest"] == small.digest
    assert info["Layers"] == list(small.layers)

    back = tmp_path / "back"
    skopeo.copy(ref, f"oci:{back}:small", "--src-cert-dir", str(certs))

    # without the CA the certificate is rejected: verification really happens
    result = skopeo("inspect", ref, check=False)
    assert result.returncode != 0
    assert "x509" in result.stderr or "certificate" in result.stderr, result.stderr

    # plain HTTP to the TLS port does not work either
    result = skopeo(
        "inspect", "--tls-verify=false", f"docker://{server.host}/e2e/nope", check=False
    )
    assert result.returncode != 0
