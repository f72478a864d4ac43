"""Gitignore pattern syntax: lines of an ignore file read the way git reads them.

A pattern becomes a `Pattern`: a list of segments relative to the folder of the file it came from, each a
single-name glob (translated to a regular expression) or `**` (any number of folders). A pattern with no
slash (other than a trailing one) matches at any depth, so it is stored as `**/<pattern>`. Whether a
pattern can still match below a folder is an NFA state over its segments (`Pattern.step`), which
`runner.client.ignore` advances folder by folder.

Matching is on bytes, as git's `wildmatch` does (`?` matches one byte of a UTF-8 name, not one
character): expressions are over the Latin-1 view of the bytes, which for an ASCII name is the name itself.

Git's own reading is followed where it is surprising, since the aim is to leave out what git leaves out:
trailing spaces dropped unless escaped; an unterminated `[` or an unknown `[:class:]` matches nothing;
`\\/` is a slash; a `[...]` set may hold a slash (which it never matches) without splitting the pattern;
and a `**` glued to a name as the first wildcard (`b**/x`) spans folders and may match none, because git
compares the literal prefix first and then matches the rest as if it began the pattern. Thousands of
random patterns and trees agree with `git ls-files` (tests/client/test_snapshot_gitignore.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["ANY_NAME", "STAR2", "AnyFolders", "Matcher", "Pattern", "Segment", "parse_patterns"]

Matcher = Callable[[str], "re.Match[str] | None"]


class AnyFolders:
    """The `**` segment: zero or more whole folder names (at the end of a pattern: one or more)."""

    def __repr__(self) -> str:
        return "**"


STAR2 = AnyFolders()


@dataclass(frozen=True, slots=True)
class Segment:
    """A single-name glob: `regex` is the source of an expression over the Latin-1 view of a name."""

    regex: str
    literal: str | None  # the name itself when the glob has no wildcard (compared with ==)
    fullmatch: Matcher | None  # compiled `regex`, when not a literal

    def matches(self, name: str) -> bool:
        if self.literal is not None:
            return name == self.literal
        assert self.fullmatch is not None
        return self.fullmatch(name) is not None


_NEVER = Segment(regex="(?!)", literal=None, fullmatch=re.compile("(?!)").fullmatch)
ANY_NAME = Segment(regex=".*", literal=None, fullmatch=re.compile(".*", re.DOTALL).fullmatch)

Seg = Segment | AnyFolders


@dataclass(frozen=True, slots=True, eq=False)
class Pattern:
    """One gitignore line, ready to match. Compared and hashed by identity."""

    text: str  # the line as written (decoded for display)
    origin: str  # e.g. "src/.gitignore:3" or "exclude:1"
    negated: bool
    dir_only: bool
    segments: tuple[Seg, ...]
    # The pattern's NFA state in the folder it was read in (segments reachable before any name).
    start: int = field(init=False)
    # `**/<glob>`: the state never changes, so folders need not advance it.
    static: bool = field(init=False)
    last_bit: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", self.closure(1))
        object.__setattr__(self, "static", self.segments[0] is STAR2 and len(self.segments) <= 2)
        object.__setattr__(self, "last_bit", 1 << (len(self.segments) - 1))

    def closure(self, state: int) -> int:
        """Add the segments reachable by letting a non-final `**` match no folder at all."""
        segs = self.segments
        for i in range(len(segs) - 1):
            if state >> i & 1 and segs[i] is STAR2:
                state |= 1 << (i + 1)
        return state

    def step(self, state: int, name: str) -> int:
        """The state inside subfolder `name` of a folder where the state is `state` (0: cannot match)."""
        segs = self.segments
        last = len(segs) - 1
        out = 0
        i = 0
        while state:
            if state & 1:
                seg = segs[i]
                if isinstance(seg, AnyFolders):
                    out |= 1 << i
                elif i < last and seg.matches(name):
                    out |= 1 << (i + 1)
            state >>= 1
            i += 1
        return self.closure(out) if out else 0


def parse_patterns(data: bytes, origin: str) -> list[Pattern]:
    """Parse the contents of a gitignore file (or caller-given lines joined by newlines), in file order."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    out: list[Pattern] = []
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if not line or line.startswith(b"#"):
            continue
        out.extend(_parse_line(_trim_trailing_spaces(line), f"{origin}:{lineno}"))
    return out


def _trim_trailing_spaces(line: bytes) -> bytes:
    """Drop trailing spaces unless escaped with a backslash (git's `trim_trailing_spaces`)."""
    last_space = -1
    i = 0
    n = len(line)
    while i < n:
        c = line[i]
        if c == 0x20:
            if last_space < 0:
                last_space = i
        elif c == 0x5C:
            i += 1
            if i >= n:
                return line
            last_space = -1
        else:
            last_space = -1
        i += 1
    return line[:last_space] if last_space >= 0 else line


def _parse_line(line: bytes, origin: str) -> list[Pattern]:
    """The patterns of one line: usually one; two for git's `prefix**/` quirk (see `_glued_star2`)."""
    text = line.decode("utf-8", "backslashreplace")
    negated = line.startswith(b"!")
    if negated:
        line = line[1:]
    dir_only = line.endswith(b"/")
    if dir_only:
        line = line[:-1]
    if not line:
        return []
    if b"/" not in line:
        # No slash: the pattern matches a name at any depth below its folder.
        return [Pattern(text, origin, negated, dir_only, (STAR2, ANY_NAME if _all_stars(line) else _translate(line)))]
    if line.startswith(b"/"):
        line = line[1:]
    return [Pattern(text, origin, negated, dir_only, _segments(body)) for body in _glued_star2(line)]


def _all_stars(part: bytes) -> bool:
    return len(part) >= 2 and not part.strip(b"*")


def _segments(body: bytes) -> tuple[Seg, ...]:
    return tuple(STAR2 if _all_stars(part) else _translate(part) for part in _split(body))


def _split(body: bytes) -> list[bytes]:
    """Split a pattern at its slashes. An escaped slash (`\\/`) is a slash too, as wildmatch matches it
    against one; a slash inside a `[...]` set is not (the set stays whole, and still matches the other
    characters it lists); other escapes stay with their segment."""
    parts: list[bytes] = []
    current = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c == 0x5C and i + 1 < len(body):  # backslash
            if body[i + 1] == 0x2F:
                parts.append(bytes(current))
                current.clear()
            else:
                current += body[i:i + 2]
            i += 2
            continue
        if c == 0x5B and (bracket := _bracket(body, i)) is not None:  # [
            end = bracket[1]
            current += body[i:end + 1]
            i = end + 1
            continue
        if c == 0x2F:
            parts.append(bytes(current))
            current.clear()
        else:
            current.append(c)
        i += 1
    parts.append(bytes(current))
    return parts


def _glued_star2(body: bytes) -> list[bytes]:
    """Git's reading of a pattern (with a slash) whose first wildcard is a `**` glued to a name, as in
    `b**/x` or `src/lib**`: git compares the literal prefix (`b`) first, then matches the rest (`**/x`)
    on its own, where that `**` leads the pattern and so spans folders and may match none. The result
    is the union of ordinary patterns: `b*/**/x` and `bx` (or `lib*` and `lib*/**` at the end)."""
    first = next((i for i, c in enumerate(body) if c in _SPECIAL), len(body))
    if not (0 < first < len(body) - 1 and body[first:first + 2] == b"**" and body[first - 1] != 0x2F):
        return [body]
    end = first
    while end < len(body) and body[end] == 0x2A:
        end += 1
    prefix, after = body[:first], body[end:]
    if not after:
        return [prefix + b"*", prefix + b"*/**"]
    if after.startswith(b"/") and len(after) > 1:
        # The glued form may begin with a `**` of its own (`b**/**/x` -> `b**/x`): the same reading again.
        return [prefix + b"*/**" + after, *_glued_star2(prefix + after[1:])]
    if after.startswith(b"\\/") and len(after) > 2:  # spans folders, but must match at least one slash
        return [prefix + b"*/**" + after[1:]]
    return [body]


_SPECIAL = frozenset(b"*?[\\")
# POSIX classes as git's wildmatch knows them (ASCII only).
_CLASSES: dict[bytes, frozenset[int]] = {
    b"alnum": frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"),
    b"alpha": frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    b"blank": frozenset(b" \t"),
    b"cntrl": frozenset([*range(0x20), 0x7F]),
    b"digit": frozenset(b"0123456789"),
    b"graph": frozenset(range(0x21, 0x7F)),
    b"lower": frozenset(b"abcdefghijklmnopqrstuvwxyz"),
    b"print": frozenset(range(0x20, 0x7F)),
    b"punct": frozenset(b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
    b"space": frozenset(b" \t\n\r"),
    b"upper": frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    b"xdigit": frozenset(b"0123456789abcdefABCDEF"),
}


def _translate(glob: bytes) -> Segment:
    """Translate a single-name glob into a regular expression over the Latin-1 view of a name.

    Follows git's `wildmatch` with WM_PATHNAME: `*` and `?` never cross a slash (names have none), `**`
    inside a name is `*`, `[...]` sets with `!`/`^`, ranges and `[:class:]`, backslash escapes. A glob
    git would reject (unterminated set, unknown class, trailing backslash) matches nothing, as in git.
    """
    if not _SPECIAL.intersection(glob):
        literal = glob.decode("latin-1")
        return Segment(regex=re.escape(literal), literal=literal, fullmatch=None)
    parts: list[str] = []
    i = 0
    n = len(glob)
    while i < n:
        c = glob[i]
        if c == 0x2A:  # *
            while i < n and glob[i] == 0x2A:
                i += 1
            parts.append(".*")
            continue
        if c == 0x3F:  # ?
            parts.append(".")
        elif c == 0x5B:  # [
            parsed = _bracket(glob, i)
            if parsed is None:
                return _NEVER
            charset, i = parsed
            parts.append(_charset_regex(charset))
        elif c == 0x5C:  # backslash
            i += 1
            if i >= n:
                return _NEVER
            parts.append(re.escape(chr(glob[i])))
        else:
            parts.append(re.escape(chr(c)))
        i += 1
    regex = "".join(parts)
    return Segment(regex=regex, literal=None, fullmatch=re.compile(regex, re.DOTALL).fullmatch)


def _bracket(glob: bytes, start: int) -> tuple[frozenset[int], int] | None:
    """Parse the set starting at `glob[start] == '['`: the bytes it matches, and the index of its `]`."""
    n = len(glob)
    p = start + 1
    if p >= n:
        return None
    negated = glob[p] in (0x21, 0x5E)  # ! or ^
    if negated:
        p += 1
    matched: set[int] = set()
    prev = -1
    first = True
    while True:
        if p >= n:
            return None
        c = glob[p]
        if c == 0x5D and not first:  # ]
            break
        first = False
        if c == 0x5C:  # backslash: the next byte, literally
            p += 1
            if p >= n:
                return None
            c = glob[p]
            matched.add(c)
        elif c == 0x2D and prev >= 0 and p + 1 < n and glob[p + 1] != 0x5D:  # a range prev-next
            p += 1
            hi = glob[p]
            if hi == 0x5C:
                p += 1
                if p >= n:
                    return None
                hi = glob[p]
            matched.update(range(prev, hi + 1))
            c = -1  # a range is not the start of another range
        elif c == 0x5B and p + 1 < n and glob[p + 1] == 0x3A:  # [:class:]
            end = glob.find(b"]", p + 2)
            if end < 0:
                return None
            if end - (p + 2) < 1 or glob[end - 1] != 0x3A:
                matched.add(0x5B)  # not a class after all: a literal '['
            else:
                members = _CLASSES.get(glob[p + 2 : end - 1])
                if members is None:
                    return None
                matched.update(members)
                p = end
                c = -1
        else:
            matched.add(c)
        prev = c
        p += 1
    result = frozenset(range(256)).difference(matched) if negated else frozenset(matched)
    return result, p


def _charset_regex(charset: frozenset[int]) -> str:
    if not charset:
        return "(?!)"
    return "[" + "".join(f"\\x{b:02x}" for b in sorted(charset)) + "]"
