"""Gitignore matching, compiled once per folder, for the workspace snapshotter.

The snapshotter asks one question per directory entry: "is this name ignored here?" It must answer as
`git ls-files --others --exclude-standard` does, and fast, because a workspace has tens of thousands of
entries. So the work is split by folder rather than by path:

- Each pattern (`runner.client.ignore_syntax`) carries the set of its segments the folder's path has
  reached so far (an NFA state, as a bit mask). Entering a subfolder advances the states by the
  subfolder's name and drops patterns that can no longer match; patterns of the form `**/<glob>` never
  change, and a folder whose patterns are all of that form hands its `IgnoreRules` to its children as is.
- A pattern whose last segment is reachable in a folder can match names there. Those patterns, in
  precedence order, are joined into one regular expression per folder (one for files, one for folders,
  since `foo/` matches folders only), cached by the set of patterns, so a name costs one `fullmatch`.

Precedence follows git: the first match in this order decides, and a `!` pattern that decides re-includes:
the caller's `exclude` patterns (like `git ls-files --exclude`), then `.gitignore` files from the deepest
folder up (later lines before earlier ones), then `.git/info/exclude`. A folder that is ignored is not
entered, so, as in git, nothing below it can be re-included. Names are matched in the form `match_name`
gives (the Latin-1 view of their bytes; ASCII names as they are).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from runner.client.ignore_syntax import ANY_NAME, AnyFolders, Matcher, Pattern, Segment, parse_patterns

__all__ = ["IgnoreRules", "Pattern", "match_name", "parse_patterns"]


def match_name(name: str) -> str:
    """The form of a file name that `IgnoreRules` matchers expect: the Latin-1 view of its bytes."""
    if name.isascii():
        return name
    return os.fsencode(name).decode("latin-1")


_Active = tuple[tuple[Pattern, int], ...]


class _Compiler:
    """Joins the patterns live in a folder into one expression; shared by every folder of a walk."""

    def __init__(self) -> None:
        self._cache: dict[tuple[Pattern, ...], tuple[Matcher | None, tuple[bool, ...] | None]] = {}

    def compile(self, live: tuple[Pattern, ...]) -> tuple[Matcher | None, tuple[bool, ...] | None]:
        hit = self._cache.get(live)
        if hit is not None:
            return hit
        result = self._build(live)
        self._cache[live] = result
        return result

    @staticmethod
    def _build(live: tuple[Pattern, ...]) -> tuple[Matcher | None, tuple[bool, ...] | None]:
        if not live:
            return None, None
        last_segments: list[Segment] = []
        for p in live:
            seg = p.segments[-1]
            last_segments.append(ANY_NAME if isinstance(seg, AnyFolders) else seg)
            if last_segments[-1] is ANY_NAME:
                break  # nothing after a pattern that matches every name can decide
        live = live[: len(last_segments)]
        if not any(p.negated for p in live):
            source = "|".join(f"(?:{s.regex})" for s in last_segments)
            return re.compile(source, re.DOTALL).fullmatch, None
        # One group per pattern: `lastindex` names the first pattern that matched.
        source = "|".join(f"({s.regex})" for s in last_segments)
        return re.compile(source, re.DOTALL).fullmatch, (False, *(p.negated for p in live))


class IgnoreRules:
    """The ignore patterns in force inside one folder, compiled for the names in it.

    `file_match(name)` / `dir_match(name)` (None when no pattern can match here) take `match_name(name)`;
    a match means ignored unless the matching group is negated: `negated[m.lastindex]` (when `negated` is
    not None). `is_ignored` wraps that for callers outside the hot loop.
    """

    __slots__ = ("_compiler", "_dynamic", "_files", "_top", "dir_match", "dir_negated", "file_match",
                 "file_negated")

    def __init__(self, top: _Active = (), files: _Active = (), compiler: _Compiler | None = None) -> None:
        self._top = top  # the caller's patterns, which outrank every file
        self._files = files  # patterns from ignore files, deepest folder first, later lines first
        self._compiler = compiler or _Compiler()
        self._dynamic = any(not p.static for p, _ in top) or any(not p.static for p, _ in files)
        live = tuple(p for p, state in (*top, *files) if state & p.last_bit)
        self.dir_match, self.dir_negated = self._compiler.compile(live)
        file_live = tuple(p for p in live if not p.dir_only)
        if len(file_live) == len(live):
            self.file_match, self.file_negated = self.dir_match, self.dir_negated
        else:
            self.file_match, self.file_negated = self._compiler.compile(file_live)

    @classmethod
    def empty(cls) -> IgnoreRules:
        return cls()

    def with_exclude(self, patterns: Sequence[Pattern]) -> IgnoreRules:
        """Add the caller's patterns (relative to this folder), outranking everything else."""
        return IgnoreRules(_fresh(patterns) + self._top, self._files, self._compiler)

    def with_file(self, patterns: Sequence[Pattern]) -> IgnoreRules:
        """Add the patterns of an ignore file in this folder (outranking those of the folders above)."""
        if not patterns:
            return self
        return IgnoreRules(self._top, _fresh(patterns) + self._files, self._compiler)

    def with_lowest(self, patterns: Sequence[Pattern]) -> IgnoreRules:
        """Add patterns outranked by everything else (`.git/info/exclude`)."""
        if not patterns:
            return self
        return IgnoreRules(self._top, self._files + _fresh(patterns), self._compiler)

    def child(self, name: str) -> IgnoreRules:
        """The rules inside subfolder `name` (given as `match_name(name)`)."""
        if not self._dynamic:
            return self
        top = _advance(self._top, name)
        files = _advance(self._files, name)
        if top == self._top and files == self._files:
            return self
        return IgnoreRules(top, files, self._compiler)

    def path_ignored(self, path: str) -> bool:
        """Whether the file at `path` (relative to this folder, '/'-separated) is ignored, itself or by
        one of its folders (off the walk: for single paths)."""
        rules = self
        *folders, name = path.split("/")
        for folder in folders:
            if rules.is_ignored(folder, is_dir=True):
                return True
            rules = rules.child(match_name(folder))
        return rules.is_ignored(name, is_dir=False)

    def is_ignored(self, name: str, is_dir: bool) -> bool:
        mname = match_name(name)
        match, negated = (self.dir_match, self.dir_negated) if is_dir else (self.file_match, self.file_negated)
        if match is None:
            return False
        m = match(mname)
        if m is None:
            return False
        return negated is None or not negated[m.lastindex or 0]


def _fresh(patterns: Sequence[Pattern]) -> _Active:
    return tuple((p, p.start) for p in reversed(patterns))


def _advance(active: _Active, name: str) -> _Active:
    out: list[tuple[Pattern, int]] = []
    for p, state in active:
        if p.static:
            out.append((p, state))
        else:
            advanced = p.step(state, name)
            if advanced:
                out.append((p, advanced))
    return tuple(out)
