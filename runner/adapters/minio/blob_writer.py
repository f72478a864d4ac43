"""`BlobWriter` of the `MinioBlobStore`: spool, verify, then one upload.

S3 has no "write now, publish later": an object exists from the moment its PUT (or the completion of
its multipart upload) succeeds. So the writer keeps the bytes itself until `commit`: in memory for a
blob of at most `IN_MEMORY_MAX` bytes, otherwise in a temp file (in the store's `spool_dir`) written in
pieces of at least `FLUSH_AT` bytes and hashed on the way. `commit` checks the size and SHA-256 against
the digest and only then uploads, in one step of the store's threads: a blob that does not match is
never sent, so nothing is stored and any object already under that key is untouched; a PUT that fails
half-way (MinIO down, connection cut) leaves no object, as S3 publishes only complete objects.

Over plain HTTP the client also signs the SHA-256 of each request body, so MinIO refuses bytes damaged
on the way; over TLS the connection protects them.

Blocking steps run in the store's threads and are awaited through `asyncio.shield`: a cancelled caller
leaves the step to finish, and `abort` waits for it before it removes the temp file.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Protocol

from runner.domain.errors import FailedPrecondition, InvalidArgument
from runner.domain.models import Digest

IN_MEMORY_MAX = 1 << 20
FLUSH_AT = 1 << 20


class Uploads(Protocol):
    """What a writer needs of its store."""

    spool_dir: Path | None

    def submit(self, fn: Callable[[], None]) -> concurrent.futures.Future[None]: ...

    def translate(self, exc: Exception, action: str) -> Exception:
        """The runner's error for an exception of a blocking step."""

    def upload(self, tenant: str, digest: Digest, data: BinaryIO) -> None:
        """Blocking: PUT verified bytes under the blob's key."""


def mismatch(digest: Digest, actual: str) -> InvalidArgument:
    return InvalidArgument(f"blob {digest}: the uploaded bytes hash to sha256:{actual}, not to the digest; "
                           "nothing was stored")


class MinioBlobWriter:
    """One blob being written (`BlobWriter`); made by `MinioBlobStore.writer`. Its operations are
    awaited one after the other, not from several coroutines at once."""

    def __init__(self, store: Uploads, tenant: str, digest: Digest) -> None:
        self._store = store
        self._tenant = tenant
        self._digest = digest
        self._in_memory = digest.size <= IN_MEMORY_MAX
        self._chunks: list[bytes] = []
        self._pending = 0  # bytes in _chunks
        self._received = 0
        self._state = "open"
        self._hasher = hashlib.sha256()  # of the bytes flushed to the temp file
        self._fd = -1
        self._tmp = ""
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
        if not self._in_memory and self._pending >= FLUSH_AT:
            await self._run(self._flush(), "spooling a blob to a temp file")

    async def commit(self) -> None:
        if self._state == "committed":
            return
        self._check_open()
        if self._received != self._digest.size:
            await self.abort()
            raise InvalidArgument(f"blob {self._digest}: {self._received} bytes were sent, the digest says "
                                  f"{self._digest.size}; nothing was stored")
        try:
            await self._run(self._finish(), f"storing blob {self._digest}")
        except BaseException:
            self._state = "failed"
            await self._discard()
            raise
        self._state = "committed"
        await self._discard()

    async def abort(self) -> None:
        if self._state in ("committed", "aborted"):
            return
        self._state = "aborted"
        self._chunks, self._pending = [], 0
        await self._discard()

    # ---- internals -------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state != "open":
            raise FailedPrecondition(f"the writer of blob {self._digest} is already {self._state}")

    async def _run(self, fn: Callable[[], None], action: str) -> None:
        self._inflight = asyncio.wrap_future(self._store.submit(fn))
        try:
            await asyncio.shield(self._inflight)
        except Exception as exc:
            error = self._store.translate(exc, action)
            if error is exc:
                raise
            raise error from exc

    def _flush(self) -> Callable[[], None]:
        """The blocking step that appends the chunks received so far to the temp file."""
        chunks, self._chunks, self._pending = self._chunks, [], 0

        def flush() -> None:
            if self._fd < 0:
                self._fd, self._tmp = tempfile.mkstemp(prefix="codex-blob-", dir=self._store.spool_dir)
            for chunk in chunks:
                self._hasher.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(self._fd, view):]
        return flush

    def _finish(self) -> Callable[[], None]:
        """The blocking step that verifies everything received and uploads it."""
        if self._in_memory:
            chunks, self._chunks, self._pending = self._chunks, [], 0

            def upload_from_memory() -> None:
                data = b"".join(chunks)
                actual = hashlib.sha256(data).hexdigest()
                if actual != self._digest.hash:
                    raise mismatch(self._digest, actual)
                self._store.upload(self._tenant, self._digest, io.BytesIO(data))
            return upload_from_memory

        flush = self._flush()

        def upload_from_file() -> None:
            flush()
            actual = self._hasher.hexdigest()
            if actual != self._digest.hash:
                raise mismatch(self._digest, actual)
            with open(self._tmp, "rb") as source:
                self._store.upload(self._tenant, self._digest, source)
        return upload_from_file

    async def _discard(self) -> None:
        if self._inflight is not None:
            if not self._inflight.done():
                await asyncio.wait([self._inflight])
            if not self._inflight.cancelled():
                self._inflight.exception()  # retrieved: its caller saw it already (or was cancelled)
        if self._fd < 0 and not self._tmp:
            return
        fd, tmp = self._fd, self._tmp
        self._fd, self._tmp = -1, ""
        if fd >= 0:
            os.close(fd)
        if tmp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)  # one cheap syscall; not worth a thread hop
