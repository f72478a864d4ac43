"""Collecting what a sandbox left in /output, after every process in it is dead.

Only the names of the wire contract (`agent.wire.OUTPUT_FILES`) are taken, and only when they are
regular files: each is opened with `O_NOFOLLOW` (a symlink named diff.patch pointing at a host file is
refused, not followed) and `O_NONBLOCK` (a FIFO cannot hang the runner), then checked with fstat.
A file over the size limit is refused with a note rather than cut, since half a diff is worse than none.
Accepted files are streamed into the BlobStore under the task's tenant; `result.json` comes back as bytes
for the worker to decode, not as an artifact.

Every refusal becomes a note a person can read in `SandboxOutcome.detail`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from agent.wire import OUTPUT_FILES, RESULT_FILE
from runner.adapters.local_executor.limits import OutputLimits
from runner.domain.models import ArtifactRef, Digest
from runner.ports import BlobStore

_CHUNK = 1 << 20
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_MAX_LISTED = 5


@dataclass(frozen=True, slots=True)
class CollectedOutputs:
    artifacts: tuple[ArtifactRef, ...]
    result_json: bytes | None
    notes: tuple[str, ...]


def _digest_of(fd: int, size: int) -> Digest:
    h = hashlib.sha256()
    offset = 0
    while offset < size:
        chunk = os.pread(fd, min(_CHUNK, size - offset), offset)
        if not chunk:
            break
        h.update(chunk)
        offset += len(chunk)
    return Digest(h.hexdigest(), offset)


async def store_fd(blobs: BlobStore, tenant: str, fd: int, size: int) -> Digest:
    """Stream the first `size` bytes of an open file into the store (nothing written if already there)."""
    digest = await asyncio.to_thread(_digest_of, fd, size)
    if not await blobs.find_missing(tenant, [digest]):
        return digest
    writer = await blobs.writer(tenant, digest)
    try:
        offset = 0
        while offset < digest.size:
            chunk = os.pread(fd, min(_CHUNK, digest.size - offset), offset)
            if not chunk:
                break
            await writer.write(chunk)
            offset += len(chunk)
        await writer.commit()
    except BaseException:
        await writer.abort()
        raise
    return digest


async def store_file(blobs: BlobStore, tenant: str, path: Path, name: str) -> ArtifactRef:
    """Store a file the runner itself wrote (the captured agent.log)."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        return ArtifactRef(name, await store_fd(blobs, tenant, fd, os.fstat(fd).st_size))
    finally:
        os.close(fd)


async def collect_outputs(blobs: BlobStore, tenant: str, output_dir: Path, limits: OutputLimits) -> CollectedOutputs:
    notes: list[str] = []
    artifacts: list[ArtifactRef] = []
    result_json: bytes | None = None
    dir_fd = os.open(output_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        unexpected = sorted(set(os.listdir(dir_fd)) - set(OUTPUT_FILES))
        if unexpected:
            listed = ", ".join(repr(n[:60]) for n in unexpected[:_MAX_LISTED])
            more = f" and {len(unexpected) - _MAX_LISTED} more" if len(unexpected) > _MAX_LISTED else ""
            notes.append(f"ignored unexpected /output entries {listed}{more}")
        for name in OUTPUT_FILES:
            limit = limits.max_result_bytes if name == RESULT_FILE else min(limits.max_output_bytes,
                                                                              blobs.max_blob_size)
            try:
                fd = os.open(name, _OPEN_FLAGS, dir_fd=dir_fd)
            except FileNotFoundError:
                continue
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    notes.append(f"refused /output/{name}: it is a symlink; only regular files are collected")
                else:
                    notes.append(f"refused /output/{name}: cannot open it ({exc.strerror})")
                continue
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    notes.append(f"refused /output/{name}: not a regular file")
                    continue
                if st.st_size > limit:
                    notes.append(f"refused /output/{name}: {st.st_size} bytes is over the limit of {limit} bytes")
                    continue
                if name == RESULT_FILE:
                    result_json = os.pread(fd, st.st_size, 0)
                else:
                    artifacts.append(ArtifactRef(name, await store_fd(blobs, tenant, fd, st.st_size)))
            finally:
                os.close(fd)
    finally:
        with contextlib.suppress(OSError):
            os.close(dir_fd)
    return CollectedOutputs(tuple(artifacts), result_json, tuple(notes))
