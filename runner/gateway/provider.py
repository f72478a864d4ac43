"""The one HTTP client the gateway keeps towards the LLM provider.

It holds the provider's key and adds it to every request; nothing the agent sent in its headers goes
out. One `aiohttp.ClientSession` with a sized connector serves every task. Failures to reach the
provider become `ProviderUnreachable`, whose message names the provider's URL (credentials in the URL
removed) and never the key; `scrub()` removes the key from any text that goes back to the agent or into
a transcript, in case a provider echoes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

USER_AGENT = "codex-sys-gateway"


class ProviderUnreachable(Exception):
    """The provider could not be reached or broke off; the message is safe to show."""


@dataclass(frozen=True, slots=True)
class ProviderOptions:
    connections: int = 64
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 300.0  # longest silence between bytes of an answer


def public_url(url: str) -> str:
    """The URL without any user:password part, for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


class Provider:
    def __init__(self, base_url: str, api_key: str | None, options: ProviderOptions | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"LLM provider URL {public_url(base_url)!r} is not an http(s) URL")
        if api_key and (parts.username or parts.password):
            raise ValueError(f"LLM provider URL {public_url(base_url)!r} carries credentials as well as an "
                             "API key; give one of them")
        self.chat_url = base_url.rstrip("/") + "/chat/completions"
        self.public_chat_url = public_url(self.chat_url)
        self._api_key = api_key
        self._options = options or ProviderOptions()
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        o = self._options
        connector = aiohttp.TCPConnector(limit=o.connections, limit_per_host=o.connections)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=o.connect_timeout_s, sock_read=o.read_timeout_s),
            headers={"User-Agent": USER_AGENT},
        )

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def scrub(self, text: str) -> str:
        if self._api_key and len(self._api_key) >= 4:
            text = text.replace(self._api_key, "[redacted]")
        return text

    def _headers(self, stream: bool) -> dict[str, str]:
        headers = {"Content-Type": "application/json",
                   "Accept": "text/event-stream" if stream else "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    @contextlib.asynccontextmanager
    async def chat(self, body: bytes, stream: bool) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST the (already encoded) request; yields the provider's response, headers read."""
        if self._session is None:
            raise RuntimeError("the provider client is not started")
        try:
            async with self._session.post(self.chat_url, data=body, headers=self._headers(stream)) as response:
                yield response
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ProviderUnreachable(self.describe(exc)) from exc

    def describe(self, exc: BaseException) -> str:
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
            what = "timed out"
        elif isinstance(exc, aiohttp.ClientConnectorError):
            what = f"is unreachable ({exc.os_error.strerror or exc.os_error})"
        elif isinstance(exc, aiohttp.ClientPayloadError):
            what = "broke off its answer"
        else:
            what = f"failed ({type(exc).__name__}: {exc})"
        return self.scrub(f"the LLM provider at {self.public_chat_url} {what}")


async def read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, or `ValueError` once it exceeds `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise ValueError(f"the provider's answer is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def error_excerpt(body: bytes, limit: int = 2000) -> str:
    """The provider's error message when it is OpenAI-shaped, else the start of the body."""
    text = body.decode("utf-8", "replace")
    try:
        parsed: Any = json.loads(text)
    except json.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        message = parsed["error"].get("message")
        if isinstance(message, str):
            text = message
    return text[:limit] + ("..." if len(text) > limit else "")
