"""`BlobWriter` of the `FsBlobStore`: one blob on its way into the store.

A blob of at most `_BUFFERED_MAX` bytes stays in memory until `commit`, which hashes, writes and
publishes it in one operation of the store's I/O threads, grouped with other writers' commits
(`io_batch`): a first upload of many small files costs about one thread hop per batch, not three per
file. A larger blob is streamed to a temp file in pieces of at least `_FLUSH_AT` bytes, hashed on the
way, and published by `commit` once the hash matches.

Every blocking step runs in the I/O threads and is awaited through `asyncio.shield`: a cancelled caller
leaves the step to finish, and `abort` waits for it before it closes and removes the temp file, so a
file descriptor is never closed under a running write.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable

from runner.adapters.embedded.blob_files import BlobFiles, mismatch, unlink_quietly, write_all
from runner.adapters.embedded.io_batch import BatchRunner
from runner.domain.errors import FailedPrecondition, InvalidArgument
from runner.domain.models import Digest

_BUFFERED_MAX = 1 << 20
_FLUSH_AT = 1 << 20


class FsBlobWriter:
    """One blob being written (`BlobWriter`). A writer's operations are awaited one after the other; it
    is not meant for several coroutines at once. Made by `FsBlobStore.writer`."""

    def __init__(self, files: BlobFiles, io: BatchRunner, tenant: str, digest: Digest,
                 open_writers: set[FsBlobWriter], on_stored: Callable[[str], None]) -> None:
        self._files = files
        self._io = io
        self._tenant = tenant
        self._digest = digest
        # Writers with a temp file, which the store aborts when it closes.
        self._open_writers = open_writers
        self._on_stored = on_stored
        self._buffered = digest.size <= _BUFFERED_MAX
        self._chunks: list[bytes] = []
        self._pending = 0  # bytes in _chunks
        self._received = 0
        self._state = "open"
        # Streaming mode: the temp file, and the running hash of what was flushed to it.
        self._fd = -1
        self._tmp = ""
        self._hasher = hashlib.sha256()
        self._inflight: asyncio.Future[None] | None = None

    @property
    def digest(self) -> Digest:
        return self._digest

    async def write(self, data: bytes) -> None:
        self._check_open()
        if not data:
            return
        self._received += len(data)
        if self._received > self._digest.size:
            await self.abort()
            raise InvalidArgument(f"blob {self._digest}: more than {self._digest.size} bytes were sent; "
                                  "nothing was stored")
        self._chunks.append(bytes(data))
        self._pending += len(data)
        if not self._buffered and self._pending >= _FLUSH_AT:
            await self._run(self._flush(), self._pending)

    async def commit(self) -> None:
        if self._state == "committed":
            return
        self._check_open()
        if self._received != self._digest.size:
            await self.abort()
            raise InvalidArgument(f"blob {self._digest}: {self._received} bytes were sent, the digest says "
                                  f"{self._digest.size}; nothing was stored")
        try:
            if self._buffered:
                chunks, self._chunks, self._pending = self._chunks, [], 0
                await self._run(lambda: self._files.store(self._tenant, self._digest, chunks), self._digest.size)
            else:
                await self._run(self._finish(), self._pending)
        except BaseException:
            self._state = "failed"
            await self._discard_tmp()
            raise
        self._state = "committed"
        self._open_writers.discard(self)
        self._on_stored(self._tenant)

    async def abort(self) -> None:
        if self._state in ("committed", "aborted"):
            return
        self._state = "aborted"
        self._chunks, self._pending = [], 0
        await self._discard_tmp()

    # ---- internals -------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state != "open":
            raise FailedPrecondition(f"the writer of blob {self._digest} is already {self._state}")

    async def _run(self, fn: Callable[[], None], nbytes: int) -> None:
        self._inflight = self._io.submit(fn, nbytes)
        await asyncio.shield(self._inflight)

    def _flush(self) -> Callable[[], None]:
        """The blocking step that appends the chunks received so far to the temp file."""
        chunks, self._chunks, self._pending = self._chunks, [], 0
        self._open_writers.add(self)

        def flush() -> None:
            if self._fd < 0:
                self._fd, self._tmp = self._files.new_tmp()
            for chunk in chunks:
                self._hasher.update(chunk)
            write_all(self._fd, chunks)
        return flush

    def _finish(self) -> Callable[[], None]:
        """The blocking step that flushes the rest, checks the hash and publishes the temp file."""
        flush = self._flush()

        def finish() -> None:
            flush()
            actual = self._hasher.hexdigest()
            if actual != self._digest.hash:
                raise mismatch(self._digest, actual)
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

    async def _discard_tmp(self) -> None:
        if self._inflight is not None:
            if not self._inflight.done():
                await asyncio.wait([self._inflight])
            if not self._inflight.cancelled():
                self._inflight.exception()  # retrieved: its caller already saw it (or was cancelled)
        self._open_writers.discard(self)
        if self._fd < 0 and not self._tmp:
            return
        fd, tmp = self._fd, self._tmp
        self._fd, self._tmp = -1, ""

        def discard() -> None:
            if fd >= 0:
                os.close(fd)
            if tmp:
                unlink_quietly(tmp)
        await self._io.run(discard)
