"""The ``wharf`` command: help, config check, database migrations, config arguments."""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from registry import cli
from registry.meta.migrate import head_revision
from tests.support.server import WharfServer


def wharf(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "registry.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def test_help_lists_commands() -> None:
    out = wharf("--help")
    assert out.returncode == 0
    for command in ("serve", "db", "config"):
        assert command in out.stdout


def test_config_prints_effective_settings(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text("http:\n  addr: 127.0.0.1:5999\n")
    out = wharf("config", str(cfg))
    assert out.returncode == 0, out.stderr
    assert '"addr": "127.0.0.1:5999"' in out.stdout


def test_bad_config_fails_clearly(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text("log: {level: loud}\n")
    out = wharf("serve", str(cfg))
    assert out.returncode == 2
    assert "invalid configuration" in out.stderr


def test_db_upgrade_and_out_of_date_schema(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text(f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n")
    assert wharf("db", "current", "-c", str(cfg)).returncode == 1
    up = wharf("db", "upgrade", "-c", str(cfg))
    assert up.returncode == 0, up.stderr
    current = wharf("db", "current", "-c", str(cfg))
    head = head_revision()
    assert current.returncode == 0 and f"database revision: {head}" in current.stdout
    with sqlite3.connect(tmp_path / "data" / "wharf.db") as db:
        db.execute("UPDATE alembic_version SET version_num = '0000'")
    out = wharf("serve", str(cfg))
    assert out.returncode == 2
    assert "wharf db upgrade" in out.stderr


def test_config_output_hides_credentials(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text(
        "storage:\n  filesystem:\n    rootdirectory: /tmp/x\n"
        "notifications:\n  endpoints:\n    - name: hook\n      url: http://127.0.0.1:1/\n"
        "      headers: {Authorization: [Bearer s3cr3t-header]}\n"
        "replication:\n  rules:\n    - name: r\n      direction: push\n"
        "      remote: {url: 'http://127.0.0.1:2', username: u, password: s3cr3t-pass}\n"
    )
    out = wharf("config", str(cfg))
    assert out.returncode == 0, out.stderr
    assert "s3cr3t" not in out.stdout
    assert "***" in out.stdout and "127.0.0.1:2" in out.stdout


# -- the config file: FILE, -c FILE, --config FILE on every command (issue #13) ----------

# commands whose only positional argument may be the config file: (argv, what else parses)
POSITIONAL_OK: list[tuple[list[str], dict[str, object]]] = [
    (["serve"], {}),
    (["config"], {}),
    (["db", "upgrade"], {"db_command": "upgrade"}),
    (["db", "current"], {"db_command": "current"}),
    (["gc", "--dry-run"], {"dry_run": True}),
    (["events", "status"], {"events_command": "status"}),
    (["events", "dead", "--limit", "5"], {"events_command": "dead", "limit": 5}),
    (["search", "reindex"], {"search_command": "reindex"}),
    (["robot", "list"], {"robot_command": "list"}),
    (["user", "list"], {"user_command": "list"}),
    (["project", "list"], {"project_command": "list"}),
    (["check", "--json"], {"json": True}),
    (["mirror", "evict", "--dry-run"], {"mirror_command": "evict", "dry_run": True}),
    (["scrub", "--rate", "1MiB", "--resume"], {"rate": 1024**2, "resume": True}),
]
# commands with positional arguments of their own: -c/--config only
OPTION_ONLY: list[tuple[list[str], dict[str, object]]] = [
    (["policy", "explain", "alice", "team/app"], {"user": "alice", "repository": "team/app"}),
    (["events", "requeue", "17", "18"], {"ids": [17, 18]}),
    (["robot", "create", "ci", "--group", "g"], {"name": "ci", "group": ["g"]}),
    (["robot", "revoke", "robot$ci"], {"name": "robot$ci"}),
    (["user", "create", "dana", "--admin"], {"name": "dana", "admin": True}),
    (["user", "passwd", "dana", "--password-stdin"], {"name": "dana", "password_stdin": True}),
    (["user", "disable", "dana"], {"name": "dana", "user_command": "disable"}),
    (["user", "enable", "dana"], {"name": "dana", "user_command": "enable"}),
    (["user", "delete", "dana"], {"name": "dana", "user_command": "delete"}),
    (["replicate", "nightly"], {"rule": "nightly"}),
    (["quota", "set", "team", "10GiB"], {"project": "team", "size": 10 * 1024**3}),
    (["quota", "set", "team", "none"], {"project": "team", "size": None}),
    (["quota", "show", "team"], {"project": "team"}),
    (["quota", "recount"], {"quota_command": "recount"}),
    (["retention", "run", "team", "--dry-run", "--gc"], {"project": "team", "dry_run": True}),
    (["retention", "show", "team", "--json"], {"project": "team", "json": True}),
    (["audit", "export", "--format", "csv", "--user", "dave"], {"format": "csv", "user": "dave"}),
    (["project", "create", "team", "--public"], {"name": "team", "public": True}),
    (["project", "show", "team"], {"name": "team"}),
    (["project", "update", "team", "--public", "false"], {"name": "team", "public": False}),
    (["project", "delete", "team"], {"name": "team"}),
    (["project", "member", "add", "team", "devs", "developer", "--group"], {"group": True}),
    (["project", "member", "remove", "team", "olga"], {"project": "team", "name": "olga"}),
    (["project", "member", "list", "team"], {"project": "team"}),
    (
        ["immutable", "add", "team", "--repository", "team/**", "--tag", "release-*"],
        {"project": "team", "repository": "team/**", "tag": "release-*"},
    ),
    (["immutable", "list", "team"], {"project": "team", "immutable_command": "list"}),
    (["immutable", "remove", "team", "3"], {"project": "team", "id": 3}),
    (["backup", "/srv/backup", "--json"], {"directory": "/srv/backup", "json": True}),
    (["restore", "/srv/backup", "--force"], {"directory": "/srv/backup", "force": True}),
]
CFG = "/etc/wharf/config.yml"
# commands with subcommands
GROUPS = {
    "events",
    "search",
    "robot",
    "policy",
    "user",
    "quota",
    "project",
    "immutable",
    "retention",
    "audit",
    "mirror",
}
SUBGROUPS = {("project", "member")}  # subcommands with subcommands


def parse(argv: list[str]) -> argparse.Namespace:
    return cli.parser().parse_args(argv)


def leaf_commands(p: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[Any]:
    subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, p
    for action in subs:
        for name, child in action.choices.items():
            yield from leaf_commands(child, (*path, name))


def _command(argv: list[str]) -> tuple[str, ...]:
    depth = 1 + (argv[0] in GROUPS) + (tuple(argv[:2]) in SUBGROUPS)
    return tuple(argv[:depth])


def test_every_command_takes_c_and_config() -> None:
    covered = {_command(argv) for argv, _ in POSITIONAL_OK + OPTION_ONLY}
    for path, command in leaf_commands(cli.parser()):
        if path == ("auth", "keygen"):  # writes a key pair; reads no configuration
            continue
        assert path in covered, f"wharf {' '.join(path)} is not tested here"
        options = {s for a in command._actions for s in a.option_strings}
        assert {"-c", "--config"} <= options, path


@pytest.mark.parametrize(("argv", "rest"), POSITIONAL_OK + OPTION_ONLY)
@pytest.mark.parametrize("form", ["-c", "--config", "--config=", "first"])
def test_config_option(argv: list[str], rest: dict[str, object], form: str) -> None:
    if form == "first":  # the option before the command's own arguments
        split = len(_command(argv))
        args = parse([*argv[:split], "--config", CFG, *argv[split:]])
    elif form == "--config=":
        args = parse([*argv, f"--config={CFG}"])
    else:
        args = parse([*argv, form, CFG])
    assert args.config == CFG
    for key, value in rest.items():
        assert getattr(args, key) == value


@pytest.mark.parametrize(("argv", "rest"), POSITIONAL_OK)
def test_config_positional(argv: list[str], rest: dict[str, object]) -> None:
    args = parse([*argv, CFG])
    assert args.config == CFG
    for key, value in rest.items():
        assert getattr(args, key) == value
    assert parse(argv).config is None  # and none at all: the defaults
    assert parse([*argv, CFG, "-c", CFG]).config == CFG  # the same file twice is fine


@pytest.mark.parametrize(("argv", "rest"), POSITIONAL_OK)
def test_two_different_config_files_are_refused(
    argv: list[str], rest: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse([*argv, "a.yml", "--config", "b.yml"])
    assert exit_.value.code == 2
    assert "two config files given: a.yml and b.yml" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "rest"), OPTION_ONLY)
def test_option_only_commands_say_so(
    argv: list[str], rest: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse([*argv, "--help"])
    assert "only as -c/--config here" in " ".join(capsys.readouterr().out.split())


def test_serve_with_config_option(tmp_path: Path) -> None:
    class ConfigOptionServer(WharfServer):
        config_option = ("--config",)

    # the config's port and storage are used: the server answers where the file says
    server = ConfigOptionServer(tmp_path / "w").start()
    try:
        with server.client() as client:
            assert client.get("/v2/").status_code == 200
            assert client.get("/v2/_catalog").json() == {"repositories": []}
        assert (server.root / "wharf.db").exists()
    finally:
        server.stop()


@pytest.mark.parametrize(
    "http",
    [
        "http: {maxconnections: -1}",
        "http: {timeouts: {header: soon}}",
        "http: {timeouts: {idle: 5 minutes}}",
    ],
)
def test_bad_connection_limits_are_refused(tmp_path: Path, http: str) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text(http + "\n")
    out = wharf("config", "--config", str(cfg))
    assert out.returncode == 2
    assert "invalid configuration" in out.stderr


def test_connection_limits_are_shown(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yml"
    cfg.write_text("http: {timeouts: {header: 10s}, maxconnections: 50}\n")
    out = wharf("config", "-c", str(cfg))
    assert out.returncode == 0, out.stderr
    http = json.loads(out.stdout)["http"]
    assert http["maxconnections"] == 50
    assert http["timeouts"] == {"header": "10s", "idle": "60s", "keepalive": "75s"}
