"""The web UI under ``/ui/``: server-rendered pages (Jinja2, autoescaped), readable
without JavaScript.

Pages: search (``/ui/``), repository, image, sign in and out, the confirmation and
deletion of a tag, and an administrator's overview. With no ``auth`` configured
everything is open. Otherwise the viewer is the user of the session cookie (signed in
through :meth:`AuthSetup.authenticate`), or the caller the auth middleware identified
from an ``Authorization`` header, or anonymous; what they see and may delete follows the
access policy, as on ``/v2/``. Every POST needs the session's CSRF token.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from babel.support import Translations
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from auth.policy import Identity
from auth.throttle import TooManyAttempts
from registry.accounts.setup import AuthSetup
from registry.api.access import OPEN, caller_of, is_open
from registry.api.bodies import read_capped
from registry.api.context import Services
from registry.errors import InvalidParameter, ManifestUnknown, RegistryError, Unsupported
from registry.middleware.auth import Caller, caller_for
from registry.search.query import Params, SearchService, parse_query
from registry.ui import i18n
from registry.ui.account_pages import AccountPages
from registry.ui.api_pages import ApiPageError, ApiPages, Rendered, Who
from registry.ui.i18n import LANGUAGES, N_, Formats, load_translations, negotiate, translator
from registry.ui.internal import InternalApi
from registry.ui.operator_pages import OperatorPages
from registry.ui.project_pages import ProjectPages
from registry.ui.session import COOKIE, Session, SessionCodec
from registry.ui.store import session_secret

log = logging.getLogger("wharf.ui")

STATIC = Path(__file__).parent / "static"
STATIC_FILES = {"style.css": "text/css", "app.js": "text/javascript"}
MAX_FORM = 64 * 1024
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


FORM_EXPIRED = N_(
    "This form is out of date or did not come from this site. "
    "Go back, reload the page and try again."
)
RAW = "%(reason)s"  # a message that is not ours to translate (an OCI error's)
LANGUAGE_MAX_AGE = 365 * 24 * 3600
# the admin page's rows: the search index's counts, in the visitor's language
COUNT_LABELS = {
    "indexed tags": N_("Indexed tags"),
    "manifests with facts": N_("Manifests with facts"),
    "labels": N_("Labels"),
    "repositories": N_("Repositories"),
    "manifests": N_("Manifests"),
    "tags": N_("Tags"),
    "blobs": N_("Blobs"),
}


class PageError(Exception):
    """A page that cannot be shown: rendered as a message with ``status``. ``title`` and
    ``message`` are catalog messages (``N_``), translated when the page is rendered and
    then formatted with ``values``."""

    def __init__(self, status: int, title: str, message: str, **values: object) -> None:
        super().__init__(message % values if values else message)
        self.status, self.title, self.message, self.values = status, title, message, values


@dataclass(frozen=True)
class Viewer:
    """Who is looking at the pages, and what they may do."""

    name: str | None
    admin: bool
    may: Callable[[str, str], bool]  # (repository, action)
    open: bool = False  # no auth configured
    caller: Caller = OPEN  # who the viewer is to Wharf's own API (the pages call it)

    def may_pull(self, repository: str) -> bool:
        return self.may(repository, "pull")


def short_digest(value: object) -> str:
    text = str(value or "")
    algorithm, _, hexpart = text.partition(":")
    return f"{algorithm}:{hexpart[:12]}" if hexpart else text


def _environment(language: str, translations: Translations) -> Environment:
    """The templates speaking ``language``: its catalog, its dates, numbers and sizes."""
    env = Environment(
        loader=PackageLoader("registry.ui", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
    formats = Formats(language)
    env.filters["size"] = formats.size
    env.filters["number"] = formats.number
    env.filters["short"] = short_digest
    env.filters["when"] = formats.when
    return env


def _safe_next(target: str | None) -> str:
    """Only a path inside the UI (never another site) to go to after signing in."""
    if target and target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/"


class WebUI:
    """The ASGI app mounted at ``/ui``."""

    def __init__(
        self,
        services: Services,
        search: SearchService,
        auth: AuthSetup | None,
        api: ASGIApp | None = None,
    ) -> None:
        self.services = services
        self.search = search
        self.auth = auth
        # the pages answered by Wharf's own API as the viewer (``api``: the app's own API
        # mounts, called in-process): projects, GC and events, users and my account
        self.api_pages: list[ApiPages] = []
        if api is not None:
            internal = InternalApi(api)
            local = services.settings.auth.local
            self.api_pages = [
                ProjectPages(internal),
                OperatorPages(internal, bool(services.settings.notifications.endpoints)),
                AccountPages(internal, local is not None, bool(local and local.selfregistration)),
            ]
        catalogs = {language: load_translations(language) for language in LANGUAGES}
        self.envs = {language: _environment(language, t) for language, t in catalogs.items()}
        self.translators = {language: translator(t) for language, t in catalogs.items()}
        self._codec: SessionCodec | None = None

    async def codec(self) -> SessionCodec:
        if self._codec is None:
            import secrets

            key = await self.services.meta.db.run_write(session_secret, secrets.token_urlsafe(48))
            self._codec = SessionCodec(key)
        return self._codec

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["wharf.route"] = "ui"
        request = Request(scope, receive)
        codec = await self.codec()
        session = codec.load(request.cookies.get(COOKIE))
        try:
            response = await self._route(request, session)
        except PageError as e:
            _ = self.translators[self.language(request)]
            context = {"title": _(e.title), "message": _(e.message, **e.values)}
            response = self.page(request, session, "message.html", context, status=e.status)
        except ApiPageError as e:  # the API's refusal: its message, in its words
            _ = self.translators[self.language(request)]
            title = _("Sign in required") if e.error.http_status == 401 else _("Not available")
            context = {"title": title, "message": e.error.message}
            status = e.error.http_status
            response = self.page(request, session, "message.html", context, status=status)
        if session.changed:
            secure = scope.get("scheme") == "https"
            response.headers.append("Set-Cookie", codec.header(session, secure))
        await response(scope, receive, send)

    async def _route(self, request: Request, session: Session) -> Response:
        path = request.url.path.rstrip("/") or "/"
        method = request.method
        if path.startswith("/ui/static/"):
            return self._static(path.removeprefix("/ui/static/"))
        pages: dict[str, Callable[[Request, Session], Any]] = {
            "/ui": self._search_page,
            "/ui/repository": self._repository_page,
            "/ui/image": self._image_page,
            "/ui/login": self._login_page,
            "/ui/delete": self._delete_page,
            "/ui/admin": self._admin_page,
        }
        actions: dict[str, Callable[[Request, Session, dict[str, str]], Any]] = {
            "/ui/login": self._login,
            "/ui/logout": self._logout,
            "/ui/delete": self._delete,
            "/ui/language": self._language,
        }
        if method in ("GET", "HEAD") and path in pages:
            response: Response = await pages[path](request, session)
            return response
        for page_set in self.api_pages:
            found = await self._api_route(page_set, request, session, path, method)
            if found is not None:
                return found
        if method == "POST" and path in actions:
            form = await self._form(request)
            if not session.check_csrf(form.get("csrf")):
                raise PageError(403, N_("Form expired"), FORM_EXPIRED)
            response = await actions[path](request, session, form)
            return response
        if path in pages or path in actions:
            raise PageError(
                405, N_("Not allowed"), N_("%(method)s is not allowed on this page."), method=method
            )
        raise PageError(404, N_("Not found"), N_("There is no such page."))

    async def _api_route(
        self, page_set: ApiPages, request: Request, session: Session, path: str, method: str
    ) -> Response | None:
        """A page or form of ``page_set`` (None: not one of theirs)."""
        pages, actions = page_set.pages(), page_set.actions()
        if method in ("GET", "HEAD") and path in pages:
            rendered = await pages[path](request, self.who(request, session))
        elif method == "POST" and path in actions:
            form = await self._form(request)
            if not session.check_csrf(form.get("csrf")):
                raise PageError(403, N_("Form expired"), FORM_EXPIRED)
            answer = await actions[path](request, self.who(request, session), form)
            if isinstance(answer, Response):
                return answer
            rendered = answer
        elif path in pages or path in actions:
            raise PageError(
                405, N_("Not allowed"), N_("%(method)s is not allowed on this page."), method=method
            )
        else:
            return None
        return self._rendered(request, session, rendered)

    def _rendered(self, request: Request, session: Session, rendered: Rendered) -> Response:
        template, context, status = rendered
        _ = self.translators[self.language(request)]
        if "message_id" in context:  # a message of ours, in the viewer's language
            message = _(context["message_id"])
            context = {**context, "error": message, "message": message}
        if "title_id" in context:
            context = {**context, "title": _(context["title_id"])}
        return self.page(request, session, template, context, status)

    def who(self, request: Request, session: Session) -> Who:
        viewer = self.viewer(request, session)
        groups = frozenset(session.groups) if session.user is not None else frozenset()
        if session.user is None and viewer.caller.identity is not None:
            groups = viewer.caller.identity.groups
        return Who(viewer.caller, viewer.name, viewer.admin, groups)

    # -- helpers -----------------------------------------------------------

    def viewer(self, request: Request, session: Session) -> Viewer:
        scope = request.scope
        if self.auth is None or is_open(scope):
            return Viewer(None, True, lambda _repo, _action: True, open=True)
        policy = self.auth.policy
        if session.user is not None:
            # as a bearer token's subject is: its groups and its source's admin flag now
            # (a local administrator is one), with the groups it had at sign-in
            known = self.auth.logins.identity(session.user)
            groups = known.groups | frozenset(session.groups)
            who = Identity(session.user, groups, admin=known.admin, grants=known.grants)
            as_caller = caller_for(policy, who)
            return Viewer(session.user, as_caller.admin, as_caller.may, caller=as_caller)
        caller = caller_of(scope)
        if caller is not None and caller.name is not None:
            return Viewer(caller.name, caller.admin, caller.may, caller=caller)
        anonymous = caller_for(policy, None)
        return Viewer(None, False, anonymous.may, caller=anonymous)

    def language(self, request: Request) -> str:
        """The language of the pages for this request (the switch's cookie, the browser's)."""
        return negotiate(request.cookies.get(i18n.COOKIE), request.headers.get("accept-language"))

    def page(
        self,
        request: Request,
        session: Session,
        template: str,
        context: dict[str, Any],
        status: int = 200,
    ) -> Response:
        viewer = self.viewer(request, session)
        language = self.language(request)
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        local = self.services.settings.auth.local
        html = (
            self.envs[language]
            .get_template(template)
            .render(
                lang=language,
                lang_tag=language.replace("_", "-"),
                languages=LANGUAGES,
                viewer=viewer,
                api_pages=bool(self.api_pages),
                events_pages=bool(self.services.settings.notifications.endpoints),
                local_users=self.services.settings.auth.local is not None,
                signup=bool(local and local.selfregistration),
                csrf=session.csrf,
                auth_enabled=self.auth is not None,
                here=here,
                **context,
            )
        )
        return HTMLResponse(html, status, headers=dict(SECURITY_HEADERS))

    async def _form(self, request: Request) -> dict[str, str]:
        body = await read_capped(
            request.stream(),
            MAX_FORM,
            lambda: PageError(413, N_("Too large"), N_("The form is too large.")),
        )
        return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))

    def _registry_host(self, request: Request) -> str:
        configured = self.services.settings.http.host
        if configured:
            return configured.split("://", 1)[-1].rstrip("/")
        return request.headers.get("host", "localhost")

    def _need_pull(self, viewer: Viewer, repository: str) -> None:
        if not viewer.may_pull(repository):
            if viewer.name is None:
                raise PageError(
                    401, N_("Sign in required"), N_("Sign in to see %(name)s."), name=repository
                )
            raise PageError(
                403,
                N_("Not allowed"),
                N_("%(user)s may not see %(name)s."),
                user=viewer.name,
                name=repository,
            )

    def _static(self, name: str) -> Response:
        if name not in STATIC_FILES:
            raise PageError(404, N_("Not found"), N_("There is no such file."))
        return FileResponse(
            STATIC / name,
            media_type=STATIC_FILES[name],
            headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"},
        )

    # -- pages -------------------------------------------------------------

    async def _search_page(self, request: Request, session: Session) -> Response:
        q = request.query_params.get("q", "").strip()
        fields = {
            k: request.query_params.get(k, "").strip()
            for k in ("tag", "label", "platform", "sort", "cursor")
        }
        items: list[tuple[str, str]] = []
        if q.startswith(("sha256:", "sha512:")):
            items.append(("digest", q))
        elif q:
            items.append(("name", q))
        items += [(k, v) for k, v in fields.items() if v]
        error, rows, next_url = None, [], None
        try:
            query = parse_query(Params([*items, ("n", "25")]))
            viewer = self.viewer(request, session)
            allowed = None if viewer.open else viewer.may_pull
            result = await self.search.search(query, allowed)
            rows = result.rows
            if result.next_cursor:
                kept = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
                next_url = "/ui/?" + urlencode([*kept, ("cursor", result.next_cursor)])
        except InvalidParameter as e:
            error = e.message
        context = {"q": q, "fields": fields, "rows": rows, "error": error, "next_url": next_url}
        status = 400 if error else 200
        return self.page(request, session, "search.html", context, status)

    async def _repository_page(self, request: Request, session: Session) -> Response:
        name = request.query_params.get("name", "")
        viewer = self.viewer(request, session)
        self._need_pull(viewer, name)
        counts = await self.search.repository(name)
        if counts is None:
            raise PageError(404, N_("Not found"), N_("There is no repository %(name)s."), name=name)
        params = [("repository", name), ("n", "100")]
        if cursor := request.query_params.get("cursor"):
            params.append(("cursor", cursor))
        try:
            result = await self.search.search(parse_query(Params(params), "tag"), None)
        except InvalidParameter as e:
            raise PageError(400, N_("Bad request"), RAW, reason=e.message) from None
        next_url = None
        if result.next_cursor:
            next_url = "/ui/repository?" + urlencode({"name": name, "cursor": result.next_cursor})
        context = {
            "name": name,
            "counts": counts,
            "rows": result.rows,
            "next_url": next_url,
            "host": self._registry_host(request),
            "may_delete": viewer.may(name, "delete") and self._deletes_enabled(),
            "deleted": request.query_params.get("deleted"),
        }
        return self.page(request, session, "repository.html", context)

    async def _image_page(self, request: Request, session: Session) -> Response:
        name = request.query_params.get("name", "")
        ref = request.query_params.get("ref", "")
        viewer = self.viewer(request, session)
        self._need_pull(viewer, name)
        image = await self.search.image(name, ref) if ref else None
        if image is None:
            raise PageError(
                404, N_("Not found"), N_("There is no image %(name)s:%(ref)s."), name=name, ref=ref
            )
        host = self._registry_host(request)
        by_tag = ":" not in ref
        pull = f"docker pull {host}/{name}{':' if by_tag else '@'}{ref}"
        context = {"name": name, "ref": ref, "image": image, "pull": pull, "by_tag": by_tag}
        context["may_delete"] = viewer.may(name, "delete") and self._deletes_enabled()
        return self.page(request, session, "image.html", context)

    async def _login_page(self, request: Request, session: Session) -> Response:
        context = {"next": _safe_next(request.query_params.get("next")), "error": None}
        return self.page(request, session, "login.html", context)

    async def _delete_page(self, request: Request, session: Session) -> Response:
        name = request.query_params.get("name", "")
        tag = request.query_params.get("tag", "")
        self._need_delete(self.viewer(request, session), name)
        image = await self.search.image(name, tag) if tag and ":" not in tag else None
        if image is None:
            raise PageError(
                404, N_("Not found"), N_("There is no tag %(tag)s in %(name)s."), tag=tag, name=name
            )
        context = {"name": name, "tag": tag, "image": image}
        return self.page(request, session, "delete.html", context)

    async def _admin_page(self, request: Request, session: Session) -> Response:
        viewer = self.viewer(request, session)
        if not viewer.admin:
            if viewer.name is None:
                raise PageError(401, N_("Sign in required"), N_("Sign in as an administrator."))
            raise PageError(
                403, N_("Not allowed"), N_("%(user)s is not an administrator."), user=viewer.name
            )
        settings = self.services.settings
        _ = self.translators[self.language(request)]
        counts = await self.search.counts()
        context = {
            "counts": [(_(COUNT_LABELS.get(k, k)), v) for k, v in counts.items()],
            "facts": [
                (_("Auth"), settings.auth.mode),
                (_("Database"), settings.database_url.split("://")[0]),
                (_("Deletes"), _("enabled") if self._deletes_enabled() else _("disabled")),
                (_("Storage"), settings.storage.driver),
            ],
        }
        return self.page(request, session, "admin.html", context)

    # -- actions (POST, CSRF checked) ----------------------------------------

    async def _login(self, request: Request, session: Session, form: dict[str, str]) -> Response:
        target = _safe_next(form.get("next"))
        if self.auth is None:
            return RedirectResponse(target, 303)
        user, password = form.get("username", "").strip(), form.get("password", "")
        _ = self.translators[self.language(request)]
        address = request.client.host if request.client else ""
        try:
            who = await self.auth.authenticate(user, password, address) if user else None
        except TooManyAttempts as e:  # refused before the password was checked
            error = _(
                "Too many sign-in attempts at once; try again in %(seconds)s s.",
                seconds=e.retry_after,
            )
            context = {"next": target, "error": error, "username": user}
            response = self.page(request, session, "login.html", context, status=429)
            response.headers.update(e.headers)
            return response
        if who is None:
            context = {"next": target, "error": _("Wrong user name or password."), "username": user}
            return self.page(request, session, "login.html", context, status=401)
        if who.grants is not None:  # a project robot: a session would not keep its grants
            error = _("Robot accounts of a project cannot sign in to the web pages.")
            context = {"next": target, "error": error, "username": user}
            return self.page(request, session, "login.html", context, status=403)
        # a new session (and CSRF token) on every sign-in: no fixation
        session.user, session.groups = who.name, tuple(sorted(who.groups))
        session.csrf, session.changed = Session().csrf, True
        log.info("ui sign-in: %s from %s", who.name, address)
        return RedirectResponse(target, 303)

    async def _logout(self, request: Request, session: Session, form: dict[str, str]) -> Response:
        session.user, session.groups = None, ()
        session.csrf, session.changed = Session().csrf, True
        return RedirectResponse("/ui/", 303)

    async def _delete(self, request: Request, session: Session, form: dict[str, str]) -> Response:
        name, tag = form.get("name", ""), form.get("tag", "")
        self._need_delete(self.viewer(request, session), name)
        if not tag or ":" in tag:
            raise PageError(400, N_("Bad request"), N_("Name a tag to delete."))
        try:
            await self.services.manifests.delete(name, tag)
        except ManifestUnknown:
            raise PageError(
                404, N_("Not found"), N_("There is no tag %(tag)s in %(name)s."), tag=tag, name=name
            ) from None
        except Unsupported:
            raise PageError(
                405, N_("Deletes disabled"), N_("Deletes are disabled on this registry.")
            ) from None
        except RegistryError as e:
            raise PageError(e.http_status, N_("Not deleted"), RAW, reason=e.message) from None
        log.info("ui: tag %s:%s deleted by %s", name, tag, session.user or "anonymous")
        return RedirectResponse("/ui/repository?" + urlencode({"name": name, "deleted": tag}), 303)

    async def _language(self, request: Request, session: Session, form: dict[str, str]) -> Response:
        """The language switch: remembered in a cookie, for every page from now on."""
        language = form.get("language", "")
        if language not in LANGUAGES:
            raise PageError(
                400, N_("Bad request"), N_("There is no language %(code)s."), code=language[:20]
            )
        response = RedirectResponse(_safe_next(form.get("next")), 303)
        response.set_cookie(
            i18n.COOKIE,
            language,
            max_age=LANGUAGE_MAX_AGE,
            path="/ui",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="lax",
        )
        return response

    def _deletes_enabled(self) -> bool:
        return self.services.manifests.delete_enabled

    def _need_delete(self, viewer: Viewer, name: str) -> None:
        if not self._deletes_enabled():
            raise PageError(
                405, N_("Deletes disabled"), N_("Deletes are disabled on this registry.")
            )
        if not viewer.may(name, "delete"):
            if viewer.name is None:
                raise PageError(
                    401,
                    N_("Sign in required"),
                    N_("Sign in to delete tags in %(name)s."),
                    name=name,
                )
            raise PageError(
                403,
                N_("Not allowed"),
                N_("%(user)s may not delete tags in %(name)s."),
                user=viewer.name,
                name=name,
            )
