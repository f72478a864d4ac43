"""`BlobStore` on MinIO (or any S3-compatible server): the distributed runner's content-addressed store.

This is the async face. Where objects live is in `keys`, the bucket and its lifecycle rules in
`lifecycle`, requests and their threads in `client`, error translation in `errors`, `find_missing` in
`presence`, writers in `blob_writer`. docs/minio.md describes the whole.

Guarantees, as for the embedded store:

* nothing is visible before it was verified: a writer checks size and SHA-256 before its one upload,
  `put_many` checks every item before uploading any, and S3 publishes an object only once complete;
* reads verify: the bytes of every GET are hashed as they stream and compared at the end; a blob that no
  longer matches raises `Unavailable` (never passed off as good), and is moved to `quarantine/` so
  `find_missing` reports it missing and the next upload repairs it;
* tenants are separate key prefixes (`cas/<tenant>/...`); no call takes a key from outside.

The store also keeps packed snapshots (`runner.snapshots`: `find_pack`, `put_pack`, `get_pack`, and its
`packs` helper, which the local executor uses instead of one GET per file), and signs links: presigned
GETs of a blob for browsers (`download_url`) or of a pack for sandbox pods (`pack_url`), and presigned
PUTs for sandbox outputs (`upload_url`), all signed for the public endpoint (see `settings`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import functools
import hashlib
import io
import logging
import os
import re
import time
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from minio.commonconfig import CopySource
from minio.error import S3Error

from runner.adapters.blob_checks import check_blob_size, verify
from runner.adapters.minio import keys
from runner.adapters.minio.blob_writer import MinioBlobWriter
from runner.adapters.minio.client import CONNECT_TIMEOUT_S, DEFAULT_THREADS, READ_TIMEOUT_S, RETRIES, S3Calls
from runner.adapters.minio.errors import translate
from runner.adapters.minio.lifecycle import ensure_bucket
from runner.adapters.minio.presence import Presence
from runner.adapters.minio.settings import S3Settings
from runner.closing import AsyncClosing
from runner.domain.errors import InvalidArgument, Unavailable
from runner.domain.models import Digest
from runner.snapshots.folders import FILE_FLAGS, write_all
from runner.snapshots.packs import PackRef, Packs

log = logging.getLogger(__name__)

T = TypeVar("T")

# Uploads up to this size are one PUT; larger ones are multipart uploads of parts this size (the bytes
# of one part are held in memory while it is sent).
PART_SIZE = 16 << 20
READ_CHUNK = 1 << 20
MAX_LINK_S = 7 * 24 * 3600  # the longest a SigV4 presigned URL may live
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_PACK_SHA256 = "x-amz-meta-sha256"


class _Damaged(Exception):
    """A GET's bytes did not match the digest (raised in a thread; becomes `Unavailable`)."""


class _Body:
    """A GET's body being read and hashed, a chunk per call, in the store's threads."""

    def __init__(self, response: object) -> None:
        self.response = response
        self.hasher = hashlib.sha256()
        self.size = 0
        self.eof = False

    def next(self, n: int) -> bytes:
        chunk: bytes = self.response.read(n)  # type: ignore[attr-defined]
        self.hasher.update(chunk)
        self.size += len(chunk)
        self.eof = len(chunk) < n  # urllib3 returns less than asked only at the end
        return chunk

    def matches(self, digest: Digest) -> bool:
        return self.size == digest.size and self.hasher.hexdigest() == digest.hash

    def close(self, _done: object = None) -> None:
        """Give the connection back to the pool when the body was read to its end; otherwise close it
        (what is left unread would be read as the next answer)."""
        with contextlib.suppress(Exception):
            if not self.eof:
                self.response.close()  # type: ignore[attr-defined]
            self.response.release_conn()  # type: ignore[attr-defined]


class MinioBlobStore(AsyncClosing):
    """Content-addressed blobs in one bucket, one key prefix per tenant. Open with `open`."""

    def __init__(self, calls: S3Calls, max_blob_size: int, *, spool_dir: Path | None = None) -> None:
        self.settings = calls.settings
        self.max_blob_size = max_blob_size
        self.spool_dir = spool_dir
        self._calls = calls
        self._bucket = calls.bucket
        lifecycle = calls.settings.lifecycle
        self._presence = Presence(calls, lifecycle.fresh_for_s(lifecycle.blobs_days))
        self._pack_fresh_for_s = lifecycle.fresh_for_s(lifecycle.packs_days)
        self.packs = Packs(self, self, spool_dir=spool_dir)

    @classmethod
    async def open(cls, settings: S3Settings, *, max_blob_size: int, threads: int = DEFAULT_THREADS,
                   spool_dir: Path | None = None, create_bucket: bool = True,
                   connect_timeout_s: float = CONNECT_TIMEOUT_S, read_timeout_s: float = READ_TIMEOUT_S,
                   retries: int = RETRIES) -> MinioBlobStore:
        """A store on `settings.bucket`, using `threads` threads and connections. With `create_bucket`
        (the default) the bucket and its lifecycle rules are made if missing (`ensure_bucket`), so this
        fails with `Unavailable` when MinIO cannot be reached and `PermanentError` when the keys are
        refused. Writers spool blobs over 1 MiB to `spool_dir` (default: the system's temp folder)."""
        calls = await asyncio.to_thread(S3Calls, settings, threads, connect_timeout_s=connect_timeout_s,
                                        read_timeout_s=read_timeout_s, retries=retries)
        store = cls(calls, max_blob_size, spool_dir=spool_dir)
        if create_bucket:
            try:
                await store.ensure_bucket()
            except BaseException:
                await store.close()
                raise
        return store

    async def close(self) -> None:
        """Wait for requests in flight, then close the connections. Writers not committed are lost."""
        await self._calls.close()

    async def ensure_bucket(self) -> bool:
        """Create the bucket if missing and install the lifecycle rules (see `lifecycle`); idempotent.
        True when anything changed."""
        return await self._calls.run(
            f"creating bucket {self._bucket!r} and its lifecycle rules",
            lambda: ensure_bucket(self._calls.client, self._bucket, self.settings.lifecycle))

    # ---- BlobStore -------------------------------------------------------------------------------------

    async def find_missing(self, tenant: str, digests: Sequence[Digest]) -> list[Digest]:
        keys.tenant_segment(tenant)
        return await self._presence.missing(tenant, digests)

    async def writer(self, tenant: str, digest: Digest) -> MinioBlobWriter:
        keys.tenant_segment(tenant)
        check_blob_size(digest.size, digest, self.max_blob_size)
        return MinioBlobWriter(self, tenant, digest)

    async def put_bytes(self, tenant: str, data: bytes) -> Digest:
        keys.tenant_segment(tenant)
        check_blob_size(len(data), None, self.max_blob_size)

        def hash_and_upload() -> Digest:
            digest = Digest.of(data)
            self.upload(tenant, digest, io.BytesIO(data))
            return digest

        return await self._calls.run(f"storing {len(data)} bytes for tenant {tenant!r}", hash_and_upload)

    async def put_many(self, tenant: str, items: Sequence[tuple[Digest, bytes]]) -> None:
        keys.tenant_segment(tenant)
        for digest, _ in items:
            check_blob_size(digest.size, digest, self.max_blob_size)
        if not items:
            return

        def verify_all() -> None:
            for digest, data in items:
                verify(digest, data)

        await self._calls.run(f"verifying {len(items)} blobs", verify_all)
        unique = list({digest: data for digest, data in items}.items())
        lanes = min(self._calls.threads, len(unique))

        def upload_lane(lane: int) -> None:
            for digest, data in unique[lane::lanes]:
                self.upload(tenant, digest, io.BytesIO(data))

        results = await asyncio.gather(*(
            self._calls.run(f"storing {len(unique)} blobs for tenant {tenant!r}", functools.partial(upload_lane, lane))
            for lane in range(lanes)), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def read(self, tenant: str, digest: Digest, chunk_size: int = READ_CHUNK) -> AsyncIterator[bytes]:
        if chunk_size <= 0:
            raise InvalidArgument(f"chunk size {chunk_size} must be positive")
        key = keys.blob_key(tenant, digest)
        action = f"reading blob {digest}"
        missing = _missing(tenant, digest)
        # A response is closed only once no thread reads it any more: a reader cancelled or stopped early
        # leaves the closing to the pending read.
        opening = self._calls.submit(lambda: self._open(tenant, digest, key, chunk_size))
        try:
            first = await self._wait(opening, action, missing)
        except asyncio.CancelledError:
            opening.add_done_callback(_close_opened)
            raise
        if isinstance(first, bytes):  # small enough to have been read and verified in one hop
            if first:
                yield first
            return
        body = first
        async with contextlib.aclosing(self._stream(body, chunk_size, action, missing, digest.size)) as chunks:
            async for chunk in chunks:
                yield chunk
        if not body.matches(digest):
            await self._calls.run(f"setting damaged blob {digest} aside", lambda: self._quarantine(tenant, digest))
            raise self._damaged(tenant, digest)

    async def get_bytes(self, tenant: str, digest: Digest) -> bytes:
        key = keys.blob_key(tenant, digest)
        data = await self._calls.run(f"reading blob {digest}",
                                     lambda: self._open(tenant, digest, key, max(digest.size, 1)),
                                     missing=_missing(tenant, digest))
        assert isinstance(data, bytes)  # the whole blob fits in one chunk by construction
        return data

    # ---- links -----------------------------------------------------------------------------------------

    def download_url(self, tenant: str, digest: Digest, filename: str, expires_s: int) -> str:
        """A presigned GET of a blob, valid `expires_s` seconds (1 s to 7 days), that browsers save as
        `filename`. Signed for the public endpoint without a network call."""
        return self._calls.signer.presigned_get_object(
            self._bucket, keys.blob_key(tenant, digest), expires=_expiry(expires_s),
            response_headers={"response-content-disposition": content_disposition(filename)})

    def pack_url(self, tenant: str, pack: PackRef | str, expires_s: int) -> str:
        """A presigned GET of a stored pack (see `packs.ensure`), for a sandbox that fetches its snapshot
        in one request; verify what it downloads against `PackRef.digest`."""
        key = pack.key if isinstance(pack, PackRef) else pack
        return self._calls.signer.presigned_get_object(self._bucket, keys.pack_object(tenant, key),
                                                       expires=_expiry(expires_s))

    def upload_url(self, key: str, expires_s: int) -> str:
        """A presigned PUT of `staging/<key>` (a sandbox's outputs), valid `expires_s` seconds. Staged
        objects expire by the staging lifecycle rule; read them with `read_staged`."""
        return self._calls.signer.presigned_put_object(self._bucket, keys.staging_key(key),
                                                       expires=_expiry(expires_s))

    async def read_staged(self, key: str, chunk_size: int = READ_CHUNK) -> AsyncIterator[bytes]:
        """Stream what was uploaded to `staging/<key>` (not verified: no digest is known; the caller
        checks what it reads). Raises `NotFound` on first iteration when nothing was uploaded."""
        if chunk_size <= 0:
            raise InvalidArgument(f"chunk size {chunk_size} must be positive")
        name = keys.staging_key(key)
        action = f"reading staged upload {key!r}"
        opening = self._calls.submit(lambda: _Body(self._calls.client.get_object(self._bucket, name)))
        try:
            body = await self._wait(opening, action, f"nothing was uploaded to staging key {key!r}")
        except asyncio.CancelledError:
            opening.add_done_callback(_close_opened)
            raise
        async with contextlib.aclosing(self._stream(body, chunk_size, action, None)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def delete_staged(self, key: str) -> None:
        """Remove `staging/<key>` (no error if it is not there)."""
        name = keys.staging_key(key)
        await self._calls.run(f"removing staged upload {key!r}", lambda: self._calls.client.remove_object(
            self._bucket, name))

    # ---- packs (runner.snapshots.packs.PackStore) -------------------------------------------------------

    async def find_pack(self, tenant: str, key: str) -> Digest | None:
        name = keys.pack_object(tenant, key)

        def stat() -> Digest | None:
            try:
                obj = self._calls.client.stat_object(self._bucket, name)
            except S3Error as exc:
                if exc.code in ("NoSuchKey", "NoSuchObject"):
                    return None
                raise
            sha = str((obj.metadata or {}).get(_PACK_SHA256, ""))
            if not _SHA256.match(sha) or obj.size is None:
                return None  # not written by `put_pack`: rebuild rather than trust it
            if self._pack_fresh_for_s is not None and obj.last_modified is not None:
                age = (dt.datetime.now(dt.UTC) - obj.last_modified).total_seconds()
                if age >= self._pack_fresh_for_s:
                    return None  # close to expiry: rebuilt (and renewed) rather than lost mid-task
            return Digest(sha, obj.size)

        return await self._calls.run(f"looking up snapshot pack {key}", stat)

    async def put_pack(self, tenant: str, key: str, path: Path, digest: Digest) -> None:
        name = keys.pack_object(tenant, key)

        def upload() -> None:
            with open(path, "rb") as source:
                self._calls.client.put_object(self._bucket, name, source, length=digest.size,
                                              content_type="application/x-tar", metadata={"sha256": digest.hash},
                                              part_size=PART_SIZE, num_parallel_uploads=1)

        await self._calls.run(f"storing snapshot pack {key}", upload)

    async def get_pack(self, tenant: str, key: str, digest: Digest, dest: Path) -> None:
        name = keys.pack_object(tenant, key)

        def download() -> None:
            body = _Body(self._calls.client.get_object(self._bucket, name))
            try:
                fd = os.open(dest, FILE_FLAGS, 0o600)
                try:
                    while chunk := body.next(READ_CHUNK):
                        write_all(fd, chunk)
                finally:
                    os.close(fd)
            finally:
                body.close()
            if not body.matches(digest):
                os.unlink(dest)
                with contextlib.suppress(Exception):
                    self._calls.client.remove_object(self._bucket, name)  # rebuilt next time
                raise Unavailable(f"snapshot pack {key} in {self.settings.describe()} is damaged (its bytes do not "
                                  f"match {digest}); it was removed and will be built again")

        await self._calls.run(f"fetching snapshot pack {key}", download,
                              missing=f"snapshot pack {key} of tenant {tenant!r} is not stored")

    # ---- for writers and internals ---------------------------------------------------------------------

    def submit(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        return self._calls.submit(fn)

    def translate(self, exc: Exception, action: str) -> Exception:
        return translate(exc, self.settings, action)

    def upload(self, tenant: str, digest: Digest, data: BinaryIO) -> None:
        """Blocking: PUT bytes already verified against `digest` under the blob's key."""
        self._calls.client.put_object(self._bucket, keys.blob_key(tenant, digest), data, length=digest.size,
                                      part_size=PART_SIZE, num_parallel_uploads=1)

    async def _wait(self, future: concurrent.futures.Future[T], action: str, missing: str | None) -> T:
        """Like `S3Calls.wait`, but a cancelled caller leaves the call to finish (see `read`)."""
        wrapped = asyncio.wrap_future(future)
        try:
            return await asyncio.shield(wrapped)
        except asyncio.CancelledError:
            wrapped.add_done_callback(_retrieve)
            raise
        except Exception as exc:
            error = translate(exc, self.settings, action, missing)
            if error is exc:
                raise
            raise error from exc

    async def _stream(self, body: _Body, chunk_size: int, action: str, missing: str | None,
                      most: int | None = None) -> AsyncGenerator[bytes, None]:
        """A GET's body, a chunk per request to the store's threads, to its end or until it is longer than
        `most` bytes. The body is closed at the end, or, when the caller stops or is cancelled while a
        chunk is being read, once that read is over: never under a running read."""
        reading: concurrent.futures.Future[bytes] | None = None
        try:
            while True:
                reading = self._calls.submit(lambda: body.next(chunk_size))
                chunk = await self._wait(reading, action, missing)
                if not chunk:
                    return
                if most is not None and body.size > most:
                    return  # longer than the digest says: damaged, whatever follows
                yield chunk
        finally:
            if reading is not None and not reading.done():
                reading.add_done_callback(body.close)
            else:
                body.close()

    def _open(self, tenant: str, digest: Digest, key: str, chunk_size: int) -> bytes | _Body:
        """Blocking. GET a blob: its verified bytes when it fits in `chunk_size`, else the body to read."""
        body = _Body(self._calls.client.get_object(self._bucket, key))
        if digest.size > chunk_size:
            return body
        try:
            data = body.next(digest.size + 1)  # one byte more than expected shows a longer object
        finally:
            body.close()
        if not body.matches(digest):
            self._quarantine(tenant, digest)
            raise self._damaged(tenant, digest)
        return data

    def _quarantine(self, tenant: str, digest: Digest) -> None:
        """Blocking. Move a damaged blob to `quarantine/` so it is reported missing and uploaded again.
        Best effort: a failure is logged, the damage is reported either way."""
        key = keys.blob_key(tenant, digest)
        aside = keys.quarantine_key(tenant, digest, int(time.time()))
        try:
            self._calls.client.copy_object(self._bucket, aside, CopySource(self._bucket, key))
            self._calls.client.remove_object(self._bucket, key)
            log.error("damaged blob set aside", extra={"tenant": tenant, "digest": str(digest), "to": aside})
        except Exception:
            log.exception("could not set a damaged blob aside", extra={"tenant": tenant, "digest": str(digest)})

    def _damaged(self, tenant: str, digest: Digest) -> Unavailable:
        return Unavailable(f"blob {digest} of tenant {tenant!r} is damaged in {self.settings.describe()} (its bytes "
                           "no longer match its digest); it was set aside, upload it again")


def _missing(tenant: str, digest: Digest) -> str:
    return f"blob {digest} is not stored for tenant {tenant!r}"


def _expiry(expires_s: int) -> dt.timedelta:
    if not isinstance(expires_s, int) or not 1 <= expires_s <= MAX_LINK_S:
        raise InvalidArgument(f"a link's lifetime must be 1 s to 7 days ({MAX_LINK_S} s), not {expires_s!r}")
    return dt.timedelta(seconds=expires_s)


def content_disposition(filename: str) -> str:
    """`attachment` with the file's name: an ASCII fallback and the exact UTF-8 name (RFC 6266/5987)."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()) or "download"
    fallback = "".join(c if c.isascii() and c not in '"%;' else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{urllib.parse.quote(name, safe='')}"


def _close_opened(opening: concurrent.futures.Future[Any]) -> None:
    if not opening.cancelled() and opening.exception() is None and isinstance(body := opening.result(), _Body):
        body.close()


def _retrieve(done: asyncio.Future[Any]) -> None:
    if not done.cancelled():
        done.exception()  # nobody awaits it any more
