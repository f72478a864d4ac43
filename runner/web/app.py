"""The aiohttp application of the task pages (routes in docs/task-pages.md).

Every route names the `Action` it needs and calls `require` (reading, share links included, is READ).
Path parameters are checked before anything is looked up: a task id by `check_task_id`, an artifact name
against `ARTIFACT_NAMES`, a share token by its signature. Another tenant's task, an unknown id and a
malformed one all end in the same 404 page, so the pages never tell whether a task exists elsewhere.

The shared view (`/s/<token>`) is the same page without a signed-in user: read-only (no share button, no
link to the tenant's other tasks), its links kept under `/s/<token>` so artifacts and live events work
without a token too.

Every response carries the security headers (`_headers`): a Content-Security-Policy that allows only this
site's own script and stylesheet, no framing, no referrer (share tokens live in URLs), nosniff, no
caching of pages. Artifacts are always `text/plain` (never rendered as HTML), inline or as a download.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

from agent.fileops import human_size
from runner.auth.principal import Action, Principal, require
from runner.domain import models as m
from runner.domain.errors import (
    CodexError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from runner.tasks.ids import check_task_id
from runner.tasks.service import TaskService
from runner.web import render
from runner.web.access import (
    Identify,
    check_same_origin,
    clear_login_cookie,
    principal_of,
    safe_next,
    set_login_cookie,
)
from runner.web.diffview import files_of
from runner.web.links import PageLinks
from runner.web.share import DEFAULT_EXPIRY_S, Grant, LinkExpired, ShareSigner

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
STATIC_TYPES = {"task.js": "text/javascript", "style.css": "text/css"}
SHARE_CHOICES = ((3600, "1 hour"), (86400, "1 day"), (7 * 86400, "7 days"))
NOT_FOUND_TEXT = "There is no such task here, or it is not yours to see."
KEEPALIVE_S = 15.0


@dataclass(frozen=True, slots=True)
class PageLimits:
    max_events: int = 2000  # timeline entries rendered into the page
    max_diff_rows: int = 5000  # side-by-side rows rendered into the page
    max_diff_bytes: int = 8 << 20  # a larger diff.patch is not rendered at all, only linked


@dataclass(frozen=True, slots=True)
class WebSettings:
    secure: bool = False  # served over TLS: cookies are Secure, HSTS is sent
    login_hint: str = ""  # shown on the login page (where the embedded runner's web token is)
    limits: PageLimits = PageLimits()


def _task_id(request: web.Request) -> str:
    try:
        return check_task_id(request.match_info["task_id"])
    except InvalidArgument:
        raise NotFound(NOT_FOUND_TEXT) from None


def _artifact_name(request: web.Request) -> str:
    name = request.match_info["name"]
    if name not in m.ARTIFACT_NAMES:
        raise NotFound(NOT_FOUND_TEXT)
    return name


def _after_seq(request: web.Request) -> int:
    raw = request.headers.get("Last-Event-ID") or request.query.get("after") or "0"
    if not raw.isdigit() or len(raw) > 12:
        raise web.HTTPBadRequest(text="Last-Event-ID / after must be a whole number")
    return int(raw)


class TaskPages:
    def __init__(self, service: TaskService, identify: Identify, signer: ShareSigner, links: PageLinks,
                 settings: WebSettings) -> None:
        self._service = service
        self._identify = identify
        self._signer = signer
        self._links = links
        self._settings = settings
        self._static = {name: (resources.files("runner.web") / "static" / name).read_bytes() for name in STATIC_TYPES}
        self._closing = asyncio.Event()

    # ---- plumbing ------------------------------------------------------------------------------------

    def _who(self, request: web.Request, action: Action) -> Principal:
        principal = principal_of(request, self._identify)
        require(principal, action)
        return principal

    def _grant(self, request: web.Request) -> Grant:
        return self._signer.verify(request.match_info["token"])

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except Unauthenticated as exc:
            wants_html = "text/html" in request.headers.get("Accept", "")
            if request.method == "GET" and wants_html and not request.headers.get("Authorization"):
                raise web.HTTPSeeOther(f"/login?next={request.rel_url}") from None
            return self._page(401, render.message_page("Sign in needed", str(exc)),
                              {"WWW-Authenticate": 'Bearer realm="codex-sys"'})
        except PermissionDenied as exc:
            return self._page(403, render.message_page("Not allowed", str(exc)))
        except LinkExpired as exc:
            return self._page(410, render.message_page("This share link has expired", f"{exc}. Ask for a new one."))
        except (NotFound, InvalidArgument):
            return self._page(404, render.message_page("Not found", NOT_FOUND_TEXT))
        except FailedPrecondition as exc:
            return self._page(409, render.message_page("Not yet", str(exc)))
        except Unavailable as exc:
            return self._page(503, render.message_page("Try again", str(exc)))
        except CodexError as exc:
            log.warning("page failed", extra={"path": request.path, "error": type(exc).__name__})
            return self._page(500, render.message_page("Something went wrong", str(exc)))

    @staticmethod
    def _page(status: int, html: str, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(status=status, text=html, content_type="text/html", charset="utf-8", headers=headers)

    async def _headers(self, request: web.Request, response: web.StreamResponse) -> None:
        h = response.headers
        h["Content-Security-Policy"] = CSP
        h["X-Content-Type-Options"] = "nosniff"
        h["Referrer-Policy"] = "no-referrer"
        h["X-Frame-Options"] = "DENY"
        h["Cross-Origin-Opener-Policy"] = "same-origin"
        h.setdefault("Cache-Control", "no-store")
        if self._settings.secure:
            h["Strict-Transport-Security"] = "max-age=31536000"

    async def _on_shutdown(self, app: web.Application) -> None:
        self._closing.set()

    # ---- routes --------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors], client_max_size=64 << 10)
        app.on_response_prepare.append(self._headers)
        app.on_shutdown.append(self._on_shutdown)
        app.router.add_get("/healthz", self.healthz, name="healthz")
        app.router.add_get("/static/{name}", self.static, name="static")
        app.router.add_get("/login", self.login_form, name="login")
        app.router.add_post("/login", self.login, name="login-post")
        app.router.add_post("/logout", self.logout, name="logout")
        app.router.add_get("/", self.task_list, name="tasks")
        app.router.add_get("/tasks/{task_id}", self.task_page, name="task")
        app.router.add_get("/tasks/{task_id}/events", self.events, name="task-events")
        app.router.add_get("/tasks/{task_id}/artifacts/{name}", self.artifact, name="task-artifact")
        app.router.add_post("/tasks/{task_id}/share", self.share, name="task-share")
        app.router.add_get("/s/{token}", self.shared_page, name="shared")
        app.router.add_get("/s/{token}/events", self.events, name="shared-events")
        app.router.add_get("/s/{token}/artifacts/{name}", self.artifact, name="shared-artifact")
        return app

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self._static:
            raise NotFound(NOT_FOUND_TEXT)
        return web.Response(body=self._static[name], content_type=STATIC_TYPES[name], charset="utf-8",
                            headers={"Cache-Control": "public, max-age=300"})

    async def login_form(self, request: web.Request) -> web.Response:
        return self._page(200, render.login_page(safe_next(request.query.get("next", "/")),
                                                 hint=self._settings.login_hint))

    async def login(self, request: web.Request) -> web.Response:
        check_same_origin(request, self._links.base_url)
        form = await request.post()
        token, next_path = str(form.get("token", "")).strip(), safe_next(str(form.get("next", "/")))
        try:
            self._identify(f"Bearer {token}")
        except Unauthenticated as exc:
            return self._page(401, render.login_page(next_path, str(exc), self._settings.login_hint))
        response = _see_other(next_path)
        set_login_cookie(response, token, self._settings.secure)
        return response

    async def logout(self, request: web.Request) -> web.Response:
        check_same_origin(request, self._links.base_url)
        response = _see_other("/login")
        clear_login_cookie(response, self._settings.secure)
        return response

    async def task_list(self, request: web.Request) -> web.Response:
        who = self._who(request, Action.READ)
        tasks = await self._service.list(who.tenant, 100, ())
        return self._page(200, render.task_list(tasks, who.tenant))

    async def task_page(self, request: web.Request) -> web.Response:
        who = self._who(request, Action.READ)
        record = await self._service.get(who.tenant, _task_id(request))
        page = render.TaskPage(record, [], False, f"/tasks/{record.id}", signed_in=who.tenant,
                               share_choices=SHARE_CHOICES)
        return self._page(200, await self._render(page))

    async def shared_page(self, request: web.Request) -> web.Response:
        grant = self._grant(request)
        record = await self._service.get(grant.tenant, grant.task_id)
        page = render.TaskPage(record, [], False, f"/s/{request.match_info['token']}",
                               shared_until=grant.expires_at)
        return self._page(200, await self._render(page))

    def _task_of(self, request: web.Request) -> tuple[str, str]:
        """(tenant, task id) a request may read: from its share token on `/s/...`, else from its caller."""
        if "token" in request.match_info:
            grant = self._grant(request)
            return grant.tenant, grant.task_id
        return self._who(request, Action.READ).tenant, _task_id(request)

    async def events(self, request: web.Request) -> web.StreamResponse:
        return await self._events(request, *self._task_of(request))

    async def artifact(self, request: web.Request) -> web.StreamResponse:
        return await self._artifact(request, *self._task_of(request))

    async def share(self, request: web.Request) -> web.Response:
        who = self._who(request, Action.READ)
        check_same_origin(request, self._links.base_url)
        task_id = _task_id(request)
        form = await request.post()
        raw = str(form.get("expires") or request.query.get("expires") or DEFAULT_EXPIRY_S)
        if not raw.isdigit():
            raise web.HTTPBadRequest(text="expires must be a whole number of seconds")
        url, expires_at = await self._links.share(who.tenant, task_id, int(raw))
        log.info("share link made", extra={"task_id": task_id, "tenant": who.tenant, "token_id": who.token_id,
                                           "expires_at": expires_at})
        if "application/json" in request.headers.get("Accept", ""):
            return web.json_response({"url": url, "expires_at": expires_at})
        return self._page(200, render.share_created(task_id, url, expires_at, who.tenant))

    # ---- the work ------------------------------------------------------------------------------------

    async def _render(self, page: render.TaskPage) -> str:
        limits = self._settings.limits
        record = page.record
        events = await self._service.events.read(record.id, 0, limits.max_events + 1)
        page.events, page.events_truncated = events[:limits.max_events], len(events) > limits.max_events
        patch = ""
        ref = record.artifact("diff.patch")
        if ref is None:
            page.diff_note = "This task has no diff." if record.state.final else ""
        elif ref.digest.size > limits.max_diff_bytes:
            page.diff_note = f"The diff is {human_size(ref.digest.size)}, too large to show here."
        else:
            patch = (await self._service.blobs.get_bytes(record.tenant, ref.digest)).decode("utf-8", "replace")
        return await asyncio.to_thread(self._render_sync, page, patch, ref is not None)

    def _render_sync(self, page: render.TaskPage, patch: str, has_diff: bool) -> str:
        if has_diff and not page.diff_note:
            try:
                page.files, page.diff_truncated = files_of(patch, self._settings.limits.max_diff_rows)
            except InvalidArgument as exc:
                page.diff_note = f"The diff could not be shown ({exc})."
        return render.task_page(page)

    async def _artifact(self, request: web.Request, tenant: str, task_id: str) -> web.StreamResponse:
        name = _artifact_name(request)
        ref, chunks = await self._service.artifact(tenant, task_id, name)
        disposition = "attachment" if request.query.get("download") == "1" else "inline"
        response = web.StreamResponse(headers={
            "Content-Type": "text/plain; charset=utf-8",
            "Content-Disposition": f'{disposition}; filename="{task_id}-{name}"',
            "Content-Length": str(ref.digest.size),
        })
        await response.prepare(request)
        async for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
        return response

    async def _events(self, request: web.Request, tenant: str, task_id: str) -> web.StreamResponse:
        """Server-Sent Events: each event after `Last-Event-ID` (or `?after=`), then live ones, ending
        after the result. A finished task with nothing newer answers 204, which stops EventSource."""
        after = _after_seq(request)
        record = await self._service.get(tenant, task_id)
        if record.state.final and not await self._service.events.read(task_id, after, 1):
            return web.Response(status=204)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
        await response.prepare(request)
        queue: asyncio.Queue[m.Event | None] = asyncio.Queue(maxsize=256)
        pump = asyncio.create_task(self._pump(self._service.watch(tenant, task_id, after), queue))
        closing = asyncio.create_task(self._closing.wait())
        try:
            await response.write(b"retry: 2000\n\n")
            while True:
                getter = asyncio.create_task(queue.get())
                done, _ = await asyncio.wait({getter, closing}, timeout=KEEPALIVE_S,
                                             return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    if closing in done:
                        break
                    await response.write(b": keepalive\n\n")
                    continue
                event = getter.result()
                if event is None:
                    break
                await response.write(_sse(event, record.created_at))
                if event.is_result:
                    break
        except ConnectionResetError:
            pass  # the browser went away: nothing to finish
        finally:
            pump.cancel()
            closing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
        return response

    @staticmethod
    async def _pump(events: AsyncIterator[m.Event], queue: asyncio.Queue[m.Event | None]) -> None:
        try:
            async for event in events:
                await queue.put(event)
        except CodexError as exc:
            log.warning("event stream ended early", extra={"error": type(exc).__name__})
        except Exception:
            log.exception("event stream failed")
        await queue.put(None)


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _sse(event: m.Event, started: float) -> bytes:
    p = event.payload
    state = p.state.value if isinstance(p, m.StateChanged | m.TaskResult) else ""
    data = json.dumps({"seq": event.seq, "kind": render.event_kind(p), "state": state, "final": event.is_result,
                       "html": render.event_html(event, started)}, ensure_ascii=False)
    return f"id: {event.seq}\nevent: task\ndata: {data}\n\n".encode()


def build_app(service: TaskService, identify: Identify, signer: ShareSigner, links: PageLinks,
              settings: WebSettings | None = None) -> web.Application:
    return TaskPages(service, identify, signer, links, settings or WebSettings()).app()
