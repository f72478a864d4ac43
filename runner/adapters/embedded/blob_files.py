"""The blob store's folder: its layout and every blocking file operation on it.

Layout under the root (normally `$CODEX_SYS_HOME/blobs`):

    <tenant>/sha256/<first two hex digits>/<sha256 hex>   one file per blob, read-only, never rewritten
    .tmp/<pid>-<random>                                   blobs being written (same file system)
    .quarantine/<tenant>-<hash>-<time>                    blobs whose bytes no longer match their name

Publishing is what makes the store safe without locks: bytes go to a temp file, their size and SHA-256
are checked against the digest, and only then is the temp file hard-linked under its final name.
`link` fails rather than replace an existing name, so a stored blob is never overwritten, a concurrent
write of the same digest is harmless (the second link finds the first), and a name that exists always
has complete, verified bytes behind it. The one exception is a stored file of the wrong size (left by
a power cut): a verified upload replaces it.

Reading verifies: a blob whose bytes no longer hash to its name raises `Unavailable` and is moved to
`.quarantine/`, so the store reports it missing and the next upload repairs it.

Everything here blocks: `fs_blob_store` runs it in its I/O threads; the local executor may call
`copy_to` from its own threads. Tenant names become folder names, so they are checked against
`_TENANT` (no `/`, no leading dot).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import secrets
import time
from collections.abc import Sequence
from pathlib import Path

from runner.adapters.blob_checks import mismatch
from runner.domain.errors import InvalidArgument, NotFound, Unavailable
from runner.domain.models import Digest

log = logging.getLogger(__name__)

_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_TMP = ".tmp"
_QUARANTINE = ".quarantine"
# Temp files older than this are left over by a crashed process and are removed.
_STALE_TMP_S = 3600.0
_BLOB_MODE = 0o444


def check_tenant(tenant: str) -> str:
    if not _TENANT.match(tenant):
        raise InvalidArgument(
            f"tenant name {tenant[:80]!r} is not valid: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit")
    return tenant


def write_all(fd: int, chunks: Sequence[bytes]) -> None:
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view):]


def unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def damaged(tenant: str, digest: Digest) -> Unavailable:
    return Unavailable(f"blob {digest} of tenant {tenant!r} is damaged on disk (its bytes no longer match its "
                       "digest); it was set aside, upload it again")


def _hash_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class BlobFiles:
    def __init__(self, root: Path, fsync: bool) -> None:
        self.root = str(root)
        self.fsync = fsync
        self._tmp_ready = False

    def store_dir(self, tenant: str) -> str:
        return f"{self.root}/{check_tenant(tenant)}/sha256"

    def path(self, tenant: str, digest: Digest) -> str:
        return f"{self.root}/{check_tenant(tenant)}/sha256/{digest.hash[:2]}/{digest.hash}"

    # ---- writing ----------------------------------------------------------------------------------------

    def new_tmp(self) -> tuple[int, str]:
        """A new temp file, open for writing: (fd, path)."""
        if not self._tmp_ready:
            self._prepare_tmp()
        path = f"{self.root}/{_TMP}/{os.getpid()}-{secrets.token_hex(8)}"
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _BLOB_MODE), path

    def put(self, tenant: str, data: bytes) -> Digest:
        """Store in-memory bytes under their own digest."""
        digest = Digest.of(data)
        self.write_and_publish(tenant, digest, [data])
        return digest

    def store(self, tenant: str, digest: Digest, chunks: Sequence[bytes]) -> None:
        """Verify in-memory bytes against the digest, then write and publish them."""
        hasher = hashlib.sha256()
        for chunk in chunks:
            hasher.update(chunk)
        if hasher.hexdigest() != digest.hash or sum(map(len, chunks)) != digest.size:
            raise mismatch(digest, hasher.hexdigest())
        self.write_and_publish(tenant, digest, chunks)

    def write_and_publish(self, tenant: str, digest: Digest, chunks: Sequence[bytes]) -> None:
        fd, tmp = self.new_tmp()
        try:
            try:
                write_all(fd, chunks)
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            self.publish(tmp, tenant, digest)
        finally:
            unlink_quietly(tmp)

    def publish(self, tmp: str, tenant: str, digest: Digest) -> None:
        """Hard-link a verified, closed temp file under the blob's name; the caller removes the temp."""
        final = self.path(tenant, digest)
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
        if self.fsync:
            dir_fd = os.open(os.path.dirname(final), os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def _prepare_tmp(self) -> None:
        tmp = Path(self.root, _TMP)
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

    # ---- reading ----------------------------------------------------------------------------------------

    def open(self, tenant: str, digest: Digest, chunk_size: int) -> bytes | int:
        """Open a blob. If it fits in `chunk_size`, read and verify it whole and return its bytes;
        otherwise return the open file descriptor (verified by the caller as it reads)."""
        path = self.path(tenant, digest)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not stored for tenant {tenant!r}") from None
        try:
            size = os.fstat(fd).st_size
            if size != digest.size:
                self._size_mismatch(tenant, digest)
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
            self.quarantine(tenant, digest)
            raise damaged(tenant, digest)
        return data

    @staticmethod
    def read_chunk(fd: int, chunk_size: int, hasher: hashlib._Hash) -> bytes:
        chunk = os.read(fd, chunk_size)
        hasher.update(chunk)
        return chunk

    def _size_mismatch(self, tenant: str, digest: Digest) -> None:
        """A stored file whose size differs from the digest's: either the digest names a size its hash
        cannot have (the blob asked for does not exist), or the file is damaged."""
        path = self.path(tenant, digest)
        if _hash_file(path) == digest.hash:
            raise NotFound(f"blob {digest} is not stored for tenant {tenant!r} (a blob with that hash but "
                           f"{os.stat(path).st_size} bytes is)")
        self.quarantine(tenant, digest)
        raise damaged(tenant, digest)

    def quarantine(self, tenant: str, digest: Digest) -> None:
        folder = Path(self.root, _QUARANTINE)
        folder.mkdir(exist_ok=True)
        target = folder / f"{tenant}-{digest.hash}-{time.time_ns()}"
        try:
            os.rename(self.path(tenant, digest), target)
        except FileNotFoundError:
            return  # already set aside by a concurrent reader
        log.error("blob failed verification and was quarantined",
                  extra={"tenant": tenant, "digest": str(digest), "moved_to": str(target)})

    # ---- copying (embedded-only, for the local executor) ------------------------------------------------

    def copy_to(self, tenant: str, digest: Digest, dest: Path, mode: int, verify: bool) -> None:
        """See `FsBlobStore.copy_to`."""
        try:
            src = os.open(self.path(tenant, digest), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not stored for tenant {tenant!r}") from None
        try:
            if os.fstat(src).st_size != digest.size:
                self._size_mismatch(tenant, digest)
            dst = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
            try:
                ok = _copy_verified(src, dst, digest) if verify else _copy_fast(src, dst, digest.size)
            except BaseException:
                os.close(dst)
                os.unlink(dest)
                raise
            os.close(dst)
            if not ok:
                os.unlink(dest)
                self.quarantine(tenant, digest)
                raise damaged(tenant, digest)
        finally:
            os.close(src)


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


def _copy_verified(src: int, dst: int, digest: Digest) -> bool:
    hasher = hashlib.sha256()
    size = 0
    while chunk := os.read(src, 1 << 20):
        hasher.update(chunk)
        write_all(dst, [chunk])
        size += len(chunk)
    return size == digest.size and hasher.hexdigest() == digest.hash
