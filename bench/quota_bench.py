"""Push cost of quota checks (issue #15): the same push workloads against a registry
without the quota feature and one enforcing a quota on every push.

Starts two ``wharf serve`` on SQLite and filesystem storage (default settings, log level
warn, access log off), one from ``--baseline-tree`` (a checkout without quotas, e.g. the
main branch) and one from this tree with a quota on the project ``bench`` (the
benchmark's repositories are ``bench/...``) large enough never to refuse, so that every
push counts its bytes and checks them against it. Then runs ``bench/registry_bench.py``
(``manifest-put`` at the given concurrencies, each PUT a new manifest: a digest new to the
project, so the usage row is locked and the quota read; ``push-mono`` of 1 MiB blobs) with
the baseline as the baseline.

    .venv/bin/python bench/quota_bench.py --baseline-tree /path/to/main [--quick]

Prints registry_bench's report; the ratios column is ``quota / baseline``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
TREE = HERE.parent
sys.path.insert(0, str(HERE))

import registry_bench  # noqa: E402


def start(name: str, tree: Path, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    d = workdir / name
    (d / "data").mkdir(parents=True)
    port = registry_bench.free_port()
    config = d / "config.yml"
    config.write_text(
        "version: 0.1\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
        f"storage: {{filesystem: {{rootdirectory: {d / 'data'}}}, delete: {{enabled: true}}}}\n"
        "log: {level: warn, accesslog: {disabled: true}}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tree)}
    log = d / "server.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "registry.cli", "serve", str(config)],
            cwd=tree,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    registry_bench.wait_ready(url, proc, str(log))
    return proc, url


def set_quota(workdir: Path, url: str, quota: int) -> None:
    """The project row (the projects feature makes it; here directly), then the quota
    through the API."""
    now = datetime.now(UTC).isoformat(" ")
    with sqlite3.connect(workdir / "quota" / "data" / "wharf.db") as db:
        db.execute(
            "INSERT INTO projects (name, public, description, quota_bytes, created_at,"
            " updated_at) VALUES ('bench', 0, '', NULL, ?, ?)",
            (now, now),
        )
    request = urllib.request.Request(
        f"{url}/api/projects/bench/quota",
        data=f'{{"bytes": {quota}}}'.encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.status == 200, r.status


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline-tree", required=True, help="a checkout without the quota feature")
    p.add_argument("--quick", action="store_true", help="shorter rate runs")
    p.add_argument("--concurrency", default="1,32")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="wharf-quota-bench-"))
    procs = []
    try:
        base, base_url = start("baseline", Path(args.baseline_tree).resolve(), workdir)
        procs.append(base)
        quota, quota_url = start("quota", TREE, workdir)
        procs.append(quota)
        set_quota(workdir, quota_url, 2**50)
        time.sleep(1)
        argv = [
            "--target", f"baseline={base_url}", "--target", f"quota={quota_url}",
            "--pid", f"baseline={base.pid}", "--pid", f"quota={quota.pid}",
            "--baseline", "baseline", "--workloads", "manifest-put,push-mono",
            "--sizes", "1", "--concurrency", args.concurrency,
        ]  # fmt: skip
        if args.quick:
            argv.append("--quick")
        return registry_bench.main(argv)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
