"""Where a hunk fits in the text the user has now.

The user may edit a file while its task runs, or apply some hunks and not others, so a hunk is found by
its old lines (context and removed lines), not by its line number: the exact match nearest to where it
is expected wins. Where it is expected: its line in the snapshot, shifted by what moved the hunk before
it in the same file (found elsewhere, or applied). A hunk whose old lines appear nowhere no longer fits
(or was applied already, when its new lines are there instead); one that matches at two places equally
near is ambiguous. Either way the reason goes to the user, and nothing is applied blindly.

The common case, an untouched file, costs one comparison of the hunk's lines at the expected line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from runner.domain.changes import Hunk

__all__ = ["Fit", "Misfit", "locate", "locate_all"]


@dataclass(frozen=True, slots=True)
class Fit:
    line: int  # 0-based first line of the hunk's old lines in the current text
    length: int  # how many lines it replaces


@dataclass(frozen=True, slots=True)
class Misfit:
    reason: str
    line: int  # where to show it: the expected line, clamped to the text


def _matches(lines: Sequence[str], at: int, block: Sequence[str]) -> bool:
    n = len(block)
    if at < 0 or at + n > len(lines):
        return False
    return all(lines[at + i] == block[i] for i in range(n))


def _nearest(lines: Sequence[str], block: Sequence[str], expected: int) -> tuple[int | None, bool]:
    """The match of `block` nearest to `expected` and whether another is as near."""
    last = len(lines) - len(block)
    if last < 0:
        return None, False
    expected = min(max(expected, 0), last)
    first = block[0]
    for distance in range(max(expected, last - expected) + 1):
        below, above = expected + distance, expected - distance
        hit_below = below <= last and lines[below] == first and _matches(lines, below, block)
        hit_above = distance and above >= 0 and lines[above] == first and _matches(lines, above, block)
        if hit_below or hit_above:
            return (below if hit_below else above), bool(hit_below and hit_above)
    return None, False


def locate(hunk: Hunk, lines: Sequence[str], expected: int) -> Fit | Misfit:
    """Find `hunk` in `lines` (split by `textlines.split_lines`) near the 0-based line `expected`."""
    where = min(max(expected, 0), len(lines))
    old = hunk.old_lines
    if not old:  # an insertion with no context: only into a text that is still empty
        if not lines:
            return Fit(0, 0)
        if "".join(hunk.new_lines) == "".join(lines):
            return Misfit("already applied", 0)
        return Misfit("the file was empty when the task started and has text now", 0)
    if _matches(lines, expected, old):
        return Fit(expected, len(old))
    at, tie = _nearest(lines, old, expected)
    if at is not None and not tie:
        return Fit(at, len(old))
    if at is not None:
        return Misfit(f"the code this change applies to appears twice, {abs(at - expected)} lines from where it was; "
                      "apply it by hand or run the task again", where)
    if hunk.new_lines and _nearest(lines, hunk.new_lines, expected)[0] is not None:
        return Misfit("already applied", where)
    return Misfit("the code this change applies to was edited after the task started", where)


def locate_all(hunks: Sequence[tuple[Hunk, bool]], lines: Sequence[str]) -> list[Fit | Misfit | None]:
    """Locate the hunks of one file, in order; `(hunk, applied)` pairs, where an applied hunk is not
    located (None) but shifts the ones after it by what it added."""
    shift = 0
    out: list[Fit | Misfit | None] = []
    for hunk, applied in hunks:
        if applied:
            out.append(None)
            shift += len(hunk.new_lines) - len(hunk.old_lines)
            continue
        found = locate(hunk, lines, hunk.old_start + shift)
        if isinstance(found, Fit):
            shift = found.line - hunk.old_start
        out.append(found)
    return _without_overlaps(out)


def _without_overlaps(found: list[Fit | Misfit | None]) -> list[Fit | Misfit | None]:
    """Two hunks located on the same lines cannot both apply: the later one is a misfit."""
    end = -1
    for i, f in enumerate(found):
        if isinstance(f, Fit):
            if f.line < end:
                found[i] = Misfit("it overlaps another change of the same task that was located first", f.line)
            else:
                end = f.line + f.length
    return found
