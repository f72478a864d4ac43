"""HTTP answers the gateway gives of its own, shaped like OpenAI's errors so any client reports them.

`{"error": {"message", "type", "param", "code"}}`, the status that fits, and for refusals the headers
OpenAI clients act on: `x-should-retry: false` where retrying cannot help (authentication, exhausted
budgets), `retry-after` / `retry-after-ms` where it can (rate limits).
"""

from __future__ import annotations

import math

from aiohttp import web

from runner.gateway.budget import BUDGET_EXCEEDED, Refusal


def error(status: int, message: str, type_: str, code: str | None = None, *,
          retry: bool | None = None, retry_after_s: float | None = None) -> web.Response:
    headers: dict[str, str] = {}
    if retry is not None:
        headers["x-should-retry"] = "true" if retry else "false"
    if retry_after_s is not None:
        headers["retry-after"] = str(max(1, math.ceil(retry_after_s)))
        headers["retry-after-ms"] = str(max(1, math.ceil(retry_after_s * 1000)))
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def unauthorized(message: str) -> web.Response:
    return error(401, message, "invalid_request_error", "invalid_api_key", retry=False)


def bad_request(message: str, code: str | None = None) -> web.Response:
    return error(400, message, "invalid_request_error", code, retry=False)


def refused(refusal: Refusal) -> web.Response:
    if refusal.type == BUDGET_EXCEEDED:
        return error(429, refusal.message, BUDGET_EXCEEDED, BUDGET_EXCEEDED, retry=False)
    return error(429, refusal.message, refusal.type, refusal.type, retry_after_s=refusal.retry_after_s)


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
