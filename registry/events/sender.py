"""One endpoint's HTTP requests: the envelope (or CloudEvents), headers, signature."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import httpx

from registry.config import NotificationEndpointSettings
from registry.events.signing import sign
from registry.events.store import Pending

USER_AGENT = "wharf-notifications/1"
CLOUDEVENTS = "application/cloudevents+json"
CLOUDEVENTS_BATCH = "application/cloudevents-batch+json"
CLOUDEVENT_TYPE = "dev.wharf.registry."  # + action


@dataclass(frozen=True, slots=True)
class Outcome:
    """How many events of a batch (from its start) were delivered, and the error if not all."""

    delivered: int
    error: str | None = None


def cloudevent(body: str) -> dict[str, object]:
    """A CloudEvents 1.0 event (structured mode) whose ``data`` is the envelope's event."""
    event = json.loads(body)
    target = event.get("target", {})
    subject = target.get("repository", "")
    if target.get("tag"):
        subject += f":{target['tag']}"
    elif target.get("digest"):
        subject += f"@{target['digest']}"
    source = event.get("source", {})
    return {
        "specversion": "1.0",
        "id": event["id"],
        "source": f"wharf://{source.get('addr', '')}",
        "type": CLOUDEVENT_TYPE + event["action"],
        "time": event["timestamp"],
        "subject": subject,
        "datacontenttype": "application/json",
        "data": event,
    }


class Sender:
    """Posts batches of outbox events to one endpoint."""

    def __init__(
        self, endpoint: NotificationEndpointSettings, mediatype: str, client: httpx.AsyncClient
    ) -> None:
        self.endpoint = endpoint
        self.mediatype = endpoint.mediatype or mediatype
        self.client = client
        self.headers = [(k, v) for k, values in endpoint.headers.items() for v in values]

    def requests(self, batch: list[Pending]) -> list[tuple[int, bytes, str]]:
        """(events covered, body, content type) of each request that carries ``batch``."""
        fmt = self.endpoint.format
        if fmt == "cloudevents":
            return [
                (1, json.dumps(cloudevent(p.body), separators=(",", ":")).encode(), CLOUDEVENTS)
                for p in batch
            ]
        if fmt == "cloudevents-batch":
            events = [cloudevent(p.body) for p in batch]
            body = json.dumps(events, separators=(",", ":")).encode()
            return [(len(batch), body, CLOUDEVENTS_BATCH)]
        body = b'{"events":[' + b",".join(p.body.encode() for p in batch) + b"]}"
        return [(len(batch), body, self.mediatype)]

    async def send(self, batch: list[Pending]) -> Outcome:
        done = 0
        for count, body, content_type in self.requests(batch):
            error = await self._post(body, content_type)
            if error is not None:
                return Outcome(done, error)
            done += count
        return Outcome(done)

    async def _post(self, body: bytes, content_type: str) -> str | None:
        headers = httpx.Headers(self.headers)
        headers["Content-Type"] = content_type
        headers.setdefault("User-Agent", USER_AGENT)
        if self.endpoint.secret:
            headers.update(sign(self.endpoint.secret, body))
        timeout = self.endpoint.timeout_seconds
        try:
            async with asyncio.timeout(timeout):
                r = await self.client.post(
                    self.endpoint.url,
                    content=body,
                    headers=headers,
                    timeout=timeout,
                    follow_redirects=False,
                )
        except TimeoutError:
            return f"no answer within {self.endpoint.timeout}"
        except httpx.HTTPError as e:
            return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        if 200 <= r.status_code < 300:
            return None
        if 300 <= r.status_code < 400:
            where = r.headers.get("location", "")
            return f"HTTP {r.status_code}: redirect to {where!r} not followed"
        return f"HTTP {r.status_code}: {r.text[:200]}"
