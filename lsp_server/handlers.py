"""The LSP handlers: thin functions that check arguments, call the server's services, and translate.

Every command returns at once or after a few round trips to the runner; long work (following a task)
runs in a background task the server keeps. Errors a person must see are shown with
`window/showMessage` (Neovim 0.7 keeps log messages in a file) and also fail the request, with the same
sentence, so a client that waits for the result knows.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from lsprotocol import types as lsp
from pygls import uris
from pygls.exceptions import JsonRpcException

from lsp_server import translate as tr
from lsp_server.anchoring import Fit
from lsp_server.arguments import run_args, task_args
from lsp_server.runner_link import user_message
from lsp_server.server import CodexServer
from lsp_server.tasks import TrackedTask
from runner.domain import models as m
from runner.domain.changes import ChangeKind
from runner.domain.errors import FailedPrecondition, InvalidArgument, NotFound

__all__ = ["make_server"]

log = logging.getLogger(__name__)


class RequestFailed(JsonRpcException):
    """LSP's RequestFailed (-32803): the request was understood and could not be done."""

    CODE = -32803
    MESSAGE = "request failed"


Command = Callable[..., Awaitable[Any]]


def _user_errors(fn: Command) -> Command:
    @functools.wraps(fn)
    async def run(ls: CodexServer, *args: Any) -> Any:
        try:
            return await fn(ls, *args)
        except Exception as exc:
            settings, _ = ls.base_settings()
            message = user_message(exc, settings)
            if not isinstance(exc, InvalidArgument | NotFound | FailedPrecondition):
                log.exception("command failed", extra={"command": fn.__name__})
            ls.show(lsp.MessageType.Error, message)
            raise RequestFailed(message) from exc

    return run


async def _task(ls: CodexServer, task_id: str | None, folder: str | None = None) -> TrackedTask:
    if task_id is None:
        await ls.runs.settled()  # "the newest task" includes one whose runTask is still on its way
        newest = next(iter(ls.book), None)
        if newest is None:
            raise InvalidArgument("no task yet: run one first (codexSys.runTask), or pass taskId")
        return newest
    return ls.book.get(task_id) or await ls.runs.adopt(task_id, ls.default_folder(folder))


async def _completed(ls: CodexServer, task: TrackedTask) -> TrackedTask:
    if not task.diff_loaded:
        if task.state is not m.TaskState.COMPLETED:
            where = f"it ended {task.state.value}" if task.state.final else f"it is {task.state.value}"
            raise FailedPrecondition(f"task {task.id} has no changes to apply: {where}"
                                     + (f" ({task.reason})" if task.reason else ""))
        settings = await ls.settings_for(task.folder)
        await ls.runs.load_changes(task, await ls.link.client(settings))
        await ls.refresh_task(task)
    return task


def make_server(version: str) -> CodexServer:
    server = CodexServer(version)

    def command(name: str) -> Callable[[Command], Command]:
        def register(fn: Command) -> Command:
            wrapped = _user_errors(fn)
            server.command(name)(wrapped)
            return wrapped
        return register

    @server.feature(lsp.INITIALIZE)
    def initialize(ls: CodexServer, params: lsp.InitializeParams) -> None:
        ls.init_options = params.initialization_options

    @server.feature(lsp.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(ls: CodexServer, params: lsp.DidChangeConfigurationParams) -> None:
        settings = params.settings
        if isinstance(settings, dict) and isinstance(settings.get("codexSys"), dict):
            ls.changed_settings = settings["codexSys"]

    @server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: CodexServer, params: lsp.DidOpenTextDocumentParams) -> None:
        ls.schedule_refresh(params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: CodexServer, params: lsp.DidChangeTextDocumentParams) -> None:
        ls.schedule_refresh(params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: CodexServer, params: lsp.DidCloseTextDocumentParams) -> None:
        ls.schedule_refresh(params.text_document.uri)  # back to the file on disk

    @server.feature(lsp.TEXT_DOCUMENT_CODE_ACTION,
                    lsp.CodeActionOptions(code_action_kinds=[lsp.CodeActionKind.QuickFix]))
    async def code_action(ls: CodexServer, params: lsp.CodeActionParams) -> list[lsp.CodeAction] | None:
        where = ls.folder_of(params.text_document.uri)
        if where is None:
            return None
        placed = await ls.placed_in(*where)
        if not placed:
            return None
        ca = ls.client_capabilities.text_document.code_action if ls.client_capabilities.text_document else None
        return tr.code_actions(placed, params.range, bool(ca and ca.disabled_support)) or None

    @server.feature(lsp.SHUTDOWN)
    async def shutdown(ls: CodexServer, params: None) -> None:
        await ls.aclose()

    @command(tr.RUN)
    async def run_task(ls: CodexServer, *args: Any) -> dict[str, Any]:
        a = run_args(args)
        focus_paths: list[str] = []
        if a.uris:
            where = ls.folder_of(a.uris[0])
            if where is None:
                raise InvalidArgument(f"{uris.to_fs_path(a.uris[0]) or a.uris[0]} is not in a workspace folder")
            folder = where[0]
            for uri in a.uris:
                rel = folder.relative(uri)
                if rel is None:
                    raise InvalidArgument(f"{uri} is not in the workspace folder {folder.path}: "
                                          "a task runs on one folder")
                focus_paths.append(rel)
        else:
            folder = ls.default_folder(a.folder)
        focus_range = f"{focus_paths[0]}:{a.range.start + 1}-{a.range.end + 1}" if a.range and focus_paths else ""
        task = await ls.runs.start(a.instruction, folder, focus_paths, focus_range)
        return {"taskId": task.id, "folder": folder.uri}

    @command(tr.LIST)
    async def list_tasks(ls: CodexServer, *args: Any) -> dict[str, Any]:
        await ls.runs.settled()
        infos = []
        for task in ls.book:
            applicable = None
            if task.diff_loaded and not task.discarded:
                paths = {c.path for c in task.open_changes()}
                fits = 0
                for path in paths:
                    fits += sum(1 for p in await ls.placed_in(task.folder, path)
                                if p.task is task and isinstance(p.where, Fit))
                others = sum(1 for c in task.open_changes() if c.kind is not ChangeKind.EDIT)
                applicable = fits + others
            infos.append(tr.task_info(task, applicable))
        return {"tasks": infos}

    @command(tr.APPLY)
    async def apply_task(ls: CodexServer, *args: Any) -> dict[str, Any]:
        a = task_args(args, tr.APPLY, allow_hunks=True)
        task = await _completed(ls, await _task(ls, a.task_id, a.folder))
        outcome = await ls.applier.apply(task, a.hunks)
        await ls.refresh_task(task)
        if outcome.skipped:
            real = [(h, r) for h, r in outcome.skipped if r != "already applied"]
            if real:
                ls.show(lsp.MessageType.Warning, f"Codex: task {task.id}: {len(outcome.applied)} change(s) applied, "
                        f"{len(real)} not: {tr.describe_skips(real)}")
        return outcome.as_json()

    @command(tr.DISCARD)
    async def discard_task(ls: CodexServer, *args: Any) -> dict[str, Any]:
        a = task_args(args, tr.DISCARD)
        task = await _task(ls, a.task_id, a.folder)
        task.discarded = True
        await ls.refresh_task(task)
        return {"taskId": task.id, "discarded": True}

    @command(tr.CANCEL)
    async def cancel_task(ls: CodexServer, *args: Any) -> dict[str, Any]:
        a = task_args(args, tr.CANCEL)
        task = await _task(ls, a.task_id, a.folder)
        record = await ls.runs.cancel(task)
        return {"taskId": task.id, "state": record.state.value}

    @command(tr.SHOW_DIFF)
    async def show_diff(ls: CodexServer, *args: Any) -> dict[str, Any]:
        a = task_args(args, tr.SHOW_DIFF)
        task = await _completed(ls, await _task(ls, a.task_id, a.folder))
        path = await ls.runs.diff_file(task, ls.diff_home)
        uri = uris.from_fs_path(str(path)) or ""
        window = ls.client_capabilities.window
        if uri and window and window.show_document and window.show_document.support:
            ls.spawn(ls.window_show_document_async(lsp.ShowDocumentParams(uri=uri, take_focus=True)),
                     f"show diff {task.id}")
        return {"taskId": task.id, "diff": task.diff_text, "uri": uri}

    return server
