"""The operations kit in deploy/: Prometheus alert rules and a Grafana dashboard whose
queries name only metrics a real Wharf exports, evaluated by a real Prometheus (Debian's
``prometheus`` package) scraping a real server; and the systemd unit, checked by
``systemd-analyze``."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.auth import PASSWORDS, htpasswd_config
from tests.support.oci import push_image
from tests.support.receiver import Receiver
from tests.support.server import WharfServer, free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "wharf-alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "wharf-dashboard.json"
UNIT = DEPLOY / "systemd" / "wharf.service"
METRIC = re.compile(r"\b(wharf_[a-z_]+)\b")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def _tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is missing: scripts/install.sh --test installs it"
    return found


def alert_queries() -> dict[str, str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}


def dashboard_queries() -> dict[str, str]:
    """Each panel target's query, Grafana's variables given values Prometheus takes."""
    found: dict[str, str] = {}
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "1m").replace("$instance", ".*")
            found[f"{panel['title']} {target['refId']}"] = expr
    return found


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WharfServer]:
    """A server with auth and an events endpoint (so every family is exported), after a
    push, pulls, a failed login and a GC run."""
    workdir = tmp_path_factory.mktemp("monitored")
    receiver = Receiver(workdir / "receiver").start()
    config: dict[str, Any] = {
        "http": {"workers": 1},
        **htpasswd_config(workdir),
        "notifications": {"endpoints": [{"name": "ci", "url": receiver.url, "timeout": "1s"}]},
    }
    server = WharfServer(workdir / "server", config).start()
    try:
        with server.client(auth=("admin", PASSWORDS["admin"])) as c:
            push_image(c, "team-a/app", "v1", [b"monitored layer"])
            for _ in range(3):
                assert c.get("/v2/team-a/app/manifests/v1").status_code == 200
            assert c.get("/v2/", auth=("admin", "wrong")).status_code == 401
            r = c.post("/api/gc/runs", json={"dry_run": True})
            assert r.status_code in (201, 202), r.text
        yield server
    finally:
        server.stop()
        receiver.stop()


def exported(server: WharfServer) -> set[str]:
    """The sample names of ``/metrics``: each family, and a histogram's series."""
    names: set[str] = set()
    for line in httpx.get(server.metrics_url).text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            if kind == "histogram":
                names.update(name + s for s in HISTOGRAM_SUFFIXES)
    return names


def test_alert_rules_pass_promtool_and_their_unit_tests() -> None:
    promtool = _tool("promtool")
    checked = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_queries())} rules found" in checked.stdout
    tested = subprocess.run(
        [promtool, "test", "rules", "wharf-alerts.test.yml"],
        capture_output=True,
        text=True,
        cwd=ALERTS.parent,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_query_names_a_metric_wharf_exports(monitored: WharfServer) -> None:
    names = exported(monitored)
    queries = {**alert_queries(), **dashboard_queries()}
    missing = {
        where: sorted(set(METRIC.findall(expr)) - names)
        for where, expr in queries.items()
        if set(METRIC.findall(expr)) - names
    }
    assert missing == {}
    assert all(METRIC.search(expr) for expr in queries.values())
    # what the alerts are about is all there: errors, latency, storage, GC, replication,
    # events, quotas and logins
    used = {m for expr in queries.values() for m in METRIC.findall(expr)}
    for family in ("http_requests", "http_errors", "gc_runs", "replication_lag", "events_dead"):
        assert any(m.startswith(f"wharf_{family}") for m in used), family
    for family in ("quota_crossed", "quota_refused", "logins", "http_request_duration"):
        assert any(m.startswith(f"wharf_{family}") for m in used), family


def test_a_real_prometheus_evaluates_every_query(monitored: WharfServer, tmp_path: Path) -> None:
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {
                "job_name": "wharf",
                "static_configs": [{"targets": [monitored.metrics_url.split("/")[2]]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            _tool("prometheus"),
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    api = f"http://127.0.0.1:{port}/api/v1"
    try:

        def query(expr: str) -> list[dict[str, Any]]:
            r = httpx.get(f"{api}/query", params={"query": expr}, timeout=10)
            assert r.status_code == 200, (expr, r.text)
            body = r.json()
            assert body["status"] == "success", (expr, body)
            result: list[dict[str, Any]] = body["data"]["result"]
            return result

        deadline = time.monotonic() + 60
        while True:  # three scrapes, so that rate() has points
            try:
                if (
                    query("count_over_time(up[1m])")
                    and float(query("count_over_time(up[1m])")[0]["value"][1]) >= 3
                ):
                    break
            except (httpx.HTTPError, AssertionError):
                pass
            assert time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()
            time.sleep(0.5)
        assert query('up{job="wharf"}')[0]["value"][1] == "1"
        for expr in {**alert_queries(), **dashboard_queries()}.values():
            query(expr)  # parsed and evaluated without an error
        # the series Wharf's traffic made are there, labelled as the queries expect
        pulls = query('sum by (status) (wharf_http_requests_total{route="manifests"})')
        assert {s["metric"]["status"] for s in pulls} >= {"200", "201"}
        failures = query('wharf_logins_total{result="failure"}')
        assert failures and float(failures[0]["value"][1]) >= 1
        rules = httpx.get(f"{api}/rules", timeout=10).json()["data"]["groups"]
        loaded = {r["name"] for g in rules for r in g["rules"]}
        assert loaded == set(alert_queries())
        assert all(r["health"] == "ok" for g in rules for r in g["rules"]), rules
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_the_systemd_unit_verifies_and_is_sandboxed(tmp_path: Path) -> None:
    analyze = _tool("systemd-analyze")
    text = UNIT.read_text()
    for setting in (
        "User=wharf",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/wharf",
        "StateDirectory=wharf",
    ):
        assert f"\n{setting}\n" in text, setting
    # verify checks that ExecStart exists: point it at this tree's wharf
    wharf = Path(sys.executable).parent / "wharf"
    assert wharf.exists(), wharf
    unit = tmp_path / "wharf.service"
    unit.write_text(text.replace("/opt/wharf/bin/wharf", str(wharf)))
    verified = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert verified.returncode == 0 and verified.stderr == "", verified.stderr
    security = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
    )
    found = re.search(r"Overall exposure level for wharf.service: ([0-9.]+) (\w+)", security.stdout)
    assert found, security.stdout + security.stderr
    assert float(found.group(1)) <= 2.0 and found.group(2) == "OK", found.group(0)
