"""``wharf events status | dead | requeue``: the event outbox of the configured database
(``-c config.yml``), with or without a running registry. The same functions as
``/api/events`` (a running registry's senders pick re-queued events up within a second).

Exit status: 0 done, 1 none of the given event ids was a dead event, 2 bad arguments or
configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from registry.commandline import add_config_arguments
from registry.config import ConfigError, Settings, load_settings
from registry.meta.migrate import SchemaOutOfDate

ERROR_WIDTH = 100  # a last error is cut to this in the table (``--json`` has it whole)


class _BadArgument(Exception):
    """An argument the configuration or database contradicts (exit status 2)."""


def _fail(message: str) -> int:
    print(f"wharf events: {message}", file=sys.stderr)
    return 2


def _endpoint(settings: Settings, name: str | None) -> str | None:
    known = [e.name for e in settings.notifications.endpoints]
    if name is not None and name not in known:
        listed = ", ".join(known) or "none is configured"
        raise _BadArgument(f"no endpoint named {name!r} (endpoints: {listed})")
    return name


def _short(text: str | None, width: int = ERROR_WIDTH) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _print_status(endpoints: list[dict[str, Any]]) -> None:
    if not endpoints:
        print("no notification endpoints are configured (notifications.endpoints)")
    for e in endpoints:
        state = " (disabled)" if e["disabled"] else ""
        print(f"{e['name']}{state}  {e['url']}")
        print(
            f"  pending {e['pending']}  delivered {e['delivered']}  dead {e['dead']}  "
            f"consecutive failures {e['failures']}  lag {e['lag_seconds']:.1f}s"
        )
        print(f"  last success   {e['last_success'] or '-'}")
        if e["last_error"]:
            print(f"  last error     {e['last_error_at']}: {_short(e['last_error'])}")
        if e["paused_until"]:
            print(f"  paused until   {e['paused_until']}")
        print(f"  sender         {e['sender'] or '-'}")


def _print_dead(dead: list[dict[str, Any]]) -> None:
    if not dead:
        print("no dead events")
        return
    rows = [("ID", "ENDPOINT", "ACTION", "REPOSITORY", "TARGET", "ATTEMPTS", "FAILED AT", "ERROR")]
    for d in dead:
        event, target = d["event"], d["event"].get("target", {})
        what = target.get("digest", "")
        if target.get("tag"):
            what = f"{what} ({target['tag']})" if what else f":{target['tag']}"
        rows.append(
            (
                str(d["seq"]),
                d["endpoint"],
                event.get("action", ""),
                target.get("repository", ""),
                what,
                str(d["attempts"]),
                d["failed_at"] or "-",
                _short(d["error"]),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    from registry.events import store as outbox
    from registry.events.api import dead_report, endpoint_report
    from registry.meta.db import Database
    from registry.meta.migrate import ensure_schema

    name = _endpoint(settings, getattr(args, "endpoint", None))
    await ensure_schema(settings.database_url)
    db = Database(settings.database_url, 1)
    try:
        if args.events_command == "status":
            endpoints = await endpoint_report(db, settings.notifications)
            if args.json:
                print(json.dumps({"endpoints": endpoints}, indent=2))
            else:
                _print_status(endpoints)
            return 0
        if args.events_command == "dead":
            dead = await dead_report(db, name, args.after, args.limit)
            more = len(dead) == args.limit
            if args.json:
                after = dead[-1]["seq"] if dead else args.after
                print(json.dumps({"dead": dead, "next": after}, indent=2))
            else:
                _print_dead(dead)
                if more:
                    print(f"(more may follow: --after {dead[-1]['seq']})", file=sys.stderr)
            return 0
        ids: list[int] | None = args.ids or None
        count = await db.run_write(outbox.requeue_dead, name, ids)
    finally:
        await db.close()
    where = f" for {name}" if name else ""
    if ids is not None and count == 0:
        print(
            f"wharf events: no dead event{where} with id {', '.join(map(str, ids))}",
            file=sys.stderr,
        )
        return 1
    print(f"requeued {count} dead event{'' if count == 1 else 's'}{where}")
    return 0


def _events(args: argparse.Namespace) -> int:
    if args.events_command == "requeue" and not args.ids and not args.all:
        return _fail("requeue: which events? give their ids (see `wharf events dead`) or --all")
    if args.events_command == "requeue" and args.ids and args.all:
        return _fail("requeue: give event ids or --all, not both")
    try:
        settings = load_settings(args.config)
        return asyncio.run(_run(args, settings))
    except (ConfigError, SchemaOutOfDate, _BadArgument) as e:
        return _fail(str(e))


def _whole(low: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}")
        return value

    return parse


def add_commands(sub: Any) -> None:
    """Add ``wharf events status|dead|requeue`` to the command line."""

    events = sub.add_parser("events", help="notification delivery: status, dead events, requeue")
    events_sub = events.add_subparsers(dest="events_command", required=True)
    status = events_sub.add_parser("status", help="each endpoint's queue, health and last error")
    dead = events_sub.add_parser("dead", help="list events parked as dead, oldest first")
    dead.add_argument("--endpoint", help="only this endpoint's (its name)")
    dead.add_argument("--limit", type=_whole(1), default=100, help="at most this many (100)")
    dead.add_argument("--after", type=_whole(0), default=0, help="only ids above this (paging)")
    requeue = events_sub.add_parser(
        "requeue", help="make dead events pending again: they go out before newer events"
    )
    requeue.add_argument("ids", nargs="*", type=_whole(1), metavar="ID", help="dead event ids")
    requeue.add_argument("--all", action="store_true", help="every dead event (of --endpoint)")
    requeue.add_argument("--endpoint", help="only this endpoint's (its name)")
    for p in (status, dead):
        add_config_arguments(p)
    add_config_arguments(requeue, positional=False)  # its positionals are event ids
    for p in (status, dead, requeue):
        p.set_defaults(func=_events)
    for p in (status, dead):
        p.add_argument("--json", action="store_true", help="print JSON (as /api/events gives)")
