"""What the audit log (issue #16) costs: manifest PUT latency and manifest GET rate with
the audit log on and off.

Starts two ``wharf serve`` from this tree on SQLite and filesystem storage (log level
warn, access log off), one with ``audit: {enabled: false}`` and one with the audit log
on (the default: every manifest PUT writes its record in the push's transaction, every
manifest GET is recorded through the batched buffer). Then runs
``bench/registry_bench.py`` (``manifest-put``: each PUT a new manifest; ``manifest-get``)
at the given concurrencies, the two targets interleaved round by round, with ``off`` as
the baseline.

    .venv/bin/python bench/audit_bench.py [--quick] [--concurrency 1,32]

Prints registry_bench's report (req/s, p50, p99 per target; ratios ``on / off``) and the
number of audit records the run wrote. The goals: manifest PUT p50 under 5 % slower
with the audit log, manifest GET rate the same within the noise.
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
TREE = HERE.parent
sys.path.insert(0, str(HERE))

import registry_bench  # noqa: E402


def start(name: str, workdir: Path, audit: bool) -> tuple[subprocess.Popen[bytes], str]:
    d = workdir / name
    (d / "data").mkdir(parents=True)
    port = registry_bench.free_port()
    config = d / "config.yml"
    config.write_text(
        "version: 0.1\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
        f"storage: {{filesystem: {{rootdirectory: {d / 'data'}}}, delete: {{enabled: true}}}}\n"
        "log: {level: warn, accesslog: {disabled: true}}\n"
        f"audit: {{enabled: {'true' if audit else 'false'}}}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(TREE)}
    log = d / "server.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "registry.cli", "serve", str(config)],
            cwd=TREE,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    registry_bench.wait_ready(url, proc, str(log))
    return proc, url


def counted(workdir: Path) -> dict[str, int]:
    with sqlite3.connect(workdir / "on" / "data" / "wharf.db") as db:
        return dict(db.execute("SELECT action, count(*) FROM audit_records GROUP BY action"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="shorter rate runs")
    p.add_argument("--concurrency", default="1,32")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="wharf-audit-bench-"))
    procs = []
    try:
        off, off_url = start("off", workdir, audit=False)
        procs.append(off)
        on, on_url = start("on", workdir, audit=True)
        procs.append(on)
        time.sleep(1)
        argv = [
            "--target", f"off={off_url}", "--target", f"on={on_url}",
            "--pid", f"off={off.pid}", "--pid", f"on={on.pid}",
            "--baseline", "off", "--workloads", "manifest-put,manifest-get",
            "--sizes", "1", "--concurrency", args.concurrency,
        ]  # fmt: skip
        if args.quick:
            argv.append("--quick")
        status = registry_bench.main(argv)
        time.sleep(1)  # the last batch of pull records
        print("\naudit records written by the 'on' server:", counted(workdir))
        return status
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
