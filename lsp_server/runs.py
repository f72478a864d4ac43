"""One task's life in the editor: snapshot, submit, follow, and its changes when it ends.

`start` returns once the runner has the task (a warm workspace uploads nothing: a stat walk and two
calls); the progress is shown before the snapshot so the user sees the command took. Following runs in
a background task kept by the server: events feed the progress, a dropped stream resumes from the last
sequence (`runner.client.follow`), and a completed task's `diff.patch` is fetched, checked against its
digest and parsed into changes, which the server turns into diagnostics.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from lsprotocol import types as lsp

from lsp_server.progress import TaskProgress, event_message
from lsp_server.runner_link import RunnerLink, user_message
from lsp_server.settings import Settings
from lsp_server.snapshots import EditorSnapshots
from lsp_server.tasks import Folder, TaskBook, TrackedTask, title_of
from runner.client.connection import RunnerClient
from runner.client.follow import follow_events
from runner.client.upload import submit_task
from runner.domain import models as m
from runner.domain.changes import parse_changes
from runner.domain.errors import Unavailable

__all__ = ["Host", "TaskRuns"]

log = logging.getLogger(__name__)


class Host(Protocol):
    """What a run needs of the server."""

    def show(self, kind: lsp.MessageType, message: str) -> None: ...
    def new_progress(self, on_cancel: asyncio.Future[None]) -> TaskProgress: ...
    def overlays(self, folder: Folder) -> Mapping[str, bytes]: ...
    def spawn(self, coro: object, name: str) -> None: ...
    async def settings_for(self, folder: Folder) -> Settings: ...
    async def changes_ready(self, task: TrackedTask) -> None: ...


class TaskRuns:
    def __init__(self, host: Host, link: RunnerLink, snapshots: EditorSnapshots, book: TaskBook) -> None:
        self._host = host
        self.link = link
        self._snapshots = snapshots
        self.book = book
        self._starting: set[asyncio.Future[None]] = set()
        self._folder_locks: dict[str, asyncio.Lock] = {}

    async def settled(self) -> None:
        """Wait until every `start` in flight has created its task (or failed)."""
        if self._starting:
            await asyncio.wait(list(self._starting))

    async def start(self, instruction: str, folder: Folder, focus_paths: Sequence[str] = (),
                    focus_range: str = "") -> TrackedTask:
        """Create a task on the runner and follow it. Starts on one folder are taken one after the other,
        so tasks are created in the order they were asked for (and "the newest" is the last one asked)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._starting.add(done)
        try:
            async with self._folder_locks.setdefault(str(folder.path), asyncio.Lock()):
                return await self._start(instruction, folder, focus_paths, focus_range)
        finally:
            self._starting.discard(done)
            done.set_result(None)

    async def _start(self, instruction: str, folder: Folder, focus_paths: Sequence[str],
                     focus_range: str) -> TrackedTask:
        settings = await self._host.settings_for(folder)
        cancel: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        progress = self._host.new_progress(cancel)
        title = title_of(instruction)
        await progress.begin("Codex", f"{title}: snapshot of {folder.path.name}")
        try:
            snapshot = await self._snapshots.take(folder.path, self._host.overlays(folder), settings)
            if cancel.done():
                raise asyncio.CancelledError
            progress.report(f"uploading what the runner lacks of {len(snapshot.manifest.entries):,} files")
            client = await self.link.client(settings)
            record, stats = await submit_task(
                client, snapshot.manifest, snapshot.sources, instruction, model=settings.model,
                request_id=uuid.uuid4().hex, focus_paths=focus_paths, focus_range=focus_range)
        except asyncio.CancelledError:
            progress.end("Codex: cancelled before the task was created")
            raise
        except Exception as exc:
            progress.end(user_message(exc, settings))  # the command's error shows it to the user
            raise
        task = self.book.add(TrackedTask(record.id, folder, instruction))
        task.update(record)
        log.info("task created", extra={"task_id": task.id, "folder": str(folder.path),
                                        "files": len(snapshot.manifest.entries),
                                        "blobs_uploaded": stats.blobs_uploaded, "skipped": len(snapshot.skipped)})
        progress.report(f"{task.id} queued ({stats.blobs_uploaded} new files uploaded)")
        cancel.add_done_callback(lambda _: self._host.spawn(self.cancel(task), f"cancel {task.id}"))
        self._host.spawn(self.follow(task, progress, settings), f"follow {task.id}")
        return task

    async def follow(self, task: TrackedTask, progress: TaskProgress | None, settings: Settings) -> None:
        try:
            client = await self.link.client(settings)
            async for event in follow_events(client, task.id, task.last_seq, self.link.reviver(settings)):
                task.last_seq = event.seq
                if isinstance(event.payload, m.StateChanged):
                    task.state, task.reason = event.payload.state, event.payload.reason
                message = event_message(event)
                if message is not None and progress is not None:
                    progress.report(message)
            record = await client.get_task(task.id)
            task.update(record)
            await self._conclude(task, client, record)
        except asyncio.CancelledError:
            if progress is not None:
                progress.end(f"Codex: stopped following {task.id}")
            raise
        except Exception as exc:
            log.exception("following a task failed", extra={"task_id": task.id})
            message = user_message(exc, settings)
            if isinstance(exc, Unavailable):
                message += f" Task {task.id} goes on on the runner; \"Show Tasks\" picks it up again."
            if progress is not None:
                progress.end(message, show=lsp.MessageType.Error)
            else:
                self._host.show(lsp.MessageType.Error, message)
            return
        if progress is not None:
            kind = lsp.MessageType.Info if task.state is m.TaskState.COMPLETED else lsp.MessageType.Warning
            progress.end(self.summary(task), show=kind)

    async def _conclude(self, task: TrackedTask, client: RunnerClient, record: m.TaskRecord) -> None:
        if task.state is m.TaskState.COMPLETED and not task.diff_loaded:
            await self.load_changes(task, client, record)
        await self._host.changes_ready(task)

    async def load_changes(self, task: TrackedTask, client: RunnerClient, record: m.TaskRecord | None = None) -> None:
        """Fetch, check and parse the task's diff (`record`: the task as just read, if it was)."""
        if record is None:
            record = await client.get_task(task.id)
            task.update(record)
        ref = record.artifact("diff.patch")
        if ref is None:
            task.set_changes([], "")
            return
        data = await client.artifact_bytes(task.id, "diff.patch")
        if m.Digest.of(data) != ref.digest:
            raise Unavailable(f"the diff of task {task.id} arrived corrupted; try again")
        text = data.decode("utf-8", "surrogateescape")
        task.set_changes(parse_changes(text), text)

    @staticmethod
    def summary(task: TrackedTask) -> str:
        if task.state is m.TaskState.COMPLETED:
            if not task.changes:
                return f"Codex: task {task.id} completed with no changes."
            files = len({c.path for c in task.changes})
            return (f"Codex: task {task.id} completed: {len(task.changes)} change(s) in {files} file(s). "
                    "The changed lines are marked: use their code actions, or Apply All.")
        reason = f": {task.reason}" if task.reason else ""
        return f"Codex: task {task.id} ended {task.state.value}{reason}"

    async def cancel(self, task: TrackedTask) -> m.TaskRecord:
        settings = await self._host.settings_for(task.folder)
        client = await self.link.client(settings)
        record = await client.cancel(task.id)
        task.update(record)
        return record

    async def adopt(self, task_id: str, folder: Folder) -> TrackedTask:
        """Track a task this server did not start (its changes apply to `folder`)."""
        settings = await self._host.settings_for(folder)
        client = await self.link.client(settings)
        record = await client.get_task(task_id)
        task = self.book.add(TrackedTask(record.id, folder, record.instruction))
        task.update(record)
        if task.state.final:
            await self._conclude(task, client, record)
        else:
            self._host.spawn(self.follow(task, None, settings), f"follow {task.id}")
        return task

    async def diff_file(self, task: TrackedTask, home: Path) -> Path:
        """The task's patch saved under `home` (for editors that open a file to show it)."""
        if not task.diff_loaded:
            settings = await self._host.settings_for(task.folder)
            await self.load_changes(task, await self.link.client(settings))
        path = home / f"{task.id}.patch"
        await asyncio.to_thread(_write, path, task.diff_text)
        return path


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", errors="surrogateescape")

