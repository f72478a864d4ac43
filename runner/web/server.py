"""The HTTP side of the runner: the task pages' aiohttp app on a TCP address, next to the gRPC API.

`WebSide.open` gathers what the pages need (the share key, who may sign in) and `start` listens, over TLS
when given an `ssl.SSLContext`. The public URL (`--public-url`) is the base of page URLs and share links;
without one it is derived from the address listened on (a wildcard address is named by the host name).

Who may sign in: the token book's tokens (`--token-file` / CODEX_SYS_TOKENS). An embedded runner has no
token book: it makes a local web token once (`web-token` under CODEX_SYS_HOME, 0600, so only the user
who owns the runner can read it), and that token signs a browser in as the local tenant. Other local
users cannot read the file, so the pages stay closed to them even on 127.0.0.1.
"""

from __future__ import annotations

import logging
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from runner.auth.tokens import TokenBook
from runner.config import HomeLayout
from runner.domain.errors import InvalidArgument
from runner.tasks.service import TaskService
from runner.web.access import Identify
from runner.web.app import WebSettings, build_app
from runner.web.links import PageLinks
from runner.web.secret_file import load_secret
from runner.web.share import ShareSigner, load_share_key

log = logging.getLogger(__name__)

LOCAL_TENANT = "local"


def parse_listen(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise InvalidArgument(f"HTTP listen address {address!r} is not HOST:PORT (e.g. 127.0.0.1:8080)")
    return host.strip("[]") or "0.0.0.0", int(port)


def check_public_url(url: str) -> str:
    if not url.startswith(("http://", "https://")) or "?" in url or "#" in url:
        raise InvalidArgument(f"public URL {url!r} must be an http:// or https:// URL without query or fragment")
    return url.rstrip("/")


@dataclass(frozen=True, slots=True)
class WebConfig:
    listen: tuple[str, int]
    public_url: str = ""
    share_key_file: Path | None = None


class WebSide:
    def __init__(self, pages: web.Application, links: PageLinks, config: WebConfig,
                 ssl_context: ssl.SSLContext | None) -> None:
        self._app = pages
        self.links = links
        self._config = config
        self._ssl = ssl_context
        self._runner: web.AppRunner | None = None
        self.port = 0

    @classmethod
    def open(cls, service: TaskService, home: HomeLayout, config: WebConfig, tokens: TokenBook | None,
             ssl_context: ssl.SSLContext | None = None) -> WebSide:
        key_file = config.share_key_file or home.share_key
        signer = ShareSigner(load_share_key(key_file, create=config.share_key_file is None))
        identify: Identify
        hint = ""
        if tokens is not None:
            identify = tokens.identify
        else:
            web_token = load_secret(home.web_token, "local web token", create=True)
            identify = TokenBook(None, inline=f"{web_token} {LOCAL_TENANT} member").identify
            hint = f"This runner is embedded: its web token is in {home.web_token} (readable by you only)."
        links = PageLinks(service, signer, config.public_url)
        settings = WebSettings(secure=ssl_context is not None, login_hint=hint)
        return cls(build_app(service, identify, signer, links, settings), links, config, ssl_context)

    async def start(self) -> int:
        host, port = self._config.listen
        self._runner = web.AppRunner(self._app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=self._ssl)
        await site.start()
        self.port = _bound_port(self._runner, port)
        if not self.links.base_url:
            name = host if host not in ("0.0.0.0", "::", "") else socket.gethostname()
            name = f"[{name}]" if ":" in name else name
            self.links.base_url = f"{'https' if self._ssl else 'http'}://{name}:{self.port}"
        log.info("task pages listening", extra={"host": host, "port": self.port, "public_url": self.links.base_url})
        return self.port

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _bound_port(runner: web.AppRunner, asked: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return asked
