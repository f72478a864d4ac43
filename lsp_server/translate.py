"""Translation between the server's world (tasks, changes, placements) and lsprotocol types.

Nothing here talks to the client or the runner: handlers call these functions and send the results.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from lsprotocol import types as lsp

from lsp_server.anchoring import Fit
from lsp_server.placement import Placed
from lsp_server.tasks import TrackedTask
from runner.domain.changes import Change, describe

__all__ = ["APPLY", "CANCEL", "DISCARD", "LIST", "RUN", "SHOW_DIFF", "SOURCE", "code_actions", "diagnostic",
           "overlaps", "task_info"]

SOURCE = "codex-sys"
RUN, LIST, APPLY = "codexSys.runTask", "codexSys.listTasks", "codexSys.applyTask"
DISCARD, CANCEL, SHOW_DIFF = "codexSys.discardTask", "codexSys.cancelTask", "codexSys.showDiff"


def _span(p: Placed) -> lsp.Range:
    """The lines the change replaces (context left out); empty at the insertion point for additions."""
    hunk = p.change.hunks[0]
    first = p.where.line + hunk.core_start
    if isinstance(p.where, Fit):
        return lsp.Range(lsp.Position(first, 0), lsp.Position(p.where.line + max(hunk.core_end, hunk.core_start), 0))
    return lsp.Range(lsp.Position(first, 0), lsp.Position(first, 0))  # where it was expected


def _counts(change: Change) -> str:
    return f"+{change.added} -{change.removed}"


def diagnostic(p: Placed) -> lsp.Diagnostic:
    head = f"Codex {p.task.id}: {p.task.title()}"
    if isinstance(p.where, Fit):
        message = f"{head} ({_counts(p.change)})"
    else:
        message = f"{head}: this change no longer fits: {p.where.reason}"
    return lsp.Diagnostic(range=_span(p), message=message, severity=lsp.DiagnosticSeverity.Information,
                          source=SOURCE, code=p.task.id, data={"taskId": p.task.id, "hunk": p.change.id})


def overlaps(span: lsp.Range, wanted: lsp.Range) -> bool:
    """Whether the lines of `span` touch the lines of `wanted` (an empty span counts its line)."""
    last = span.end.line - 1 if span.end.line > span.start.line and span.end.character == 0 else span.end.line
    return span.start.line <= wanted.end.line and wanted.start.line <= max(last, span.start.line)


def code_actions(placed: Iterable[Placed], wanted: lsp.Range, disabled_support: bool) -> list[lsp.CodeAction]:
    """For each change on the lines asked about: "Apply this change"; then, once per task, "Apply all
    changes from task …" and "Discard task …". Each carries a command: the edit is worked out when the
    user accepts, against the text at that moment."""
    actions: list[lsp.CodeAction] = []
    tasks: dict[str, TrackedTask] = {}
    for p in placed:
        span = _span(p)
        if not overlaps(span, wanted):
            continue
        tasks.setdefault(p.task.id, p.task)
        args: list[Any] = [{"taskId": p.task.id, "hunks": [p.change.id]}]
        action = lsp.CodeAction(
            title=f"Apply this change ({_counts(p.change)}, task {p.task.id})", kind=lsp.CodeActionKind.QuickFix,
            diagnostics=[diagnostic(p)], is_preferred=isinstance(p.where, Fit),
            command=lsp.Command(title="Apply this change", command=APPLY, arguments=args))
        if not isinstance(p.where, Fit):
            if disabled_support:
                action.disabled = lsp.CodeActionDisabled(reason=f"no longer fits: {p.where.reason}")
            else:
                action.title += f" — no longer fits: {p.where.reason}"
        actions.append(action)
    for task in tasks.values():
        count = len(task.open_changes())
        actions.append(lsp.CodeAction(
            title=f"Apply all changes from task {task.id} ({count} left)", kind=lsp.CodeActionKind.QuickFix,
            command=lsp.Command(title="Apply all changes", command=APPLY, arguments=[{"taskId": task.id}])))
        actions.append(lsp.CodeAction(
            title=f"Discard task {task.id}", kind=lsp.CodeActionKind.QuickFix,
            command=lsp.Command(title="Discard task", command=DISCARD, arguments=[{"taskId": task.id}])))
    return actions


def task_info(task: TrackedTask, applicable: int | None = None) -> dict[str, Any]:
    changes = task.open_changes()
    return {
        "taskId": task.id, "instruction": task.instruction, "title": task.title(), "state": task.state.value,
        "reason": task.reason, "folder": task.folder.uri,
        "createdAt": dt.datetime.fromtimestamp(task.created_at, dt.UTC).isoformat(timespec="seconds"),
        "filesChanged": task.files_changed, "changes": len(changes),
        "applicable": len(changes) if applicable is None else applicable,
        "applied": sorted(task.applied, key=int), "discarded": task.discarded,
        "changeList": [{"id": c.id, "kind": c.kind.value, "path": c.path, "description": describe(c)}
                       for c in changes],
    }


def describe_skips(skipped: Sequence[tuple[str, str]]) -> str:
    return "; ".join(f"change {cid}: {reason}" for cid, reason in skipped[:5]) + (
        f"; and {len(skipped) - 5} more" if len(skipped) > 5 else "")
