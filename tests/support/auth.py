"""Test helpers for auth: htpasswd files, signing keys and the matching configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bcrypt

from auth.keys import generate_self_signed
from tests.support.server import WharfServer, _merge

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw", "admin": "admin-pw"}

# alice: team-a (push), bob: read-only everywhere, carol: nothing but public, admin: all
POLICY: dict[str, Any] = {
    "admins": {"users": ["admin"]},
    "groups": {"team-a": ["alice"]},
    "rules": [
        {"repository": "team-a/*", "groups": ["team-a"], "actions": ["pull", "push", "delete"]},
        {"repository": "team-a/secret", "groups": ["team-a"], "actions": ["pull"]},
        {"repository": "*", "users": ["bob"], "actions": ["pull"]},
        {"repository": "public/*", "anonymous": True, "actions": ["pull"]},
    ],
}


def write_htpasswd(path: Path, users: dict[str, str] | None = None) -> Path:
    """An htpasswd file with bcrypt hashes (cost 4: fast tests)."""
    lines = [
        f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()}"
        for user, pw in (users or PASSWORDS).items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_keys(workdir: Path, algorithm: str = "ES256") -> tuple[Path, Path]:
    """A private key and its self-signed certificate: (key, cert)."""
    workdir.mkdir(parents=True, exist_ok=True)
    key_pem, cert_pem = generate_self_signed(algorithm=algorithm)
    key, cert = workdir / "token.key", workdir / "token.crt"
    key.write_bytes(key_pem)
    cert.write_bytes(cert_pem)
    return key, cert


def htpasswd_config(workdir: Path, policy: dict[str, Any] | None = POLICY) -> dict[str, Any]:
    auth: dict[str, Any] = {
        "htpasswd": {"realm": "wharf-test", "path": str(write_htpasswd(workdir / "htpasswd"))}
    }
    if policy is not None:
        auth["policy"] = policy
    return {"auth": auth}


def token_config(
    workdir: Path, port: int, policy: dict[str, Any] | None = POLICY
) -> dict[str, Any]:
    """Token mode with the built-in token service at /token (the server's own port)."""
    key, cert = write_keys(workdir / "keys")
    auth: dict[str, Any] = {
        "htpasswd": {"realm": "wharf-test", "path": str(write_htpasswd(workdir / "htpasswd"))},
        "token": {
            "realm": f"http://127.0.0.1:{port}/token",
            "service": "wharf-test",
            "issuer": "wharf-test-issuer",
            "rootcertbundle": str(cert),
        },
        "tokenserver": {"key": str(key), "certificate": str(cert)},
    }
    if policy is not None:
        auth["policy"] = policy
    return {"auth": auth}


def start_token_server(workdir: Path, policy: dict[str, Any] | None = None) -> WharfServer:
    """A server in token mode whose realm is its own /token."""
    server = WharfServer(workdir / "server")
    extra = token_config(workdir, server.port, **({} if policy is None else {"policy": policy}))
    _merge(server.config, extra)
    server.auth = True
    return server.start()
