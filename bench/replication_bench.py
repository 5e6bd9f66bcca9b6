"""Replication throughput and mirror first-byte latency, between local Wharf instances.

    .venv/bin/python bench/replication_bench.py [--total-mib 1024] [--layer-mib 64]
                                                [--mirror-mib 200] [--workdir DIR]

Starts three ``wharf serve`` processes, one worker each (A: source, B: target, M: a
mirror of A under ``hub/``) on free loopback ports, then prints:

1. the loopback limit: one plain httpx download of a large blob from A, and the same
   number of bytes as the copy downloaded with ``--parallel`` streams at once;
2. replication: a rule copying ``--total-mib`` of layers (one image) from A to B with
   the copy engine (``--parallel`` blobs at once, 16 MiB chunks), MB/s;
3. a second run of the rule (nothing new: zero blob bytes expected);
4. the mirror: time to the first byte, and to the last, of a cold ``--mirror-mib``
   layer pulled through M (which fetches it from A while streaming it), then warm.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from registry.config import RemoteSettings, ReplicationRuleSettings
from replicator.runner import RuleRunner

MiB = 1024 * 1024
CHUNK = 4 * MiB


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    def __init__(self, workdir: Path, extra: dict[str, Any] | None = None) -> None:
        workdir.mkdir(parents=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config: dict[str, Any] = {
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "http": {"addr": f"127.0.0.1:{self.port}", "workers": 1},
            "storage": {"filesystem": {"rootdirectory": str(workdir / "data")}},
        }
        for key, value in (extra or {}).items():
            if isinstance(value, dict):
                config.setdefault(key, {}).update(value)
            else:
                config[key] = value
        path = workdir / "config.yml"
        path.write_text(yaml.safe_dump(config))
        self.log = (workdir / "wharf.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "registry.cli", "serve", str(path)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/v2/", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server in {workdir} did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


def make_layer(path: Path, size: int, seed: int) -> str:
    """A file of pseudo-random bytes (not compressible); its sha256 digest."""
    h = hashlib.sha256()
    block = hashlib.sha256(str(seed).encode()).digest() * (CHUNK // 32)
    with path.open("wb") as f:
        left, n = size, 0
        while left > 0:
            data = os.urandom(64) + block[64 : min(CHUNK, left)]
            f.write(data)
            h.update(data)
            left -= len(data)
            n += 1
    return f"sha256:{h.hexdigest()}"


def push_file(client: httpx.Client, repo: str, path: Path, digest: str) -> None:
    def body() -> Any:
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    r = client.post(
        f"/v2/{repo}/blobs/uploads/",
        params={"digest": digest},
        content=body(),
        headers={"Content-Length": str(path.stat().st_size)},
    )
    r.raise_for_status()


def push_image(client: httpx.Client, repo: str, tag: str, layers: list[tuple[str, int]]) -> None:
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    cd = f"sha256:{hashlib.sha256(config).hexdigest()}"
    client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": cd}, content=config)
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": cd,
            "size": len(config),
        },
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s}
            for d, s in layers
        ],
    }
    r = client.put(
        f"/v2/{repo}/manifests/{tag}",
        content=json.dumps(manifest).encode(),
        headers={"Content-Type": str(manifest["mediaType"])},
    )
    r.raise_for_status()


async def download(url: str, paths: list[str]) -> float:
    """Seconds to GET every path at once (bodies discarded)."""

    async def one(client: httpx.AsyncClient, path: str) -> None:
        async with client.stream("GET", path) as r:
            r.raise_for_status()
            async for _ in r.aiter_raw():
                pass

    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        started = time.perf_counter()
        await asyncio.gather(*(one(client, p) for p in paths))
        return time.perf_counter() - started


def mb_s(nbytes: int, seconds: float) -> str:
    return f"{nbytes / 1e6 / seconds:8.1f} MB/s ({nbytes / MiB:.0f} MiB in {seconds:.2f} s)"


async def replicate(source: str, target: str, parallel: int) -> tuple[float, dict[str, int]]:
    rule = ReplicationRuleSettings.model_validate(
        {
            "name": "bench",
            "remote": {"url": target},
            "repositories": ["bench/*"],
            "maxparallel": parallel,
            "chunksize": "16M",
        }
    )
    started, cpu = time.perf_counter(), time.process_time()
    status, counters = await RuleRunner(rule, RemoteSettings(url=source)).run("manual")
    elapsed = time.perf_counter() - started
    counters_dict = counters.as_dict()
    counters_dict["cpu_ms"] = int((time.process_time() - cpu) * 1000)
    if status != "ok":
        raise RuntimeError(f"replication failed: {counters.errors}")
    return elapsed, counters_dict


async def first_byte(url: str, path: str) -> tuple[float, float, int]:
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        started = time.perf_counter()
        first = None
        total = 0
        async with client.stream("GET", path) as r:
            r.raise_for_status()
            async for chunk in r.aiter_raw():
                if first is None:
                    first = time.perf_counter() - started
                total += len(chunk)
        return first or 0.0, time.perf_counter() - started, total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--total-mib", type=int, default=1024)
    ap.add_argument("--layer-mib", type=int, default=64)
    ap.add_argument("--mirror-mib", type=int, default=200)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--workdir", help="keep everything here (default: a temporary directory)")
    args = ap.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="wharf-repl-bench-"))
    servers: list[Server] = []
    try:
        a = Server(workdir / "a")
        servers.append(a)
        b = Server(workdir / "b")
        servers.append(b)
        mirrors = [{"prefix": "hub", "remoteurl": a.url, "ttl": "1h"}]
        m = Server(workdir / "m", {"mirrors": mirrors})
        servers.append(m)
        files = workdir / "files"
        files.mkdir()
        count = max(args.total_mib // args.layer_mib, 1)
        layers = []
        print(f"preparing {count} layers of {args.layer_mib} MiB in A ...", file=sys.stderr)
        pushing = 0.0
        with httpx.Client(base_url=a.url, timeout=600) as client:
            for i in range(count):
                path = files / f"layer{i}"
                digest = make_layer(path, args.layer_mib * MiB, i)
                started = time.perf_counter()
                push_file(client, "bench/big", path, digest)
                pushing += time.perf_counter() - started
                layers.append((digest, args.layer_mib * MiB))
                path.unlink()
            push_image(client, "bench/big", "v1", layers)
            mpath = files / "mirror-layer"
            mdigest = make_layer(mpath, args.mirror_mib * MiB, 999)
            push_file(client, "mirrored/big", mpath, mdigest)
            mpath.unlink()
        total = sum(s for _, s in layers)

        one = asyncio.run(download(a.url, [f"/v2/bench/big/blobs/{layers[0][0]}"]))
        par = asyncio.run(download(a.url, [f"/v2/bench/big/blobs/{d}" for d, _ in layers]))
        print("loopback limit (plain httpx GET from A)")
        print(f"  1 stream, one {args.layer_mib} MiB blob     {mb_s(layers[0][1], one)}")
        print(f"  all layers, {len(layers)} streams at once  {mb_s(total, par)}")
        print(f"  push into A, 1 stream from files {mb_s(total, pushing)}")

        elapsed, counters = asyncio.run(replicate(a.url, b.url, args.parallel))
        print(f"replication A -> B (maxparallel {args.parallel}, 16 MiB chunks)")
        print(f"  first run                        {mb_s(counters['bytes'], elapsed)}")
        ratio = (counters["bytes"] / elapsed) / (total / par)
        print(f"    {ratio:.2f} x the parallel download; replicator CPU {counters['cpu_ms']} ms")
        again, counters2 = asyncio.run(replicate(a.url, b.url, args.parallel))
        print(
            f"  second run (nothing new)         {again:.2f} s, "
            f"{counters2['bytes']} blob bytes, {counters2['tags_skipped']} tag(s) in step"
        )

        blob = f"/v2/hub/mirrored/big/blobs/{mdigest}"
        ttfb, full, n = asyncio.run(first_byte(m.url, blob))
        print(f"mirror M of A, cold {args.mirror_mib} MiB layer")
        print(f"  first byte  {ttfb * 1000:8.1f} ms;  whole layer {mb_s(n, full)}")
        ttfb2, full2, n2 = asyncio.run(first_byte(m.url, blob))
        print(f"  warm:       {ttfb2 * 1000:8.1f} ms;  whole layer {mb_s(n2, full2)}")
    finally:
        for s in servers:
            s.stop()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
