"""A task's progress in the editor's own UI: server-initiated work-done progress, cancellable.

Each task gets a fresh token (`window/workDoneProgress/create`), created before the snapshot so the user
sees something at once. Reports follow the task's events; cancelling the progress in the editor calls
`on_cancel` (the task is cancelled on the runner). Clients without `window.workDoneProgress` get a
`window/showMessage` when the task starts and when it ends instead.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import Future

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer

from runner.domain import models as m

__all__ = ["TaskProgress", "event_message"]

log = logging.getLogger(__name__)


def _clip(text: str, n: int = 80) -> str:
    line = " ".join(text.split())
    return line if len(line) <= n else line[: n - 1] + "…"


def event_message(event: m.Event) -> str | None:
    """What the progress line says for `event`; None to leave it as it is."""
    p = event.payload
    if isinstance(p, m.StateChanged):
        return p.state.value.replace("_", " ").lower() + (f": {_clip(p.reason)}" if p.reason else "")
    if isinstance(p, m.ToolCallStarted):
        return _clip(f"{p.name} {p.arguments}")
    if isinstance(p, m.AssistantMessage) and p.text.strip():
        return _clip(p.text)
    return None


class TaskProgress:
    def __init__(self, server: LanguageServer, supported: bool, on_cancel: Callable[[], None]) -> None:
        self._server = server
        self._supported = supported
        self._on_cancel = on_cancel
        self.token = f"codex-sys/{uuid.uuid4().hex}"
        self._begun = False
        self._ended = False

    async def begin(self, title: str, message: str) -> None:
        if not self._supported:
            self._server.window_show_message(lsp.ShowMessageParams(lsp.MessageType.Info, f"{title}: {message}"))
            return
        try:
            await self._server.work_done_progress.create_async(self.token)
        except Exception as exc:  # a client that refuses progress still gets its task
            log.warning("work-done progress refused by the client", extra={"error": str(exc)})
            self._supported = False
            return
        loop = asyncio.get_running_loop()
        future: Future[object] = self._server.work_done_progress.tokens[self.token]

        def cancelled(f: Future[object]) -> None:
            if f.cancelled() and not self._ended:
                loop.call_soon_threadsafe(self._on_cancel)

        future.add_done_callback(cancelled)
        self._server.work_done_progress.begin(self.token, lsp.WorkDoneProgressBegin(
            title=title, message=message, cancellable=True))
        self._begun = True

    def report(self, message: str) -> None:
        if self._begun and not self._ended:
            self._server.work_done_progress.report(self.token, lsp.WorkDoneProgressReport(message=message))

    def end(self, message: str, show: lsp.MessageType | None = None) -> None:
        """End the progress; `show` also puts `message` in a `window/showMessage` of that type."""
        if self._ended:
            return
        self._ended = True
        if self._begun:
            self._server.work_done_progress.end(self.token, lsp.WorkDoneProgressEnd(message=message))
            self._server.work_done_progress.tokens.pop(self.token, None)
        if show is not None or not self._supported:
            self._server.window_show_message(lsp.ShowMessageParams(show or lsp.MessageType.Info, message))
