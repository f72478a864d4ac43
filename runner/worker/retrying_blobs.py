"""The worker's view of the blob store: writes and small reads retried through a short outage.

A task that has run for minutes must not be thrown away because MinIO was down for the few seconds in
which its outputs were being stored. `RetryingBlobStore` wraps any `BlobStore` and retries calls that
fail with `Unavailable` (a temporary error of the store), with exponential backoff, for at most
`budget_s` per call; after that the error goes up as before (the worker then hands the task back to
the queue with a delay). Only the worker uses it: the API answers its clients UNAVAILABLE at once.

A writer cannot be replayed from the caller, so `RetryingWriter` keeps what was written in a spooled
temporary file (in memory up to 8 MiB) and writes it to the store at `commit`, starting over on a fresh
inner writer when an attempt fails. Digest checks stay with the inner store: a mismatch is a
`PermanentError` and is never retried.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

from runner.domain.errors import InvalidArgument, Unavailable
from runner.domain.models import Digest
from runner.ports import BlobStore, BlobWriter

log = logging.getLogger(__name__)

T = TypeVar("T")

SPOOL_IN_MEMORY = 8 << 20
COPY_CHUNK = 1 << 20


class RetryingBlobStore:
    def __init__(self, inner: BlobStore, *, budget_s: float = 60.0, first_delay_s: float = 0.2,
                 max_delay_s: float = 5.0) -> None:
        self._inner = inner
        self.max_blob_size = inner.max_blob_size
        self._budget_s = budget_s
        self._first_delay_s = first_delay_s
        self._max_delay_s = max_delay_s

    @property
    def inner(self) -> BlobStore:
        return self._inner

    async def retry(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._budget_s
        delay = self._first_delay_s
        tries = 0
        while True:
            tries += 1
            try:
                result = await call()
            except Unavailable as exc:
                if loop.time() + delay > deadline:
                    raise
                log.warning("blob store unavailable; retrying", extra={"op": what, "try": tries,
                                                                       "delay_s": delay, "error": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_delay_s)
                continue
            if tries > 1:
                log.info("blob store available again", extra={"op": what, "tries": tries})
            return result

    async def find_missing(self, tenant: str, digests: Sequence[Digest]) -> list[Digest]:
        return await self.retry("find_missing", lambda: self._inner.find_missing(tenant, digests))

    async def writer(self, tenant: str, digest: Digest) -> BlobWriter:
        if digest.size > self.max_blob_size:
            return await self._inner.writer(tenant, digest)  # raises ResourceExhausted
        return RetryingWriter(self, tenant, digest)

    async def put_bytes(self, tenant: str, data: bytes) -> Digest:
        return await self.retry("put_bytes", lambda: self._inner.put_bytes(tenant, data))

    async def put_many(self, tenant: str, items: Sequence[tuple[Digest, bytes]]) -> None:
        await self.retry("put_many", lambda: self._inner.put_many(tenant, items))

    def read(self, tenant: str, digest: Digest, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        return self._inner.read(tenant, digest, chunk_size)

    async def get_bytes(self, tenant: str, digest: Digest) -> bytes:
        return await self.retry("get_bytes", lambda: self._inner.get_bytes(tenant, digest))


class RetryingWriter:
    def __init__(self, store: RetryingBlobStore, tenant: str, digest: Digest) -> None:
        self._store = store
        self._tenant = tenant
        self._digest = digest
        self._spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 - closed in commit/abort
        self._written = 0
        self._done = False

    async def write(self, data: bytes) -> None:
        self._written += len(data)
        if self._written > self._digest.size:
            raise InvalidArgument(f"more bytes than blob {self._digest} has ({self._written} > {self._digest.size})")
        # In memory, or a temporary file's page cache: no thread hop for a copy into memory.
        self._spool.write(data)

    async def commit(self) -> None:
        if self._done:
            return
        try:
            await self._store.retry("commit", self._commit_once)
        finally:
            self._close()

    async def _commit_once(self) -> None:
        inner = await self._store.inner.writer(self._tenant, self._digest)
        try:
            self._spool.seek(0)
            while chunk := await asyncio.to_thread(self._spool.read, COPY_CHUNK):
                await inner.write(chunk)
            await inner.commit()
        except BaseException:
            await inner.abort()
            raise

    async def abort(self) -> None:
        self._close()

    def _close(self) -> None:
        self._done = True
        self._spool.close()
