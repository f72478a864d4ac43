"""Where each open text change of every task sits in one file's current text.

Diagnostics, code actions and applying all start here: for one file, the EDIT changes of each task
touching it are located in order (`anchoring.locate_all`), the task's applied changes shifting the rest.
Tasks are independent of each other: two tasks changing the same lines both show, and applying one makes
the other's hunk a misfit with its reason, which is what the user needs to see.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lsp_server.anchoring import Fit, Misfit, locate_all
from lsp_server.tasks import TrackedTask
from lsp_server.textlines import split_lines
from runner.domain.changes import Change

__all__ = ["Placed", "place"]


@dataclass(frozen=True, slots=True)
class Placed:
    task: TrackedTask
    change: Change
    where: Fit | Misfit


def place(tasks: Iterable[TrackedTask], path: str, text: str | None, problem: str = "") -> list[Placed]:
    """The open EDIT changes on `path` of `tasks`, located in `text` (None: the file cannot take them,
    for `problem`)."""
    lines = split_lines(text) if text is not None else []
    out: list[Placed] = []
    for task in tasks:
        if task.discarded:
            continue
        edits = task.edits_of(path)
        if not edits:
            continue
        if text is None:
            out.extend(Placed(task, c, Misfit(problem or "the file cannot be read", 0))
                       for c in edits if c.id not in task.applied)
            continue
        found = locate_all([(c.hunks[0], c.id in task.applied) for c in edits], lines)
        out.extend(Placed(task, c, f) for c, f in zip(edits, found, strict=True) if f is not None)
    return out
