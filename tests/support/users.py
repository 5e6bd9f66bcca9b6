"""A registry with local users (``auth.local``) beside an htpasswd file, and its first
administrator made with ``wharf user create``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.auth import POLICY, htpasswd_config, token_config
from tests.support.server import WharfServer, _merge
from tests.support.slapd import ONE_WORKER

# local users may push and pull users/*; the policy's admins are htpasswd's "admin" only
LOCAL_POLICY: dict[str, Any] = {
    **POLICY,
    "rules": [
        *POLICY["rules"],
        {"repository": "users/*", "authenticated": True, "actions": ["pull", "push"]},
    ],
}
ROOT = ("root", "root-password-1")


def wharf_cli(
    server: WharfServer, *args: str, password: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``wharf ARGS -c CONFIG`` as its own process (the password, if any, on stdin)."""
    return subprocess.run(
        [sys.executable, "-m", "registry.cli", *args, "-c", str(server.config_path)],
        input="" if password is None else password + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )


def start_with_local_users(
    workdir: Path,
    mode: str,
    local: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> WharfServer:
    """A server in ``basic`` (htpasswd) or ``token`` mode (the built-in token service)
    with ``auth.local`` (``local``: its keys), one worker, ``config`` merged in, and
    :data:`ROOT` as a local administrator made with the CLI while it runs."""
    server = WharfServer(workdir / "server", {"http": ONE_WORKER, **(config or {})})
    if mode == "basic":
        extra = htpasswd_config(workdir, LOCAL_POLICY)
    else:
        extra = token_config(workdir, server.port, LOCAL_POLICY)
    extra["auth"]["local"] = local or {}
    _merge(server.config, extra)
    server.auth = True
    server.start()
    made = wharf_cli(
        server, "user", "create", ROOT[0], "--admin", "--password-stdin", password=ROOT[1]
    )
    assert made.returncode == 0, made.stderr
    return server
