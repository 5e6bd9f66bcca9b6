#!/usr/bin/env python3
"""Benchmark an OCI Distribution v2 registry, or compare several.

The same workload runs against every target, interleaved target by target:

* blob push (monolithic: POST then one PUT; chunked: POST, PATCH chunks, PUT;
  single POST ``?digest=`` where the target supports it) and blob pull, in MB/s;
* manifest GET, blob HEAD, tags list and manifest PUT at several concurrencies,
  in requests/s with p50/p99 latency.

Examples::

    python bench/registry_bench.py --start-both
    python bench/registry_bench.py --target wharf=http://127.0.0.1:15100 \\
        --target reference=http://127.0.0.1:15101 --pid wharf=1234 --pid reference=5678
    python bench/registry_bench.py --start-both --quick

The clients are written for this script so that they are not the bottleneck:
uploads go from a pre-generated file with ``sendfile(2)`` (each push gets a new
digest by changing only the last 16 bytes, whose SHA-256 is finished from a
saved hash state), downloads are read into one reusable buffer and dropped, and
request rates use a raw HTTP/1.1 keep-alive asyncio client (uvloop when
importable). Server CPU and RSS come from ``/proc`` when the PID is known.
It is a script that prints figures, not a test. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

MiB = 1024 * 1024
SUFFIX = 16  # bytes at the end of a blob that make each pushed blob unique
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MANIFEST_ACCEPT = ", ".join(
    [
        OCI_MANIFEST,
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
THROUGHPUT_WORKLOADS = ["push-mono", "push-chunked", "push-post", "pull"]
RATE_WORKLOADS = ["manifest-get", "blob-head", "tags-list", "manifest-put"]
LABELS = {
    "push-mono": "push monolithic (POST+PUT)",
    "push-chunked": "push chunked (PATCH..+PUT)",
    "push-post": "push single POST ?digest=",
    "pull": "pull (GET blob)",
    "manifest-get": "manifest GET",
    "blob-head": "blob HEAD",
    "tags-list": "tags list",
    "manifest-put": "manifest PUT",
}
# wharf/reference goals from the issue: (workload, minimum ratio, concurrency or None)
GOALS = {
    "push-mono": 2.0,
    "push-chunked": 2.0,
    "pull": 0.8,
    "manifest-get": 1.0,
    "blob-head": 1.0,
    "tags-list": 1.0,
    "manifest-put": 1.0,
}
GOAL_CONCURRENCY = 32


class BenchError(Exception):
    """A registry answered something the benchmark did not expect."""


# --------------------------------------------------------------------------- /proc


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        kids.setdefault(int(fields[1]), []).append(int(entry))
    return kids


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (those alive now)."""
    kids = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def rss_kib(pids: list[int]) -> int:
    """The sum of VmRSS over ``pids`` in KiB (processes that vanished count 0)."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User+system CPU seconds used so far by ``pids``."""
    ticks = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


def client_cpu() -> float:
    """CPU seconds used so far by this process (all threads) and waited-for children."""
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


class RssSampler:
    """Samples the RSS of a process tree in a thread; ``peak_kib`` when stopped."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        pids = process_tree(self.pid)
        rescan = time.monotonic() + 0.5
        while True:
            self.peak_kib = max(self.peak_kib, rss_kib(pids))
            if self._stop.wait(self.interval):
                break
            if time.monotonic() >= rescan:
                pids = process_tree(self.pid)
                rescan = time.monotonic() + 0.5
        self.peak_kib = max(self.peak_kib, rss_kib(pids))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --------------------------------------------------------------------------- blocking HTTP/1.1


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    nbytes: int


class Conn:
    """A minimal blocking HTTP/1.1 keep-alive client for one host:port.

    Request bodies are bytes or a callable that writes them to the socket (used
    with ``sendfile``); response bodies are returned, or with ``sink=True`` read
    into one reusable buffer and only counted.
    """

    def __init__(
        self, host: str, port: int, timeout: float = 600.0, headers: dict[str, str] | None = None
    ) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.headers = headers or {}  # sent with every request (e.g. Authorization)
        self.sock: socket.socket | None = None
        self.buf = bytearray()
        self.big = bytearray(4 * MiB)
        self.bigview = memoryview(self.big)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _connect(self) -> socket.socket:
        s = socket.create_connection((self.host, self.port), timeout=self.timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.buf = s, bytearray()
        return s

    def _fill(self) -> None:
        assert self.sock is not None
        data = self.sock.recv(256 * 1024)
        if not data:
            raise ConnectionError("connection closed by server")
        self.buf += data

    def _line(self) -> bytes:
        while (i := self.buf.find(b"\r\n")) < 0:
            self._fill()
        line = bytes(self.buf[:i])
        del self.buf[: i + 2]
        return line

    def _head(self) -> bytes:
        while (i := self.buf.find(b"\r\n\r\n")) < 0:
            self._fill()
        head = bytes(self.buf[:i])
        del self.buf[: i + 4]
        return head

    def _body(self, n: int, sink: bool, out: list[bytes]) -> None:
        if not sink:
            while len(self.buf) < n:
                self._fill()
            out.append(bytes(self.buf[:n]))
            del self.buf[:n]
            return
        take = min(n, len(self.buf))
        del self.buf[:take]
        left = n - take
        assert self.sock is not None
        while left:
            k = self.sock.recv_into(self.bigview, min(left, len(self.big)))
            if not k:
                raise ConnectionError("connection closed in the middle of a body")
            left -= k

    def request(
        self,
        method: str,
        target: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        send: Callable[[socket.socket], None] | None = None,
        length: int | None = None,
        sink: bool = False,
    ) -> Response:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines.append("User-Agent: registry-bench")
        for k, v in {**self.headers, **(headers or {})}.items():
            lines.append(f"{k}: {v}")
        if body is not None:
            length = len(body)
        if length is not None:
            lines.append(f"Content-Length: {length}")
        elif method in ("POST", "PUT", "PATCH"):
            lines.append("Content-Length: 0")
        req = ("\r\n".join(lines) + "\r\n\r\n").encode()
        if body is not None and len(body) < 64 * 1024:
            req, body = req + body, None
        reused = self.sock is not None
        for attempt in (0, 1):
            sock = self.sock or self._connect()
            try:
                sock.sendall(req)
                if body:
                    sock.sendall(body)
                if send is not None:
                    send(sock)
                head = self._head()
                break
            except (ConnectionError, BrokenPipeError) as e:
                # a kept-alive connection the server had closed: retry once, fresh
                self.close()
                if attempt or not reused or (send is not None):
                    raise BenchError(f"{method} {target}: {e}") from e
        while int(head.split(None, 2)[1]) < 200:  # interim (1xx) responses
            head = self._head()
        first, *raw_headers = head.split(b"\r\n")
        status = int(first.split()[1])
        hdrs: dict[str, str] = {}
        for raw in raw_headers:
            k, _, v = raw.decode("latin-1").partition(":")
            hdrs[k.strip().lower()] = v.strip()
        out: list[bytes] = []
        nbytes = 0
        if method != "HEAD" and status not in (204, 304):
            if hdrs.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    size = int(self._line().split(b";")[0], 16)
                    if size == 0:
                        while self._line():
                            pass
                        break
                    self._body(size, sink, out)
                    self._line()
                    nbytes += size
            elif "content-length" in hdrs:
                nbytes = int(hdrs["content-length"])
                self._body(nbytes, sink, out)
            else:  # body until close
                while True:
                    try:
                        self._fill()
                    except ConnectionError:
                        break
                nbytes = len(self.buf)
                out.append(bytes(self.buf))
                self.close()
        if hdrs.get("connection", "").lower() == "close":
            self.close()
        return Response(status, hdrs, b"".join(out), nbytes)


def expect(r: Response, status: int, what: str) -> Response:
    if r.status != status:
        raise BenchError(f"{what}: HTTP {r.status} (expected {status}): {r.body[:300]!r}")
    return r


def location_target(location: str) -> str:
    """The path?query of a Location header (absolute or relative)."""
    u = urllib.parse.urlsplit(location)
    return u.path + (f"?{u.query}" if u.query else "")


def with_query(target: str, **params: str) -> str:
    sep = "&" if "?" in target else "?"
    return target + sep + urllib.parse.urlencode(params)


# --------------------------------------------------------------------------- blobs


class BaseFile:
    """A file of random bytes, and the SHA-256 state of all but its last SUFFIX bytes."""

    def __init__(self, path: str, size: int) -> None:
        self.path, self.size = path, size
        h = hashlib.sha256()
        with open(path, "wb") as f:
            left = size - SUFFIX
            while left:
                n = min(left, 16 * MiB)
                data = os.urandom(n)
                h.update(data)
                f.write(data)
                left -= n
            f.write(b"\0" * SUFFIX)
        self.prefix_hash = h
        self.file = open(path, "rb")  # noqa: SIM115 - kept open for sendfile
        self.counter = itertools.count()
        self.run_id = os.urandom(8).hex()

    def new_blob(self) -> Blob:
        suffix = f"{self.run_id}{next(self.counter):016x}".encode()[-SUFFIX:]
        h = self.prefix_hash.copy()
        h.update(suffix)
        return Blob(self, suffix, "sha256:" + h.hexdigest())


@dataclass
class Blob:
    base: BaseFile
    suffix: bytes
    digest: str

    @property
    def size(self) -> int:
        return self.base.size

    def sender(self, start: int, end: int) -> Callable[[socket.socket], None]:
        """Writes bytes [start, end) of the blob to a socket (file part with sendfile)."""
        cut = self.size - SUFFIX

        def send(sock: socket.socket) -> None:
            if start < cut:
                sock.sendfile(self.base.file, start, min(end, cut) - start)
            if end > cut:
                sock.sendall(self.suffix[max(start, cut) - cut : end - cut])

        return send


def push_blob(conn: Conn, repo: str, blob: Blob, mode: str, chunk: int) -> None:
    octet = {"Content-Type": "application/octet-stream"}
    if mode == "push-post":
        target = with_query(f"/v2/{repo}/blobs/uploads/", digest=blob.digest)
        send = blob.sender(0, blob.size)
        r = conn.request("POST", target, octet, send=send, length=blob.size)
        expect(r, 201, "single POST upload")
        return
    r = expect(conn.request("POST", f"/v2/{repo}/blobs/uploads/"), 202, "start upload")
    loc = location_target(r.headers["location"])
    if mode == "push-mono":
        send = blob.sender(0, blob.size)
        r = conn.request(
            "PUT", with_query(loc, digest=blob.digest), octet, send=send, length=blob.size
        )
        expect(r, 201, "monolithic PUT")
        return
    off = 0
    while off < blob.size:
        end = min(off + chunk, blob.size)
        hdrs = dict(octet, **{"Content-Range": f"{off}-{end - 1}"})
        r = conn.request("PATCH", loc, hdrs, send=blob.sender(off, end), length=end - off)
        loc = location_target(expect(r, 202, f"PATCH {off}-{end - 1}").headers["location"])
        off = end
    expect(conn.request("PUT", with_query(loc, digest=blob.digest)), 201, "closing PUT")


def pull_blob(conn: Conn, repo: str, blob: Blob) -> None:
    r = conn.request("GET", f"/v2/{repo}/blobs/{blob.digest}", sink=True)
    hops = 0
    while r.status in (301, 302, 303, 307, 308) and hops < 3:
        u = urllib.parse.urlsplit(r.headers["location"])
        hops += 1
        if u.netloc and (u.hostname, u.port) != (conn.host, conn.port):
            other = Conn(u.hostname or conn.host, u.port or 80)
            try:
                r = other.request("GET", location_target(r.headers["location"]), sink=True)
            finally:
                other.close()
        else:
            r = conn.request("GET", location_target(r.headers["location"]), sink=True)
    expect(r, 200, "blob GET")
    if r.nbytes != blob.size:
        raise BenchError(f"blob GET: {r.nbytes} bytes, expected {blob.size}")


def put_small_blob(conn: Conn, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = expect(conn.request("POST", f"/v2/{repo}/blobs/uploads/"), 202, "start upload")
    loc = location_target(r.headers["location"])
    hdrs = {"Content-Type": "application/octet-stream"}
    expect(conn.request("PUT", with_query(loc, digest=digest), hdrs, body=data), 201, "PUT")
    return digest


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    name: str
    url: str
    pid: int | None = None
    host: str = ""
    port: int = 0
    supports_single_post: bool = False
    layer_digest: str = ""
    put_body: bytes = b""  # manifest template for manifest PUT, with %d
    idle_rss_kib: int = 0

    def __post_init__(self) -> None:
        u = urllib.parse.urlsplit(self.url)
        if u.scheme != "http" or not u.hostname:
            raise SystemExit(f"--target {self.name}: only http://host:port URLs ({self.url})")
        self.host, self.port = u.hostname, u.port or 80

    def conn(self) -> Conn:
        return Conn(self.host, self.port)

    def tree(self) -> list[int]:
        return process_tree(self.pid) if self.pid else []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(
    url: str, proc: subprocess.Popen[bytes], log: str, timeout: float = 120.0, path: str = "/v2/"
) -> None:
    """Until ``url`` + ``path`` answers 200 (``/healthz`` for a server with auth)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}; log:\n{tail(log)}")
        try:
            with urllib.request.urlopen(url + path, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} not ready after {timeout}s; log:\n{tail(log)}")


def tail(path: str, n: int = 20) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no log)"


class Servers:
    """Starts Wharf and the reference registry on free ports, stops them."""

    def __init__(self, workdir: str, wharf_bin: str, reference_bin: str) -> None:
        self.workdir = workdir
        self.wharf_bin, self.reference_bin = wharf_bin, reference_bin
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        # --storage s3: the storage.s3 section (bucket set per server); --database: Wharf's URL
        self.s3: dict[str, Any] | None = None
        self.database_url = ""
        self.stoppers: list[Callable[[], None]] = []

    def storage_yaml(self, name: str, root: str) -> str:
        """The ``storage`` section's driver, as a YAML flow mapping (JSON is YAML)."""
        if self.s3 is None:
            return json.dumps({"filesystem": {"rootdirectory": root}})
        return json.dumps({"s3": {**self.s3, "rootdirectory": f"bench-{name}-{os.getpid()}"}})

    def _spawn(self, name: str, argv: list[str], env: dict[str, str], log: str) -> int:
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True,
            )  # fmt: skip
        self.procs.append((name, proc))
        return proc.pid

    def start_wharf(self) -> Target:
        d = os.path.join(self.workdir, "wharf")
        os.makedirs(os.path.join(d, "data"))
        port = free_port()
        cfg = os.path.join(d, "config.yml")
        driver = self.storage_yaml("wharf", d + "/data")[1:-1]
        with open(cfg, "w") as f:
            f.write(
                "version: 0.1\n"
                f"http: {{addr: 127.0.0.1:{port}}}\n"
                f"storage: {{{driver}, delete: {{enabled: true}}}}\n"
                "log: {level: warn, accesslog: {disabled: true}}\n"
            )
            if self.database_url:
                f.write(f"database: {{url: {json.dumps(self.database_url)}}}\n")
        log = os.path.join(d, "server.log")
        pid = self._spawn("wharf", [self.wharf_bin, "serve", cfg], dict(os.environ), log)
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, self.procs[-1][1], log)
        return Target("wharf", url, pid)

    def start_reference(self) -> Target:
        d = os.path.join(self.workdir, "reference")
        os.makedirs(os.path.join(d, "data"))
        port = free_port()
        cfg = os.path.join(d, "config.yml")
        with open(cfg, "w") as f:
            f.write(
                "version: 0.1\n"
                "log:\n  level: warn\n  formatter: text\n  accesslog:\n    disabled: true\n"
                f"storage:\n  {self.storage_yaml('reference', d + '/data')[1:-1]}\n"
                "  delete:\n    enabled: true\n"
                "  cache:\n    blobdescriptor: inmemory\n"
                "  maintenance:\n    uploadpurging:\n      enabled: false\n"
                f"http:\n  addr: 127.0.0.1:{port}\n  secret: bench-secret-{port}\n"
            )
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        log = os.path.join(d, "server.log")
        pid = self._spawn("reference", [self.reference_bin, "serve", cfg], env, log)
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, self.procs[-1][1], log)
        return Target("reference", url, pid)

    def stop(self) -> None:
        self._stop_servers()
        while self.stoppers:
            self.stoppers.pop()()

    def _stop_servers(self) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                print(
                    f"# {name} (pid {proc.pid}) did not stop on SIGTERM; killing", file=sys.stderr
                )
                proc.kill()
                proc.wait()
        self.procs.clear()


def probe_and_seed(t: Target, n_tags: int) -> None:
    """Checks /v2/, seeds the repositories the rate workloads use."""
    conn = t.conn()
    try:
        expect(conn.request("GET", "/v2/"), 200, f"{t.name} GET /v2/")
        # single-request monolithic upload (POST ?digest=)? a 201 says yes
        probe = os.urandom(64)
        digest = "sha256:" + hashlib.sha256(probe).hexdigest()
        target = with_query("/v2/bench/probe/blobs/uploads/", digest=digest)
        hdrs = {"Content-Type": "application/octet-stream"}
        r = conn.request("POST", target, hdrs, body=probe)
        t.supports_single_post = r.status == 201
        if r.status not in (201, 202):
            raise BenchError(f"{t.name}: POST upload answered {r.status}")
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Cmd": ["/bin/sh"]},
                "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]},
            }
        ).encode()
        layer = os.urandom(4096)
        for repo in ("bench/rates", "bench/put"):
            config_digest = put_small_blob(conn, repo, config)
            t.layer_digest = put_small_blob(conn, repo, layer)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": t.layer_digest, "size": len(layer)}],
        }
        body = json.dumps(manifest).encode()
        hdrs = {"Content-Type": OCI_MANIFEST}
        for tag in ["latest"] + [f"t{i:04d}" for i in range(n_tags - 1)]:
            r = conn.request("PUT", f"/v2/bench/rates/manifests/{tag}", hdrs, body=body)
            expect(r, 201, f"{t.name} manifest PUT {tag}")
        manifest["annotations"] = {"bench.run": os.urandom(8).hex(), "bench.seq": "SEQ"}
        t.put_body = json.dumps(manifest).encode().replace(b'"SEQ"', b'"%d"')
    finally:
        conn.close()


# --------------------------------------------------------------------------- throughput


@dataclass
class Cell:
    """What was measured for one target in one row."""

    values: list[float] = field(default_factory=list)  # MB/s or req/s
    latencies: list[float] = field(default_factory=list)  # seconds (rates)
    errors: int = 0
    wall: float = 0.0
    srv_cpu: float | None = None
    cli_cpu: float = 0.0
    peak_rss_kib: int | None = None
    note: str = ""


Results = dict[tuple[str, int], dict[str, Cell]]


def run_throughput(
    targets: list[Target],
    workloads: list[str],
    sizes: list[int],
    reps: int,
    small_reps: int,
    chunk: int,
    basedir: str,
    sync: bool,
    log: Callable[[str], None],
) -> Results:
    res: Results = {}
    conns = {t.name: t.conn() for t in targets}
    last: dict[tuple[str, int], Blob] = {}
    try:
        for size in sizes:
            log(f"generating a {fmt_size(size)} random file")
            base = BaseFile(os.path.join(basedir, f"blob-{size}"), size)
            n = small_reps if size <= 8 * MiB else reps
            for wl in workloads:
                row = res.setdefault((wl, size), {})
                for rep in range(n):
                    for t in targets:
                        cell = row.setdefault(t.name, Cell())
                        if wl == "push-post" and not t.supports_single_post:
                            cell.note = "n/a"
                            continue
                        if wl == "pull" and (t.name, size) not in last:
                            blob = base.new_blob()
                            push_blob(conns[t.name], "bench/tput", blob, "push-mono", chunk)
                            last[(t.name, size)] = blob
                        if sync:  # start each transfer without others' dirty pages
                            os.sync()
                        tree = t.tree()
                        c0, s0 = client_cpu(), cpu_seconds(tree)
                        sampler = RssSampler(t.pid) if t.pid and size >= 32 * MiB else None
                        with sampler or contextlib.nullcontext():
                            if wl == "pull":
                                blob = last[(t.name, size)]
                                t0 = time.perf_counter()
                                pull_blob(conns[t.name], "bench/tput", blob)
                            else:
                                blob = base.new_blob()
                                t0 = time.perf_counter()
                                push_blob(conns[t.name], "bench/tput", blob, wl, chunk)
                            dt = time.perf_counter() - t0
                        if wl != "pull":
                            last[(t.name, size)] = blob
                        cell.values.append(size / dt / 1e6)
                        cell.wall += dt
                        cell.cli_cpu += client_cpu() - c0
                        if tree:
                            cell.srv_cpu = (cell.srv_cpu or 0.0) + cpu_seconds(tree) - s0
                        if sampler is not None:
                            cell.peak_rss_kib = max(cell.peak_rss_kib or 0, sampler.peak_kib)
                    log(f"{LABELS[wl]} {fmt_size(size)} rep {rep + 1}/{n}: " + progress(row))
            base.file.close()
            os.unlink(base.path)
    finally:
        for c in conns.values():
            c.close()
    return res


def progress(row: dict[str, Cell]) -> str:
    return ", ".join(f"{k} {v.values[-1]:.1f}" for k, v in row.items() if v.values)


# --------------------------------------------------------------------------- request rates


def build_request(t: Target, op: str) -> tuple[Callable[[int], bytes], bool]:
    """A function seq -> request bytes, and whether the response has no body (HEAD)."""
    host = f"Host: {t.host}:{t.port}\r\nUser-Agent: registry-bench\r\n"
    if op == "manifest-get":
        req = (
            f"GET /v2/bench/rates/manifests/latest HTTP/1.1\r\n{host}"
            f"Accept: {MANIFEST_ACCEPT}\r\n\r\n"
        ).encode()
        return (lambda _seq: req), False
    if op == "blob-head":
        req = f"HEAD /v2/bench/rates/blobs/{t.layer_digest} HTTP/1.1\r\n{host}\r\n".encode()
        return (lambda _seq: req), True
    if op == "tags-list":
        req = f"GET /v2/bench/rates/tags/list HTTP/1.1\r\n{host}\r\n".encode()
        return (lambda _seq: req), False
    if op == "manifest-put":
        template = t.put_body

        def make(seq: int) -> bytes:
            body = template % seq
            return (
                f"PUT /v2/bench/put/manifests/put-{seq % 64} HTTP/1.1\r\n{host}"
                f"Content-Type: {OCI_MANIFEST}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body

        return make, False
    raise ValueError(op)


async def _read_response(reader: asyncio.StreamReader, head_only: bool) -> tuple[int, bool]:
    """Reads one response; (status, connection-close)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    chunked = close = False
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        k = k.strip().lower()
        if k == b"content-length":
            length = int(v)
        elif k == b"transfer-encoding" and b"chunked" in v.lower():
            chunked = True
        elif k == b"connection" and v.strip().lower() == b"close":
            close = True
    if head_only or status in (204, 304):
        return status, close
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass
                break
            await reader.readexactly(size + 2)
    elif length:
        await reader.readexactly(length)
    return status, close


async def _rate_run(
    t: Target,
    op: str,
    concurrency: int,
    warmup: float,
    duration: float,
    seq: Iterator[int],
    make_for: Callable[[int], Callable[[int], bytes]] | None = None,
) -> tuple[int, list[float], int, float]:
    """``concurrency`` connections sending ``op`` in a loop; ``make_for(i)``, when given,
    builds the requests of connection ``i`` instead (bodied responses expected)."""
    make, head_only = build_request(t, op) if make_for is None else (None, False)
    ok_status = 201 if op == "manifest-put" else 200
    latencies: list[float] = []
    errors = 0
    clock = time.perf_counter  # uvloop's loop.time() only has millisecond resolution
    start = clock()
    warm_at, stop_at = start + warmup, start + warmup + duration

    async def worker(index: int) -> None:
        nonlocal errors
        build = make if make_for is None else make_for(index)
        assert build is not None
        reader, writer = await asyncio.open_connection(t.host, t.port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                t0 = clock()
                if t0 >= stop_at:
                    break
                writer.write(build(next(seq)))
                status, close = await _read_response(reader, head_only)
                t1 = clock()
                if warm_at <= t1 <= stop_at:
                    if status == ok_status:
                        latencies.append(t1 - t0)
                    else:
                        errors += 1
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection(t.host, t.port)
        finally:
            writer.close()

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return len(latencies), latencies, errors, duration


def loop_runner(use_uvloop: bool) -> Callable[[Any], Any]:
    """``uvloop.run`` when wanted and importable, else ``asyncio.run``."""
    if use_uvloop:
        try:
            import uvloop

            return uvloop.run
        except ImportError:
            pass
    return asyncio.run


def run_rates(
    targets: list[Target],
    workloads: list[str],
    concurrencies: list[int],
    warmup: float,
    duration: float,
    use_uvloop: bool,
    log: Callable[[str], None],
) -> Results:
    res: Results = {}
    seq = itertools.count()
    runner = loop_runner(use_uvloop)
    for op in workloads:
        for conc in concurrencies:
            row = res.setdefault((op, conc), {})
            for t in targets:
                tree = t.tree()
                c0, s0 = client_cpu(), cpu_seconds(tree)
                w0 = time.perf_counter()
                n, lat, errors, secs = runner(_rate_run(t, op, conc, warmup, duration, seq))
                wall = time.perf_counter() - w0
                cell = Cell([n / secs], sorted(lat), errors, wall, None, client_cpu() - c0)
                if tree:
                    cell.srv_cpu = cpu_seconds(tree) - s0
                row[t.name] = cell
            log(f"{LABELS[op]} c={conc}: " + progress(row))
    return res


# --------------------------------------------------------------------------- report


def fmt_size(n: int) -> str:
    return f"{n // MiB} MiB" if n >= MiB else f"{n} B"


def pct(lat: list[float], q: float) -> float:
    if not lat:
        return float("nan")
    return lat[min(len(lat) - 1, round(q * (len(lat) - 1)))]


def table(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    right = right if right is not None else set(range(2, len(headers)))
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    out = []
    for r in [headers, ["-" * w for w in widths], *rows]:
        cells = [
            str(c).rjust(widths[i]) if i in right else str(c).ljust(widths[i])
            for i, c in enumerate(r)
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def cpu_pct(cpu: float | None, wall: float) -> str:
    return "-" if cpu is None or wall <= 0 else f"{100 * cpu / wall:.0f}%"


def mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.0f}"


def report(
    targets: list[Target], tput: Results, rates: Results, baseline: str | None, sizes: list[int]
) -> str:
    out: list[str] = []
    names = [t.name for t in targets]
    if tput:
        out.append("\n== Blob throughput: MB/s (1 MB = 10^6 bytes), median [min..max] ==")
        out.append("   CPU% = CPU time / wall time of the transfers (100% = one core)")
        rows = []
        for (wl, size), row in tput.items():
            for name in names:
                c = row.get(name)
                if c is None:
                    continue
                if not c.values:
                    rows.append([LABELS[wl], fmt_size(size), name, c.note or "-", "", "", "", ""])
                    continue
                rows.append(
                    [
                        LABELS[wl],
                        fmt_size(size),
                        name,
                        f"{statistics.median(c.values):.1f}",
                        f"[{min(c.values):.1f}..{max(c.values):.1f}] n={len(c.values)}",
                        cpu_pct(c.srv_cpu, c.wall),
                        cpu_pct(c.cli_cpu, c.wall),
                        mib(c.peak_rss_kib),
                    ]
                )
        hdr = ["workload", "size", "target", "MB/s", "range", "srv CPU", "cli CPU", "peak RSS MiB"]
        out.append(table(hdr, rows, {1, 3, 5, 6, 7}))
    if rates:
        out.append("\n== Request rates: req/s, latency in ms ==")
        rows = []
        for (op, conc), row in rates.items():
            for name in names:
                c = row[name]
                rows.append(
                    [
                        LABELS[op],
                        str(conc),
                        name,
                        f"{c.values[0]:.0f}",
                        f"{1000 * pct(c.latencies, 0.5):.2f}",
                        f"{1000 * pct(c.latencies, 0.99):.2f}",
                        str(c.errors),
                        cpu_pct(c.srv_cpu, c.wall),
                        cpu_pct(c.cli_cpu, c.wall),
                    ]
                )
        hdr = ["workload", "conc", "target", "req/s", "p50", "p99", "errors", "srv CPU", "cli CPU"]
        out.append(table(hdr, rows, {1, 3, 4, 5, 6, 7, 8}))
    if any(t.pid for t in targets):
        out.append("\n== Server memory: RSS of the process and its children, MiB ==")
        rows = []
        big = [s for s in sizes if s >= 32 * MiB]
        for t in targets:
            if not t.pid:
                continue
            r = [t.name, mib(t.idle_rss_kib)]
            for size in big:
                for wl in ("push-mono", "push-chunked", "push-post", "pull"):
                    c = tput.get((wl, size), {}).get(t.name)
                    r.append(mib(c.peak_rss_kib) if c else "-")
            rows.append(r)
        hdr = ["target", "before"]
        for size in big:
            hdr += [f"{s} {size // MiB}M" for s in ("mono", "chunked", "post", "pull")]
        out.append("   peak while pushing/pulling blobs of that size (sampled every 20 ms)")
        out.append(table(hdr, rows, set(range(1, len(hdr)))))
    if baseline and len(names) > 1:
        out.append(f"\n== Ratios: target / {baseline} (higher is better) ==")
        rows = []
        others = [n for n in names if n != baseline]
        for (wl, size), row in tput.items():
            b = row.get(baseline)
            for name in others:
                c = row.get(name)
                if not b or not c or not b.values or not c.values:
                    continue
                ratio = statistics.median(c.values) / statistics.median(b.values)
                rows.append(ratio_row(f"{LABELS[wl]} {fmt_size(size)}", name, ratio, wl, None))
        for (op, conc), row in rates.items():
            b = row[baseline]
            for name in others:
                c = row[name]
                ratio = c.values[0] / b.values[0] if b.values[0] else float("inf")
                p50 = pct(b.latencies, 0.5) / pct(c.latencies, 0.5) if c.latencies else 0
                rows.append(ratio_row(f"{LABELS[op]} c={conc}", name, ratio, op, conc, p50))
        hdr = ["workload", "target", "ratio", "p50 speedup", "goal", "met"]
        out.append(table(hdr, rows, {2, 3, 4}))
    return "\n".join(out)


def ratio_row(
    label: str, name: str, ratio: float, wl: str, conc: int | None, p50: float | None = None
) -> list[str]:
    goal = GOALS.get(wl) if name == "wharf" else None
    if goal is not None and conc is not None and conc != GOAL_CONCURRENCY:
        goal = None
    p50s = "" if p50 is None else f"{p50:.2f}x"
    if goal is None:
        return [label, name, f"{ratio:.2f}x", p50s, "", ""]
    return [label, name, f"{ratio:.2f}x", p50s, f">= {goal:g}x", "yes" if ratio >= goal else "NO"]


# --------------------------------------------------------------------------- main


def parse_pairs(values: list[str], what: str) -> list[tuple[str, str]]:
    out = []
    for v in values:
        name, sep, rest = v.partition("=")
        if not sep or not name or not rest:
            raise SystemExit(f"{what} wants NAME=VALUE, got {v!r}")
        out.append((name, rest))
    return out


def parse_list(value: str, allowed: list[str], what: str) -> list[str]:
    items = [x.strip() for x in value.split(",") if x.strip()]
    for x in items:
        if x not in allowed:
            raise SystemExit(f"{what}: unknown {x!r} (choose from {', '.join(allowed)})")
    return items


def default_wharf_bin() -> str:
    here = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "wharf")
    repo_venv = os.path.join(os.path.dirname(__file__), "..", ".venv", "bin", "wharf")
    for cand in (here, os.path.abspath(repo_venv)):
        if os.access(cand, os.X_OK):
            return cand
    return shutil.which("wharf") or "wharf"


def start_peers(servers: Servers, args: argparse.Namespace, log: Callable[[str], None]) -> None:
    """Set up --storage s3 / --database for the servers, starting radosgw and PostgreSQL
    with the test suite's helpers when asked (they need Wharf's venv)."""
    if args.start_s3 or args.start_postgres:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if args.storage == "s3":
        if args.start_s3:
            from tests.support.s3 import RadosGateway

            log("starting radosgw")
            gateway = RadosGateway().start()
            servers.stoppers.append(gateway.stop)
            gateway.create_bucket(args.s3_bucket)
            args.s3_endpoint = gateway.endpoint
            args.s3_accesskey, args.s3_secretkey = gateway.access_key, gateway.secret_key
            log(f"radosgw on {gateway.endpoint}")
        if not args.s3_endpoint:
            raise SystemExit("--storage s3 needs --s3-endpoint URL (or --start-s3)")
        servers.s3 = {
            "region": args.s3_region,
            "regionendpoint": args.s3_endpoint,
            "bucket": args.s3_bucket,
            "accesskey": args.s3_accesskey,
            "secretkey": args.s3_secretkey,
            "secure": args.s3_endpoint.startswith("https:"),
            "v4auth": True,
            "forcepathstyle": True,
        }
    servers.database_url = args.database
    if args.start_postgres:
        from tests.support.postgres import PostgresCluster, find_bindir

        bindir = find_bindir()
        if bindir is None:
            raise SystemExit("--start-postgres: PostgreSQL is not installed")
        cluster = PostgresCluster(bindir).start()
        servers.stoppers.append(cluster.stop)
        servers.database_url = cluster.create_database("bench")
        log(f"PostgreSQL on port {cluster.port}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Benchmark OCI registries with the same workload and compare them.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--target", action="append", default=[], metavar="NAME=URL")
    p.add_argument(
        "--pid", action="append", default=[], metavar="NAME=PID",
        help="server PID of a --target, for CPU and RSS (its children count too)",
    )  # fmt: skip
    p.add_argument(
        "--start-both", action="store_true",
        help="start wharf and the reference registry on free ports, bench both, stop them",
    )  # fmt: skip
    p.add_argument("--wharf-bin", default=default_wharf_bin())
    p.add_argument("--reference-bin", default="/usr/bin/docker-registry")
    p.add_argument("--baseline", help="ratios against this target (default: reference, else last)")
    p.add_argument("--quick", action="store_true", help="1 and 64 MiB only, shorter rate runs")
    p.add_argument("--sizes", default="1,64,512", help="blob sizes in MiB")
    p.add_argument(
        "--workloads", default=",".join(THROUGHPUT_WORKLOADS + RATE_WORKLOADS),
        help="comma list of " + ", ".join(THROUGHPUT_WORKLOADS + RATE_WORKLOADS),
    )  # fmt: skip
    p.add_argument("--reps", type=int, default=3, help="repetitions per blob size > 8 MiB")
    p.add_argument("--small-reps", type=int, default=15, help="repetitions per blob <= 8 MiB")
    p.add_argument("--chunk-mib", type=int, default=16, help="PATCH chunk size (chunked push)")
    p.add_argument("--concurrency", default="1,32", help="concurrencies for the rate workloads")
    p.add_argument("--duration", type=float, default=5.0, help="seconds measured per rate run")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    p.add_argument("--tags", type=int, default=50, help="tags in the repository of tags list")
    p.add_argument(
        "--no-sync", action="store_true",
        help="do not sync(2) (untimed) before each blob transfer",
    )  # fmt: skip
    p.add_argument("--no-uvloop", action="store_true", help="plain asyncio event loop")
    p.add_argument("--workdir", help="where blob files and started servers live (default: tmp)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--json", help="also write the raw results to this file")
    p.add_argument(
        "--storage", choices=["filesystem", "s3"], default="filesystem",
        help="storage of the servers --start-both starts (s3: both on the same S3 endpoint)",
    )  # fmt: skip
    p.add_argument("--s3-endpoint", default=os.environ.get("S3_ENDPOINT", ""))
    p.add_argument("--s3-bucket", default="bench", help="an existing bucket")
    p.add_argument("--s3-region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    p.add_argument("--s3-accesskey", default=os.environ.get("AWS_ACCESS_KEY_ID", ""))
    p.add_argument("--s3-secretkey", default=os.environ.get("AWS_SECRET_ACCESS_KEY", ""))
    p.add_argument(
        "--start-s3", action="store_true",
        help="start a private Ceph radosgw (tests/support/s3.py) for --storage s3",
    )  # fmt: skip
    p.add_argument("--database", default="", help="Wharf's database.url (e.g. PostgreSQL)")
    p.add_argument(
        "--start-postgres", action="store_true",
        help="start a private PostgreSQL (tests/support/postgres.py) as Wharf's database",
    )  # fmt: skip
    args = p.parse_args(argv)

    if args.quick:
        if args.sizes == "1,64,512":
            args.sizes = "1,64"
        args.duration = min(args.duration, 3.0)
        args.warmup = min(args.warmup, 0.5)
    sizes = [int(float(s) * MiB) for s in args.sizes.split(",") if s.strip()]
    workloads = parse_list(args.workloads, THROUGHPUT_WORKLOADS + RATE_WORKLOADS, "--workloads")
    concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if not args.target and not args.start_both:
        p.error("give --target NAME=URL (one or more) or --start-both")

    def log(msg: str) -> None:
        print(f"# {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)

    workdir = args.workdir or tempfile.mkdtemp(prefix="registry-bench-")
    os.makedirs(workdir, exist_ok=True)
    servers = Servers(workdir, args.wharf_bin, args.reference_bin)
    pids = {k: int(v) for k, v in parse_pairs(args.pid, "--pid")}
    targets: list[Target] = []
    started = time.time()
    try:
        if args.start_both:
            start_peers(servers, args, log)
            targets.append(servers.start_wharf())
            targets.append(servers.start_reference())
            log(", ".join(f"{t.name} {t.url} pid {t.pid}" for t in targets))
        for name, url in parse_pairs(args.target, "--target"):
            if any(t.name == name for t in targets):
                raise SystemExit(f"duplicate target name {name!r}")
            targets.append(Target(name, url.rstrip("/"), pids.get(name)))
        names = [t.name for t in targets]
        baseline = args.baseline or ("reference" if "reference" in names else names[-1])
        if baseline not in names:
            raise SystemExit(f"--baseline {baseline!r} is not a target")
        for t in targets:
            probe_and_seed(t, args.tags)
            if t.pid:
                t.idle_rss_kib = rss_kib(process_tree(t.pid))
        tput_wl = [w for w in workloads if w in THROUGHPUT_WORKLOADS]
        rate_wl = [w for w in workloads if w in RATE_WORKLOADS]
        tput = rates = {}
        if tput_wl and sizes:
            blobdir = os.path.join(workdir, "blobs")
            os.makedirs(blobdir, exist_ok=True)
            tput = run_throughput(
                targets, tput_wl, sizes, args.reps, args.small_reps, args.chunk_mib * MiB,
                blobdir, not args.no_sync, log,
            )  # fmt: skip
        if rate_wl:
            rates = run_rates(
                targets, rate_wl, concurrencies, args.warmup, args.duration,
                not args.no_uvloop, log,
            )  # fmt: skip
    finally:
        servers.stop()
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    print("registry_bench: " + " ".join(sys.argv[1:] if argv is None else argv))
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.machine()}, Linux {platform.release()}; "
        f"python {platform.python_version()}; ran {time.time() - started:.0f}s"
    )
    for t in targets:
        extra = f", pid {t.pid}" if t.pid else ""
        post = "yes" if t.supports_single_post else "no"
        print(f"target {t.name}: {t.url}{extra} (single POST upload: {post})")
    print(
        f"blobs: {', '.join(fmt_size(s) for s in sizes)}; chunk {args.chunk_mib} MiB; "
        f"reps {args.reps} (<= 8 MiB: {args.small_reps}); sync before each: "
        f"{'no' if args.no_sync else 'yes'}; rates: {args.warmup:g}s warmup + "
        f"{args.duration:g}s per run, concurrency {','.join(map(str, concurrencies))}"
    )
    print(report(targets, tput, rates, baseline, sizes))
    if args.json:
        raw = {
            "targets": {t.name: t.url for t in targets},
            "throughput": [
                {"workload": wl, "size": size, "target": name, **cell.__dict__}
                for (wl, size), row in tput.items()
                for name, cell in row.items()
            ],
            "rates": [
                {
                    "workload": op,
                    "concurrency": conc,
                    "target": name,
                    "req_s": cell.values[0],
                    "p50_s": pct(cell.latencies, 0.5),
                    "p99_s": pct(cell.latencies, 0.99),
                    "errors": cell.errors,
                    "srv_cpu": cell.srv_cpu,
                    "cli_cpu": cell.cli_cpu,
                    "wall": cell.wall,
                }
                for (op, conc), row in rates.items()
                for name, cell in row.items()
            ],
        }
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
