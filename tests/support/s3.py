"""A private S3 endpoint for tests: Ceph radosgw (Debian's ``radosgw``, ``ceph-mon``,
``ceph-osd``, ``ceph-common``) on one node: one monitor, one OSD on a sparse file, and
radosgw's beast frontend on 127.0.0.1, with cephx off. Starts in about 20 s.

Ports: ``port`` (S3), ``port + 1`` (monitor), ``port + 10`` .. ``port + 60`` (messengers).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from storage.s3 import S3Options
from tests.support.server import WharfServer

ACCESS_KEY = "wharftest"
SECRET_KEY = "wharftestsecret"
REGION = "us-east-1"
_BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph-authtool")


def missing_binaries() -> list[str]:
    """The Ceph programs the fixture needs that are not installed."""
    return [b for b in _BINARIES if shutil.which(b) is None]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_range() -> int:
    """A base port whose S3 and monitor ports are free (messengers pick within the range)."""
    for _ in range(200):
        # below Linux's ephemeral range (32768-60999), where free_port() ports come from
        base = random.randrange(20000, 32000, 100)
        if all(_port_free(base + i) for i in (0, 1, 10, 11, 12, 13)):
            return base
    raise RuntimeError("no free port range for radosgw")


def _conf(fsid: str, port: int, d: Path) -> str:
    return f"""[global]
fsid = {fsid}
mon host = v2:127.0.0.1:{port + 1}
public addr = 127.0.0.1
cluster addr = 127.0.0.1
public network = 127.0.0.0/8
cluster network = 127.0.0.0/8
ms bind ipv6 = false
ms bind port min = {port + 10}
ms bind port max = {port + 60}
auth cluster required = none
auth service required = none
auth client required = none
ms cluster mode = crc secure
ms service mode = crc secure
ms client mode = crc secure
ms mon cluster mode = crc secure
ms mon service mode = crc secure
ms mon client mode = crc secure
mon warn on insecure global id reclaim = false
mon warn on insecure global id reclaim allowed = false
run dir = {d}/run
admin socket = {d}/run/$name.asok
log file = {d}/log/$name.log
keyring = {d}/keyring
crash dir = {d}/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon data avail warn = 1
mon data avail crit = 0
mon osd full ratio = .99
mon osd backfillfull ratio = .985
mon osd nearfull ratio = .98
osd failsafe full ratio = .995
[mon]
mon data = {d}/mon/$id
[osd]
osd data = {d}/osd/$id
osd objectstore = bluestore
bluestore block path = {d}/osd/$id/block.file
bluestore block create = true
bluestore block size = 10737418240
bluestore fsck on mount = false
bluestore cache autotune = false
bluestore cache size = 134217728
osd memory target = 939524096
osd op num shards = 1
osd op num threads per shard = 2
[client]
rgw frontends = beast endpoint=127.0.0.1:{port}
rgw data = {d}/rgw
rgw enable usage log = false
rgw thread pool size = 64
debug rgw = 1
"""


class RadosGateway:
    """One single-node Ceph cluster serving S3 on ``endpoint``; :meth:`stop` ends it."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="wharf-rgw-"))
        self.port = _free_range()
        self.conf = self.workdir / "ceph.conf"
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.region = REGION
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self, *cmd: str, timeout: float = 60) -> None:
        out = subprocess.run(
            cmd, capture_output=True, timeout=timeout, cwd=self.workdir, check=False
        )
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr.decode(errors='replace')}")

    def _launch(self, name: str, *cmd: str) -> None:
        with (self.workdir / "log" / f"{name}.out").open("ab") as log:
            self._procs[name] = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.workdir,
            )

    def start(self, timeout: float = 180) -> RadosGateway:
        d = self.workdir
        for sub in ("mon", "osd/0", "run", "log", "crash", "rgw"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        fsid, osd_uuid = str(uuid.uuid4()), str(uuid.uuid4())
        self.conf.write_text(_conf(fsid, self.port, d))
        c = str(self.conf)
        try:
            self._run(
                "ceph-authtool", "--create-keyring", str(d / "keyring"), "--gen-key",
                "-n", "mon.", "--cap", "mon", "allow *",
            )  # fmt: skip
            self._run(
                "monmaptool", "--create", "--fsid", fsid, "--addv", "a",
                f"[v2:127.0.0.1:{self.port + 1}]", str(d / "monmap"),
            )  # fmt: skip
            self._run(
                "ceph-mon", "-c", c, "--mkfs", "-i", "a",
                "--monmap", str(d / "monmap"), "--keyring", str(d / "keyring"),
            )  # fmt: skip
            self._launch("mon", "ceph-mon", "-c", c, "-i", "a", "-f")
            self._run("ceph", "-c", c, "--connect-timeout", "30", "osd", "new", osd_uuid)
            self._run("ceph-osd", "-c", c, "-i", "0", "--mkfs", "--osd-uuid", osd_uuid)
            self._launch("osd", "ceph-osd", "-c", c, "-i", "0", "-f")
            self._launch("rgw", "radosgw", "-c", c, "-n", "client.rgw.a", "-f")
            self._wait_http(timeout)
            self._run(
                "radosgw-admin", "-c", c, "user", "create", "--uid=wharf",
                "--display-name=Wharf tests", f"--access-key={self.access_key}",
                f"--secret-key={self.secret_key}",
            )  # fmt: skip
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_http(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited {proc.returncode}: see {self.workdir}/log")
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(self.endpoint + "/", timeout=2)
                return
            time.sleep(0.2)
        raise RuntimeError(f"radosgw not answering on {self.endpoint}")

    def create_bucket(self, name: str) -> str:
        """Create a bucket (curl signs the request with SigV4) and return its name."""
        empty_sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        out = subprocess.run(
            [
                "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT",
                "--user", f"{self.access_key}:{self.secret_key}",
                "-H", f"x-amz-content-sha256: {empty_sha}",
                "--aws-sigv4", f"aws:amz:{self.region}:s3", f"{self.endpoint}/{name}",
            ],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        if out.stdout != "200":
            raise RuntimeError(f"create bucket {name}: HTTP {out.stdout} {out.stderr}")
        return name

    def settings(self, bucket: str, rootdirectory: str = "", **extra: object) -> dict[str, object]:
        """A ``storage.s3`` configuration section for this gateway."""
        return {
            "region": self.region,
            "regionendpoint": self.endpoint,
            "bucket": bucket,
            "accesskey": self.access_key,
            "secretkey": self.secret_key,
            "rootdirectory": rootdirectory,
            "forcepathstyle": True,
            "secure": False,
            **extra,
        }

    def stop(self) -> None:
        for name in ("rgw", "osd", "mon"):
            proc = self._procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(self.workdir, ignore_errors=True)


def s3_options(gateway: RadosGateway, root: str, bucket: str = "wharf", **extra: Any) -> S3Options:
    """Driver options for ``bucket`` (made by the ``s3`` fixture) under the prefix ``root``;
    small parts (5 MiB) so that tests cross part boundaries cheaply."""
    base: dict[str, Any] = {
        "bucket": bucket,
        "region": gateway.region,
        "regionendpoint": gateway.endpoint,
        "accesskey": gateway.access_key,
        "secretkey": gateway.secret_key,
        "rootdirectory": root,
        "chunksize": 5 * 1024 * 1024,
        "secure": False,
        "forcepathstyle": True,
        "threads": 4,
    }
    base.update(extra)
    return S3Options(**base)


def wharf_s3_config(
    gateway: RadosGateway, root: str, database_url: str, redirect: bool = True
) -> dict[str, Any]:
    """A node's configuration on ``gateway`` (bucket ``wharf``, prefix ``root``) and the
    database ``database_url``; 5 MiB parts. Give it to :class:`WharfServer` and call
    :func:`only_s3` on the server before starting it."""
    return {
        "http": {"workers": 1},
        "database": {"url": database_url},
        "storage": {
            "s3": gateway.settings("wharf", root, chunksize=5 * 1024 * 1024),
            "redirect": {"expiry": "5m", "disable": not redirect},
        },
    }


def only_s3(server: WharfServer) -> WharfServer:
    """Drop the filesystem section :class:`WharfServer` puts in every configuration."""
    server.config["storage"].pop("filesystem", None)
    return server


if __name__ == "__main__":  # manual check: python -m tests.support.s3
    t0 = time.monotonic()
    gw = RadosGateway().start()
    print(f"radosgw up on {gw.endpoint} in {time.monotonic() - t0:.1f} s; pid", os.getpid())
    print(gw.create_bucket("registry"))
    gw.stop()
