"""The operators' pages (issue #17): garbage collection (runs, start a dry run or a run,
follow its progress, what a run would reclaim now), events (each endpoint's delivery
state and lag, dead events, requeue) and the system (every dependency reached now, the
version, the effective configuration without credentials). Administrators only, as
``/api/gc``, ``/api/events`` and ``/api/system`` are; answered by them as the viewer
(:mod:`registry.ui.api_pages`)."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from registry.errors import RegistryError
from registry.ui.api_pages import Action, ApiPages, Page, Rendered, Who, refused, url
from registry.ui.i18n import N_
from registry.ui.internal import InternalApi, api_path

RUNS_SHOWN = 20
DEAD_SHOWN = 100
# a run's result as the page shows it (GCResult's fields), each with its label
RESULT_LABELS = {
    "bytes_reclaimed": N_("Bytes reclaimed"),
    "manifests_deleted": N_("Manifests deleted"),
    "manifests_spared": N_("Manifests spared"),
    "blobs_deleted": N_("Blobs deleted"),
    "blobs_spared": N_("Blobs spared"),
    "links_deleted": N_("Repository links deleted"),
    "orphan_files_deleted": N_("Orphan files deleted"),
    "leftover_files_deleted": N_("Leftover files deleted"),
    "uploads_purged": N_("Uploads purged"),
    "live_manifests": N_("Live manifests"),
    "live_blobs": N_("Live blobs"),
    "duration_seconds": N_("Duration (s)"),
}
CHECK_STATUS = {
    "ok": N_("works"),
    "fail": N_("fails"),
    "warn": N_("warning"),
    "skip": N_("skipped"),
}
STATES = {
    "running": N_("running"),
    "done": N_("done"),
    "failed": N_("failed"),
    "interrupted": N_("interrupted"),
}


class OperatorPages(ApiPages):
    """``/ui/gc``, ``/ui/gc/run`` and ``/ui/events`` with their forms (``events``: False
    when no notification endpoint is configured, so no events API is mounted)."""

    def __init__(self, api: InternalApi, events: bool) -> None:
        super().__init__(api)
        self.events = events

    def pages(self) -> dict[str, Page]:
        found: dict[str, Page] = {
            "/ui/gc": self.gc_page,
            "/ui/gc/run": self.run_page,
            "/ui/system": self.system_page,
        }
        if self.events:
            found["/ui/events"] = self.events_page
        return found

    def actions(self) -> dict[str, Action]:
        found: dict[str, Action] = {"/ui/gc/start": self.start_gc}
        if self.events:
            found["/ui/events/requeue"] = self.requeue
        return found

    async def gc_page(self, request: Request, who: Who) -> Rendered:
        runs = (await self.get(who, "gc", "runs", n=str(RUNS_SHOWN)))["runs"]
        usage = None
        if request.query_params.get("usage") == "1":  # a mark over everything: on request
            usage = (await self.get(who, "gc", "usage"))["registry"]
        running = any(r["state"] == "running" for r in runs)
        context = {"runs": runs, "usage": usage, "running": running, "states": STATES}
        return "gc.html", context, 200

    async def run_page(self, request: Request, who: Who) -> Rendered:
        run = await self.get(who, "gc", "runs", request.query_params.get("id", ""))
        context = {"run": run, "labels": RESULT_LABELS, "states": STATES}
        return "gc_run.html", context, 200

    async def start_gc(
        self, request: Request, who: Who, form: dict[str, str]
    ) -> Response | Rendered:
        body = {"dry_run": form.get("dry_run") == "on"}
        if form.get("delete_untagged") == "on":
            body["delete_untagged"] = True
        try:
            started = await self.api.call(who.caller, "POST", api_path("gc", "runs"), body=body)
        except RegistryError as e:
            return refused(e, "/ui/gc")
        return RedirectResponse(url("/ui/gc/run", id=str(started.json()["id"])), 303)

    async def system_page(self, request: Request, who: Who) -> Rendered:
        found = await self.get(who, "system")
        config = json.dumps(found["config"], indent=2, sort_keys=True, default=str)
        failed = sum(c["status"] == "fail" for c in found["checks"])
        context = {**found, "config_text": config, "failed": failed, "statuses": CHECK_STATUS}
        return "system.html", context, 200

    async def events_page(self, request: Request, who: Who) -> Rendered:
        endpoints = (await self.get(who, "events", "endpoints"))["endpoints"]
        query = {"limit": str(DEAD_SHOWN)}
        if endpoint := request.query_params.get("endpoint"):
            query["endpoint"] = endpoint
        dead = (await self.get(who, "events", "dead", **query))["dead"]
        context = {
            "endpoints": endpoints,
            "dead": dead,
            "endpoint": endpoint,
            "requeued": request.query_params.get("requeued"),
        }
        return "events.html", context, 200

    async def requeue(
        self, request: Request, who: Who, form: dict[str, str]
    ) -> Response | Rendered:
        query = {"endpoint": form.get("endpoint", "")}
        if seq := form.get("seq"):
            query["seq"] = seq
        path = api_path("events", "dead", "requeue")
        done = url("/ui/events", requeued="1")
        return await self.change(request, who, "POST", path, None, done, "/ui/events", query)
