"""`BlobStore` on the local filesystem: the embedded runner's content-addressed store.

This is the async face; the folder's layout, verified publishing and verified reading are in
`blob_files`, writers in `fs_blob_writer`, and the cache that answers `find_missing` in a few
milliseconds for 10,000 digests in `blob_index`. Every blocking step runs in the store's own I/O
threads (`io_batch`), small ones grouped into one thread hop.

Guarantees: nothing is visible before a writer's `commit` verified it; a stored blob is never
overwritten; reads verify the bytes as they stream and a damaged blob raises `Unavailable` and is set
aside (then reported missing, so the next upload repairs it). Without `fsync=True` the store survives a
crash of the process (the page cache survives) but not necessarily a power cut; verified reads catch
what a power cut could leave.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from runner.adapters.blob_checks import check_blob_size, verify
from runner.adapters.embedded.blob_files import BlobFiles, check_tenant, damaged
from runner.adapters.embedded.blob_index import BlobIndex
from runner.adapters.embedded.fs_blob_writer import FsBlobWriter
from runner.adapters.embedded.io_batch import BatchRunner
from runner.closing import AsyncClosing
from runner.domain.errors import InvalidArgument, NotFound, Unavailable
from runner.domain.models import Digest

log = logging.getLogger(__name__)

# The blob index re-lists a tenant's folders once no blob was stored for this long (see `blob_index`).
_REFRESH_AFTER_S = 0.25


class FsBlobStore(AsyncClosing):
    """Content-addressed blobs in a local folder, one namespace per tenant. See the module docstring."""

    def __init__(self, root: Path, max_blob_size: int, *, io_threads: int = 4, fsync: bool = False,
                 index_max_names: int = 200_000) -> None:
        self.root = Path(root)
        self.max_blob_size = max_blob_size
        self._files = BlobFiles(self.root, fsync)
        self._io = BatchRunner(lanes=io_threads, name="blob-io")
        self._index = BlobIndex(index_max_names)
        self._writers: set[FsBlobWriter] = set()
        self._closed = False
        # Tenants' store folders written since their listings were last refreshed, and the timer
        # that refreshes them once writes pause.
        self._written: set[str] = set()
        self._refresh_timer: asyncio.TimerHandle | None = None

    async def close(self) -> None:
        """Abort writers still open, wait for queued file operations, stop the I/O threads."""
        if self._closed:
            return
        self._closed = True
        if self._refresh_timer is not None:
            self._refresh_timer.cancel()
        for writer in list(self._writers):
            await writer.abort()
        await self._io.close()

    # ---- BlobStore -------------------------------------------------------------------------------------

    async def find_missing(self, tenant: str, digests: Sequence[Digest]) -> list[Digest]:
        store_dir = self._files.store_dir(tenant)
        return await self._io.run(lambda: self._index.missing(store_dir, digests), nbytes=len(digests) * 64)

    async def writer(self, tenant: str, digest: Digest) -> FsBlobWriter:
        check_tenant(tenant)
        check_blob_size(digest.size, digest, self.max_blob_size)
        self._check_open()
        return FsBlobWriter(self._files, self._io, tenant, digest, self._writers, self._stored)

    async def put_bytes(self, tenant: str, data: bytes) -> Digest:
        check_tenant(tenant)
        check_blob_size(len(data), None, self.max_blob_size)
        self._check_open()
        digest = await self._io.run(lambda: self._files.put(tenant, data), nbytes=len(data))
        self._stored(tenant)
        return digest

    async def put_many(self, tenant: str, items: Sequence[tuple[Digest, bytes]]) -> None:
        check_tenant(tenant)
        for digest, _ in items:
            check_blob_size(digest.size, digest, self.max_blob_size)
        self._check_open()

        def store_all() -> None:
            for digest, data in items:
                verify(digest, data)
            for digest, data in items:
                self._files.write_and_publish(tenant, digest, (data,))

        await self._io.run(store_all, nbytes=sum(d.size for d, _ in items))
        self._stored(tenant)

    async def read(self, tenant: str, digest: Digest, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        if chunk_size <= 0:
            raise InvalidArgument(f"chunk size {chunk_size} must be positive")
        check_tenant(tenant)
        self._check_open()
        # The file descriptor is closed only once no I/O thread uses it any more: closing it under a
        # running read could let the number be reused by another open file, which that read would then
        # consume. A reader that is cancelled or stops early leaves the closing to the pending read.
        opening = self._io.submit(lambda: self._files.open(tenant, digest, chunk_size),
                                  nbytes=min(digest.size, chunk_size))
        try:
            first = await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(_close_opened)
            raise
        if isinstance(first, bytes):  # small enough to have been read and verified in one hop
            if first:
                yield first
            return
        fd = first
        hasher = hashlib.sha256()
        size = 0
        reading: asyncio.Future[bytes] | None = None
        try:
            while True:
                reading = self._io.submit(lambda: self._files.read_chunk(fd, chunk_size, hasher), nbytes=chunk_size)
                chunk = await asyncio.shield(reading)
                if not chunk:
                    break
                size += len(chunk)
                yield chunk
        finally:
            if reading is not None and not reading.done():
                reading.add_done_callback(functools.partial(_close_after, fd))
            else:
                os.close(fd)  # a single cheap syscall; not worth a hop
        if hasher.hexdigest() != digest.hash or size != digest.size:
            await self._io.run(lambda: self._files.quarantine(tenant, digest))
            raise damaged(tenant, digest)

    async def get_bytes(self, tenant: str, digest: Digest) -> bytes:
        check_tenant(tenant)
        self._check_open()
        data = await self._io.run(lambda: self._files.open(tenant, digest, max(digest.size, 1)), nbytes=digest.size)
        assert isinstance(data, bytes)  # whole blob fits in one chunk by construction
        return data

    # ---- embedded-only helpers for the local executor ---------------------------------------------------

    def path_of(self, tenant: str, digest: Digest) -> Path:
        """Blocking, embedded-only. The stored file of a blob (raises `NotFound`). The file is shared by
        every task of the tenant: never modify it, and never hard-link it into a writable workspace."""
        path = self._files.path(tenant, digest)
        if not os.access(path, os.F_OK):
            raise NotFound(f"blob {digest} is not stored for tenant {tenant!r}")
        return Path(path)

    def copy_to(self, tenant: str, digest: Digest, dest: Path, *, mode: int = 0o644, verify: bool = False) -> None:
        """Blocking, embedded-only. Copy a blob to a new file `dest` (created with `mode`; refuses to
        follow or replace an existing file or symlink). The copy is done in the kernel
        (`copy_file_range`) unless `verify=True`, which hashes the bytes on the way and raises
        `Unavailable` (removing `dest`) on a mismatch. Blobs are verified when stored, so the fast copy
        is normally enough; `read`/`get_bytes` always verify. Raises `NotFound`."""
        self._files.copy_to(tenant, digest, dest, mode, verify)

    # ---- internals -------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the blob store is closed")

    def _stored(self, tenant: str) -> None:
        """A blob was stored for `tenant`: refresh its listings once writes pause."""
        self._written.add(self._files.store_dir(tenant))
        if self._refresh_timer is not None:
            self._refresh_timer.cancel()
        self._refresh_timer = asyncio.get_running_loop().call_later(_REFRESH_AFTER_S, self._refresh_written)

    def _refresh_written(self) -> None:
        self._refresh_timer = None
        if self._closed:
            return
        folders, self._written = list(self._written), set()

        def refresh() -> None:
            for folder in folders:
                self._index.refresh(folder)

        self._io.submit(refresh, nbytes=len(folders) << 20).add_done_callback(_log_refresh_failure)


def _log_refresh_failure(done: asyncio.Future[None]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.warning("could not refresh the blob index", exc_info=done.exception())


def _close_after(fd: int, pending: asyncio.Future[bytes]) -> None:
    if not pending.cancelled():
        pending.exception()  # retrieved: nobody awaits it any more
    os.close(fd)


def _close_opened(opening: asyncio.Future[bytes | int]) -> None:
    if not opening.cancelled() and opening.exception() is None and isinstance(fd := opening.result(), int):
        os.close(fd)
