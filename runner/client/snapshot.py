"""Take a snapshot of a workspace: the manifest the runner gets, and where each blob's bytes are.

Used by `codex-sys run` on the working folder and by the language server, which overlays unsaved editor
buffers. Synchronous and CPU/IO-bound: async callers run it in a thread.

What is in a snapshot: what `git ls-files --others --exclude-standard` would list in a fresh repository
(see `runner.client.ignore` for the rules, and `runner.client.gitrepo` for the rules that come from an
enclosing repository), minus what cannot be sent faithfully, which is listed in `skipped` with a reason:
FIFOs, sockets and devices; symbolic links whose target is absolute or leaves the workspace; names that
are not UTF-8 (manifest paths are strings) or hold a backslash; unreadable files and folders; files that
vanished or changed kind during the walk. `.git` is never entered; a repository nested in the workspace
(a submodule, a cloned dependency) is walked like any folder, its `.gitignore` files applying. Regular
files are FILE, or EXECUTABLE when any execute bit is set; a symbolic link is SYMLINK with its target as
the blob's bytes, never followed. Ignore rules apply to untracked files only, as in git: a file git
tracks is included even where a pattern matches it (`runner.client.tracked`).

Overlays (path -> bytes) replace or add files: the contents of editor buffers not saved yet. An overlay
applies even to an ignored file (the user has it open) and keeps an executable file executable; one that
would make a file and a folder of the same path is skipped with a reason.

The steps: the walk (`runner.client.walk`: one `scandir` per folder, one `lstat` and one digest cache
lookup per file, rules compiled per folder), tracked files the rules left out (asked of git meanwhile),
the overlays (`runner.client.overlay`), the limits
(`runner.client.limits`, checked before any file is read), hashing the cache misses
(`runner.client.hashing`), and sorting. `sources` are indexed on first use: re-submitting an unchanged
workspace never reads them.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

from runner.client.blob_source import BlobSource
from runner.client.digest_cache import DigestCache, DigestCacheSession
from runner.client.gitrepo import base_rules, exclude_patterns, find_repository
from runner.client.hashing import FileGrew, HashJob, HashResult, hash_files
from runner.client.ignore import IgnoreRules
from runner.client.limits import check_limits
from runner.client.overlay import apply_overlays, check_overlays
from runner.client.records import trusted_digest, trusted_entry
from runner.client.skipped import SkippedFile, SkipReason
from runner.client.tracked import TrackedIgnored
from runner.client.walk import Walk
from runner.domain.errors import InvalidArgument
from runner.domain.models import Digest, Manifest, ManifestEntry

__all__ = ["BlobSource", "SkipReason", "SkippedFile", "Snapshot", "SnapshotStats", "take_snapshot"]

log = logging.getLogger(__name__)

# Where a blob's bytes are: a file to read when uploading, or the bytes themselves (symbolic link
# targets, overlays).

_by_path = attrgetter("path")


@dataclass(frozen=True, slots=True)
class SnapshotStats:
    files: int  # manifest entries
    total_bytes: int
    folders: int  # folders walked
    ignored: int  # entries left out by ignore rules (an ignored folder counts once)
    cache_hits: int
    hashed_files: int
    hashed_bytes: int
    seconds: float


@dataclass(frozen=True)
class Snapshot:
    manifest: Manifest  # entries sorted by path
    sources: Mapping[Digest, BlobSource]  # one per distinct blob of the manifest
    skipped: tuple[SkippedFile, ...]  # sorted by path
    stats: SnapshotStats


class _Sources(Mapping[Digest, BlobSource]):
    """Blob sources by digest. The index is built on first use, and a `Path` only for a source asked
    for: an unchanged workspace asks for none."""

    def __init__(self, root: str, entries: Sequence[ManifestEntry], data: Mapping[str, bytes]) -> None:
        self._root = root
        self._entries = entries
        self._data = data  # blob bytes by path, for symbolic links and overlays
        self._index: dict[str, ManifestEntry] | None = None

    def _first(self) -> dict[str, ManifestEntry]:
        if self._index is None:
            index: dict[str, ManifestEntry] = {}
            setdefault = index.setdefault
            for entry in self._entries:  # sorted by path: the first path with the content is used
                setdefault(entry.digest.hash, entry)
            self._index = index
        return self._index

    def __getitem__(self, digest: Digest) -> BlobSource:
        entry = self._first().get(digest.hash)
        if entry is None or entry.digest.size != digest.size:
            raise KeyError(digest)
        data = self._data.get(entry.path)
        if data is not None:
            return data
        return f"{self._root}/{entry.path}"

    def __contains__(self, digest: object) -> bool:
        if not isinstance(digest, Digest):
            return False
        entry = self._first().get(digest.hash)
        return entry is not None and entry.digest.size == digest.size

    def __iter__(self) -> Iterator[Digest]:
        return (entry.digest for entry in self._first().values())

    def __len__(self) -> int:
        return len(self._first())


def take_snapshot(root: Path | str, *, cache: DigestCache | None = None, overlays: Mapping[str, bytes] | None = None,
                  exclude: Sequence[str] = (), max_files: int = 100_000, max_total_bytes: int = 2 << 30,
                  max_file_bytes: int = 256 << 20) -> Snapshot:
    """Snapshot the folder `root`; see the module docstring.

    `cache` is consulted and updated in memory; the caller saves it (`DigestCache.save`), preferably off
    the critical path. `exclude` holds gitignore-style patterns, relative to `root`, that outrank the
    workspace's own. Raises InvalidArgument (root not a readable folder, bad overlay path) and
    ResourceExhausted (over a limit; the message names the biggest offenders)."""
    started = time.perf_counter()
    started_ns = time.time_ns()
    root_str = os.path.abspath(root)
    if not os.path.isdir(root_str):
        raise InvalidArgument(f"workspace {root_str} is not a folder")
    if cache is not None and cache.workspace and cache.workspace != os.path.realpath(root_str):
        raise InvalidArgument(f"the digest cache given is for workspace {cache.workspace}, not {root_str}")
    checked = check_overlays(overlays or {})
    repo = find_repository(root_str)
    rules = base_rules(root_str, repo, exclude)
    excluded = IgnoreRules.empty().with_exclude(exclude_patterns(exclude)).path_ignored if exclude else _nothing
    walk = Walk(root_str, max_files=max_files, max_file_bytes=max_file_bytes)
    with TrackedIgnored(root_str, repo) as tracked:
        if cache is None:
            data, hashed_files, hashed_bytes = _take(walk, rules, tracked, excluded, checked, None, max_total_bytes)
        else:
            with cache.session(started_ns) as session:
                data, hashed_files, hashed_bytes = _take(walk, rules, tracked, excluded, checked, session,
                                                         max_total_bytes)
    entries = walk.entries
    entries.sort(key=_by_path)
    manifest = Manifest(tuple(entries))
    skipped = tuple(walk.skipped[k] for k in sorted(walk.skipped))
    stats = SnapshotStats(
        files=len(entries), total_bytes=walk.total_bytes, folders=walk.folders, ignored=walk.ignored,
        cache_hits=walk.cache_hits, hashed_files=hashed_files, hashed_bytes=hashed_bytes,
        seconds=time.perf_counter() - started)
    log.debug("workspace snapshot taken", extra={
        "root": root_str, "files": stats.files, "bytes": stats.total_bytes, "folders": stats.folders,
        "ignored": stats.ignored, "skipped": len(skipped), "cache_hits": stats.cache_hits,
        "hashed_files": stats.hashed_files, "hashed_bytes": stats.hashed_bytes,
        "ms": round(stats.seconds * 1000, 1)})
    return Snapshot(manifest, _Sources(root_str, manifest.entries, data), skipped, stats)


def _nothing(path: str) -> bool:
    return False


def _take(walk: Walk, rules: IgnoreRules, tracked: TrackedIgnored, excluded: Callable[[str], bool],
          overlays: dict[str, bytes], session: DigestCacheSession | None,
          max_total_bytes: int) -> tuple[dict[str, bytes], int, int]:
    """Walk, add what git tracks though ignored, lay the overlays, check the limits, hash what the cache
    missed. The blob bytes held in memory by path, and how many files and bytes were hashed."""
    walk.run(rules, session)
    added = walk.add_tracked(tracked.paths(), excluded, session)
    if added:
        log.debug("tracked files included though ignore rules match them", extra={"files": added})
    applied = apply_overlays(walk, overlays)
    if walk.count > walk.max_files or walk.too_big or walk.total_bytes > max_total_bytes:
        check_limits(walk.root, walk.sizes(), max_files=walk.max_files, max_total_bytes=max_total_bytes,
                     max_file_bytes=walk.max_file_bytes)
    hashed_files, hashed_bytes = _hash_pending(walk, session)
    return ({**walk.data, **applied} if applied else walk.data), hashed_files, hashed_bytes


def _hash_pending(walk: Walk, session: DigestCacheSession | None) -> tuple[int, int]:
    if not walk.pending:
        return 0, 0
    results = hash_files([HashJob(path, st.st_size, walk.max_file_bytes) for _, _, path, st in walk.pending])
    store = session.store if session is not None else None
    hashed_files = hashed_bytes = 0
    for (rel, kind, _, st), result in zip(walk.pending, results, strict=True):
        if isinstance(result, HashResult):
            entry = trusted_entry(rel, kind, trusted_digest(result.hexdigest, result.size))
            walk.entries.append(entry)
            hashed_files += 1
            hashed_bytes += result.size
            walk.total_bytes += result.size - st.st_size
            # Keyed by the walk's stat; a file that changed since then has a new one, so is read again.
            if store is not None and st.st_size == result.size:
                store(st, entry)
            continue
        walk.total_bytes -= st.st_size
        if isinstance(result, FileGrew):
            walk.skip(rel, SkipReason.CHANGED, "grew past the per-file limit while it was read")
        elif isinstance(result, (FileNotFoundError, NotADirectoryError, IsADirectoryError, BlockingIOError)) or (
                result.errno == errno.ELOOP):
            walk.skip(rel, SkipReason.CHANGED, "vanished or changed kind during the snapshot")
        elif isinstance(result, PermissionError):
            walk.skip(rel, SkipReason.UNREADABLE, f"unreadable ({result.strerror})")
        else:
            walk.skip(rel, SkipReason.UNREADABLE, f"could not be read ({result})")
    walk.pending = []
    return hashed_files, hashed_bytes
