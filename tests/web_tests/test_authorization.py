"""The HTTP authorization matrix: every route of the task pages' app by every kind of caller.

The routes are read from the app's router, so a route added without a row here fails
`test_every_route_is_in_the_matrix`. Callers: tenant A's member and viewer tokens, tenant B, no token, a
bad token, A's and B's share links, an expired one and a tampered one. Tenant B must never get A's task:
not its page, its events, its artifacts or a share link, and never a body naming it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiohttp
import pytest

from runner.auth.tokens import TokenBook
from runner.domain.errors import NotFound
from runner.web.app import build_app
from runner.web.share import ShareSigner

from .conftest import TOKEN_A, TOKEN_A_VIEWER, TOKEN_B, Site, share_link

pytestmark = [pytest.mark.asyncio(loop_scope="package"), pytest.mark.timeout(90)]

CALLERS = ("a_member", "a_viewer", "b", "none", "bad", "share_a", "share_b", "expired", "tampered")
BEARER = {"a_member": TOKEN_A, "a_viewer": TOKEN_A_VIEWER, "b": TOKEN_B, "bad": "not-a-token-of-this-runner-00"}


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # with {task} (A's task id) and {token} (the caller's share token)
    expect: dict[str, int]


def _tasks_route(method: str, path: str, ok: int = 200) -> Route:
    """A signed-in route on A's task: A's tokens see it, B gets the 404 page, the rest must sign in."""
    return Route(method, path, {"a_member": ok, "a_viewer": ok, "b": 404, "none": 401, "bad": 401,
                                "share_a": 401, "share_b": 401, "expired": 401, "tampered": 401})


def _shared_route(path: str) -> Route:
    """A share-link route: the link alone decides (a bearer header neither helps nor hurts)."""
    return Route("GET", path, {"a_member": 200, "a_viewer": 200, "b": 200, "none": 200, "bad": 200,
                               "share_a": 200, "share_b": 200, "expired": 410, "tampered": 404})


def _open(method: str, path: str, ok: int = 200) -> Route:
    return Route(method, path, dict.fromkeys(CALLERS, ok))


SIGNED_IN = {"a_member": 200, "a_viewer": 200, "b": 200, "none": 401, "bad": 401, "share_a": 401, "share_b": 401,
             "expired": 401, "tampered": 401}
LOGIN = {"a_member": 303, "a_viewer": 303, "b": 303, "none": 401, "bad": 401, "share_a": 401, "share_b": 401,
         "expired": 401, "tampered": 401}

# Keyed by (method, the route's path as the router names it).
MATRIX = {
    ("GET", "/healthz"): _open("GET", "/healthz"),
    ("GET", "/static/{name}"): _open("GET", "/static/style.css"),
    ("GET", "/login"): _open("GET", "/login"),
    ("POST", "/login"): Route("POST", "/login", LOGIN),
    ("POST", "/logout"): _open("POST", "/logout", 303),
    ("GET", "/"): Route("GET", "/", SIGNED_IN),
    ("GET", "/tasks/{task_id}"): _tasks_route("GET", "/tasks/{task}"),
    ("GET", "/tasks/{task_id}/events"): _tasks_route("GET", "/tasks/{task}/events"),
    ("GET", "/tasks/{task_id}/artifacts/{name}"): _tasks_route("GET", "/tasks/{task}/artifacts/diff.patch"),
    ("POST", "/tasks/{task_id}/share"): _tasks_route("POST", "/tasks/{task}/share"),
    ("GET", "/s/{token}"): _shared_route("/s/{token}"),
    ("GET", "/s/{token}/events"): _shared_route("/s/{token}/events"),
    ("GET", "/s/{token}/artifacts/{name}"): _shared_route("/s/{token}/artifacts/diff.patch"),
}


def _routes() -> set[tuple[str, str]]:
    """The routes of the app the runner serves (built here: only its router is read)."""
    app = build_app(None, TokenBook().identify, ShareSigner(b"k" * 32), None)  # type: ignore[arg-type]
    found = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue  # aiohttp adds HEAD to every GET
        found.add((route.method, route.resource.canonical))
    return found


async def test_every_route_is_in_the_matrix() -> None:
    assert _routes() == set(MATRIX)


async def _tokens(site: Site) -> dict[str, str]:
    a = (await share_link(site, TOKEN_A, site.task_a.id)).rsplit("/s/", 1)[1]
    b = (await share_link(site, TOKEN_B, site.task_b.id)).rsplit("/s/", 1)[1]
    key = (site.home / "share.key").read_text().strip()
    expired = ShareSigner(bytes.fromhex(key)).sign(site.task_a.id, "tenant-a", time.time() - 5)
    version, payload, mac = a.split(".")
    tampered = f"{version}.{payload}.{mac[:-2]}{'AA' if mac[-2:] != 'AA' else 'BB'}"
    return {"share_a": a, "share_b": b, "expired": expired, "tampered": tampered}


@pytest.mark.parametrize("key", sorted(MATRIX), ids=lambda k: f"{k[0]} {k[1]}")
async def test_matrix(site: Site, http: aiohttp.ClientSession, key: tuple[str, str]) -> None:
    route = MATRIX[key]
    tokens = await _tokens(site)
    a_id, b_id = site.task_a.id, site.task_b.id
    for caller in CALLERS:
        headers = {"Origin": site.url}
        if caller in BEARER:
            headers["Authorization"] = f"Bearer {BEARER[caller]}"
        path = route.path.format(task=a_id, token=tokens.get(caller, tokens["share_a"]))
        data = None
        if key == ("POST", "/login"):
            data = {"token": BEARER.get(caller, ""), "next": "/"}
            headers.pop("Authorization", None)
        async with http.request(route.method, site.url + path, headers=headers, data=data,
                                allow_redirects=False) as resp:
            body = await resp.text()
            assert resp.status == route.expect[caller], f"{caller} {route.method} {path}: {resp.status} {body[:300]}"
            for name in ("Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy"):
                assert name in resp.headers, f"{caller} {path}: no {name}"
            # B's token is no key to A's task; only a link A made is (B holding A's link reads A's page).
            if caller == "share_b" or (caller == "b" and not path.startswith("/s/")):
                assert a_id not in body, f"{caller} {path} names A's task"
            if caller == "share_b" and key == ("GET", "/s/{token}"):
                assert b_id in body


async def test_not_found_looks_the_same_for_every_reason(site: Site, http: aiohttp.ClientSession) -> None:
    """Another tenant's task, an unknown id and a malformed one: the same 404 page, byte for byte."""
    bodies = set()
    for task_id in (site.task_a.id, "t0000000000000000", "not-a-task-id", "t" + "0" * 40):
        for suffix in ("", "/events", "/artifacts/diff.patch", "/artifacts/..%2Fstate.db"):
            async with http.get(f"{site.url}/tasks/{task_id}{suffix}",
                                headers={"Authorization": f"Bearer {TOKEN_B}"}) as resp:
                assert resp.status == 404, (task_id, suffix)
                bodies.add(await resp.text())
    assert len(bodies) == 1


async def test_share_by_grpc_is_tenant_checked(site: Site) -> None:
    with pytest.raises(NotFound):
        await share_link(site, TOKEN_B, site.task_a.id)


async def test_cookie_post_needs_same_origin(site: Site, http: aiohttp.ClientSession) -> None:
    """A signed-in browser's cookie alone does not make a share link: the form must come from this site."""
    cookie = {"codex_sys_token": TOKEN_A}
    url = f"{site.url}/tasks/{site.task_a.id}/share"
    async with http.post(url, cookies=cookie, headers={"Origin": "https://evil.example"}) as resp:
        assert resp.status == 403
    async with http.post(url, cookies=cookie) as resp:
        assert resp.status == 403
    async with http.post(url, cookies=cookie, headers={"Origin": site.url}, data={"expires": "60"}) as resp:
        assert resp.status == 200
        assert f"{site.url}/s/1." in await resp.text()


async def test_login_sets_a_strict_httponly_cookie(site: Site, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{site.url}/login", data={"token": TOKEN_A, "next": "//evil.example/x"},
                         headers={"Origin": site.url}, allow_redirects=False) as resp:
        assert resp.status == 303
        assert resp.headers["Location"] == "/"
        cookie = resp.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    async with http.get(f"{site.url}/tasks/{site.task_a.id}", headers={"Accept": "text/html"},
                        allow_redirects=False) as resp:
        assert resp.status == 303
        assert resp.headers["Location"].startswith("/login?next=/tasks/")


async def test_artifacts_are_plain_text(site: Site, http: aiohttp.ClientSession) -> None:
    headers = {"Authorization": f"Bearer {TOKEN_A}"}
    base = f"{site.url}/tasks/{site.task_a.id}/artifacts"
    async with http.get(f"{base}/diff.patch", headers=headers) as resp:
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert "<b>divide</b>" in await resp.text()  # served as text, never as HTML
    async with http.get(f"{base}/summary.md?download=1", headers=headers) as resp:
        assert resp.headers["Content-Disposition"] == f'attachment; filename="{site.task_a.id}-summary.md"'
