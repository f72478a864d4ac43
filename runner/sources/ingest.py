"""A fetched tree (a clone, an unpacked archive) into the BlobStore, as a snapshot's manifest.

The tree is read exactly as `codex-sys run` reads a workspace (`runner.client.snapshot.take_snapshot`):
`.git` is never entered, `.gitignore` rules apply to untracked files (a clone's files are all tracked, so
all are kept; an archive's `.gitignore` applies to its files), symbolic links that leave the tree are
left out, and the runner's snapshot limits (files, bytes, per-file size) hold. The blobs the tenant does
not have yet are stored: small ones in batches, large ones streamed from the file.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from runner.client.limits import format_bytes
from runner.client.snapshot import Snapshot, take_snapshot
from runner.domain.models import Digest
from runner.ports import BlobStore

BATCH_BYTES = 8 << 20
SMALL_BLOB = 1 << 20
STREAM_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class IngestLimits:
    max_files: int
    max_total_bytes: int
    max_file_bytes: int


async def ingest(tree: Path, blobs: BlobStore, tenant: str, limits: IngestLimits) -> Snapshot:
    """Snapshot `tree` and store its missing blobs for `tenant`."""
    snapshot = await asyncio.to_thread(take_snapshot, tree, max_files=limits.max_files,
                                       max_total_bytes=limits.max_total_bytes, max_file_bytes=limits.max_file_bytes)
    missing = await blobs.find_missing(tenant, list(snapshot.sources))
    batch: list[tuple[Digest, bytes]] = []
    batch_bytes = 0
    for digest in missing:
        source = snapshot.sources[digest]
        if not isinstance(source, bytes) and digest.size > SMALL_BLOB:
            await _stream(blobs, tenant, digest, os.fspath(source))
            continue
        data = source if isinstance(source, bytes) else await asyncio.to_thread(_read, os.fspath(source))
        batch.append((digest, data))
        batch_bytes += len(data)
        if batch_bytes >= BATCH_BYTES:
            await blobs.put_many(tenant, batch)
            batch, batch_bytes = [], 0
    if batch:
        await blobs.put_many(tenant, batch)
    return snapshot


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with open(fd, "rb") as f:
        return f.read()


async def _stream(blobs: BlobStore, tenant: str, digest: Digest, path: str) -> None:
    writer = await blobs.writer(tenant, digest)
    try:
        fd = await asyncio.to_thread(os.open, path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with await asyncio.to_thread(os.fdopen, fd, "rb") as f:
            while data := await asyncio.to_thread(f.read, STREAM_CHUNK):
                await writer.write(data)
        await writer.commit()
    except BaseException:
        await writer.abort()
        raise


def summary(snapshot: Snapshot) -> str:
    """"120 files, 1.3 MiB" (and what was left out)."""
    text = f"{snapshot.stats.files} files, {format_bytes(snapshot.stats.total_bytes)}"
    if snapshot.skipped:
        shown = "; ".join(str(s) for s in snapshot.skipped[:3])
        text += f"; left out {len(snapshot.skipped)}: {shown}" + ("; ..." if len(snapshot.skipped) > 3 else "")
    return text
