"""The tasks the editor knows about: where each runs (its workspace folder), its state, and its changes.

A task started from this server is tracked from its creation; a task id the user names that this
server did not start (from `codex-sys list`, another editor) is looked up on the runner and tracked
from then on, in the folder given or the first one. Applied and discarded changes are remembered here,
not on the runner: the runner's diff is the task's result, what the user took of it is the editor's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pygls import uris

from runner.domain import models as m
from runner.domain.changes import Change, ChangeKind
from runner.domain.errors import InvalidArgument, NotFound
from runner.domain.paths import check_relative_path

__all__ = ["Folder", "TaskBook", "TrackedTask", "title_of"]


@dataclass(frozen=True, slots=True)
class Folder:
    uri: str
    path: Path

    @classmethod
    def from_uri(cls, uri: str) -> Folder:
        fs: str | None = uris.to_fs_path(uri)
        if not fs:
            raise InvalidArgument(f"{uri!r} is not a file: URI of a folder")
        return cls(uri, Path(fs))

    def relative(self, uri: str) -> str | None:
        """The workspace-relative path of `uri`, or None when it lies outside this folder."""
        fs = uris.to_fs_path(uri)
        if not fs:
            return None
        try:
            rel = PurePosixPath(Path(fs).relative_to(self.path).as_posix())
        except ValueError:
            return None
        text = str(rel)
        if text in ("", "."):
            return None
        try:
            return check_relative_path(text, "document path")
        except InvalidArgument:
            return None

    def uri_of(self, rel: str) -> str:
        uri: str | None = uris.from_fs_path(str(self.path / rel))
        if uri is None:
            raise InvalidArgument(f"cannot make a URI of {rel!r}")
        return uri


def title_of(instruction: str) -> str:
    """An instruction's first line, shortened to 60 characters: how a task is named in the editor."""
    first = instruction.strip().splitlines()[0] if instruction.strip() else ""
    return first if len(first) <= 60 else first[:59] + "…"


@dataclass
class TrackedTask:
    id: str
    folder: Folder
    instruction: str
    created_at: float = field(default_factory=time.time)
    state: m.TaskState = m.TaskState.QUEUED
    reason: str = ""
    files_changed: int = 0
    last_seq: int = 0
    changes: list[Change] = field(default_factory=list)
    applied: set[str] = field(default_factory=set)
    discarded: bool = False
    diff_loaded: bool = False
    diff_text: str = ""
    _edits: dict[str, list[Change]] = field(default_factory=dict, repr=False)
    _paths: dict[str, list[Change]] = field(default_factory=dict, repr=False)

    def set_changes(self, changes: list[Change], diff_text: str) -> None:
        self.changes, self.diff_text, self.diff_loaded = changes, diff_text, True
        self._edits, self._paths = {}, {}
        for c in changes:
            if c.kind is ChangeKind.EDIT:
                self._edits.setdefault(c.path, []).append(c)
            for p in {c.path, c.old_path}:
                self._paths.setdefault(p, []).append(c)

    @property
    def paths(self) -> list[str]:
        """Every path the task's changes touch (old names of renamed files included)."""
        return sorted(self._paths)

    def has_open_change(self, path: str) -> bool:
        return not self.discarded and any(c.id not in self.applied for c in self._paths.get(path, ()))

    def open_changes(self) -> list[Change]:
        if self.discarded:
            return []
        return [c for c in self.changes if c.id not in self.applied]

    def change(self, change_id: str) -> Change:
        for c in self.changes:
            if c.id == change_id:
                return c
        raise NotFound(f"task {self.id} has no change {change_id!r} (it has {len(self.changes)})")

    def edits_of(self, path: str) -> list[Change]:
        """The EDIT changes of `path`, in order, applied ones included (they shift the others)."""
        return self._edits.get(path, [])

    def title(self) -> str:
        return title_of(self.instruction)

    def update(self, record: m.TaskRecord) -> None:
        self.state, self.reason, self.files_changed = record.state, record.reason, record.files_changed
        if record.created_at:
            self.created_at = record.created_at


class TaskBook:
    def __init__(self) -> None:
        self._tasks: dict[str, TrackedTask] = {}

    def add(self, task: TrackedTask) -> TrackedTask:
        return self._tasks.setdefault(task.id, task)

    def get(self, task_id: str) -> TrackedTask | None:
        return self._tasks.get(task_id)

    def __iter__(self) -> Iterator[TrackedTask]:
        return iter(sorted(self._tasks.values(), key=lambda t: t.created_at, reverse=True))

    def __len__(self) -> int:
        return len(self._tasks)

    def touching(self, folder: Folder, path: str) -> list[TrackedTask]:
        """Tasks of `folder` with changes still open on `path`, oldest first."""
        return [t for t in sorted(self._tasks.values(), key=lambda t: t.created_at)
                if t.folder == folder and t.has_open_change(path)]
