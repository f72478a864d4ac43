"""MinIO down for a few seconds: every call fails fast with `Unavailable` naming the server, nothing
half-written ever becomes visible, and the same store works again once MinIO is back."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from servers import MinioServer

from runner.adapters.minio import MinioBlobStore
from runner.domain.errors import NotFound, Unavailable
from runner.domain.models import Digest

from .conftest import MAX_BLOB_SIZE, settings_of

pytestmark = pytest.mark.timeout(90)
log = logging.getLogger(__name__)

TENANT = "tenant-a"


async def read_all(store: MinioBlobStore, digest: Digest) -> bytes:
    return b"".join([chunk async for chunk in store.read(TENANT, digest, 256 * 1024)])


async def test_an_outage_is_unavailable_and_leaves_nothing_partial(
        minio_server_factory: Callable[[], MinioServer], tmp_path: Path) -> None:
    server = minio_server_factory()
    async with await MinioBlobStore.open(settings_of(server), max_blob_size=MAX_BLOB_SIZE,
                                         spool_dir=tmp_path) as store:
        before = await store.put_bytes(TENANT, b"stored before the outage")
        big = os.urandom(3 << 20)
        small = b"small blob written during the outage"
        writers = []
        for data in (big, small):
            writer = await store.writer(TENANT, Digest.of(data))
            await writer.write(data)
            writers.append(writer)

        server.stop()
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "commit of a spooled writer": writers[0].commit,
            "commit of a small writer": writers[1].commit,
            "find_missing by HEADs": lambda: store.find_missing(TENANT, [before]),
            "find_missing by listing": lambda: store.find_missing(
                TENANT, [Digest.of(str(i).encode()) for i in range(500)]),
            "get_bytes": lambda: store.get_bytes(TENANT, before),
            "read": lambda: read_all(store, before),
            "put_bytes": lambda: store.put_bytes(TENANT, b"during"),
            "put_many": lambda: store.put_many(TENANT, [(Digest.of(b"x"), b"x"), (Digest.of(b"y"), b"y")]),
            "ensure_bucket": store.ensure_bucket,
            "find_pack": lambda: store.find_pack(TENANT, "0" * 64),
        }
        for what, call in calls.items():
            started = time.monotonic()
            with pytest.raises(Unavailable) as err:
                await call()
            took = time.monotonic() - started
            assert f"MinIO at {server.endpoint}" in str(err.value), what
            assert err.value.__cause__ is not None, what
            assert took < 5, f"{what} took {took:.1f} s to fail"
        log.info("during the outage: %s", err.value)

        server.start()
        assert await store.get_bytes(TENANT, before) == b"stored before the outage"
        assert await read_all(store, before) == b"stored before the outage"
        # The writers interrupted by the outage stored nothing; uploading again works.
        assert await store.find_missing(TENANT, [Digest.of(big), Digest.of(small)]) == \
            [Digest.of(big), Digest.of(small)]
        with pytest.raises(NotFound):
            await store.get_bytes(TENANT, Digest.of(small))
        assert await store.put_bytes(TENANT, big) == Digest.of(big)
        assert await read_all(store, Digest.of(big)) == big


async def test_a_server_killed_during_uploads_leaves_only_whole_blobs(
        minio_server_factory: Callable[[], MinioServer], tmp_path: Path) -> None:
    """Large (multipart) and small uploads in flight when MinIO is killed: each either failed with
    `Unavailable` or stored the whole verified blob; none is visible half-written."""
    server = minio_server_factory()
    async with await MinioBlobStore.open(settings_of(server), max_blob_size=MAX_BLOB_SIZE,
                                         spool_dir=tmp_path) as store:
        blobs = [os.urandom(40 << 20), *(os.urandom(200_000) for _ in range(20))]

        async def upload(data: bytes) -> bool:
            writer = await store.writer(TENANT, Digest.of(data))
            for offset in range(0, len(data), 1 << 20):
                await writer.write(data[offset:offset + (1 << 20)])
            try:
                await writer.commit()
            except Unavailable:
                return False
            return True

        uploads = [asyncio.create_task(upload(data)) for data in blobs]
        await asyncio.sleep(0.3)
        await asyncio.to_thread(server.stop, kill=True)
        committed = await asyncio.gather(*uploads)
        await asyncio.sleep(1)
        await asyncio.to_thread(server.start)
        log.info("%d of %d uploads completed before the kill", sum(committed), len(committed))

        missing = await store.find_missing(TENANT, [Digest.of(data) for data in blobs])
        for data, ok in zip(blobs, committed, strict=True):
            digest = Digest.of(data)
            if ok:
                assert digest not in missing
            if digest not in missing:
                assert await store.get_bytes(TENANT, digest) == data
            else:
                with pytest.raises(NotFound):
                    await store.get_bytes(TENANT, digest)
