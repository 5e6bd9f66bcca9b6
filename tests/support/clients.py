"""Real registry clients for the end-to-end tests: skopeo, podman and a private dockerd.

Every client is isolated under its own directory: skopeo and podman get their own
policy, registries.conf, auth file and temp dir (podman also its own vfs image store
and containers.conf); dockerd runs with its own data-root, exec-root, socket, pidfile
and CLI config, no bridge and no iptables rules, and is stopped by the PID this module
started (plus, if dockerd had to be killed, the containerd it spawned, checked by its
command line). Nothing touches /var/lib/docker, /var/lib/containers or the system
sockets.

``require(binary)`` skips the calling test when a client is not installed; once it is
installed, any failure to start or run it is a test failure, not a skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

INSTALL_HINT = {
    "skopeo": "apt-get install skopeo",
    "podman": "apt-get install podman uidmap runc",
    "dockerd": "apt-get install docker.io",
    "docker": "apt-get install docker.io",
    "openssl": "apt-get install openssl",
}


def require(*binaries: str) -> None:
    """Fail the test if one of the binaries is not on PATH (install.sh --test installs them)."""
    for binary in binaries:
        if shutil.which(binary) is None:
            hint = INSTALL_HINT.get(binary, "")
            pytest.fail(f"{binary} is not installed" + (f" ({hint})" if hint else ""))


class CommandFailed(AssertionError):
    """A client command exited non-zero; the message carries its output."""

    def __init__(self, result: subprocess.CompletedProcess[str]) -> None:
        self.result = result
        cmd = " ".join(str(a) for a in result.args)
        super().__init__(
            f"`{cmd}` exited {result.returncode}\n"
            f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
        )


def run(
    cmd: list[str],
    env: dict[str, str] | None = None,
    timeout: float = 300,
    check: bool = True,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output, raise ``CommandFailed`` if ``check`` and it fails."""
    result = subprocess.run(
        cmd,
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise CommandFailed(result)
    return result


def _client_env(extra: dict[str, str]) -> dict[str, str]:
    """The test's environment without registry settings, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REGISTRY_", "DOCKER_", "CONTAINERS_", "BUILDAH_", "PODMAN_"))
    }
    env.update(extra)
    return env


def _write_containers_files(workdir: Path) -> dict[str, str]:
    """Own policy.json, registries.conf and auth file; returns the env that selects them."""
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)
    policy = workdir / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    registries = workdir / "registries.conf"
    registries.write_text('unqualified-search-registries = []\nshort-name-mode = "disabled"\n')
    auth = workdir / "auth.json"  # podman 4.3 fails if REGISTRY_AUTH_FILE does not exist
    if not auth.exists():
        auth.write_text("{}")
    return {
        "CONTAINERS_REGISTRIES_CONF": str(registries),
        "REGISTRY_AUTH_FILE": str(auth),
        "TMPDIR": str(workdir / "tmp"),
    }


class Skopeo:
    """``skopeo`` with its own policy, registries.conf, auth file and temp dir."""

    def __init__(self, workdir: Path) -> None:
        require("skopeo")
        self.workdir = workdir
        self.env = _client_env(_write_containers_files(workdir))
        self.policy = workdir / "policy.json"

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["skopeo", "--policy", str(self.policy), *args], env=self.env, check=check)

    def copy(self, src: str, dst: str, *flags: str) -> subprocess.CompletedProcess[str]:
        return self("copy", "--retry-times", "0", *flags, src, dst)

    def inspect(self, ref: str, *flags: str, global_flags: tuple[str, ...] = ()) -> Any:
        """``skopeo [global_flags] inspect [flags] ref`` parsed as JSON."""
        return json.loads(
            run(
                ["skopeo", "--policy", str(self.policy), *global_flags, "inspect", *flags, ref],
                env=self.env,
            ).stdout
        )

    def inspect_raw(self, ref: str, *flags: str) -> bytes:
        """The manifest bytes exactly as the registry served them."""
        result = subprocess.run(
            ["skopeo", "--policy", str(self.policy), "inspect", "--raw", *flags, ref],
            env=self.env,
            capture_output=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            raise AssertionError(f"skopeo inspect --raw {ref} failed: {result.stderr.decode()}")
        return result.stdout


class Podman:
    """``podman`` as root with an isolated vfs store (no daemon to start or stop).

    Like peers/podman.sh: runtime runc (crun rejects a hybrid cgroup layout), cgroupfs,
    file events backend, ulimits within the hard limits, its own auth file.
    """

    def __init__(self, workdir: Path) -> None:
        require("podman")
        self.workdir = workdir
        env = _write_containers_files(workdir)
        conf = workdir / "containers.conf"
        conf.write_text(
            "[containers]\n"
            'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
            "[engine]\n"
            'runtime = "runc"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
        )
        storage = workdir / "storage.conf"
        storage.write_text(
            "[storage]\n"
            'driver = "vfs"\n'
            f'graphroot = "{workdir / "storage"}"\n'
            f'runroot = "{workdir / "run"}"\n'
        )
        env["CONTAINERS_CONF"] = str(conf)
        env["CONTAINERS_STORAGE_CONF"] = str(storage)
        self.env = _client_env(env)
        self.base = [
            "podman",
            "--root",
            str(workdir / "storage"),
            "--runroot",
            str(workdir / "run"),
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            "--tmpdir",
            str(workdir / "tmp"),
        ]

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([*self.base, *args], env=self.env, check=check)

    def image_inspect(self, ref: str) -> dict[str, Any]:
        data = json.loads(self("image", "inspect", ref).stdout)
        assert isinstance(data, list) and len(data) == 1, data
        result: dict[str, Any] = data[0]
        return result

    def reset(self) -> None:
        """Drop every image of this store."""
        self("system", "reset", "--force", check=False)


class Dockerd:
    """A private Docker engine (and the containerd it spawns), owned by this object.

    Flags as peers/dockerd.sh: no bridge, no iptables/ip-masq, vfs storage, own
    config file (``/etc/docker/daemon.json`` is never read). 127.0.0.0/8 is an insecure
    registry range by default, so a plain-HTTP registry on 127.0.0.1 needs no TLS.
    """

    def __init__(self, workdir: Path | None = None) -> None:
        require("dockerd", "docker")
        # unix socket paths are limited to 108 bytes: keep the directory short
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="wharf-dockerd-"))
        self._own_workdir = workdir is None
        self.socket = self.workdir / "docker.sock"
        self.data_root = self.workdir / "data"
        self.exec_root = self.workdir / "exec"
        self.log_path = self.workdir / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.proc_returncode: int | None = None
        self.env = _client_env(
            {"DOCKER_HOST": f"unix://{self.socket}", "DOCKER_CONFIG": str(self.workdir / "cli")}
        )

    def start(self, timeout: float = 60) -> Dockerd:
        (self.workdir / "cli").mkdir(parents=True, exist_ok=True)
        (self.workdir / "cli" / "config.json").write_text("{}")
        config = self.workdir / "daemon.json"
        config.write_text("{}")
        cmd = [
            "dockerd",
            "--config-file",
            str(config),
            "--data-root",
            str(self.data_root),
            "--exec-root",
            str(self.exec_root),
            "--pidfile",
            str(self.workdir / "dockerd.pid"),
            "-H",
            f"unix://{self.socket}",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
            "--bridge=none",
            "--storage-driver=vfs",
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=_client_env({}),
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log_text = self.log()
                self.stop()
                raise RuntimeError(f"dockerd exited {self.proc_returncode}:\n{log_text[-4000:]}")
            if self.socket.exists() and self("version", check=False).returncode == 0:
                return self
            time.sleep(0.2)
        log_text = self.log()
        self.stop()
        raise RuntimeError(f"dockerd not ready in {timeout}s:\n{log_text[-4000:]}")

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return run(["docker", *args], env=self.env, check=check, timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """Stop our dockerd (it stops its containerd); kill leftovers we started."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
            self.proc_returncode = self.proc.returncode
            self.proc = None
        self._stop_containerd()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _stop_containerd(self) -> None:
        """If dockerd died hard, its containerd may linger: stop it by its own pidfile."""
        pidfile = self.exec_root / "containerd" / "containerd.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            if str(self.exec_root).encode() not in cmdline:
                return  # not ours (pid reused)
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                if not Path(f"/proc/{pid}").exists():
                    return
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)


def make_self_signed_cert(workdir: Path, ip: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate (subjectAltName IP:ip, DNS:localhost) made with openssl.

    Returns (certificate, key) paths. The certificate is its own CA.
    """
    require("openssl")
    workdir.mkdir(parents=True, exist_ok=True)
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            f"/CN={ip}",
            "-addext",
            f"subjectAltName=IP:{ip},DNS:localhost",
        ],
        env=_client_env({}),
    )
    return cert, key
