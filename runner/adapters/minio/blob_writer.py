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

Blocking steps run in the store's threads. What every blob writer does (the size checks, spooling and
hashing, waiting for a step before removing the temp file) is in `runner.adapters.blob_writing`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Protocol

from runner.adapters.blob_checks import verify
from runner.adapters.blob_writing import SpoolingBlobWriter
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


class MinioBlobWriter(SpoolingBlobWriter):
    """One blob being written (`BlobWriter`); made by `MinioBlobStore.writer`."""

    def __init__(self, store: Uploads, tenant: str, digest: Digest) -> None:
        super().__init__(digest, buffered_max=IN_MEMORY_MAX, flush_at=FLUSH_AT,
                         new_temp=lambda: tempfile.mkstemp(prefix="codex-blob-", dir=store.spool_dir))
        self._store = store
        self._tenant = tenant

    async def _flush_pending(self) -> None:
        await self._run(self._flush(), "spooling a blob to a temp file")

    async def _publish(self) -> None:
        await self._run(self._finish(), f"storing blob {self._digest}")

    async def _after_commit(self) -> None:
        await self._clean_up()

    async def _remove_temp(self) -> None:
        taken = self._take_temp()
        if taken is None:
            return
        fd, tmp = taken
        if fd >= 0:
            os.close(fd)
        if tmp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)  # one cheap syscall; not worth a thread hop

    # ---- internals -------------------------------------------------------------------------------------

    async def _run(self, fn: Callable[[], None], action: str) -> None:
        try:
            await self._step(asyncio.wrap_future(self._store.submit(fn)))
        except Exception as exc:
            error = self._store.translate(exc, action)
            if error is exc:
                raise
            raise error from exc

    def _flush(self) -> Callable[[], None]:
        """The blocking step that appends the chunks received so far to the temp file."""
        chunks = self._take_chunks()
        return lambda: self._append(chunks)

    def _finish(self) -> Callable[[], None]:
        """The blocking step that verifies everything received and uploads it."""
        if self._buffered:
            chunks = self._take_chunks()

            def upload_from_memory() -> None:
                data = b"".join(chunks)
                verify(self._digest, data)
                self._store.upload(self._tenant, self._digest, io.BytesIO(data))
            return upload_from_memory

        flush = self._flush()

        def upload_from_file() -> None:
            flush()
            self._check_hash()
            with open(self._tmp, "rb") as source:
                self._store.upload(self._tenant, self._digest, source)
        return upload_from_file
