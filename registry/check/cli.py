"""``wharf check [-c config.yml]``: every problem of the configuration with its key path,
then every dependency it names reached; a table, and a non-zero exit when something
does not work (docs/operations.md)."""

from __future__ import annotations

import argparse
import asyncio
import json

from registry.check import config_check, probes
from registry.check.results import Result, table
from registry.commandline import add_config_arguments


def run(path: str | None) -> list[Result]:
    """The config's rows, then (if it validates) the dependencies'."""
    settings, results = config_check.load(path)
    if settings is not None:
        results += asyncio.run(probes.everything(settings))
    else:
        results.append(Result("dependencies", "-", "skip", "not reached: the config is invalid"))
    return results


def _check(args: argparse.Namespace) -> int:
    results = run(args.config)
    if args.json:
        print(json.dumps([r.as_json() for r in results], indent=1))
    else:
        print(table(results))
    failed = [r for r in results if r.status == "fail"]
    if not args.json:
        warned = sum(r.status == "warn" for r in results)
        print(f"\n{len(failed)} failed, {warned} warnings, {len(results)} checks")
    return 1 if failed else 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``check``."""
    check = sub.add_parser("check", help="validate the config and reach every dependency it names")
    check.add_argument("--json", action="store_true", help="the results as JSON")
    add_config_arguments(check)
    check.set_defaults(func=_check)
