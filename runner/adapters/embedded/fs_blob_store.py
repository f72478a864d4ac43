"""`BlobStore` on the local filesystem: the embedded runner's content-addressed store.

Layout under `root` (normally `$CODEX_SYS_HOME/blobs`):

    <tenant>/sha256/<first two hex digits>/<sha256 hex>   one file per blob, read-only, never rewritten
    .tmp/<pid>-<random>                                   blobs being written (same file system)
    .quarantine/<tenant>-<hash>-<time>                    blobs whose bytes no longer match their name

Publishing is what makes the store safe without locks: bytes go to a temp file, their size and SHA-256
are checked against the digest, and only then is the temp file hard-linked under its final name.
`link` fails rather than replace an existing name, so a stored blob is never overwritten, a concurrent
write of the same digest is harmless (the second link finds the first), and a name that exists always
has complete, verified bytes behind it. Blobs up to `_BUFFERED_MAX` are kept in memory until `commit`
and written in a single thread hop, grouped with other writers' commits (`io_batch`); larger ones are
streamed to their temp file a MiB at a time.

Reads verify as they stream. A blob whose bytes no longer hash to its name (a disk error, a hand edit)
raises `Unavailable` and is moved to `.quarantine/`, so `find_missing` reports it missing again and the
next upload repairs it. Without `fsync=True` the store survives a crash of the process (the page cache
survives) but not necessarily a power cut; the verified reads catch what a power cut could leave.

Tenant names become folder names, so they are checked against `_TENANT` (no `/`, no leading dot).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import hashlib
import logging
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from types import TracebackType

from runner.adapters.embedded.blob_index import BlobIndex
from runner.adapters.embedded.io_batch import BatchRunner
from runner.domain.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, Unavailable
from runner.domain.models import Digest

log = logging.getLogger(__name__)

_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_TMP = ".tmp"
_QUARANTINE = ".quarantine"
# Blobs up to this size are buffered in memory and written at commit in one hop.
_BUFFERED_MAX = 1 << 20
# Larger blobs are written to their temp file in pieces of at least this size.
_FLUSH_AT = 1 << 20
# The blob index re-lists a tenant's folders once no blob was stored for this long (see `blob_index`).
_REFRESH_AFTER_S = 0.25
# Temp files older than this are left over by a crashed process and are removed.
_STALE_TMP_S = 3600.0
_BLOB_MODE = 0o444


def check_tenant(tenant: str) -> str:
    if not _TENANT.match(tenant):
        raise InvalidArgument(
            f"tenant name {tenant[:80]!r} is not valid: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit")
    return tenant


def _write_all(fd: int, chunks: Sequence[bytes]) -> None:
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view):]


def _hash_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class FsBlobStore:
    """Content-addressed blobs in a local folder, one namespace per tenant. See the module docstring."""

    def __init__(self, root: Path, max_blob_size: int, *, io_threads: int = 4, fsync: bool = False,
                 index_max_names: int = 200_000) -> None:
        self.root = Path(root)
        self.max_blob_size = max_blob_size
        self._root = str(self.root)
        self._fsync = fsync
        self._io = BatchRunner(lanes=io_threads, name="blob-io")
        self._index = BlobIndex(index_max_names)
        self._tmp_ready = False
        self._writers: set[FsBlobWriter] = set()
        self._closed = False
        # Tenants' store folders written since their listings were last refreshed, and the timer
        # that refreshes them once writes pause.
        self._written: set[str] = set()
        self._refresh_timer: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> FsBlobStore:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

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
        store_dir = f"{self._root}/{check_tenant(tenant)}/sha256"
        return await self._io.run(lambda: self._index.missing(store_dir, digests), nbytes=len(digests) * 64)

    async def writer(self, tenant: str, digest: Digest) -> FsBlobWriter:
        check_tenant(tenant)
        self._check_size(digest.size, digest)
        self._check_open()
        return FsBlobWriter(self, tenant, digest)

    async def put_bytes(self, tenant: str, data: bytes) -> Digest:
        check_tenant(tenant)
        self._check_size(len(data), None)
        self._check_open()
        digest = await self._io.run(lambda: self._put(tenant, data), nbytes=len(data))
        self._stored(tenant)
        return digest

    async def read(self, tenant: str, digest: Digest, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        if chunk_size <= 0:
            raise InvalidArgument(f"chunk size {chunk_size} must be positive")
        path = self._blob_path(tenant, digest)
        self._check_open()
        # The file descriptor is closed only once no I/O thread uses it any more: closing it under a
        # running read could let the number be reused by another open file, which that read would then
        # consume. A reader that is cancelled or stops early leaves the closing to the pending read.
        opening = self._io.submit(lambda: self._open_blob(tenant, digest, chunk_size),
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
                reading = self._io.submit(lambda: self._read_chunk(fd, chunk_size, hasher), nbytes=chunk_size)
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
            await self._io.run(lambda: self._quarantine(path, tenant, digest))
            raise Unavailable(f"blob {digest} of tenant {tenant!r} is corrupt on disk (its bytes no longer match "
                              "its digest); it was set aside, upload it again")

    async def get_bytes(self, tenant: str, digest: Digest) -> bytes:
        self._blob_path(tenant, digest)  # validates the tenant before the hop
        self._check_open()
        data = await self._io.run(lambda: self._open_blob(tenant, digest, max(digest.size, 1)), nbytes=digest.size)
        assert isinstance(data, bytes)  # whole blob fits in one chunk by construction
        return data

    # ---- embedded-only helpers for the local executor ---------------------------------------------------

    def path_of(self, tenant: str, digest: Digest) -> Path:
        """Blocking, embedded-only. The stored file of a blob (raises `NotFound`). The file is shared by
        every task of the tenant: never modify it, and never hard-link it into a writable workspace."""
        path = self._blob_path(tenant, digest)
        if not os.access(path, os.F_OK):
            raise NotFound(f"blob {digest} is not stored for tenant {tenant!r}")
        return Path(path)

    def copy_to(self, tenant: str, digest: Digest, dest: Path, *, mode: int = 0o644, verify: bool = False) -> None:
        """Blocking, embedded-only. Copy a blob to a new file `dest` (created with `mode`; refuses to
        follow or replace an existing file or symlink). The copy is done in the kernel
        (`copy_file_range`) unless `verify=True`, which hashes the bytes on the way and raises
        `Unavailable` (removing `dest`) on a mismatch. Blobs are verified when stored, so the fast copy
        is normally enough; `read`/`get_bytes` always verify. Raises `NotFound`."""
        path = self._blob_path(tenant, digest)
        try:
            src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not stored for tenant {tenant!r}") from None
        try:
            if os.fstat(src).st_size != digest.size:
                self._size_mismatch(path, tenant, digest)
            dst = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
            try:
                ok = self._copy_verified(src, dst, digest) if verify else self._copy_fast(src, dst, digest.size)
            except BaseException:
                os.close(dst)
                os.unlink(dest)
                raise
            os.close(dst)
            if not ok:
                os.unlink(dest)
                self._quarantine(path, tenant, digest)
                raise Unavailable(f"blob {digest} of tenant {tenant!r} is corrupt on disk; it was set aside, "
                                  "upload it again")
        finally:
            os.close(src)

    # ---- internals (blocking ones run in the I/O threads) -----------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the blob store is closed")

    def _stored(self, tenant: str) -> None:
        """A blob was stored for `tenant`: refresh its listings once writes pause."""
        self._written.add(f"{self._root}/{tenant}/sha256")
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

    def _check_size(self, size: int, digest: Digest | None) -> None:
        if size > self.max_blob_size:
            what = f"blob {digest}" if digest else "data"
            raise ResourceExhausted(
                f"{what} is {size} bytes, over the limit of {self.max_blob_size} bytes per blob")

    def _blob_path(self, tenant: str, digest: Digest) -> str:
        return f"{self._root}/{check_tenant(tenant)}/sha256/{digest.hash[:2]}/{digest.hash}"

    def _new_tmp(self) -> tuple[int, str]:
        if not self._tmp_ready:
            self._prepare_tmp()
        path = f"{self._root}/{_TMP}/{os.getpid()}-{secrets.token_hex(8)}"
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _BLOB_MODE), path

    def _prepare_tmp(self) -> None:
        tmp = Path(self._root, _TMP)
        tmp.mkdir(parents=True, exist_ok=True)
        cutoff = time.time() - _STALE_TMP_S
        removed = 0
        for entry in os.scandir(tmp):
            try:
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                pass
        if removed:
            log.info("removed stale temp blobs", extra={"count": removed, "folder": str(tmp)})
        self._tmp_ready = True

    def _put(self, tenant: str, data: bytes) -> Digest:
        digest = Digest.of(data)
        self._store_verified(tenant, digest, [data], hashlib.sha256(data))
        return digest

    def _store_buffered(self, tenant: str, digest: Digest, chunks: list[bytes]) -> None:
        hasher = hashlib.sha256()
        for chunk in chunks:
            hasher.update(chunk)
        self._store_verified(tenant, digest, chunks, hasher)

    def _store_verified(self, tenant: str, digest: Digest, chunks: list[bytes], hasher: hashlib._Hash) -> None:
        if hasher.hexdigest() != digest.hash:
            raise _mismatch(digest, hasher.hexdigest())
        fd, tmp = self._new_tmp()
        try:
            try:
                _write_all(fd, chunks)
                if self._fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            self._publish(tmp, tenant, digest)
        finally:
            _unlink_quietly(tmp)

    def _publish(self, tmp: str, tenant: str, digest: Digest) -> None:
        """Hard-link a verified temp file under the blob's name; the caller removes the temp name."""
        final = f"{self._root}/{tenant}/sha256/{digest.hash[:2]}/{digest.hash}"
        try:
            try:
                os.link(tmp, final)
            except FileNotFoundError:
                os.makedirs(os.path.dirname(final), exist_ok=True)
                os.link(tmp, final)
        except FileExistsError:
            # Stored already (perhaps by a concurrent writer): keep it, unless a crash truncated it.
            try:
                size = os.stat(final).st_size
            except FileNotFoundError:
                size = -1
            if size == digest.size:
                return
            os.replace(tmp, final)
            log.warning("replaced a stored blob of the wrong size",
                        extra={"tenant": tenant, "digest": str(digest), "stored_size": size})
        if self._fsync:
            dir_fd = os.open(os.path.dirname(final), os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def _open_blob(self, tenant: str, digest: Digest, chunk_size: int) -> bytes | int:
        """Open a blob; if it fits in `chunk_size`, read and verify it whole and return its bytes,
        otherwise return the open file descriptor."""
        path = self._blob_path(tenant, digest)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not stored for tenant {tenant!r}") from None
        try:
            size = os.fstat(fd).st_size
            if size != digest.size:
                self._size_mismatch(path, tenant, digest)
            if size > chunk_size:
                keep, fd = fd, -1
                return keep
            data = os.read(fd, size + 1)
            while len(data) < size + 1 and (more := os.read(fd, size + 1 - len(data))):
                data += more
        finally:
            if fd >= 0:
                os.close(fd)
        if len(data) != digest.size or hashlib.sha256(data).hexdigest() != digest.hash:
            self._quarantine(path, tenant, digest)
            raise Unavailable(f"blob {digest} of tenant {tenant!r} is corrupt on disk (its bytes no longer match "
                              "its digest); it was set aside, upload it again")
        return data

    def _size_mismatch(self, path: str, tenant: str, digest: Digest) -> None:
        """A stored file whose size differs from the digest's: either the digest names a size the hash
        cannot have (the blob asked for does not exist), or the file is damaged."""
        if _hash_file(path) == digest.hash:
            raise NotFound(f"blob {digest} is not stored for tenant {tenant!r} (a blob with that hash but "
                           f"{os.stat(path).st_size} bytes is)")
        self._quarantine(path, tenant, digest)
        raise Unavailable(f"blob {digest} of tenant {tenant!r} is damaged on disk (wrong size); it was set aside, "
                          "upload it again")

    @staticmethod
    def _read_chunk(fd: int, chunk_size: int, hasher: hashlib._Hash) -> bytes:
        chunk = os.read(fd, chunk_size)
        hasher.update(chunk)
        return chunk

    def _quarantine(self, path: str, tenant: str, digest: Digest) -> None:
        folder = Path(self._root, _QUARANTINE)
        folder.mkdir(exist_ok=True)
        target = folder / f"{tenant}-{digest.hash}-{time.time_ns()}"
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return  # already set aside by a concurrent reader
        log.error("blob failed verification and was quarantined",
                  extra={"tenant": tenant, "digest": str(digest), "moved_to": str(target)})

    @staticmethod
    def _copy_fast(src: int, dst: int, size: int) -> bool:
        copied = 0
        try:
            while copied < size:
                n = os.copy_file_range(src, dst, size - copied)
                if n == 0:
                    break
                copied += n
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP) or copied:
                raise
            while copied < size and (n := os.sendfile(dst, src, copied, size - copied)):
                copied += n
        return copied == size

    @staticmethod
    def _copy_verified(src: int, dst: int, digest: Digest) -> bool:
        hasher = hashlib.sha256()
        size = 0
        while chunk := os.read(src, 1 << 20):
            hasher.update(chunk)
            _write_all(dst, [chunk])
            size += len(chunk)
        return size == digest.size and hasher.hexdigest() == digest.hash


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


def _mismatch(digest: Digest, actual: str) -> InvalidArgument:
    return InvalidArgument(f"blob {digest}: the uploaded bytes hash to sha256:{actual}, not to the digest; "
                           "nothing was stored")


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class FsBlobWriter:
    """One blob being written to an `FsBlobStore` (`BlobWriter`). Not safe for concurrent use by
    several coroutines; a writer's operations are awaited one after the other."""

    def __init__(self, store: FsBlobStore, tenant: str, digest: Digest) -> None:
        self._store = store
        self._tenant = tenant
        self._digest = digest
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
            await self._run(self._flush_chunks(), self._pending)

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
                await self._run(lambda: self._store._store_buffered(self._tenant, self._digest, chunks),
                                self._digest.size)
            else:
                await self._run(self._finish_streamed(), self._pending)
        except BaseException:
            self._state = "failed"
            await self._discard_tmp()
            raise
        self._state = "committed"
        self._store._writers.discard(self)
        self._store._stored(self._tenant)

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
        self._inflight = self._store._io.submit(fn, nbytes)
        await asyncio.shield(self._inflight)

    def _flush_chunks(self) -> Callable[[], None]:
        chunks, self._chunks, self._pending = self._chunks, [], 0
        if self._fd < 0:
            self._store._writers.add(self)

        def flush() -> None:
            if self._fd < 0:
                self._fd, self._tmp = self._store._new_tmp()
            for chunk in chunks:
                self._hasher.update(chunk)
            _write_all(self._fd, chunks)
        return flush

    def _finish_streamed(self) -> Callable[[], None]:
        flush = self._flush_chunks()

        def finish() -> None:
            flush()
            actual = self._hasher.hexdigest()
            if actual != self._digest.hash:
                raise _mismatch(self._digest, actual)
            if self._store._fsync:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            try:
                self._store._publish(self._tmp, self._tenant, self._digest)
            finally:
                _unlink_quietly(self._tmp)
                self._tmp = ""
        return finish

    async def _discard_tmp(self) -> None:
        if self._inflight is not None and not self._inflight.done():
            await asyncio.wait([self._inflight])
        if self._inflight is not None and self._inflight.done() and not self._inflight.cancelled():
            self._inflight.exception()  # retrieved: its caller already saw it (or was cancelled)
        self._store._writers.discard(self)
        if self._fd < 0 and not self._tmp:
            return
        fd, tmp = self._fd, self._tmp
        self._fd, self._tmp = -1, ""

        def discard() -> None:
            if fd >= 0:
                os.close(fd)
            if tmp:
                _unlink_quietly(tmp)
        await self._store._io.run(discard)
