"""What every page answered by Wharf's own API shares (projects, users, GC, events):
the viewer as the API's caller, reads and changes through
:class:`~registry.ui.internal.InternalApi`, and the API's refusals shown on a page.

A page set is a class with ``pages()`` (GET paths to handlers) and ``actions()`` (POST
paths to handlers; the web UI checks their CSRF token first). A handler returns what to
render (:data:`Rendered`) or, after a change, a redirect.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from registry.errors import RegistryError
from registry.middleware.auth import Caller
from registry.ui.internal import InternalApi, api_path

# (template, context, status) of a page; the web UI adds the viewer and the rest. A
# context with ``message_id`` shows that catalog message, translated, as ``error``.
Rendered = tuple[str, dict[str, Any], int]
Page = Callable[[Request, "Who"], Awaitable[Rendered]]
Action = Callable[[Request, "Who", dict[str, str]], Awaitable[Response | Rendered]]


class ApiPageError(Exception):
    """A page the viewer may not see: the API's refusal, shown as a message."""

    def __init__(self, error: RegistryError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass(frozen=True)
class Who:
    """The viewer as the API sees them."""

    caller: Caller
    name: str | None
    admin: bool
    groups: frozenset[str]


class ApiPages:
    """A set of pages answered by the API (subclasses give ``pages`` and ``actions``)."""

    def __init__(self, api: InternalApi) -> None:
        self.api = api

    def pages(self) -> dict[str, Page]:
        return {}

    def actions(self) -> dict[str, Action]:
        return {}

    async def get(self, who: Who, *parts: str, **query: str) -> Any:
        """The API's answer; a refusal becomes the page's (:class:`ApiPageError`)."""
        try:
            return (await self.api.call(who.caller, "GET", api_path(*parts), query)).json()
        except RegistryError as e:
            raise ApiPageError(e) from None

    async def optional(self, who: Who, *parts: str, **query: str) -> Any:
        """The API's answer, or None where it refuses (a part the viewer may not see)."""
        try:
            return (await self.api.call(who.caller, "GET", api_path(*parts), query)).json()
        except RegistryError:
            return None

    async def change(
        self,
        request: Request,
        who: Who,
        method: str,
        path: str,
        body: object,
        done: str,
        back: str | None = None,
        query: dict[str, str] | None = None,
    ) -> Response | Rendered:
        """Make a change through the API; then to ``done`` (a page's URL), or the refusal
        with a link to ``back``."""
        client = (request.client.host, 0) if request.client else None
        try:
            await self.api.call(who.caller, method, path, query, body=body, client=client)
        except RegistryError as e:
            return refused(e, back)
        return RedirectResponse(done, 303)


def url(path: str, **query: str) -> str:
    return f"{path}?{urlencode(query)}" if query else path


def refused(error: RegistryError, back: str | None) -> Rendered:
    """The API's refusal of a form, with every field's problem it named."""
    detail = error.detail
    problems: list[tuple[str, str]] = []
    if isinstance(detail, dict):
        problems = [(str(k), str(v)) for k, v in detail.items() if isinstance(v, str)]
    elif isinstance(detail, list):  # [{"field", "problem"}]
        problems = [
            (str(d.get("field")), str(d.get("problem")))
            for d in detail
            if isinstance(d, dict) and "field" in d
        ]
    context = {"error": error.message, "code": error.code, "problems": problems, "back": back}
    return "refused.html", context, error.http_status


def invalid(message_id: str, back: str | None) -> Rendered:
    """A form refused before it reached the API (a catalog message: ``N_``)."""
    return "refused.html", {"message_id": message_id, "back": back, "problems": []}, 400
