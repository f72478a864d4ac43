"""What the blob writers of both stores share: taking a blob's bytes, spooling them, and the writer's
life from open to committed, aborted or failed.

A writer keeps a blob of at most `buffered_max` bytes in memory until `commit`; a larger one goes to a
temp file in pieces of at least `flush_at` bytes, hashed on the way (`_append`, `_check_hash`). More
bytes than the digest's size, or fewer at `commit`, abort the writer, and nothing is stored unless the
bytes match the digest. Each store's subclass says how its blocking steps run (the store's threads),
where its temp files live, and what `commit` does with verified bytes: publish a file under its name
(`FsBlobWriter`) or upload an object (`MinioBlobWriter`).

Every blocking step is awaited through `asyncio.shield` (`_step`): a cancelled caller leaves the step
to finish, and cleaning up (`abort`, a failed `commit`) waits for it first, so a temp file is never
closed or removed under a running write.
"""

from __future__ import annotations

import asyncio
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from runner.adapters.blob_checks import mismatch, too_many_bytes, wrong_size
from runner.domain.errors import FailedPrecondition
from runner.domain.models import Digest
from runner.snapshots.folders import write_all


class SpoolingBlobWriter(ABC):
    """One blob being written (`BlobWriter`). Its operations are awaited one after the other, not from
    several coroutines at once. `new_temp` is blocking and returns a new temp file open for writing,
    as (fd, path)."""

    def __init__(self, digest: Digest, *, buffered_max: int, flush_at: int,
                 new_temp: Callable[[], tuple[int, str]]) -> None:
        self._digest = digest
        self._buffered = digest.size <= buffered_max
        self._flush_at = flush_at
        self._new_temp = new_temp
        self._chunks: list[bytes] = []
        self._pending = 0  # bytes in _chunks
        self._received = 0
        self._state = "open"
        # Spooling: the temp file, and the running hash of what was appended to it.
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
            raise too_many_bytes(self._digest)
        self._chunks.append(bytes(data))
        self._pending += len(data)
        if not self._buffered and self._pending >= self._flush_at:
            await self._flush_pending()

    async def commit(self) -> None:
        if self._state == "committed":
            return
        self._check_open()
        if self._received != self._digest.size:
            await self.abort()
            raise wrong_size(self._digest, self._received)
        try:
            await self._publish()
        except BaseException:
            self._state = "failed"
            await self._clean_up()
            raise
        self._state = "committed"
        await self._after_commit()

    async def abort(self) -> None:
        if self._state in ("committed", "aborted"):
            return
        self._state = "aborted"
        self._chunks, self._pending = [], 0
        await self._clean_up()

    # ---- what a store's writer does its own way --------------------------------------------------------

    @abstractmethod
    async def _flush_pending(self) -> None:
        """Append the chunks received so far to the temp file, in a blocking step (see `_append`)."""

    @abstractmethod
    async def _publish(self) -> None:
        """Verify everything received and store it, in a blocking step; `commit` runs it."""

    @abstractmethod
    async def _after_commit(self) -> None:
        """What follows a successful `_publish`."""

    @abstractmethod
    async def _remove_temp(self) -> None:
        """Close and remove the temp file (see `_take_temp`); no step is running any more."""

    # ---- for the subclasses ----------------------------------------------------------------------------

    async def _step(self, running: asyncio.Future[None]) -> None:
        """Await a blocking step; a cancelled caller leaves it running, and `_clean_up` waits for it."""
        self._inflight = running
        await asyncio.shield(running)

    def _take_chunks(self) -> list[bytes]:
        chunks, self._chunks, self._pending = self._chunks, [], 0
        return chunks

    def _append(self, chunks: Sequence[bytes]) -> None:
        """Blocking: append chunks to the temp file (made on first use) and to its running hash."""
        if self._fd < 0:
            self._fd, self._tmp = self._new_temp()
        for chunk in chunks:
            self._hasher.update(chunk)
            write_all(self._fd, chunk)

    def _check_hash(self) -> None:
        """Blocking: raise `mismatch` unless the temp file's bytes hash to the digest."""
        actual = self._hasher.hexdigest()
        if actual != self._digest.hash:
            raise mismatch(self._digest, actual)

    def _take_temp(self) -> tuple[int, str] | None:
        """The temp file's descriptor and path (-1 or "" where closed or removed already), now the
        caller's to close and remove; None when there is nothing left of it."""
        if self._fd < 0 and not self._tmp:
            return None
        taken = self._fd, self._tmp
        self._fd, self._tmp = -1, ""
        return taken

    # ---- internals -------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state != "open":
            raise FailedPrecondition(f"the writer of blob {self._digest} is already {self._state}")

    async def _clean_up(self) -> None:
        if self._inflight is not None:
            if not self._inflight.done():
                await asyncio.wait([self._inflight])
            if not self._inflight.cancelled():
                self._inflight.exception()  # retrieved: its caller saw it already (or was cancelled)
        await self._remove_temp()
