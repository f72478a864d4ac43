"""The packed snapshot: a whole workspace as one deterministic tar, and its safe unpacker.

A sandbox that fetches its snapshot blob by blob makes thousands of requests; a pack is one object,
fetched with one GET (a Kubernetes init container gets it through one presigned URL) and unpacked
locally. `Packs` (in `packs`) builds each once per manifest and tenant and stores it.

The format is a plain POSIX tar (ustar headers, PAX extended headers only where ustar cannot say it:
long or non-ASCII names and link targets), readable by any tar, and a pure function of the manifest:

* one entry per manifest entry, sorted by path; no folder entries (parents are implied, made 0755);
* regular files with mode 0644, or 0755 for executables; symlinks (mode 0777) with their target;
* mtime 0, uid and gid 0, empty owner names; ended by two zero blocks, padded to a 10240-byte record.

The same manifest therefore always gives the same bytes, hence the same digest, whoever builds it.
`pack_key(manifest)` names a manifest's pack: the SHA-256 of a canonical encoding of its entries and of
`FORMAT`, so a future format change gets new keys instead of reading old packs wrongly.

Building (`write_pack`) streams the blobs from any `BlobStore` (small ones fetched a few at a time
ahead of the writer, large ones streamed), each verified by the store as it is read, into a local file,
hashing it on the way; the caller stores the file and records its digest.

Unpacking (`unpack`) trusts nothing in the tar: it is read as a stream and checked against the manifest
the caller holds. It refuses absolute paths, `..` and any non-canonical path, entries not in the
manifest or appearing twice, and every kind of entry but regular files and symlinks (hard links,
devices, FIFOs, folders, sparse and contiguous files); a symlink must point inside the workspace and a
file must have the manifest's size and SHA-256, or the unpack stops with `PackError` naming the entry.
Files are written with `O_EXCL | O_NOFOLLOW` under folder descriptors (`folders`), so nothing is written
through a symlink. The reader is bounded by what the manifest can justify, so a hostile header cannot
make it read without end. Given the pack's own digest, the whole stream is also checked.

A sandbox pod fetches its pack without the manifest (`unpack_unlisted`): the same refusals of paths and
kinds, entries in the format's sorted order (so none twice), symlinks checked against one another, the
stream bounded by the pack's stated size, and its digest, which the runner computed, as the authority.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import errno
import hashlib
import os
import tarfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from runner.domain.errors import InvalidArgument, Unavailable
from runner.domain.models import Digest, FileKind, Manifest, ManifestEntry
from runner.domain.paths import MAX_PATH_BYTES, check_relative_path, check_symlink_target, check_symlink_targets
from runner.ports import BlobStore
from runner.snapshots.folders import FILE_FLAGS, Folders, file_mode, write_all

FORMAT = "codex-sys-pack-1"
BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
# Blobs up to this size are fetched whole, up to `PREFETCH` of them ahead of the writer.
SMALL_BLOB = 1 << 20
PREFETCH = 16
# Bytes handed to the writing thread at a time.
FLUSH_AT = 1 << 20
COPY_CHUNK = 1 << 20


class PackError(InvalidArgument):
    """A pack that does not match its manifest, or that no honest builder could have made."""


@dataclass(frozen=True, slots=True)
class Unpacked:
    files: int
    symlinks: int
    bytes: int


def _path_bytes(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape")


def sorted_entries(manifest: Manifest) -> list[ManifestEntry]:
    """The manifest's entries in pack order, each path checked; `InvalidArgument` on a bad or repeated
    path."""
    entries = sorted(manifest.entries, key=lambda e: _path_bytes(e.path))
    previous = None
    for entry in entries:
        check_relative_path(entry.path, "manifest path")
        if entry.path == previous:
            raise InvalidArgument(f"manifest path {entry.path!r} appears twice")
        previous = entry.path
    return entries


def pack_key(manifest: Manifest) -> str:
    """The name of a manifest's pack (64 hex digits): equal manifests, in any order, share it."""
    h = hashlib.sha256(FORMAT.encode() + b"\n")
    for entry in sorted(manifest.entries, key=lambda e: _path_bytes(e.path)):
        path = _path_bytes(entry.path)
        h.update(len(path).to_bytes(4, "big") + path + entry.kind.value.encode() + b"\0"
                 + entry.digest.hash.encode() + entry.digest.size.to_bytes(8, "big"))
    return h.hexdigest()


def entry_header(entry: ManifestEntry, target: str | None = None) -> bytes:
    """The tar header block(s) of one entry (a symlink's `target` given)."""
    info = tarfile.TarInfo(entry.path)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if entry.kind is FileKind.SYMLINK:
        if target is None:
            raise ValueError("a symlink's header needs its target")
        info.type = tarfile.SYMTYPE
        info.linkname = target
        info.mode = 0o777
        info.size = 0
    else:
        info.type = tarfile.REGTYPE
        info.mode = file_mode(entry)
        info.size = entry.digest.size
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


def _end(total: int) -> bytes:
    """Two zero blocks, then zeros up to the end of the record, as tar writes them."""
    total += 2 * BLOCK
    return b"\0" * (2 * BLOCK + (-total % RECORD))


# ---- building ------------------------------------------------------------------------------------------------


class _Sink:
    """The pack file, written and hashed in one background thread, a batch at a time."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._hasher = hashlib.sha256()
        self._buffer: list[bytes] = []
        self._buffered = 0
        self.size = 0
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="pack-writer")
        self._inflight: asyncio.Future[None] | None = None

    async def write(self, data: bytes) -> None:
        if not data:
            return
        self._buffer.append(data)
        self._buffered += len(data)
        self.size += len(data)
        if self._buffered >= FLUSH_AT:
            await self._flush()

    async def _flush(self) -> None:
        if self._inflight is not None:
            await self._inflight  # one batch at a time: the file is written in order
        batch, self._buffer, self._buffered = self._buffer, [], 0

        def write_batch() -> None:
            for piece in batch:
                self._hasher.update(piece)
                write_all(self._fd, piece)
        self._inflight = asyncio.wrap_future(self._thread.submit(write_batch))

    async def finish(self) -> Digest:
        await self._flush()
        assert self._inflight is not None
        await self._inflight
        return Digest(self._hasher.hexdigest(), self.size)

    async def close(self) -> None:
        if self._inflight is not None and not self._inflight.done():
            await asyncio.wait([self._inflight])
        if self._inflight is not None and not self._inflight.cancelled():
            self._inflight.exception()  # retrieved: the build failed or was cancelled already
        self._thread.shutdown(wait=False)


async def write_pack(blobs: BlobStore, tenant: str, manifest: Manifest, dest: Path) -> Digest:
    """Build the pack of `manifest` into the new file `dest` (see the module docstring); returns its
    digest. Raises what the store raises for a missing (`NotFound`) or damaged (`Unavailable`) blob,
    and `InvalidArgument` for a bad path or a symlink pointing out of the workspace; `dest` is then
    left for the caller to remove."""
    entries = sorted_entries(manifest)
    fd = os.open(dest, FILE_FLAGS, 0o600)
    sink = _Sink(fd)
    ahead: collections.deque[tuple[ManifestEntry, asyncio.Task[bytes] | None]] = collections.deque()
    upcoming = iter(entries)

    def fetch_ahead() -> None:
        while len(ahead) < PREFETCH:
            entry = next(upcoming, None)
            if entry is None:
                return
            whole = entry.kind is FileKind.SYMLINK or 0 < entry.digest.size <= SMALL_BLOB
            ahead.append((entry, asyncio.create_task(blobs.get_bytes(tenant, entry.digest)) if whole else None))

    try:
        fetch_ahead()
        while ahead:
            entry, fetching = ahead.popleft()
            if entry.kind is FileKind.SYMLINK:
                assert fetching is not None
                target = os.fsdecode(await fetching)
                check_symlink_target(entry.path, target)
                await sink.write(entry_header(entry, target))
            elif fetching is not None:
                data = await fetching
                _check_length(entry, len(data))
                await sink.write(entry_header(entry) + data + _padding(len(data)))
            else:
                await sink.write(entry_header(entry))
                written = 0
                if entry.digest.size:
                    async for chunk in blobs.read(tenant, entry.digest, COPY_CHUNK):
                        written += len(chunk)
                        if written > entry.digest.size:
                            break
                        await sink.write(chunk)
                _check_length(entry, written)
                await sink.write(_padding(written))
            fetch_ahead()
        await sink.write(_end(sink.size))
        return await sink.finish()
    finally:
        for _, fetching in ahead:
            if fetching is not None:
                fetching.cancel()
        await asyncio.gather(*(f for _, f in ahead if f is not None), return_exceptions=True)
        await sink.close()
        os.close(fd)


def _check_length(entry: ManifestEntry, length: int) -> None:
    if length != entry.digest.size:
        raise Unavailable(f"blob {entry.digest} of {entry.path!r} gave {length} bytes, not {entry.digest.size}")


# ---- unpacking ---------------------------------------------------------------------------------------------


class Source(Protocol):
    """What the unpacker reads a pack from: a binary file, or anything with its `read`."""

    def read(self, n: int = -1, /) -> bytes: ...


class _Reader:
    """The pack's byte stream: hashed, and cut off past `limit` bytes (`why` says where the limit comes
    from)."""

    def __init__(self, source: Source, limit: int, why: str) -> None:
        self._source = source
        self._limit = limit
        self._why = why
        self.hasher = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = self._limit - self.size + 1
        data = self._source.read(n)
        self.size += len(data)
        if self.size > self._limit:
            raise PackError(f"snapshot pack is longer than {self._why} ({self._limit} bytes); refused")
        self.hasher.update(data)
        return data

    def drain(self) -> None:
        while self.read(COPY_CHUNK):
            pass


def _limit(entries: Sequence[ManifestEntry]) -> int:
    """The most bytes an honest pack of `entries` may have: data, padding, a header each with room for
    PAX records of the longest path and link target, and the end."""
    per_entry = 3 * BLOCK + 2 * (2 * MAX_PATH_BYTES + BLOCK)
    return sum(e.digest.size + BLOCK for e in entries) + len(entries) * per_entry + 2 * RECORD


_KINDS = {tarfile.LNKTYPE: "a hard link", tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device",
          tarfile.DIRTYPE: "a folder", tarfile.FIFOTYPE: "a FIFO", tarfile.CONTTYPE: "a contiguous file",
          tarfile.GNUTYPE_SPARSE: "a sparse file"}


@dataclass(frozen=True, slots=True)
class _Member:
    """A tar entry admitted for writing: its path, its kind, and what its bytes (a symlink's target)
    must hash to, when the caller knows it (None without a manifest)."""

    path: str
    kind: FileKind
    digest: Digest | None

    @property
    def mode(self) -> int:
        return 0o755 if self.kind is FileKind.EXECUTABLE else 0o644


def _kind_of(member: tarfile.TarInfo) -> FileKind:
    """FILE or SYMLINK (the executable bit is the caller's to tell); `PackError` for any other kind."""
    if member.type in (tarfile.REGTYPE, tarfile.AREGTYPE) and not member.issparse():
        return FileKind.FILE
    if member.type == tarfile.SYMTYPE:
        return FileKind.SYMLINK
    kind = _KINDS.get(member.type, f"of tar type {member.type!r}")
    raise PackError(f"snapshot pack refused: entry {member.name!r} is {kind}; packs hold only files and symlinks")


def _checked_name(member: tarfile.TarInfo) -> str:
    try:
        return check_relative_path(member.name, "pack entry")
    except InvalidArgument as exc:
        raise PackError(f"snapshot pack refused: {exc}") from None


class _Listed:
    """Entries checked against the manifest the caller holds: each must be in it, once, with its kind,
    size and digest, and all of it must be there."""

    def __init__(self, manifest: Manifest) -> None:
        self._entries = sorted_entries(manifest)
        self._wanted = {e.path: e for e in self._entries}
        self._seen: set[str] = set()
        self.limit = _limit(self._entries)
        self.why = "its manifest can explain"

    def prepare(self, folders: Folders) -> None:
        folders.make_all(self._entries)

    def admit(self, member: tarfile.TarInfo) -> _Member:
        name = _checked_name(member)
        if name in self._seen:
            raise PackError(f"snapshot pack refused: entry {name!r} appears twice")
        entry = self._wanted.get(name)
        if entry is None:
            raise PackError(f"snapshot pack refused: entry {name!r} is not in the manifest")
        self._seen.add(name)
        kind = _kind_of(member)
        if kind is FileKind.FILE:
            if entry.kind is FileKind.SYMLINK:
                raise PackError(f"snapshot pack refused: entry {name!r} is a file, the manifest says a symlink")
            if member.size != entry.digest.size:
                raise PackError(f"snapshot pack refused: entry {name!r} is {member.size} bytes, the manifest says "
                                f"{entry.digest.size}")
        elif entry.kind is not FileKind.SYMLINK:
            raise PackError(f"snapshot pack refused: entry {name!r} is a symlink, the manifest says a file")
        return _Member(name, entry.kind, entry.digest)

    def finish(self) -> None:
        if len(self._seen) != len(self._wanted):
            absent = sorted(set(self._wanted) - self._seen)
            raise PackError(f"snapshot pack lacks {len(absent)} entries of the manifest, such as {absent[0]!r}")


class _Unlisted:
    """Entries checked against the pack format alone (a sandbox holds only the pack's digest): sorted
    by path, so none appears twice; the executable bit taken from the mode; every symlink inside the
    workspace, on its own as it arrives and, at the end, all of them together (a link may go through
    another). The size stated with the digest bounds the stream."""

    def __init__(self, size: int) -> None:
        self._previous: bytes | None = None
        self._targets: dict[str, str] = {}
        self.limit = size
        self.why = "its stated size"

    def prepare(self, folders: Folders) -> None:
        pass

    def admit(self, member: tarfile.TarInfo) -> _Member:
        name = _checked_name(member)
        key = _path_bytes(name)
        if self._previous is not None and key <= self._previous:
            if key == self._previous:
                raise PackError(f"snapshot pack refused: entry {name!r} appears twice")
            raise PackError(f"snapshot pack refused: entry {name!r} is out of order (packs are sorted by path)")
        self._previous = key
        kind = _kind_of(member)
        if kind is FileKind.SYMLINK:
            self._targets[name] = member.linkname
        elif member.mode & 0o100:
            kind = FileKind.EXECUTABLE
        return _Member(name, kind, None)

    def finish(self) -> None:
        try:
            check_symlink_targets(self._targets)
        except InvalidArgument as exc:
            raise PackError(f"snapshot pack refused: {exc}") from None


def unpack(source: BinaryIO, manifest: Manifest, root: Path, *, expected: Digest | None = None,
           stop: threading.Event | None = None) -> Unpacked:
    """Blocking. Write the pack read from `source` into the (empty) folder `root`, checking every entry
    against `manifest` (see the module docstring); raises `PackError` naming the first bad entry. With
    `expected`, the pack's bytes must also hash to it (`Unavailable` otherwise: a damaged copy). `stop`
    ends the unpack early (after the current entry) with `InterruptedError`."""
    return _unpack(source, _Listed(manifest), root, expected, stop)


def unpack_unlisted(source: Source, root: Path, *, expected: Digest,
                    stop: threading.Event | None = None) -> Unpacked:
    """Blocking. `unpack` without the manifest, for a sandbox that holds only the pack's digest: each
    entry is checked against the format (paths, kinds, order, symlink targets; see `_Unlisted`), at
    most `expected.size` bytes are read, and the whole stream must hash to `expected` (`Unavailable`
    otherwise). That digest is the authority: the runner computed it over a pack it built from
    verified blobs, so a pack that matches it holds exactly the manifest's files. What was written
    before an error is left for the caller to remove."""
    return _unpack(source, _Unlisted(expected.size), root, expected, stop)


def _unpack(source: Source, rules: _Listed | _Unlisted, root: Path, expected: Digest | None,
            stop: threading.Event | None) -> Unpacked:
    reader = _Reader(source, rules.limit, rules.why)
    folders = Folders(root)
    entries = files = links = total = 0
    try:
        rules.prepare(folders)
        try:
            with tarfile.open(fileobj=reader, mode="r|", encoding="utf-8",  # type: ignore[call-overload]
                              errors="surrogateescape") as tar:
                while True:
                    if stop is not None and stop.is_set():
                        raise InterruptedError("unpacking was stopped")
                    member = tar.next()
                    if member is None:
                        break
                    entries += 1
                    admitted = rules.admit(member)
                    if admitted.kind is FileKind.SYMLINK:
                        _make_symlink(folders, admitted, member)
                        links += 1
                    else:
                        _write_file(folders, admitted, tar, member)
                        files += 1
                        total += member.size
        except tarfile.TarError as exc:
            raise PackError(f"snapshot pack is not a readable tar archive (after {entries} entries): {exc}") from exc
        rules.finish()
        if expected is not None:
            reader.drain()
            actual = Digest(reader.hasher.hexdigest(), reader.size)
            if actual != expected:
                raise Unavailable(f"snapshot pack {expected} is damaged: its bytes hash to {actual}")
    finally:
        folders.close()
    return Unpacked(files, links, total)


def _parent_and_name(folders: Folders, path: str) -> tuple[int, str]:
    """The entry's folder, made if needed (without a manifest, folders are made as entries arrive: one
    under a file or a symlink the pack made is refused, never followed)."""
    try:
        return folders.parent_and_name(path)
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            raise PackError(f"snapshot pack refused: entry {path!r} lies under a file or a symlink") from exc
        raise


def _make_symlink(folders: Folders, entry: _Member, member: tarfile.TarInfo) -> None:
    target = member.linkname
    if entry.digest is not None and Digest.of(os.fsencode(target)) != entry.digest:
        raise PackError(f"snapshot pack refused: symlink {entry.path!r} points to {target[:200]!r}, not to the "
                        "manifest's target")
    try:
        check_symlink_target(entry.path, target)
    except InvalidArgument as exc:
        raise PackError(f"snapshot pack refused: {exc}") from None
    parent, name = _parent_and_name(folders, entry.path)
    os.symlink(target, name, dir_fd=parent)


def _write_file(folders: Folders, entry: _Member, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
    parent, name = _parent_and_name(folders, entry.path)
    fd = os.open(name, FILE_FLAGS, entry.mode, dir_fd=parent)
    ok = False
    try:
        hasher = hashlib.sha256()
        data = tar.extractfile(member)
        if data is not None:
            with data:
                while chunk := data.read(COPY_CHUNK):
                    hasher.update(chunk)
                    write_all(fd, chunk)
        os.fchmod(fd, entry.mode)
        if entry.digest is not None and hasher.hexdigest() != entry.digest.hash:
            raise PackError(f"snapshot pack refused: the bytes of {entry.path!r} do not match the manifest's "
                            f"digest {entry.digest}")
        ok = True
    except tarfile.TarError as exc:
        raise PackError(f"snapshot pack is damaged in entry {entry.path!r}: {exc}") from exc
    finally:
        os.close(fd)
        if not ok:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=parent)


def unpack_file(path: Path, manifest: Manifest, root: Path, *, expected: Digest | None = None,
                stop: threading.Event | None = None) -> Unpacked:
    """Blocking. `unpack` from a local pack file."""
    with open(path, "rb") as source:
        return unpack(source, manifest, root, expected=expected, stop=stop)


async def unpack_in_thread(path: Path, manifest: Manifest, root: Path, *,
                           expected: Digest | None = None) -> Unpacked:
    """`unpack_file` in a thread of its own. A cancelled caller stops the unpack after its current entry
    and waits for it, so the folder can be removed without racing a write."""
    stop = threading.Event()
    runner: Callable[[], Unpacked] = lambda: unpack_file(path, manifest, root, expected=expected, stop=stop)  # noqa: E731
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="unpack")
    future = pool.submit(runner)
    try:
        return await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        stop.set()
        await asyncio.to_thread(concurrent.futures.wait, [future])
        raise
    finally:
        pool.shutdown(wait=False)
