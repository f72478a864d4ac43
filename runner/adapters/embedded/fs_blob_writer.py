"""`BlobWriter` of the `FsBlobStore`: one blob on its way into the store.

A blob of at most `_BUFFERED_MAX` bytes stays in memory until `commit`, which hashes, writes and
publishes it in one operation of the store's I/O threads, grouped with other writers' commits
(`io_batch`): a first upload of many small files costs about one thread hop per batch, not three per
file. A larger blob is streamed to a temp file in pieces of at least `_FLUSH_AT` bytes, hashed on the
way, and published by `commit` once the hash matches.

Every blocking step runs in the I/O threads. What every blob writer does (the size checks, spooling and
hashing, waiting for a step before closing and removing the temp file) is in
`runner.adapters.blob_writing`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from runner.adapters.blob_writing import SpoolingBlobWriter
from runner.adapters.embedded.blob_files import BlobFiles, unlink_quietly
from runner.adapters.embedded.io_batch import BatchRunner
from runner.domain.models import Digest

_BUFFERED_MAX = 1 << 20
_FLUSH_AT = 1 << 20


class FsBlobWriter(SpoolingBlobWriter):
    """One blob being written (`BlobWriter`); made by `FsBlobStore.writer`."""

    def __init__(self, files: BlobFiles, io: BatchRunner, tenant: str, digest: Digest,
                 open_writers: set[FsBlobWriter], on_stored: Callable[[str], None]) -> None:
        super().__init__(digest, buffered_max=_BUFFERED_MAX, flush_at=_FLUSH_AT, new_temp=files.new_tmp)
        self._files = files
        self._io = io
        self._tenant = tenant
        # Writers with a temp file, which the store aborts when it closes.
        self._open_writers = open_writers
        self._on_stored = on_stored

    async def _flush_pending(self) -> None:
        pending = self._pending  # read before `_flush` takes the chunks and resets it
        await self._run(self._flush(), pending)

    async def _publish(self) -> None:
        if self._buffered:
            chunks = self._take_chunks()
            await self._run(lambda: self._files.store(self._tenant, self._digest, chunks), self._digest.size)
        else:
            pending = self._pending
            await self._run(self._finish(), pending)

    async def _after_commit(self) -> None:
        self._open_writers.discard(self)
        self._on_stored(self._tenant)

    async def _remove_temp(self) -> None:
        self._open_writers.discard(self)
        taken = self._take_temp()
        if taken is None:
            return
        fd, tmp = taken

        def discard() -> None:
            if fd >= 0:
                os.close(fd)
            if tmp:
                unlink_quietly(tmp)
        await self._io.run(discard)

    # ---- internals -------------------------------------------------------------------------------------

    async def _run(self, fn: Callable[[], None], nbytes: int) -> None:
        await self._step(self._io.submit(fn, nbytes))

    def _flush(self) -> Callable[[], None]:
        """The blocking step that appends the chunks received so far to the temp file."""
        chunks = self._take_chunks()
        self._open_writers.add(self)
        return lambda: self._append(chunks)

    def _finish(self) -> Callable[[], None]:
        """The blocking step that flushes the rest, checks the hash and publishes the temp file."""
        flush = self._flush()

        def finish() -> None:
            flush()
            self._check_hash()
            if self._files.fsync:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            try:
                self._files.publish(self._tmp, self._tenant, self._digest)
            finally:
                unlink_quietly(self._tmp)
                self._tmp = ""
        return finish
