"""A task's `diff.patch` as a list of changes: the ones the editor offers one by one, and the files the
task page shows side by side.

The patch is git's (`git diff --binary -M`, written in the sandbox from what the model did), so every
path in it is validated like any path from outside. Each text hunk of a modified file is one change;
a created, deleted or renamed file is one change (a rename carries its content edits); a binary or
mode-only change is one change the editor cannot apply (it says to use `codex-sys apply`). Change ids are
"1", "2", … in patch order, stable for the task.

Hunk lines keep their line endings; a "\\ No newline at end of file" marker takes the "\\n" off the line
before it, so the old lines compare exactly with the current text split by `textlines.split_lines`.

Who reads what: unidiff reads each file's git header (paths and their quoting, new/deleted/renamed,
binary, modes), which is where the format has its corners; the hunk bodies, most of the text, are read
by `_hunk` in one pass keyed on each line's first character. unidiff's per-line regular expressions
took the whole 50 ms budget of a 5,000-line diff by themselves (bench/bench_lsp.py); this way the
patch is read in a few milliseconds.
"""

from __future__ import annotations

import enum
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from unidiff.errors import UnidiffParseError
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
    headers, bodies = _split(patch)
    try:
        files = list(PatchSet(io.StringIO("".join(headers), newline="")))
    except UnidiffParseError as exc:
        raise InvalidArgument(f"the task's diff does not parse: {exc}") from exc
    if len(files) != len(bodies):
        raise InvalidArgument(f"the task's diff does not parse: {len(files)} file headers, {len(bodies)} files")
    changes: list[Change] = []
    for f, body in zip(files, bodies, strict=True):
        changes.extend(_changes_of(f, _hunks(body), len(changes)))
    return changes


def _split(patch: str) -> tuple[list[str], list[list[str]]]:
    """Each file's header text (up to its first hunk) and its hunk lines."""
    headers: list[str] = []
    bodies: list[list[str]] = []
    header: list[str] = []
    body: list[str] | None = None
    for line in _lines(patch):
        if line.startswith("diff --git "):
            if header:
                headers.append("".join(header))
                bodies.append(body or [])
            header, body = [line], None
        elif body is not None:
            body.append(line)
        elif line.startswith("@@ "):
            body = [line]
        else:
            header.append(line)
    if header:
        headers.append("".join(header))
        bodies.append(body or [])
    return headers, bodies


def _lines(text: str) -> list[str]:
    """Lines ending at "\\n" only (a "\\r" inside a line is content, as in git)."""
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    if not lines[-1]:
        lines.pop()
    return lines


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


def _changes_of(f: PatchedFile, hunks: tuple[Hunk, ...], before: int) -> Iterable[Change]:
    def cid(i: int = 0) -> str:
        return str(before + i + 1)

    if f.is_added_file:
        path = _path(f.target_file, "created file")
        kind = ChangeKind.BINARY if f.is_binary_file else ChangeKind.CREATE
        return [Change(cid(), kind, path, path, hunks)]
    if f.is_removed_file:
        path = _path(f.source_file, "deleted file")
        kind = ChangeKind.BINARY if f.is_binary_file else ChangeKind.DELETE
        return [Change(cid(), kind, path, path, hunks)]
    old, new = _path(f.source_file or f"a/{f.path}", "changed file"), _path(f.target_file or f"b/{f.path}",
                                                                          "changed file")
    if f.is_binary_file:
        return [Change(cid(), ChangeKind.BINARY, new, old, ())]
    if f.is_rename or old != new:
        return [Change(cid(), ChangeKind.RENAME, new, old, hunks)]
    if not hunks:
        return [Change(cid(), ChangeKind.MODE, new, old, ())]
    return [Change(cid(i), ChangeKind.EDIT, new, old, (h,)) for i, h in enumerate(hunks)]


_HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def _hunks(body: list[str]) -> tuple[Hunk, ...]:
    """The hunks of one file's body, in one pass over its lines."""
    hunks: list[Hunk] = []
    i, n = 0, len(body)
    while i < n:
        m = _HUNK_HEADER.match(body[i])
        if m is None:
            raise InvalidArgument(f"the task's diff does not parse: expected a hunk header, got {body[i][:80]!r}")
        source_start, source_len = int(m.group(1)), int(m.group(2) or "1")
        target_len = int(m.group(4) or "1")
        i += 1
        old: list[str] = []
        new: list[str] = []
        last: tuple[list[str], ...] = ()
        core_start, core_end = -1, 0
        added = removed = 0
        while i < n:
            line = body[i]
            kind = line[0]
            if kind == " " or line == "\n":  # some tools drop the space of an empty context line
                if len(old) == source_len and len(new) == target_len:
                    break
                value = line[1:] if kind == " " else line
                old.append(value)
                new.append(value)
                last = (old, new)
            elif kind == "-":
                if len(old) == source_len and len(new) == target_len:
                    break
                if core_start < 0:
                    core_start = len(old)
                old.append(line[1:])
                core_end = len(old)
                removed += 1
                last = (old,)
            elif kind == "+":
                if len(old) == source_len and len(new) == target_len:
                    break
                if core_start < 0:
                    core_start = len(old)
                core_end = max(core_end, len(old))
                new.append(line[1:])
                added += 1
                last = (new,)
            elif kind == "\\":  # "\\ No newline at end of file": the line before has none
                for side in last:
                    if side and side[-1].endswith("\n"):
                        side[-1] = side[-1][:-1]
            else:
                break
            i += 1
        if len(old) != source_len or len(new) != target_len:
            raise InvalidArgument(f"the task's diff does not parse: a hunk at line {source_start} is cut short")
        # For an empty old side, git gives the line *after* which to insert; as a 0-based start both agree.
        begin = source_start - 1 if source_len else source_start
        hunks.append(Hunk(max(begin, 0), tuple(old), tuple(new), added, removed, max(core_start, 0), core_end))
    return tuple(hunks)


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
