"""A persistent cache of file digests, so an unchanged workspace is not read again.

A file's digest is reused while its `(size, mtime_ns, inode, ctime_ns)` are what they were when it was
hashed, as git's index does. `ctime` catches a same-size edit whose mtime was put back (`touch -d`,
`rsync -t`); the inode catches an editor's save by rename.

Racy entries. File times have a granularity (a kernel tick, up to 2 s on some file systems), so a file
hashed moments after a write could be written again, with the same size, within the same tick: its stat
would not change and the stale digest would be served for good. As git does, such entries are not kept:
a file whose mtime or ctime is within `racy_window_ns` of the start of the snapshot that hashed it is
hashed again next time (when it has aged, it is kept).

On disk (`CODEX_SYS_HOME/cache/digests-<hash of the workspace's real path>.bin`), the format is built to
load in a few milliseconds for 10,000 files with no per-entry Python work: a header, the workspace path,
the relative paths joined by NUL, then flat arrays of 64-bit integers (size, mtime, ctime; inode) and raw
32-byte SHA-256 digests, all covered by a CRC-32. A file that does not parse, or is for another
workspace, is logged and ignored: the cache only ever saves work, never decides an outcome. `save` writes
a temporary file and renames it into place, and writes nothing when no entry changed.

Use: `with cache.session(started_ns) as s:` around one snapshot, `s.lookup(...)` per file (it returns the
file's manifest entry) and `s.store(...)` per file hashed. Entries not looked up during a session (files
deleted, or newly ignored) are dropped when it ends. One session at a time per cache (a lock enforces
it); the cache can be kept in memory between snapshots by a long-lived process (the language server),
which then makes no new object for an unchanged file, and saved after each.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import sys
import threading
import time
import zlib
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runner.client.records import trusted_digest, trusted_entry
from runner.config import HomeLayout, codex_home
from runner.domain.models import FileKind, ManifestEntry

__all__ = ["DigestCache", "DigestCacheSession"]

log = logging.getLogger(__name__)

_MAGIC = b"CSYSDGC1"
# magic, entry count, length of the workspace path, length of the joined paths, CRC-32 of the rest.
_HEADER = struct.Struct("<8sIIII")
DEFAULT_RACY_WINDOW_NS = 2_000_000_000


class DigestCache:
    """File digests keyed by workspace-relative path and stat; see the module docstring."""

    def __init__(self, path: Path | None = None, *, workspace: str = "",
                 racy_window_ns: int = DEFAULT_RACY_WINDOW_NS) -> None:
        """An empty cache that `save` writes to `path` (None: memory only). `workspace` is the real path
        of the workspace, recorded in the file so that a cache is never used for another workspace."""
        self.path = path
        self.workspace = workspace
        self.racy_window_ns = racy_window_ns
        self._lock = threading.Lock()
        self._dirty = False
        self._set([], array("q"), array("Q"), b"")

    def _set(self, paths: list[str], stat: array[int], inodes: array[int], raw: bytes) -> None:
        self._paths = paths
        self._stat = stat  # size, mtime_ns, ctime_ns per entry
        self._inodes = inodes
        self._raw = raw  # 32 bytes per entry
        self._index = dict(zip(paths, range(len(paths)), strict=True))
        # Manifest entries built on first use, then kept: a long-lived process (the language server)
        # makes no new object for an unchanged file.
        self._entries: list[ManifestEntry | None] = [None] * len(paths)

    def __len__(self) -> int:
        return len(self._paths)

    # ---- loading and saving ---------------------------------------------------------------------------

    @classmethod
    def for_workspace(cls, root: Path | str, cache_dir: Path | None = None, *,
                      racy_window_ns: int = DEFAULT_RACY_WINDOW_NS) -> DigestCache:
        """Load the cache of the workspace at `root` from `cache_dir` (default: CODEX_SYS_HOME/cache)."""
        workspace = os.path.realpath(root)
        folder = cache_dir if cache_dir is not None else HomeLayout(codex_home()).cache
        name = hashlib.sha256(os.fsencode(workspace)).hexdigest()[:32]
        return cls.load(folder / f"digests-{name}.bin", workspace=workspace, racy_window_ns=racy_window_ns)

    @classmethod
    def load(cls, path: Path, *, workspace: str = "", racy_window_ns: int = DEFAULT_RACY_WINDOW_NS) -> DigestCache:
        """Read the cache at `path`; a missing, unreadable or corrupt file gives an empty cache."""
        cache = cls(path, workspace=workspace, racy_window_ns=racy_window_ns)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return cache
        except OSError as exc:
            log.warning("digest cache unreadable; starting empty", extra={"path": str(path), "error": str(exc)})
            return cache
        try:
            cache._decode(data)
        except ValueError as exc:
            log.warning("digest cache is corrupt or not for this workspace; starting empty",
                        extra={"path": str(path), "error": str(exc)})
            cache._set([], array("q"), array("Q"), b"")
            cache._dirty = True  # replace the bad file on the next save
        return cache

    def _decode(self, data: bytes) -> None:
        if len(data) < _HEADER.size:
            raise ValueError(f"{len(data)} bytes is shorter than the header")
        magic, count, root_len, paths_len, crc = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise ValueError(f"unknown format {magic!r}")
        body = memoryview(data)[_HEADER.size:]
        if zlib.crc32(body) != crc:
            raise ValueError("checksum mismatch")
        expected = root_len + paths_len + count * (3 * 8 + 8 + 32)
        if len(body) != expected:
            raise ValueError(f"body is {len(body)} bytes, expected {expected}")
        pos = 0
        workspace = bytes(body[:root_len]).decode("utf-8", "surrogateescape")
        pos += root_len
        if self.workspace and workspace != self.workspace:
            raise ValueError(f"cache is for workspace {workspace!r}")
        paths = bytes(body[pos:pos + paths_len]).decode("utf-8").split("\0") if count else []
        pos += paths_len
        if len(paths) != count:
            raise ValueError(f"{len(paths)} paths for {count} entries")
        stat = array("q")
        stat.frombytes(body[pos:pos + count * 24])
        pos += count * 24
        inodes = array("Q")
        inodes.frombytes(body[pos:pos + count * 8])
        pos += count * 8
        if sys.byteorder != "little":
            stat.byteswap()
            inodes.byteswap()
        if len(set(paths)) != count:
            raise ValueError("a path appears twice")
        self._set(paths, stat, inodes, bytes(body[pos:]))

    def save(self) -> None:
        """Write the cache atomically if it changed. Failure is logged, never raised: a cache that is
        not saved costs one re-hash next time."""
        if self.path is None or not self._dirty:
            return
        with self._lock:
            self._save_locked(self.path)

    def _save_locked(self, path: Path) -> None:
        stat, inodes = array("q", self._stat), array("Q", self._inodes)
        if sys.byteorder != "little":
            stat.byteswap()
            inodes.byteswap()
        root = self.workspace.encode("utf-8", "surrogateescape")
        joined = "\0".join(self._paths).encode("utf-8")
        body = b"".join((root, joined, stat.tobytes(), inodes.tobytes(), self._raw))
        header = _HEADER.pack(_MAGIC, len(self._paths), len(root), len(joined), zlib.crc32(body))
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            _make_private_folders(path.parent)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                with open(fd, "wb") as f:
                    f.write(header)
                    f.write(body)
                os.replace(tmp, path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        except OSError as exc:
            log.warning("digest cache not saved", extra={"path": str(path), "error": str(exc)})
            return
        self._dirty = False
        log.debug("digest cache saved", extra={"path": str(path), "entries": len(self._paths),
                                               "bytes": _HEADER.size + len(body)})

    # ---- use during a snapshot ------------------------------------------------------------------------

    @contextmanager
    def session(self, started_ns: int | None = None) -> Iterator[DigestCacheSession]:
        """One snapshot's use of the cache; `started_ns` (wall clock) is when its walk began."""
        with self._lock:
            s = DigestCacheSession(self, time.time_ns() if started_ns is None else started_ns)
            yield s
            self._merge(s)

    def _merge(self, s: DigestCacheSession) -> None:
        hit = s.hit
        if not s.new and hit.count(0) == 0:
            return
        paths: list[str] = []
        stat = array("q")
        inodes = array("Q")
        raw: list[bytes] = []
        entries: list[ManifestEntry | None] = []
        old_stat, old_raw, old_entries = self._stat, self._raw, self._entries
        for i, rel in enumerate(self._paths):
            if hit[i] and rel not in s.new:
                paths.append(rel)
                stat.extend(old_stat[3 * i:3 * i + 3])
                inodes.append(self._inodes[i])
                raw.append(old_raw[32 * i:32 * i + 32])
                entries.append(old_entries[i])
        for rel, (size, mtime_ns, inode, ctime_ns, entry) in s.new.items():
            paths.append(rel)
            stat.extend((size, mtime_ns, ctime_ns))
            inodes.append(inode)
            raw.append(bytes.fromhex(entry.digest.hash))
            entries.append(entry)
        self._set(paths, stat, inodes, b"".join(raw))
        self._entries = entries
        self._dirty = True


def _make_private_folders(folder: Path) -> None:
    """Create `folder` and its missing parents, each readable by the user only (the cache lists the
    workspace's file names)."""
    missing: list[Path] = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for created in reversed(missing):
        created.mkdir(mode=0o700, exist_ok=True)


class DigestCacheSession:
    """Lookups and stores of one snapshot; made by `DigestCache.session`."""

    __slots__ = ("_cache", "_entries", "_index", "_inodes", "_racy_limit", "_raw", "_stat", "hit", "new")

    def __init__(self, cache: DigestCache, started_ns: int) -> None:
        self._cache = cache
        self._index = cache._index
        self._stat = cache._stat
        self._inodes = cache._inodes
        self._raw = cache._raw
        self._entries = cache._entries
        self._racy_limit = started_ns - cache.racy_window_ns
        self.hit = bytearray(len(cache._paths))
        self.new: dict[str, tuple[int, int, int, int, ManifestEntry]] = {}

    def lookup(self, rel: str, kind: FileKind, st: os.stat_result) -> ManifestEntry | None:
        """The manifest entry of regular file `rel` (of `kind`, with stat `st`) if it is unchanged since it
        was hashed, else None."""
        i = self._index.get(rel)
        if i is None:
            return None
        j = 3 * i
        stat = self._stat
        if (stat[j] != st.st_size or stat[j + 1] != st.st_mtime_ns or stat[j + 2] != st.st_ctime_ns
                or self._inodes[i] != st.st_ino):
            return None
        self.hit[i] = 1
        entry = self._entries[i]
        if entry is None:
            digest = trusted_digest(self._raw[32 * i:32 * i + 32].hex(), st.st_size)
            entry = self._entries[i] = trusted_entry(rel, kind, digest)
        elif entry.kind is not kind:
            entry = self._entries[i] = trusted_entry(rel, kind, entry.digest)
        return entry

    def store(self, st: os.stat_result, entry: ManifestEntry) -> bool:
        """Remember the entry of a file hashed when its stat was `st`; False when the entry is racy (see
        the module docstring) and so not kept."""
        if st.st_mtime_ns >= self._racy_limit or st.st_ctime_ns >= self._racy_limit:
            return False
        self.new[entry.path] = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, entry)
        return True
