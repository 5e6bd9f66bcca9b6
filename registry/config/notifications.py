"""``notifications``: the endpoints events are sent to, and how."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from registry.config.base import Duration, _Section, duration


class NotificationIgnoreSettings(_Section):
    """``notifications.endpoints[].ignore``: events an endpoint is not sent."""

    mediatypes: list[str] = Field(default_factory=list)
    actions: list[str] = Field(default_factory=list)


EVENTS_V1 = "application/vnd.docker.distribution.events.v1+json"


class NotificationEndpointSettings(_Section):
    """One ``notifications.endpoints[]`` entry: the reference's keys, plus Wharf's
    ``mediatype``, ``format``, ``secret``, ``maxbatch``, ``maxattempts`` and ``maxage``."""

    name: str
    url: str
    disabled: bool = False
    headers: dict[str, list[str]] = Field(default_factory=dict)
    timeout: Duration = duration("1s")
    threshold: int = 10
    backoff: Duration = duration("1s")
    ignoredmediatypes: list[str] = Field(default_factory=list)
    ignore: NotificationIgnoreSettings = NotificationIgnoreSettings()
    mediatype: str = ""  # empty: notifications.mediatype
    format: Literal["envelope", "cloudevents", "cloudevents-batch"] = "envelope"
    secret: str = ""
    maxbatch: int = Field(default=100, ge=1, le=10_000)
    maxattempts: int = Field(default=0, ge=0)  # 0: no limit
    maxage: Duration = duration("168h")  # 0: no limit

    @field_validator("headers", mode="before")
    @classmethod
    def _header_lists(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v if isinstance(v, list) else [v] for k, v in value.items()}
        return value

    @property
    def timeout_seconds(self) -> float:
        return self.timeout or 1.0

    @property
    def backoff_seconds(self) -> float:
        return self.backoff or 1.0

    def ignores(self, action: str, media_type: str) -> bool:
        """True when an event with ``action`` and target ``media_type`` is not sent here."""
        types = {*self.ignoredmediatypes, *self.ignore.mediatypes}
        return action in self.ignore.actions or (bool(media_type) and media_type in types)


class NotificationEventsSettings(_Section):
    includereferences: bool = False


class NotificationsSettings(_Section):
    """``notifications``: where events are sent (see docs/events.md)."""

    events: NotificationEventsSettings = NotificationEventsSettings()
    endpoints: list[NotificationEndpointSettings] = Field(default_factory=list)
    mediatype: str = EVENTS_V1
    retention: Duration = duration("168h")  # how long delivered events stay listable in /api/events

    @model_validator(mode="after")
    def _unique_names(self) -> NotificationsSettings:
        names = [e.name for e in self.endpoints]
        if len(names) != len(set(names)):
            raise ValueError("notifications.endpoints[].name must be unique")
        return self

    @property
    def active(self) -> list[NotificationEndpointSettings]:
        return [e for e in self.endpoints if not e.disabled]
