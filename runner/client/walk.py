"""The walk over a workspace's folders: the one loop of a snapshot that runs once per entry.

Per folder: one `scandir`; its `.gitignore`, if any, added to the rules; then per entry, in this order
(cheapest first, and nothing done for an ignored entry beyond matching its name): `.git` skipped; the
name matched against the folder's compiled rules; the name checked (UTF-8, no backslash, path length);
for a regular file, one `lstat` (from the directory entry) and a digest cache lookup. A hit becomes a
manifest entry at once; a miss is left for hashing, after the limits are checked. Folders go on a stack,
not the Python call stack, so depth is bounded only by path length.

Counts, total size and over-size files are kept as the walk goes, so checking the limits costs nothing
when they hold; the walk stops as soon as there are more files than allowed (a workspace with a
forgotten `node_modules` should fail in a moment, not after a full walk).
"""

from __future__ import annotations

import errno
import os
import stat as stat_module
from collections.abc import Callable, Sequence

from runner.client.digest_cache import DigestCacheSession
from runner.client.gitrepo import read_ignore_file
from runner.client.ignore import IgnoreRules, match_name
from runner.client.limits import too_many_files
from runner.client.skipped import SkippedFile, SkipReason, display_path
from runner.domain.errors import InvalidArgument
from runner.domain.models import Digest, FileKind, ManifestEntry
from runner.domain.paths import MAX_PATH_BYTES, check_symlink_target

__all__ = ["Pending", "Walk"]

_FILE = FileKind.FILE
_EXECUTABLE = FileKind.EXECUTABLE
_SYMLINK = FileKind.SYMLINK
# Up to this many characters a path cannot exceed MAX_PATH_BYTES when encoded (4 bytes per character).
_SAFE_PATH_CHARS = MAX_PATH_BYTES // 4

_TOO_LONG = "its path is too long for the system to open"

# A regular file to hash: workspace-relative path, kind, absolute path, and the stat the cache keys by.
Pending = tuple[str, FileKind, str, os.stat_result]


def name_problem(name: str) -> str | None:
    """Why a file name cannot be a manifest path segment, if it cannot."""
    if not name.isascii():
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            return "its name is not valid UTF-8"
    if "\\" in name:
        return "its name contains a backslash"
    return None


def _special_kind(mode: int) -> str:
    if stat_module.S_ISFIFO(mode):
        return "a FIFO"
    if stat_module.S_ISSOCK(mode):
        return "a socket"
    if stat_module.S_ISCHR(mode) or stat_module.S_ISBLK(mode):
        return "a device"
    return "not a regular file, folder or symbolic link"


class Walk:
    """One snapshot's walk of the folder `root` (absolute); `run` fills the fields below."""

    def __init__(self, root: str, *, max_files: int, max_file_bytes: int) -> None:
        self.root = root
        self.max_files = max_files
        self.max_file_bytes = max_file_bytes
        self.entries: list[ManifestEntry] = []  # complete: cache hits and symbolic links
        self.pending: list[Pending] = []  # regular files to hash
        self.data: dict[str, bytes] = {}  # blob bytes by path, for symbolic links
        self.skipped: dict[str, SkippedFile] = {}  # by display path
        self.total_bytes = 0
        self.too_big: list[tuple[str, int]] = []  # files over max_file_bytes
        self.folders = 0
        self.ignored = 0
        self.cache_hits = 0

    @property
    def count(self) -> int:
        return len(self.entries) + len(self.pending)

    def paths(self) -> list[str]:
        return [e.path for e in self.entries] + [p[0] for p in self.pending]

    def sizes(self) -> list[tuple[str, int]]:
        return [(e.path, e.digest.size) for e in self.entries] + [(p[0], p[3].st_size) for p in self.pending]

    def skip(self, rel: str, reason: SkipReason, detail: str) -> None:
        path = display_path(rel)
        self.skipped[path] = SkippedFile(path, reason, detail)

    def run(self, rules: IgnoreRules, session: DigestCacheSession | None) -> None:
        # Everything the loop touches is a local: this runs once per workspace entry.
        entries, pending = self.entries, self.pending
        lookup = session.lookup if session is not None else None
        max_files, max_file_bytes = self.max_files, self.max_file_bytes
        too_big = self.too_big
        total = ignored = hits = 0
        stack: list[tuple[str, str, IgnoreRules]] = [(self.root, "", rules)]
        while stack:
            folder, prefix, rules = stack.pop()
            self.folders += 1
            try:
                with os.scandir(folder) as it:
                    dir_entries = list(it)
            except OSError as exc:
                if not prefix:
                    raise InvalidArgument(f"workspace {folder} cannot be read ({exc.strerror})") from exc
                if exc.errno == errno.ENAMETOOLONG:
                    self.skip(prefix[:-1], SkipReason.BAD_NAME, f"folder left out: {_TOO_LONG}")
                else:
                    self.skip(prefix[:-1], SkipReason.UNREADABLE,
                              f"folder unreadable ({exc.strerror}); nothing in it is included")
                continue
            for entry in dir_entries:
                if entry.name == ".gitignore" and entry.is_file(follow_symlinks=False):
                    rules = rules.with_file(read_ignore_file(entry.path, prefix + ".gitignore"))
                    break
            file_match, file_negated = rules.file_match, rules.file_negated
            dir_match, dir_negated = rules.dir_match, rules.dir_negated
            for entry in dir_entries:
                name = entry.name
                if name == ".git":
                    continue
                mname = name if name.isascii() else match_name(name)
                if entry.is_dir(follow_symlinks=False):
                    if dir_match is not None:
                        m = dir_match(mname)
                        if m is not None and (dir_negated is None or not dir_negated[m.lastindex or 0]):
                            ignored += 1
                            continue
                    sub = prefix + name + "/"
                    problem = name_problem(name)
                    if problem is None and len(sub) > _SAFE_PATH_CHARS and len(os.fsencode(sub)) >= MAX_PATH_BYTES:
                        problem = f"its path is longer than {MAX_PATH_BYTES} bytes"
                    if problem is not None:
                        self.skip(prefix + name, SkipReason.BAD_NAME, f"folder left out: {problem}")
                        continue
                    stack.append((entry.path, sub, rules.child(mname)))
                    continue
                if file_match is not None:
                    m = file_match(mname)
                    if m is not None and (file_negated is None or not file_negated[m.lastindex or 0]):
                        ignored += 1
                        continue
                rel = prefix + name
                # (`mname is not name` exactly when the name is not ASCII.)
                if (mname is not name or "\\" in name) and (problem := name_problem(name)) is not None:
                    self.skip(rel, SkipReason.BAD_NAME, problem)
                    continue
                if len(rel) > _SAFE_PATH_CHARS and len(os.fsencode(rel)) > MAX_PATH_BYTES:
                    self.skip(rel, SkipReason.BAD_NAME, f"its path is longer than {MAX_PATH_BYTES} bytes")
                    continue
                if entry.is_file(follow_symlinks=False):
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError as exc:
                        self._stat_failed(rel, exc)
                        continue
                    size = st.st_size
                    total += size
                    if size > max_file_bytes:
                        too_big.append((rel, size))
                    kind = _EXECUTABLE if st.st_mode & 0o111 else _FILE
                    known = lookup(rel, kind, st) if lookup is not None else None
                    if known is None:
                        pending.append((rel, kind, entry.path, st))
                    else:
                        hits += 1
                        entries.append(known)
                elif entry.is_symlink():
                    total += self._symlink(rel, entry.path)
                else:
                    self._special(rel, entry)
            if len(entries) + len(pending) > max_files:
                raise too_many_files(self.root, max_files, self.paths())
        self.total_bytes += total
        self.ignored += ignored
        self.cache_hits += hits

    def add_tracked(self, paths: Sequence[str], excluded: Callable[[str], bool],
                    session: DigestCacheSession | None) -> int:
        """Add files git tracks though the ignore rules left them out (`runner.client.tracked`), unless
        `excluded` (the caller's own patterns) says no. How many were added."""
        if not paths:
            return 0
        have = {e.path for e in self.entries}
        have.update(p[0] for p in self.pending)
        folders: dict[str, bool] = {}  # folder -> is a real folder (not a link) in the workspace
        added = 0
        for rel in paths:
            if rel in have or display_path(rel) in self.skipped or excluded(rel):
                continue
            parts = rel.split("/")
            if ".git" in parts or "" in parts or "." in parts or ".." in parts:
                continue
            problem = next((p for p in map(name_problem, parts) if p is not None), None)
            if problem is None and len(os.fsencode(rel)) > MAX_PATH_BYTES:
                problem = f"its path is longer than {MAX_PATH_BYTES} bytes"
            if problem is not None:
                self.skip(rel, SkipReason.BAD_NAME, problem)
                continue
            if not all(self._is_folder("/".join(parts[:i]), folders) for i in range(1, len(parts))):
                continue  # reached through a link, or gone: git's index is older than the work tree
            path = os.path.join(self.root, rel)
            try:
                st = os.lstat(path)
            except OSError:
                continue  # deleted in the work tree: not part of it
            if stat_module.S_ISREG(st.st_mode):
                self._add_file(rel, path, st, session)
            elif stat_module.S_ISLNK(st.st_mode):
                self.total_bytes += self._symlink(rel, path)
            else:
                continue  # a submodule's folder, or a file that became something else
            added += 1
        return added

    def _is_folder(self, rel: str, known: dict[str, bool]) -> bool:
        found = known.get(rel)
        if found is None:
            try:
                found = stat_module.S_ISDIR(os.lstat(os.path.join(self.root, rel)).st_mode)
            except OSError:
                found = False
            known[rel] = found
        return found

    def _add_file(self, rel: str, path: str, st: os.stat_result, session: DigestCacheSession | None) -> None:
        """What the walk does for a regular file, for one found another way."""
        self.total_bytes += st.st_size
        if st.st_size > self.max_file_bytes:
            self.too_big.append((rel, st.st_size))
        kind = _EXECUTABLE if st.st_mode & 0o111 else _FILE
        known = session.lookup(rel, kind, st) if session is not None else None
        if known is None:
            self.pending.append((rel, kind, path, st))
        else:
            self.cache_hits += 1
            self.entries.append(known)

    def _stat_failed(self, rel: str, exc: OSError) -> None:
        if exc.errno == errno.ENAMETOOLONG:
            self.skip(rel, SkipReason.BAD_NAME, _TOO_LONG)
        else:
            self.skip(rel, SkipReason.CHANGED, f"vanished during the snapshot ({exc.strerror})")

    def _symlink(self, rel: str, path: str) -> int:
        """Add the link at `rel` (its target as the blob) or skip it; the bytes added."""
        try:
            target = os.fsencode(os.readlink(path))
        except OSError as exc:
            self._stat_failed(rel, exc)
            return 0
        try:
            text = target.decode("utf-8")
        except UnicodeDecodeError:
            self.skip(rel, SkipReason.BAD_NAME, "symbolic link target is not valid UTF-8")
            return 0
        if len(target) > MAX_PATH_BYTES:
            self.skip(rel, SkipReason.BAD_NAME, f"symbolic link target is longer than {MAX_PATH_BYTES} bytes")
            return 0
        try:
            check_symlink_target(rel, text)
        except InvalidArgument:
            self.skip(rel, SkipReason.SYMLINK_OUTSIDE,
                      f"symbolic link to absolute path {text!r}" if text.startswith("/")
                      else f"symbolic link to {text!r} points outside the workspace")
            return 0
        self.entries.append(ManifestEntry(rel, _SYMLINK, Digest.of(target)))
        self.data[rel] = target
        return len(target)

    def _special(self, rel: str, entry: os.DirEntry[str]) -> None:
        try:
            mode = entry.stat(follow_symlinks=False).st_mode
        except OSError:
            return  # gone: nothing to report
        self.skip(rel, SkipReason.SPECIAL_FILE, f"{_special_kind(mode)}, which a snapshot cannot hold")
