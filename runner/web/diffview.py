"""A task's diff as side-by-side rows, for the task page.

The patch is read by the parser the language server uses too (`runner.domain.changes.parse_changes`:
git headers, quoted names, new/deleted/renamed/binary files, every path validated); this module only lays its hunks
out in two columns. A parsed hunk keeps its old and new lines (context included) but not how removed and
added lines interleave, so the changed middle of each hunk is aligned again with difflib: context lines
match on both sides, and a run of removed lines facing a run of added lines is shown pair by pair.
Only the changed middle is aligned (leading and trailing context are equal by construction), which keeps
the matcher's work to the few lines that changed.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass, field

from runner.domain.changes import Change, ChangeKind, Hunk, parse_changes


@dataclass(frozen=True, slots=True)
class Row:
    """One row of the side-by-side table. `kind`: "ctx" (same on both sides), "chg" (a removed line facing
    an added one), "del" (left only), "add" (right only), "hunk" (a hunk header; `text` holds it)."""

    kind: str
    old_no: int = 0
    old: str = ""
    new_no: int = 0
    new: str = ""


@dataclass(slots=True)
class FileDiff:
    path: str
    old_path: str
    label: str  # "modified", "new", "deleted", "renamed", "binary", "mode"
    added: int = 0
    removed: int = 0
    rows: list[Row] = field(default_factory=list)
    shown: bool = True  # False once the page's row budget ran out before this file


_LABEL = {ChangeKind.EDIT: "modified", ChangeKind.CREATE: "new", ChangeKind.DELETE: "deleted",
          ChangeKind.RENAME: "renamed", ChangeKind.BINARY: "binary", ChangeKind.MODE: "mode"}


def files_of(patch: str, max_rows: int) -> tuple[list[FileDiff], bool]:
    """The files of a git patch with their rows, at most `max_rows` rows in all; (files, truncated).
    InvalidArgument when the patch does not parse."""
    files: list[FileDiff] = []
    budget = max_rows
    truncated = False
    for group in _by_file(parse_changes(patch)):
        first = group[0]
        f = FileDiff(first.path, first.old_path, _LABEL[first.kind])
        f.added = sum(c.added for c in group)
        f.removed = sum(c.removed for c in group)
        if budget <= 0:
            f.shown = False
            truncated = truncated or bool(f.added or f.removed)
        else:
            offset = 0
            for change in group:
                for hunk in change.hunks:
                    f.rows.extend(_rows(hunk, offset))
                    offset += hunk.added - hunk.removed
            if len(f.rows) > budget:
                del f.rows[budget:]
                truncated = True
            budget -= len(f.rows)
        files.append(f)
    return files, truncated


def _by_file(changes: list[Change]) -> Iterator[list[Change]]:
    """An edited file is one change per hunk, in a row; every other kind is one change."""
    group: list[Change] = []
    for change in changes:
        if group and (change.kind is not ChangeKind.EDIT or group[0].kind is not ChangeKind.EDIT
                      or change.path != group[0].path):
            yield group
            group = []
        group.append(change)
    if group:
        yield group


def _rows(h: Hunk, offset: int) -> list[Row]:
    old_no = h.old_start + 1
    new_no = old_no + offset
    # As git writes it: an empty side names the line before it.
    head_old = old_no if h.old_lines else old_no - 1
    head_new = new_no if h.new_lines else new_no - 1
    rows = [Row("hunk", old=f"@@ -{head_old},{len(h.old_lines)} +{head_new},{len(h.new_lines)} @@")]
    lead = h.core_start if h.removed or h.added else len(h.old_lines)
    tail = len(h.old_lines) - max(h.core_end, lead)
    old_mid = h.old_lines[lead:len(h.old_lines) - tail]
    new_mid = h.new_lines[lead:len(h.new_lines) - tail]
    for i in range(lead):
        rows.append(Row("ctx", old_no + i, h.old_lines[i], new_no + i, h.new_lines[i]))
    o, n = old_no + lead, new_no + lead
    matcher = difflib.SequenceMatcher(None, old_mid, new_mid, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            for k in range(i2 - i1):
                rows.append(Row("ctx", o + i1 + k, old_mid[i1 + k], n + j1 + k, new_mid[j1 + k]))
            continue
        for k in range(max(i2 - i1, j2 - j1)):
            left, right = i1 + k < i2, j1 + k < j2
            kind = "chg" if left and right else ("del" if left else "add")
            rows.append(Row(kind, o + i1 + k if left else 0, old_mid[i1 + k] if left else "",
                            n + j1 + k if right else 0, new_mid[j1 + k] if right else ""))
    o, n = old_no + len(h.old_lines) - tail, new_no + len(h.new_lines) - tail
    for k in range(tail):
        rows.append(Row("ctx", o + k, h.old_lines[len(h.old_lines) - tail + k],
                        n + k, h.new_lines[len(h.new_lines) - tail + k]))
    return rows
