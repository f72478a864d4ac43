"""Writing a snapshot into a sandbox's workspace folder on the host.

The workspace is a private, writable copy: every file is copied out of the BlobStore (never hard-linked
to a CAS blob, which the sandbox could then modify), created with its mode (0644, or 0755 for
executables, whatever the umask), symlinks with their stored targets, parent folders as needed.

The manifest was validated when the task was created; the checks are repeated here because this is
where a bad path would do harm. Folders are created and opened through folder descriptors with
`O_NOFOLLOW`, files with `O_EXCL | O_NOFOLLOW` relative to them, so no entry can be written through a
symlink, even one the manifest itself made.

Three ways to copy, same result:

* a store that can copy a blob straight into a file (`CopiesBlobsToFiles`: the embedded filesystem
  store's `copy_to`, a kernel-side copy) is driven from a few threads; the destination is named through
  `/proc/self/fd/<folder fd>/<name>`, so it still resolves relative to the folder descriptor;
* a store that keeps packed snapshots (`HasPacks`: MinIO) is read through the snapshot's pack, one
  object fetched and unpacked instead of a GET per file (`runner.snapshots.packs`: the pack is built
  once per manifest and tenant, the first time, from the blobs);
* any other `BlobStore` is streamed with `read`, a few blobs at a time so latency overlaps.

A cancelled materialisation stops its threads after their current file and waits for them, so the
caller can remove the folder without racing a copy.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import posixpath
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from runner.domain.models import Digest, FileKind, Manifest, ManifestEntry
from runner.domain.paths import check_relative_path, check_symlink_target
from runner.ports import BlobStore
from runner.snapshots.folders import FILE_FLAGS, Folders, file_mode, write_all
from runner.snapshots.packs import HasPacks, Packs

# Blobs streamed at a time from a store without `copy_to`.
_STREAMS = 8
# Threads copying with `copy_to`; fewer for small snapshots (a thread costs more than a few copies).
_COPY_THREADS = 4
_FILES_PER_THREAD = 64
# A snapshot this small is written from the event loop itself: a few hundred microseconds of system
# calls cost less than a hop to a thread, which is on the critical path of every task's start.
_INLINE_FILES = 64
_INLINE_BYTES = 4 << 20


@runtime_checkable
class CopiesBlobsToFiles(Protocol):
    """A store that can copy a blob into a new file itself (blocking; refuses an existing `dest`)."""

    def copy_to(self, tenant: str, digest: Digest, dest: Path, *, mode: int = 0o644,
                verify: bool = False) -> None: ...


@dataclass(frozen=True, slots=True)
class Materialized:
    files: int
    symlinks: int
    bytes: int


def _create_empty(entry: ManifestEntry, parent: int, name: str) -> None:
    fd = os.open(name, FILE_FLAGS, file_mode(entry), dir_fd=parent)
    try:
        os.fchmod(fd, file_mode(entry))
    finally:
        os.close(fd)


def _copy_batch(store: CopiesBlobsToFiles, tenant: str, batch: Sequence[tuple[ManifestEntry, int, str]],
                stop: threading.Event) -> None:
    for entry, parent, name in batch:
        if stop.is_set():
            return
        if not entry.digest.size:
            _create_empty(entry, parent, name)
            continue
        store.copy_to(tenant, entry.digest, Path(f"/proc/self/fd/{parent}/{name}"), mode=file_mode(entry))
        os.chmod(name, file_mode(entry), dir_fd=parent)  # exact mode whatever the umask; a file we just made


async def _copy_files(store: CopiesBlobsToFiles, tenant: str, files: Sequence[ManifestEntry],
                      folders: Folders) -> None:
    work = [(e, folders.fd(posixpath.dirname(e.path)), posixpath.basename(e.path)) for e in files]
    if len(work) <= _INLINE_FILES and sum(e.digest.size for e in files) <= _INLINE_BYTES:
        _copy_batch(store, tenant, work, threading.Event())
        return
    threads = max(1, min(_COPY_THREADS, len(work) // _FILES_PER_THREAD))
    stop = threading.Event()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="materialize")
    futures = [pool.submit(_copy_batch, store, tenant, work[i::threads], stop) for i in range(threads)]
    try:
        await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
    except BaseException:
        stop.set()
        await asyncio.to_thread(concurrent.futures.wait, futures)
        raise
    finally:
        pool.shutdown(wait=False)


async def _stream_file(blobs: BlobStore, tenant: str, entry: ManifestEntry, parent: int, name: str) -> None:
    fd = os.open(name, FILE_FLAGS, file_mode(entry), dir_fd=parent)
    try:
        if entry.digest.size:
            async for chunk in blobs.read(tenant, entry.digest):
                write_all(fd, chunk)
        os.fchmod(fd, file_mode(entry))
    finally:
        os.close(fd)


async def _stream_files(blobs: BlobStore, tenant: str, files: Sequence[ManifestEntry], folders: Folders) -> None:
    pending = iter(files)

    async def worker() -> None:
        for entry in pending:  # one shared iterator: each entry is taken by exactly one worker
            await _stream_file(blobs, tenant, entry, folders.fd(posixpath.dirname(entry.path)),
                               posixpath.basename(entry.path))

    async with asyncio.TaskGroup() as group:
        for _ in range(min(_STREAMS, len(files))):
            group.create_task(worker())


def _packs_of(blobs: object) -> Packs | None:
    """The packs of a store that keeps them and cannot copy blobs into files itself."""
    if isinstance(blobs, CopiesBlobsToFiles) or not isinstance(blobs, HasPacks):
        return None
    return blobs.packs


async def materialize(blobs: BlobStore, tenant: str, manifest: Manifest, root: Path, *,
                      packs: Packs | None = None) -> Materialized:
    """Write every entry of `manifest` under the (empty) folder `root`. `packs` (default: the store's
    own, when it keeps packs) makes it go through the snapshot's pack."""
    entries = sorted(manifest.entries, key=lambda e: e.path)
    for entry in entries:
        check_relative_path(entry.path, "manifest path")
    files = [e for e in entries if e.kind is not FileKind.SYMLINK]
    links = [e for e in entries if e.kind is FileKind.SYMLINK]
    if packs is None:
        packs = _packs_of(blobs)
    if packs is not None and entries:
        done = await packs.materialize(tenant, manifest, root)
        return Materialized(done.files, done.symlinks, done.bytes)
    folders = Folders(root)
    try:
        if len(entries) <= _INLINE_FILES:
            folders.make_all(entries)
        else:
            await asyncio.to_thread(folders.make_all, entries)
        for entry in links:
            target = os.fsdecode(await blobs.get_bytes(tenant, entry.digest))
            check_symlink_target(entry.path, target)
            os.symlink(target, posixpath.basename(entry.path), dir_fd=folders.fd(posixpath.dirname(entry.path)))
        try:
            if isinstance(blobs, CopiesBlobsToFiles):
                await _copy_files(blobs, tenant, files, folders)
            else:
                await _stream_files(blobs, tenant, files, folders)
        except BaseExceptionGroup as group:
            # A TaskGroup's failure: raise the first real error (missing blob, bad path) itself, so callers
            # see its class (permanent or temporary) and its own __cause__.
            first = group.exceptions[0]
            raise first  # noqa: B904
    finally:
        folders.close()
    return Materialized(len(files), len(links), sum(e.digest.size for e in files))
