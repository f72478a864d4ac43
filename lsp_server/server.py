"""The language server's state and the services its handlers call (handlers live in `handlers`).

It holds the tasks (`TaskBook`), the runner connection, the snapshotter, and the edit applier; it turns
tasks' changes into diagnostics, re-anchored whenever a touched document changes (debounced), and keeps
every background asyncio task referenced, logging what fails, so one failing task never takes the server
down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer

from lsp_server.applying import Applier
from lsp_server.documents import read_file_text, read_file_texts
from lsp_server.placement import Placed, place
from lsp_server.progress import TaskProgress
from lsp_server.runner_link import RunnerLink
from lsp_server.runs import TaskRuns
from lsp_server.settings import Settings, layer
from lsp_server.snapshots import EditorSnapshots
from lsp_server.tasks import Folder, TaskBook, TrackedTask
from lsp_server.translate import diagnostic
from lsp_server.workspace_edits import EditSupport
from runner.config import codex_home
from runner.domain.errors import InvalidArgument

__all__ = ["CodexServer"]

log = logging.getLogger(__name__)
REFRESH_DELAY_S = 0.05


class CodexServer(LanguageServer):
    def __init__(self, version: str) -> None:
        super().__init__("codex-sys", version, text_document_sync_kind=lsp.TextDocumentSyncKind.Incremental)
        self.book = TaskBook()
        self.link = RunnerLink()
        self.snapshots = EditorSnapshots()
        self.runs = TaskRuns(self, self.link, self.snapshots, self.book)
        self.applier = Applier(lambda: self.workspace, self.edit_support, self.workspace_apply_edit_async)
        self.init_options: object = None
        self.changed_settings: object = None
        self._background: set[asyncio.Task[Any]] = set()
        self._published: set[str] = set()
        self._pending_refresh: dict[str, asyncio.TimerHandle] = {}
        self._problems_shown: set[str] = set()

    # ---- what runs need (runs.Host) ------------------------------------------------------------------

    def show(self, kind: lsp.MessageType, message: str) -> None:
        self.window_show_message(lsp.ShowMessageParams(type=kind, message=message))

    def new_progress(self, on_cancel: asyncio.Future[None]) -> TaskProgress:
        def cancel() -> None:
            if not on_cancel.done():
                on_cancel.set_result(None)

        window = self.client_capabilities.window if self.client_capabilities else None
        return TaskProgress(self, bool(window and window.work_done_progress), cancel)

    def overlays(self, folder: Folder) -> Mapping[str, bytes]:
        out: dict[str, bytes] = {}
        for uri, doc in self.workspace.text_documents.items():
            rel = folder.relative(uri)
            if rel is not None:
                out[rel] = doc.source.encode("utf-8", "surrogatepass")
        return out

    def spawn(self, coro: object, name: str) -> None:
        assert asyncio.iscoroutine(coro)
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception(), extra={"task": task.get_name()})

    def base_settings(self) -> tuple[Settings, list[str]]:
        """The settings before `workspace/configuration`: the environment, then the client's latest
        `didChangeConfiguration` settings if it sent any (they are the whole settings: a value removed
        there goes back to its default), else its `initializationOptions`; and what was wrong in them."""
        client = self.changed_settings if self.changed_settings is not None else self.init_options
        settings = layer(Settings.from_env(), client)
        return settings, list(settings.problems)

    async def settings_for(self, folder: Folder | None) -> Settings:
        settings, problems = self.base_settings()
        caps = self.client_capabilities.workspace if self.client_capabilities else None
        if caps is not None and caps.configuration:
            try:
                got = await asyncio.wait_for(self.workspace_configuration_async(lsp.ConfigurationParams(items=[
                    lsp.ConfigurationItem(scope_uri=folder.uri if folder else None, section="codexSys")])), 5)
                settings = layer(settings, got[0] if got else None)
                problems.extend(settings.problems)
            except Exception as exc:  # settings from the client are a convenience: keep what we have
                log.warning("workspace/configuration failed", extra={"error": str(exc)})
        for problem in problems:
            if problem not in self._problems_shown:
                self._problems_shown.add(problem)
                self.show(lsp.MessageType.Warning, f"Codex: {problem}; the default is used.")
        return settings

    async def changes_ready(self, task: TrackedTask) -> None:
        await self.refresh_task(task)

    # ---- folders -------------------------------------------------------------------------------------

    def folders(self) -> list[Folder]:
        ws = self.workspace
        found = [Folder.from_uri(f.uri) for f in ws.folders.values()]
        if not found and ws.root_uri:
            found = [Folder.from_uri(ws.root_uri)]
        return found

    def folder_of(self, uri: str) -> tuple[Folder, str] | None:
        """The innermost workspace folder holding `uri`, and the path in it."""
        best: tuple[Folder, str] | None = None
        for folder in self.folders():
            rel = folder.relative(uri)
            if rel is not None and (best is None or len(str(folder.path)) > len(str(best[0].path))):
                best = (folder, rel)
        return best

    def default_folder(self, folder_uri: str | None = None) -> Folder:
        folders = self.folders()
        if folder_uri:
            for f in folders:
                if f.uri == folder_uri or f.path == Folder.from_uri(folder_uri).path:
                    return f
            raise InvalidArgument(f"{folder_uri} is not a folder of this workspace")
        if not folders:
            raise InvalidArgument("no workspace folder is open: open a folder to run a task on it")
        return folders[0]

    # ---- diagnostics ---------------------------------------------------------------------------------

    async def placed_in(self, folder: Folder, path: str) -> list[Placed]:
        tasks = self.book.touching(folder, path)
        if not tasks:
            return []
        current = await read_file_text(self.workspace, folder.uri_of(path), folder.path / path)
        return place(tasks, path, current.text, current.problem)

    async def refresh_path(self, folder: Folder, path: str) -> None:
        await self._refresh(folder, [path])

    async def refresh_task(self, task: TrackedTask) -> None:
        await self._refresh(task.folder, task.paths)

    async def _refresh(self, folder: Folder, paths: list[str]) -> None:
        """Re-anchor the hunks on `paths` and publish their diagnostics (an empty list clears)."""
        started = time.perf_counter()
        wanted = [(p, folder.uri_of(p), self.book.touching(folder, p)) for p in paths]
        wanted = [(p, uri, tasks) for p, uri, tasks in wanted if tasks or uri in self._published]
        texts = await read_file_texts(self.workspace, [(uri, folder.path / p) for p, uri, _ in wanted])
        for (path, uri, tasks), current in zip(wanted, texts, strict=True):
            placed = place(tasks, path, current.text, current.problem) if tasks else []
            self.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(
                uri=uri, diagnostics=[diagnostic(p) for p in placed], version=current.version))
            if placed:
                self._published.add(uri)
            else:
                self._published.discard(uri)
        log.debug("diagnostics published", extra={"files": len(wanted),
                                                  "ms": round((time.perf_counter() - started) * 1000, 2)})

    def schedule_refresh(self, uri: str) -> None:
        """Re-anchor a document's hunks soon after it changed (edits come in bursts while typing)."""
        where = self.folder_of(uri)
        if where is None or (not self.book.touching(*where) and uri not in self._published):
            return
        old = self._pending_refresh.pop(uri, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._pending_refresh.pop(uri, None)
            self.spawn(self.refresh_path(*where), f"refresh {uri}")

        self._pending_refresh[uri] = loop.call_later(REFRESH_DELAY_S, fire)

    # ---- edits ---------------------------------------------------------------------------------------

    def edit_support(self) -> EditSupport:
        encoding = self.workspace.position_encoding if self._workspace_ready() else None
        return EditSupport.of(self.client_capabilities, str(getattr(encoding, "value", encoding) or "utf-16"))

    def _workspace_ready(self) -> bool:
        try:
            self.workspace  # noqa: B018 - raises until initialize
        except RuntimeError:
            return False
        return True

    @property
    def diff_home(self) -> Path:
        return codex_home() / "lsp" / "diffs"

    async def aclose(self) -> None:
        for handle in self._pending_refresh.values():
            handle.cancel()
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(BaseException):
                await task
        await self.snapshots.close()
        await self.link.close()

