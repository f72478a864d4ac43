"""Upload a snapshot the Bazel-CAS way: ask what is missing, stream only that, then the manifest.

The manifest itself is stored as a blob (its serialized `Manifest` message), so an unchanged workspace
costs one FindMissingBlobs call and uploads nothing. Blobs are read in a worker thread in batches that
fill ~2 MiB messages (small files share a message; large ones are cut into 1 MiB chunks), while the
previous batch is on the wire.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner._proto.codex.runner.v1 import runner_pb2 as pb
from runner.api import codec
from runner.client.blob_source import BlobSource
from runner.client.connection import RunnerClient
from runner.client.hashing import hash_file
from runner.client.records import trusted_digest
from runner.domain import models as m
from runner.domain.errors import FailedPrecondition, InvalidArgument

MESSAGE_BYTES = 2 << 20
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class UploadStats:
    manifest_digest: m.Digest
    blobs_total: int
    blobs_uploaded: int
    bytes_uploaded: int
    seconds: float


def _chunks_of(digest: m.Digest, source: BlobSource) -> Iterator[pb.BlobChunk]:
    pdigest = codec.digest_to_pb(digest)
    if isinstance(source, bytes):
        data_iter: Iterator[bytes] = iter([source])
    else:
        data_iter = _read_file(source, digest)
    offset = 0
    pending: bytes | None = None
    for data in data_iter:
        if pending is not None:
            yield pb.BlobChunk(digest=pdigest, offset=offset, data=pending)
            offset += len(pending)
        pending = data
    yield pb.BlobChunk(digest=pdigest, offset=offset, data=pending or b"", last=True)


def _read_file(path: str | Path, digest: m.Digest) -> Iterator[bytes]:
    read = 0
    with open(path, "rb") as f:
        while True:
            data = f.read(CHUNK_BYTES)
            if not data:
                break
            read += len(data)
            yield data
    if read != digest.size:
        raise InvalidArgument(f"{path} changed while it was being uploaded ({read} bytes, expected "
                              f"{digest.size}); run the command again")


def _batches(items: Sequence[tuple[m.Digest, BlobSource]]) -> Iterator[list[pb.BlobChunk]]:
    batch: list[pb.BlobChunk] = []
    size = 0
    for digest, source in items:
        for chunk in _chunks_of(digest, source):
            batch.append(chunk)
            size += len(chunk.data) + 100
            if size >= MESSAGE_BYTES:
                yield batch
                batch, size = [], 0
    if batch:
        yield batch


async def _requests(items: Sequence[tuple[m.Digest, BlobSource]]) -> AsyncIterator[pb.UploadBlobsRequest]:
    gen = _batches(items)
    sentinel: list[pb.BlobChunk] = []

    def next_batch() -> list[pb.BlobChunk]:
        return next(gen, sentinel)

    pending = asyncio.ensure_future(asyncio.to_thread(next_batch))
    try:
        while True:
            batch = await pending
            if batch is sentinel:
                return
            pending = asyncio.ensure_future(asyncio.to_thread(next_batch))  # read ahead while sending
            yield pb.UploadBlobsRequest(chunks=batch)
    finally:
        if not pending.done():
            pending.cancel()


async def upload_snapshot(client: RunnerClient, manifest: m.Manifest,
                          sources: Mapping[m.Digest, BlobSource], verify_all: bool = False) -> UploadStats:
    started = time.perf_counter()
    manifest_bytes = codec.manifest_to_bytes(manifest)
    manifest_digest = m.Digest.of(manifest_bytes)
    wanted = list(dict.fromkeys([*(e.digest for e in manifest.entries), manifest_digest]))
    # The runner stores a manifest only after its own blobs (they are uploaded first), so a stored
    # manifest usually means an unchanged workspace: one digest to ask about instead of thousands.
    # If a blob went missing since, CreateTask says so and `upload_snapshot(..., verify_all=True)` fixes it.
    if not verify_all and not await client.find_missing([manifest_digest]):
        return UploadStats(manifest_digest, len(wanted), 0, 0, time.perf_counter() - started)
    missing = await client.find_missing(wanted)
    blobs_uploaded = bytes_uploaded = 0
    if missing:
        missing_set = set(missing)
        # File blobs first, the manifest last: the runner checks a manifest's blobs when a task is created.
        items: list[tuple[m.Digest, BlobSource]] = [
            (d, sources[d]) for d in wanted if d in missing_set and d != manifest_digest]
        if manifest_digest in missing_set:
            items.append((manifest_digest, manifest_bytes))
        blobs_uploaded, bytes_uploaded = await client.upload(_requests(items))
    return UploadStats(manifest_digest, len(wanted), blobs_uploaded, bytes_uploaded,
                       time.perf_counter() - started)


async def upload_file(client: RunnerClient, path: Path, max_bytes: int) -> tuple[m.Digest, int]:
    """Upload one file as a blob (a zip archive) unless the runner has it already: its digest and the
    bytes sent."""
    found = await asyncio.to_thread(hash_file, str(path), 0, max_bytes)
    digest = trusted_digest(found.hexdigest, found.size)
    if not await client.find_missing([digest]):
        return digest, 0
    _, sent = await client.upload(_requests([(digest, path)]))
    return digest, sent


async def submit_task(client: RunnerClient, manifest: m.Manifest, sources: Mapping[m.Digest, BlobSource],
                      instruction: str, **create: Any) -> tuple[m.TaskRecord, UploadStats]:
    """Upload what the runner lacks and create the task; if the runner reports blobs missing that the
    quick check took as present, upload with the full check and create again."""
    stats = await upload_snapshot(client, manifest, sources)
    try:
        task = await client.create_task(instruction, manifest_digest=stats.manifest_digest, **create)
    except FailedPrecondition:
        stats = await upload_snapshot(client, manifest, sources, verify_all=True)
        task = await client.create_task(instruction, manifest_digest=stats.manifest_digest, **create)
    return task, stats
