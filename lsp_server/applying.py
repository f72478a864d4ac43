"""Accepting changes: check each against today's text, send one WorkspaceEdit, and make sure it landed.

Every change is checked by the server before anything is sent, whatever the client would check itself:
a hunk must still fit (re-anchored, `anchoring`); a created file must not exist yet; a deleted or
renamed file must hold exactly the text the task saw and must not be open with unsaved changes; a
binary or mode change cannot travel in a WorkspaceEdit. What fails a check is skipped with its reason;
the rest goes in one `workspace/applyEdit`.

After the client answers `applied: true`, the open documents the edit touched are watched until their
text is what the edit makes of it: Neovim 0.7 answers `applied: true` even when it skipped a stale
edit, so its word is not enough. A change is marked applied only then.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lsprotocol import types as lsp
from pygls import uris
from pygls.workspace import Workspace

from lsp_server.anchoring import Fit, locate_all
from lsp_server.documents import read_file_text
from lsp_server.placement import place
from lsp_server.tasks import TrackedTask
from lsp_server.textlines import split_lines
from lsp_server.workspace_edits import (
    CreatePlan,
    DeletePlan,
    EditSupport,
    FilePlan,
    RenamePlan,
    TextPlan,
    build_edit,
    hunk_edit,
)
from runner.domain.changes import Change, ChangeKind

__all__ = ["Applier", "ApplyOutcome"]

log = logging.getLogger(__name__)
VERIFY_TIMEOUT_S = 2.0

SendEdit = Callable[[lsp.ApplyWorkspaceEditParams], Awaitable[lsp.ApplyWorkspaceEditResult]]


@dataclass
class ApplyOutcome:
    applied: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (change id, reason)

    def as_json(self) -> dict[str, object]:
        return {"applied": self.applied, "skipped": [{"hunk": h, "reason": r} for h, r in self.skipped]}


@dataclass
class _Planned:
    plan: FilePlan
    ids: list[str]
    expect: str | None = None  # an open document's text once the plan is applied, to verify


class Applier:
    def __init__(self, workspace: Callable[[], Workspace], support: Callable[[], EditSupport], send: SendEdit) -> None:
        self._workspace = workspace
        self._support = support
        self._send = send
        self._lock = asyncio.Lock()

    async def apply(self, task: TrackedTask, ids: Sequence[str] | None) -> ApplyOutcome:
        async with self._lock:  # one edit at a time: each is checked against the text the last one left
            return await self._apply(task, ids)

    async def _apply(self, task: TrackedTask, ids: Sequence[str] | None) -> ApplyOutcome:
        out = ApplyOutcome()
        if task.discarded:
            out.skipped.extend((i, "the task was discarded") for i in (ids or []))
            return out
        chosen: list[Change] = []
        for cid in ids if ids is not None else [c.id for c in task.open_changes()]:
            if cid in task.applied:
                out.skipped.append((cid, "already applied"))
                continue
            try:
                chosen.append(task.change(str(cid)))
            except LookupError as exc:
                out.skipped.append((str(cid), str(exc)))
        support = self._support()
        plans: list[_Planned] = []
        edits_by_path: dict[str, list[Change]] = {}
        for change in chosen:
            if change.kind is ChangeKind.EDIT:
                edits_by_path.setdefault(change.path, []).append(change)
        for path, changes in edits_by_path.items():
            plans.extend(await self._plan_edits(task, path, changes, support, out))
        for change in chosen:
            if change.kind is not ChangeKind.EDIT:
                planned = await self._plan_file(task, change, support, out)
                if planned is not None:
                    plans.append(planned)
        if not plans:
            return out
        await self._send_and_verify(task, plans, support, out)
        return out

    async def _plan_edits(self, task: TrackedTask, path: str, changes: list[Change], support: EditSupport,
                          out: ApplyOutcome) -> list[_Planned]:
        uri = task.folder.uri_of(path)
        current = await read_file_text(self._workspace(), uri, task.folder.path / path)
        if current.text is None:
            out.skipped.extend((c.id, current.problem) for c in changes)
            return []
        wanted = {c.id for c in changes}
        lines = split_lines(current.text)
        fits: list[tuple[Change, Fit]] = []
        for p in place([task], path, current.text):
            if p.change.id not in wanted:
                continue
            if isinstance(p.where, Fit):
                fits.append((p.change, p.where))
            else:
                out.skipped.append((p.change.id, p.where.reason))
        if not fits:
            return []
        edits = tuple(hunk_edit(c.hunks[0], f, lines, support.encoding) for c, f in fits)
        expect = _after(lines, [(f, c.hunks[0].new_lines) for c, f in fits]) if current.is_open else None
        return [_Planned(TextPlan(uri, current.version, edits), [c.id for c, _ in fits], expect)]

    async def _plan_file(self, task: TrackedTask, change: Change, support: EditSupport,
                         out: ApplyOutcome) -> _Planned | None:
        ws, folder = self._workspace(), task.folder
        uri = folder.uri_of(change.path)
        how = f"apply it with `codex-sys apply {task.id}` in a terminal"
        if change.kind in (ChangeKind.BINARY, ChangeKind.MODE):
            what = "a binary file" if change.kind is ChangeKind.BINARY else "a file's mode"
            out.skipped.append((change.id, f"{what} cannot be changed through the editor; {how}"))
            return None
        op = change.kind.value
        if not support.can(op):
            out.skipped.append((change.id, f"this editor cannot {op} files through LSP; {how}"))
            return None
        if change.kind is ChangeKind.CREATE:
            there = await read_file_text(ws, uri, folder.path / change.path)
            if there.exists:
                if there.text == change.new_text:
                    task.applied.add(change.id)
                    out.skipped.append((change.id, "already applied"))
                else:
                    out.skipped.append((change.id, f"{change.path} already exists"))
                return None
            return _Planned(CreatePlan(uri, change.new_text), [change.id])
        old_uri = folder.uri_of(change.old_path)
        old = await read_file_text(ws, old_uri, folder.path / change.old_path, check_dirty=True)
        if not old.exists:
            if change.kind is ChangeKind.DELETE:
                task.applied.add(change.id)
                out.skipped.append((change.id, "already applied"))
            else:
                out.skipped.append((change.id, f"{change.old_path} no longer exists"))
            return None
        if old.dirty:
            out.skipped.append((change.id, f"{change.old_path} is open with unsaved changes; save or revert it first"))
            return None
        if old.text is None:
            out.skipped.append((change.id, old.problem))
            return None
        if change.kind is ChangeKind.DELETE:
            if old.text != change.old_text:
                out.skipped.append((change.id, f"{change.path} was edited after the task started; not deleted"))
                return None
            return _Planned(DeletePlan(uri), [change.id])
        target = await read_file_text(ws, uri, folder.path / change.path)
        if target.exists:
            out.skipped.append((change.id, f"{change.path} already exists"))
            return None
        lines = split_lines(old.text)
        found = locate_all([(h, False) for h in change.hunks], lines)
        misfits = [f for f in found if not isinstance(f, Fit)]
        if misfits:
            out.skipped.append((change.id, f"{change.old_path} was edited after the task started; not renamed"))
            return None
        edits = tuple(hunk_edit(h, f, lines, support.encoding)
                      for h, f in zip(change.hunks, found, strict=True) if isinstance(f, Fit))
        return _Planned(RenamePlan(old_uri, uri, edits), [change.id])

    async def _send_and_verify(self, task: TrackedTask, plans: list[_Planned], support: EditSupport,
                               out: ApplyOutcome) -> None:
        await asyncio.to_thread(_make_parents, plans)
        edit = build_edit([p.plan for p in plans], support)
        started = time.perf_counter()
        result = await self._send(lsp.ApplyWorkspaceEditParams(edit=edit, label=f"Codex: task {task.id}"))
        failure = "" if result.applied else _reason(result.failure_reason)
        # Checked whatever the answer: Neovim 0.7 says `applied: true` when it skipped a stale edit, and
        # applies the operations before a failing one before it says `applied: false`.
        landed = await asyncio.gather(*(self._landed(p, result.applied) for p in plans))
        for p, done in zip(plans, landed, strict=True):
            if done:
                task.applied.update(p.ids)
                out.applied.extend(p.ids)
            elif failure:
                out.skipped.extend((i, f"the editor refused the edit: {failure}") for i in p.ids)
            else:
                out.skipped.extend((i, "the editor did not apply the change (the document changed meanwhile?); "
                                       "try again") for i in p.ids)
        log.info("changes applied", extra={"task_id": task.id, "applied": len(out.applied),
                                           "skipped": len(out.skipped), "client_failure": failure,
                                           "ms": round((time.perf_counter() - started) * 1000, 1)})

    async def _landed(self, planned: _Planned, client_says: bool) -> bool:
        """Whether the plan is in effect, waited for up to VERIFY_TIMEOUT_S (the client's didChange may
        come after its answer): an open document holds the expected text; a file was created (with the
        expected text, if it is open), deleted or renamed. An edit to a document that is not open cannot
        be seen from here: the client's word is taken."""
        plan = planned.plan
        deadline = time.monotonic() + VERIFY_TIMEOUT_S
        while True:
            if isinstance(plan, TextPlan):
                doc = self._workspace().text_documents.get(plan.uri)
                if doc is None or planned.expect is None:
                    return client_says
                done = bool(doc.source == planned.expect)
            else:
                done = await asyncio.to_thread(_file_op_done, plan)
                if done and isinstance(plan, CreatePlan):
                    doc = self._workspace().text_documents.get(plan.uri)
                    done = doc is None or bool(doc.source == plan.text)
            if done or time.monotonic() >= deadline:
                return done
            await asyncio.sleep(0.01)


def _fs(uri: str) -> Path:
    return Path(uris.to_fs_path(uri) or "")


def _make_parents(plans: list[_Planned]) -> None:
    """Folders for created and renamed files, made here: Neovim 0.7 fails a create in a folder that does
    not exist (the server runs where the files are)."""
    for p in plans:
        target = p.plan.uri if isinstance(p.plan, CreatePlan) else p.plan.new_uri if isinstance(
            p.plan, RenamePlan) else None
        if target:
            _fs(target).parent.mkdir(parents=True, exist_ok=True)


def _file_op_done(plan: FilePlan) -> bool:
    if isinstance(plan, CreatePlan):
        return _fs(plan.uri).exists()
    if isinstance(plan, DeletePlan):
        return not os.path.lexists(_fs(plan.uri))
    if isinstance(plan, RenamePlan):
        return _fs(plan.new_uri).exists() and not os.path.lexists(_fs(plan.old_uri))
    return False


_LUA_LOCATION = re.compile(r"\S*\.lua:\d+: ")


def _reason(failure: str | None) -> str:
    """The client's failure reason without its own source locations."""
    return _LUA_LOCATION.sub("", failure or "").strip() or "no reason given"


def _after(lines: list[str], replaced: list[tuple[Fit, tuple[str, ...]]]) -> str:
    """The text once each fit's lines are replaced (fits do not overlap)."""
    out: list[str] = []
    at = 0
    for fit, new in sorted(replaced, key=lambda r: r[0].line):
        out.extend(lines[at:fit.line])
        out.extend(new)
        at = fit.line + fit.length
    out.extend(lines[at:])
    return "".join(out)
