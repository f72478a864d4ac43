"""Who is looking at a page: bearer tokens, the login cookie, and the checks on cookie-sent POSTs.

A request is authenticated by `Authorization: Bearer <token>` or by the login cookie, which holds the same
token (HttpOnly, SameSite=Strict, Secure when served over TLS) so that revoking or expiring a token in the
token book signs its browsers out too. `identify` is the token book's: header value → `Principal`.

Cross-site request forgery: the cookie is SameSite=Strict, and every POST that a browser could send with
it (login, logout, share) must also carry an `Origin` (or, failing that, a `Referer`) of this site: the
public URL's origin or the origin the request was addressed to. Requests with a bearer header are not
sent by browsers on their own and need no such check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from aiohttp import web

from runner.auth.principal import Principal
from runner.domain.errors import PermissionDenied, Unauthenticated

Identify = Callable[[str | None], Principal]
COOKIE = "codex_sys_token"
COOKIE_MAX_AGE_S = 12 * 3600
VIA_COOKIE = web.RequestKey("via_cookie", bool)


def principal_of(request: web.Request, identify: Identify) -> Principal:
    header = request.headers.get("Authorization")
    if header:
        return identify(header)
    token = request.cookies.get(COOKIE)
    if token:
        request[VIA_COOKIE] = True
        return identify(f"Bearer {token}")
    raise Unauthenticated("sign in, or send 'Authorization: Bearer <token>'")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else ""


def check_same_origin(request: web.Request, public_url: str) -> None:
    """Refuse a browser POST that did not come from this site's own pages."""
    if request.headers.get("Authorization") and not request.get(VIA_COOKIE, False):
        return
    allowed: Iterable[str] = {_origin(public_url), f"{request.scheme}://{request.host}".lower()}
    sent = request.headers.get("Origin") or _origin(request.headers.get("Referer", ""))
    if not sent or sent.lower() not in allowed:
        raise PermissionDenied("this form must be sent from the runner's own pages (Origin check failed)")


def set_login_cookie(response: web.StreamResponse, token: str, secure: bool) -> None:
    response.set_cookie(COOKIE, token, max_age=COOKIE_MAX_AGE_S, path="/", httponly=True, secure=secure,
                        samesite="Strict")


def clear_login_cookie(response: web.StreamResponse, secure: bool) -> None:
    response.del_cookie(COOKIE, path="/", secure=secure, httponly=True, samesite="Strict")


def safe_next(path: str) -> str:
    """Where to go after signing in: a path of this site only (no `//host`, no scheme)."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path or any(ord(c) < 32 for c in path):
        return "/"
    return path
