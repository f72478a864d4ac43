"""A task's `diff.patch` as the changes the editor offers one by one.

The patch is git's (`git diff --binary -M`, written in the sandbox from what the model did), so every
path in it is validated like any path from outside. Each text hunk of a modified file is one change;
a created, deleted or renamed file is one change (a rename carries its content edits); a binary or
mode-only change is one change the editor cannot apply (it says to use `codex-sys apply`). Change ids are
"1", "2", … in patch order, stable for the task.

Hunk lines keep their line endings; a "\\ No newline at end of file" marker takes the "\\n" off the line
before it, so the old lines compare exactly with the current text split by `textlines.split_lines`.
"""

from __future__ import annotations

import enum
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from unidiff.errors import UnidiffParseError
from unidiff.patch import Hunk as DiffHunk
from unidiff.patch import PatchedFile, PatchSet

from runner.domain.errors import InvalidArgument
from runner.domain.paths import check_relative_path

__all__ = ["Change", "ChangeKind", "Hunk", "describe", "parse_changes", "paths_of"]


class ChangeKind(enum.Enum):
    EDIT = "edit"  # one hunk of a modified file
    CREATE = "create"
    DELETE = "delete"
    RENAME = "rename"  # with its content edits, if any
    BINARY = "binary"
    MODE = "mode"  # only the executable bit changed


@dataclass(frozen=True, slots=True)
class Hunk:
    old_start: int  # 0-based line of the first old line in the snapshot's text
    old_lines: tuple[str, ...]  # context and removed lines, endings kept
    new_lines: tuple[str, ...]  # context and added lines
    added: int
    removed: int
    core_start: int = 0  # the changed part of the old lines, [core_start, core_end): context left out
    core_end: int = 0

    @property
    def new_text(self) -> str:
        return "".join(self.new_lines)


@dataclass(frozen=True, slots=True)
class Change:
    id: str
    kind: ChangeKind
    path: str  # the path after the change (the deleted file's path for DELETE)
    old_path: str  # differs from `path` only for RENAME
    hunks: tuple[Hunk, ...]  # EDIT: one; CREATE: the content (added lines); DELETE: the old content

    @property
    def added(self) -> int:
        return sum(h.added for h in self.hunks)

    @property
    def removed(self) -> int:
        return sum(h.removed for h in self.hunks)

    @property
    def new_text(self) -> str:
        """CREATE: the new file's text."""
        return "".join(line for h in self.hunks for line in h.new_lines)

    @property
    def old_text(self) -> str:
        """DELETE: the deleted file's text."""
        return "".join(line for h in self.hunks for line in h.old_lines)


def parse_changes(patch: str) -> list[Change]:
    """The changes of a git patch; InvalidArgument when it does not parse or names a bad path."""
    if not patch.strip():
        return []
    try:
        files = PatchSet(io.StringIO(patch, newline=""))
    except UnidiffParseError as exc:
        raise InvalidArgument(f"the task's diff does not parse: {exc}") from exc
    changes: list[Change] = []
    for f in files:
        changes.extend(_changes_of(f, len(changes)))
    return changes


def _path(name: str | None, what: str) -> str:
    if not name or name == "/dev/null":
        raise InvalidArgument(f"the task's diff has a {what} with no path")
    name = _unquote(name)
    if name.startswith(("a/", "b/")):
        name = name[2:]
    path = check_relative_path(name, f"{what} in the task's diff")
    if ".git" in path.split("/"):
        raise InvalidArgument(f"the task's diff changes {path!r}: a path inside .git is never changed")
    return path


def _changes_of(f: PatchedFile, before: int) -> Iterable[Change]:
    def cid(i: int = 0) -> str:
        return str(before + i + 1)

    if f.is_added_file:
        path = _path(f.target_file, "created file")
        kind = ChangeKind.BINARY if f.is_binary_file else ChangeKind.CREATE
        return [Change(cid(), kind, path, path, _hunks(f))]
    if f.is_removed_file:
        path = _path(f.source_file, "deleted file")
        kind = ChangeKind.BINARY if f.is_binary_file else ChangeKind.DELETE
        return [Change(cid(), kind, path, path, _hunks(f))]
    old, new = _path(f.source_file or f"a/{f.path}", "changed file"), _path(f.target_file or f"b/{f.path}",
                                                                          "changed file")
    if f.is_binary_file:
        return [Change(cid(), ChangeKind.BINARY, new, old, ())]
    if f.is_rename or old != new:
        return [Change(cid(), ChangeKind.RENAME, new, old, _hunks(f))]
    hunks = _hunks(f)
    if not hunks:
        return [Change(cid(), ChangeKind.MODE, new, old, ())]
    return [Change(cid(i), ChangeKind.EDIT, new, old, (h,)) for i, h in enumerate(hunks)]


def _hunks(f: PatchedFile) -> tuple[Hunk, ...]:
    return tuple(_hunk(h) for h in f)


def _hunk(h: DiffHunk) -> Hunk:
    old: list[str] = []
    new: list[str] = []
    last: tuple[list[str], ...] = ()
    added = removed = 0
    core_start, core_end = -1, 0
    for line in h:
        kind, value = line.line_type, line.value
        if kind == "\\":  # "\ No newline at end of file": the line before has none
            for side in last:
                if side and side[-1].endswith("\n"):
                    side[-1] = side[-1][:-1]
            continue
        if kind == " ":
            old.append(value)
            new.append(value)
            last = (old, new)
        elif kind == "-":
            core_start = len(old) if core_start < 0 else core_start
            old.append(value)
            core_end = len(old)
            removed += 1
            last = (old,)
        elif kind == "+":
            core_start = len(old) if core_start < 0 else core_start
            core_end = max(core_end, len(old))
            new.append(value)
            added += 1
            last = (new,)
    # For an empty old side, git gives the line *after* which to insert; as a 0-based start both agree.
    start = h.source_start - 1 if h.source_length else h.source_start
    return Hunk(max(start, 0), tuple(old), tuple(new), added, removed, max(core_start, 0), core_end)


_ESCAPES = {"a": "\a", "b": "\b", "t": "\t", "n": "\n", "v": "\v", "f": "\f", "r": "\r", '"': '"', "\\": "\\"}


def _unquote(name: str) -> str:
    """git's C-style quoting of unusual names ("a/tab\\there", octal escapes for raw bytes)."""
    if len(name) < 2 or not (name.startswith('"') and name.endswith('"')):
        return name
    body, out, i = name[1:-1], bytearray(), 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            octal = body[i + 1:i + 4]
            if len(octal) == 3 and all(c in "01234567" for c in octal):
                out.append(int(octal, 8) & 0xFF)
                i += 4
                continue
            if nxt in _ESCAPES:
                out.extend(_ESCAPES[nxt].encode())
                i += 2
                continue
        out.extend(ch.encode("utf-8", "surrogateescape"))
        i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"the task's diff names a file that is not UTF-8: {name[:200]}") from exc


def describe(change: Change) -> str:
    """A short description: "calc.py: +3 -1", "new file docs/x.md"."""
    if change.kind is ChangeKind.EDIT:
        return f"{change.path}: +{change.added} -{change.removed}"
    if change.kind is ChangeKind.CREATE:
        return f"new file {change.path}"
    if change.kind is ChangeKind.DELETE:
        return f"delete {change.path}"
    if change.kind is ChangeKind.RENAME:
        return f"rename {change.old_path} → {change.path}"
    if change.kind is ChangeKind.BINARY:
        return f"binary change to {change.path}"
    return f"mode change of {change.path}"


def paths_of(changes: Sequence[Change]) -> set[str]:
    return {p for c in changes for p in (c.path, c.old_path)}
