"""SHA-256 of workspace files, at close to the speed of `hashlib` itself.

A cold snapshot hashes every file: for 10,000 small files the cost is mostly system calls, for a few big
ones it is SHA-256. So: small files are read with one `read` sized from their stat (no 256 KiB buffer
allocated per file, as `hashlib.file_digest` does); big files stream through one reused 1 MiB
buffer per thread, on a few worker threads (`hashlib` and `read` release the GIL), while the calling
thread does the small files.

Files are opened without following symbolic links and without blocking, so a file swapped for a link
or a FIFO between the walk and the read is reported, not followed or waited on; reading stops past
`limit` bytes, so not even a device swapped in can be read forever. No `fstat` after opening (a system
call per file is a tenth of a cold snapshot): the caller keys the digest cache by the walk's stat and
stores a digest only when the bytes read are as many as that stat said.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

__all__ = ["HashJob", "HashResult", "hash_file", "hash_files"]

CHUNK = 1 << 20
# Files at least this big go to the worker threads (when there are enough bytes to be worth a pool).
BIG_FILE = 1 << 20
POOL_MIN_BYTES = 16 << 20
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

_buffers = threading.local()


class FileGrew(OSError):
    """More bytes than the limit were read: the file grew during the snapshot, or is not a file."""


@dataclass(frozen=True, slots=True)
class HashJob:
    path: str  # absolute
    size: int  # from the walk's stat: how much to read in one go
    limit: int  # read no more than this


@dataclass(frozen=True, slots=True)
class HashResult:
    hexdigest: str
    size: int  # bytes actually read


def hash_file(path: str, size_hint: int, limit: int) -> HashResult:
    """Hash one file. Raises OSError (FileGrew past `limit`)."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        h = hashlib.sha256()
        if size_hint < CHUNK:
            data = os.read(fd, size_hint + 1)
            h.update(data)
            read = len(data)
            # Getting exactly the stat size when asking for one byte more is the end of the file (a file
            # written since has a new mtime, so its digest is not cached); anything else, read on.
            if read != size_hint:
                read += _read_rest(fd, h, limit - read)
        else:
            read = _read_rest(fd, h, limit)
        if read > limit:
            raise FileGrew(f"{path} grew past {limit} bytes while it was read")
        return HashResult(h.hexdigest(), read)
    finally:
        os.close(fd)


def _read_rest(fd: int, h: hashlib._Hash, limit: int) -> int:
    buf: bytearray | None = getattr(_buffers, "buf", None)
    if buf is None:
        buf = _buffers.buf = bytearray(CHUNK)
    view = memoryview(buf)
    total = 0
    with open(fd, "rb", buffering=0, closefd=False) as f:
        while total <= limit:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])
            total += n
    return total


def hash_files(jobs: Sequence[HashJob], workers: int | None = None) -> list[HashResult | OSError]:
    """Hash every job; each result is the file's `HashResult` or the OSError that stopped it."""
    results: list[HashResult | OSError] = [OSError("not hashed")] * len(jobs)
    big = [i for i, job in enumerate(jobs) if job.size >= BIG_FILE]
    big_bytes = sum(jobs[i].size for i in big)
    n_workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    if n_workers < 2 or big_bytes < POOL_MIN_BYTES:
        for i, job in enumerate(jobs):
            results[i] = _guarded(job)
        return results
    big.sort(key=lambda i: -jobs[i].size)  # longest first, for an even finish
    big_set = set(big)
    with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="snapshot-hash") as pool:
        futures = [(i, pool.submit(_guarded, jobs[i])) for i in big]
        for i, job in enumerate(jobs):
            if i not in big_set:
                results[i] = _guarded(job)
        for i, future in futures:
            results[i] = future.result()
    return results


def _guarded(job: HashJob) -> HashResult | OSError:
    try:
        return hash_file(job.path, job.size, job.limit)
    except OSError as exc:
        return exc
