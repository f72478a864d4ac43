"""The language server's connection to the runner, and what a person reads when it fails.

One `RunnerClient` per (address, token), made on first use and replaced when the settings change. With
no address set, the embedded runner under `CODEX_SYS_HOME` is started on demand, as the CLI does, and
started again if it went away (`revive`). Errors are turned into sentences that name the setting to fix:
the editor shows them with `window/showMessage`, never a stack trace.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from lsp_server.settings import Settings
from runner.client.connection import RunnerClient
from runner.client.embedded import ensure_embedded_runner
from runner.config import HomeLayout, codex_home
from runner.domain.errors import CodexError, ResourceExhausted, Unauthenticated, Unavailable

__all__ = ["RunnerLink", "user_message"]

log = logging.getLogger(__name__)


class RunnerLink:
    def __init__(self) -> None:
        self._client: RunnerClient | None = None
        self._key: tuple[str, str] = ("", "")
        self._lock = asyncio.Lock()
        self._retired: list[RunnerClient] = []

    async def client(self, settings: Settings) -> RunnerClient:
        """A client for the runner the settings name (starting the embedded runner if need be)."""
        async with self._lock:
            key = (settings.runner_address, settings.runner_token)
            if self._client is not None and key == self._key and (
                    settings.runner_address or await self._embedded_alive()):
                return self._client
            address = settings.runner_address or await ensure_embedded_runner(HomeLayout(codex_home()))
            if self._client is not None:
                # Streams of running tasks may still use the old client: closed at shutdown.
                self._retired.append(self._client)
            self._client = RunnerClient(address, token=settings.runner_token or None)
            self._key = key
            log.info("runner connection", extra={"address": address, "embedded": not settings.runner_address})
            return self._client

    async def _embedded_alive(self) -> bool:
        layout = HomeLayout(codex_home())
        return await asyncio.to_thread(layout.runner_socket.exists)

    def reviver(self, settings: Settings) -> Callable[[], Awaitable[None]] | None:
        if settings.runner_address:
            return None

        async def revive() -> None:
            await ensure_embedded_runner(HomeLayout(codex_home()))

        return revive

    async def close(self) -> None:
        for client in [*self._retired, *([self._client] if self._client else [])]:
            await client.close()
        self._client = None
        self._retired.clear()


def user_message(exc: BaseException, settings: Settings) -> str:
    """What to tell the user about `exc`, naming the setting that fixes it where one does."""
    where = settings.runner_address or "the embedded runner"
    if isinstance(exc, Unauthenticated):
        return (f"Codex: the runner at {where} refused the token ({exc}). Set codexSys.runner.token "
                "(VS Code: \"Codex: Set Runner Token\"; Neovim: settings.runner.token) or CODEX_SYS_TOKEN.")
    if isinstance(exc, Unavailable):
        fix = ("check codexSys.runner.address" if settings.runner_address
               else f"see {HomeLayout(codex_home()).log_file}, or set codexSys.runner.address to a shared runner")
        return f"Codex: cannot reach the runner at {where}: {exc}. {fix}."
    if isinstance(exc, ResourceExhausted):
        return (f"Codex: {exc}. The limits are codexSys.snapshot.maxFiles and codexSys.snapshot.maxBytes; "
                "codexSys.snapshot.exclude leaves folders out.")
    if isinstance(exc, CodexError):
        return f"Codex: {exc}"
    return f"Codex: unexpected error: {type(exc).__name__}: {exc}"
