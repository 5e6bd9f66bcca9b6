"""What notifications cost a push, and how fast a backlog of events is delivered.

1. Push latency: the p50 (and p90) of a manifest ``PUT`` on a registry without
   ``notifications``, with an endpoint that is down (only the outbox rows written in the
   push's transaction: the sender is paused) and with a running, fast receiver (the
   outbox plus delivering each event as it comes, in the same process). The three
   registries run at once and take one push each in turn, so a busy machine weighs on
   all three alike.
2. Delivery throughput: ``--events`` manifests pushed while the receiver is down, then
   the receiver comes up; events/s from its first request to the last event.

Starts its own ``wharf serve`` processes (SQLite, ``--workers`` each) and an in-process
receiver that answers 200 at once. Prints figures; asserts nothing.

    .venv/bin/python bench/events_bench.py [--pushes 300] [--events 5000] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FastReceiver:
    """Counts the events it is sent; answers 200 straight away."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.count = 0
        self.first: float | None = None
        self.last: float | None = None
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                n = len(json.loads(body)["events"])
                with outer.lock:
                    now = time.monotonic()
                    outer.first = outer.first or now
                    outer.last = now
                    outer.count += n
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


class Registry:
    def __init__(
        self, workdir: Path, workers: int, endpoint_url: str | None, backoff: str = "0.5s"
    ) -> None:
        self.port = free_port()
        workdir.mkdir(parents=True)
        config: dict[str, Any] = {
            "version": "0.1",
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "http": {"addr": f"127.0.0.1:{self.port}", "workers": workers},
            "storage": {"filesystem": {"rootdirectory": str(workdir / "data")}},
        }
        if endpoint_url:
            config["notifications"] = {
                "endpoints": [
                    {"name": "bench", "url": endpoint_url, "timeout": "2s", "backoff": backoff}
                ]
            }
        cfg = workdir / "config.yml"
        cfg.write_text(yaml.safe_dump(config))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "registry.cli", "serve", str(cfg)],
            stdout=(workdir / "log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/v2/", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError((workdir / "log").read_text()[-2000:])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def digest_of(data: bytes) -> str:
    import hashlib

    return f"sha256:{hashlib.sha256(data).hexdigest()}"


class Pusher:
    """Pushes distinct small manifests to one registry (its blobs once)."""

    config, layer = b'{"os":"linux"}', b"bench layer"

    def __init__(self, url: str, name: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=60)
        self.name = name
        self.n = 0
        for blob in (self.config, self.layer):
            r = self.client.post(
                f"/v2/{name}/blobs/uploads/", params={"digest": digest_of(blob)}, content=blob
            )
            assert r.status_code == 201, r.text

    def push(self) -> float:
        """One manifest PUT; returns its seconds."""
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest_of(self.config),
                "size": len(self.config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest_of(self.layer),
                    "size": len(self.layer),
                }
            ],
            "annotations": {"n": str(self.n)},
        }
        body = json.dumps(manifest).encode()
        t = time.perf_counter()
        r = self.client.put(
            f"/v2/{self.name}/manifests/t{self.n}",
            content=body,
            headers={"Content-Type": OCI_MANIFEST},
        )
        spent = time.perf_counter() - t
        assert r.status_code == 201, r.text
        self.n += 1
        return spent

    def close(self) -> None:
        self.client.close()


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pushes", type=int, default=300)
    p.add_argument("--events", type=int, default=5000)
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="wharf-events-bench-") as tmp:
        root = Path(tmp)
        receiver = FastReceiver(free_port())
        receiver.start()
        rcv_url = f"http://127.0.0.1:{receiver.port}/events"
        print(f"manifest PUT latency, {args.pushes} pushes, {args.workers} worker(s):")
        down = f"http://127.0.0.1:{free_port()}/events"  # nothing listens: only the outbox
        variants = (("no endpoint", None), ("endpoint down", down), ("one endpoint", rcv_url))
        registries = [
            Registry(root / label.replace(" ", "-"), args.workers, url, backoff)
            for label, url, backoff in (
                (label, url, "60s" if url == down else "0.5s") for label, url in variants
            )
        ]
        try:
            # round robin: one push to each in turn, so all see the same machine load
            pushers = [Pusher(reg.url, "bench/latency") for reg in registries]
            for _ in range(20):
                for pusher in pushers:
                    pusher.push()  # warm up
            times: list[list[float]] = [[] for _ in pushers]
            for _ in range(args.pushes):
                for i, pusher in enumerate(pushers):
                    times[i].append(pusher.push())
            for pusher in pushers:
                pusher.close()
        finally:
            for reg in registries:
                reg.stop()
        for (label, _), spent in zip(variants, times, strict=True):
            print(f"  {label:13} p50 {pct(spent, 50):6.2f} ms   p90 {pct(spent, 90):6.2f} ms")
        receiver.stop()

        port = free_port()
        reg = Registry(root / "throughput", args.workers, f"http://127.0.0.1:{port}/events")
        try:
            backlog = Pusher(reg.url, "bench/backlog")
            for _ in range(args.events):
                backlog.push()
            backlog.close()
            fast = FastReceiver(port)
            fast.start()
            wanted = args.events + 2  # and the two blob pushes
            deadline = time.monotonic() + 600
            while fast.count < wanted and time.monotonic() < deadline:
                time.sleep(0.05)
            fast.stop()
        finally:
            reg.stop()
        assert fast.first is not None and fast.last is not None
        spent = max(fast.last - fast.first, 1e-6)
        print(
            f"delivery of a {fast.count}-event backlog to a fast receiver: "
            f"{spent:.2f} s from the first request, {fast.count / spent:,.0f} events/s"
        )


if __name__ == "__main__":
    main()
