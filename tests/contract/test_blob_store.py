"""Contract of `BlobStore` (and `BlobWriter`), for every adapter in `conftest.BLOB_STORES`."""

from __future__ import annotations

import asyncio
import os

import pytest

from runner.domain.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from runner.domain.models import EMPTY_DIGEST, Digest
from runner.ports import BlobStore

pytestmark = pytest.mark.timeout(30)

TENANT = "tenant-a"
OTHER = "tenant-b"


async def upload(store: BlobStore, tenant: str, data: bytes, chunk: int = 64 * 1024) -> Digest:
    digest = Digest.of(data)
    writer = await store.writer(tenant, digest)
    for offset in range(0, len(data), chunk):
        await writer.write(data[offset:offset + chunk])
    await writer.commit()
    return digest


async def read_all(store: BlobStore, tenant: str, digest: Digest, chunk_size: int = 1 << 20) -> bytes:
    return b"".join([chunk async for chunk in store.read(tenant, digest, chunk_size)])


def other_bytes_same_size(data: bytes) -> bytes:
    return bytes([data[0] ^ 0xFF]) + data[1:]


# ---- storing and reading --------------------------------------------------------------------------------


async def test_put_bytes_returns_the_digest_and_get_bytes_returns_the_data(blob_store: BlobStore) -> None:
    data = b"hello, blob"
    digest = await blob_store.put_bytes(TENANT, data)
    assert digest == Digest.of(data)
    assert await blob_store.get_bytes(TENANT, digest) == data
    assert await blob_store.find_missing(TENANT, [digest]) == []


async def test_put_bytes_twice_is_harmless(blob_store: BlobStore) -> None:
    first = await blob_store.put_bytes(TENANT, b"same")
    second = await blob_store.put_bytes(TENANT, b"same")
    assert first == second
    assert await blob_store.get_bytes(TENANT, first) == b"same"


async def test_put_many_stores_every_item_verified(blob_store: BlobStore) -> None:
    items = [(Digest.of(data), data) for data in (b"one", b"two", b"", os.urandom(50_000))]
    await blob_store.put_many(TENANT, items)
    assert await blob_store.find_missing(TENANT, [d for d, _ in items]) == []
    for digest, data in items:
        assert await blob_store.get_bytes(TENANT, digest) == data
    assert await blob_store.find_missing(OTHER, [items[0][0]]) == [items[0][0]]


async def test_put_many_with_one_lying_item_stores_none_of_them(blob_store: BlobStore) -> None:
    good = (Digest.of(b"good item"), b"good item")
    liar = (Digest.of(b"claimed"), b"delivered")
    existing = await blob_store.put_bytes(TENANT, b"claimed")
    with pytest.raises(InvalidArgument, match=liar[0].hash):
        await blob_store.put_many(TENANT, [good, liar])
    assert await blob_store.find_missing(TENANT, [good[0]]) == [good[0]]
    assert await blob_store.get_bytes(TENANT, existing) == b"claimed"


async def test_put_many_with_an_item_given_twice_stores_it_once(blob_store: BlobStore) -> None:
    item = (Digest.of(b"twice"), b"twice")
    await blob_store.put_many(TENANT, [item, (Digest.of(b"once"), b"once"), item])
    assert await blob_store.get_bytes(TENANT, item[0]) == b"twice"
    assert await blob_store.find_missing(TENANT, [item[0], Digest.of(b"once")]) == []


async def test_put_many_refuses_an_item_over_the_size_limit(blob_store: BlobStore) -> None:
    big = b"x" * (blob_store.max_blob_size + 1)
    with pytest.raises(ResourceExhausted):
        await blob_store.put_many(TENANT, [(Digest.of(big), big)])


@pytest.mark.parametrize("size", [1, 100_000, (3 << 20) + 17])
async def test_writer_in_chunks_then_read_streams_the_same_bytes(blob_store: BlobStore, size: int) -> None:
    data = os.urandom(size)
    digest = await upload(blob_store, TENANT, data, chunk=100_000)
    assert await read_all(blob_store, TENANT, digest) == data
    assert await blob_store.get_bytes(TENANT, digest) == data


async def test_read_yields_chunks_no_larger_than_asked(blob_store: BlobStore) -> None:
    data = os.urandom((2 << 20) + 5)
    digest = await upload(blob_store, TENANT, data)
    chunks = [chunk async for chunk in blob_store.read(TENANT, digest, chunk_size=256 * 1024)]
    assert all(0 < len(c) <= 256 * 1024 for c in chunks)
    assert b"".join(chunks) == data
    small = await blob_store.put_bytes(TENANT, b"0123456789abcdef")
    chunks = [chunk async for chunk in blob_store.read(TENANT, small, chunk_size=7)]
    assert all(0 < len(c) <= 7 for c in chunks)
    assert b"".join(chunks) == b"0123456789abcdef"


async def test_readers_stopped_early_leave_the_store_usable(blob_store: BlobStore) -> None:
    data = os.urandom(3 << 20)
    digest = await upload(blob_store, TENANT, data)
    for _ in range(25):
        stream = blob_store.read(TENANT, digest, chunk_size=64 * 1024)
        assert len(await anext(stream)) == 64 * 1024
        await stream.aclose()
    task = asyncio.create_task(read_all(blob_store, TENANT, digest, chunk_size=4096))
    await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await read_all(blob_store, TENANT, digest) == data


async def test_empty_blob(blob_store: BlobStore) -> None:
    assert await blob_store.put_bytes(TENANT, b"") == EMPTY_DIGEST
    assert await blob_store.get_bytes(TENANT, EMPTY_DIGEST) == b""
    assert await read_all(blob_store, TENANT, EMPTY_DIGEST) == b""
    writer = await blob_store.writer(OTHER, EMPTY_DIGEST)
    await writer.commit()
    assert await blob_store.find_missing(OTHER, [EMPTY_DIGEST]) == []


async def test_nothing_is_visible_before_commit(blob_store: BlobStore) -> None:
    data = os.urandom(200_000)
    digest = Digest.of(data)
    writer = await blob_store.writer(TENANT, digest)
    await writer.write(data[:150_000])
    await writer.write(data[150_000:])
    assert await blob_store.find_missing(TENANT, [digest]) == [digest]
    with pytest.raises(NotFound):
        await blob_store.get_bytes(TENANT, digest)
    await writer.commit()
    assert await blob_store.find_missing(TENANT, [digest]) == []


async def test_concurrent_writers_of_the_same_digest_all_succeed(blob_store: BlobStore) -> None:
    data = os.urandom(300_000)
    results = await asyncio.gather(*(upload(blob_store, TENANT, data, chunk=50_000) for _ in range(8)))
    assert set(results) == {Digest.of(data)}
    assert await blob_store.get_bytes(TENANT, Digest.of(data)) == data


async def test_many_small_blobs_written_concurrently(blob_store: BlobStore) -> None:
    blobs = [os.urandom(1000 + i) for i in range(300)]
    digests = await asyncio.gather(*(upload(blob_store, TENANT, b) for b in blobs))
    assert await blob_store.find_missing(TENANT, digests) == []
    got = await asyncio.gather(*(blob_store.get_bytes(TENANT, d) for d in digests))
    assert got == blobs


# ---- find_missing -----------------------------------------------------------------------------------------


async def test_find_missing_keeps_the_given_order_and_drops_duplicates(blob_store: BlobStore) -> None:
    stored = [await blob_store.put_bytes(TENANT, f"stored {i}".encode()) for i in range(3)]
    absent = [Digest.of(f"absent {i}".encode()) for i in range(4)]
    query = [absent[2], stored[0], absent[0], absent[2], stored[1], absent[3], absent[0], absent[1], stored[2]]
    assert await blob_store.find_missing(TENANT, query) == [absent[2], absent[0], absent[3], absent[1]]
    assert await blob_store.find_missing(TENANT, []) == []


async def test_find_missing_with_thousands_of_digests(blob_store: BlobStore) -> None:
    stored = await asyncio.gather(*(blob_store.put_bytes(TENANT, f"blob {i}".encode()) for i in range(0, 3000, 3)))
    query = [Digest.of(f"blob {i}".encode()) for i in range(3000)]
    expected = [d for i, d in enumerate(query) if i % 3]
    assert await blob_store.find_missing(TENANT, query) == expected
    assert await blob_store.find_missing(TENANT, list(stored)) == []
    assert await blob_store.find_missing(TENANT, list(reversed(query))) == list(reversed(expected))


async def test_find_missing_sees_a_blob_stored_just_before(blob_store: BlobStore) -> None:
    query = [Digest.of(f"late {i}".encode()) for i in range(500)]
    assert await blob_store.find_missing(TENANT, query) == query
    await blob_store.put_bytes(TENANT, b"late 7")
    assert await blob_store.find_missing(TENANT, query) == [d for d in query if d != query[7]]


# ---- refused writes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [10, 2 << 20])
async def test_commit_of_bytes_that_do_not_match_stores_nothing(blob_store: BlobStore, size: int) -> None:
    data = os.urandom(size)
    digest = Digest.of(data)
    writer = await blob_store.writer(TENANT, digest)
    await writer.write(other_bytes_same_size(data))
    with pytest.raises(InvalidArgument) as err:
        await writer.commit()
    assert digest.hash in str(err.value)
    assert await blob_store.find_missing(TENANT, [digest]) == [digest]
    with pytest.raises(NotFound):
        await blob_store.get_bytes(TENANT, digest)
    await writer.abort()  # still safe


async def test_commit_mismatch_leaves_a_stored_blob_untouched(blob_store: BlobStore) -> None:
    data = os.urandom(50_000)
    digest = await upload(blob_store, TENANT, data)
    writer = await blob_store.writer(TENANT, digest)
    await writer.write(other_bytes_same_size(data))
    with pytest.raises(InvalidArgument):
        await writer.commit()
    assert await blob_store.get_bytes(TENANT, digest) == data
    assert await read_all(blob_store, TENANT, digest) == data


async def test_commit_with_too_few_bytes_is_refused(blob_store: BlobStore) -> None:
    data = os.urandom(1000)
    digest = Digest.of(data)
    writer = await blob_store.writer(TENANT, digest)
    await writer.write(data[:999])
    with pytest.raises(InvalidArgument):
        await writer.commit()
    assert await blob_store.find_missing(TENANT, [digest]) == [digest]


async def test_writing_more_bytes_than_the_digest_says_is_refused(blob_store: BlobStore) -> None:
    data = os.urandom(1000)
    digest = Digest.of(data)
    writer = await blob_store.writer(TENANT, digest)
    await writer.write(data)
    with pytest.raises(InvalidArgument):
        await writer.write(b"x")
    assert await blob_store.find_missing(TENANT, [digest]) == [digest]


async def test_abort_discards_and_is_safe_after_commit(blob_store: BlobStore) -> None:
    data = os.urandom(2 << 20)
    digest = Digest.of(data)
    writer = await blob_store.writer(TENANT, digest)
    await writer.write(data[: 1 << 20])
    await writer.write(data[1 << 20:])
    await writer.abort()
    await writer.abort()
    assert await blob_store.find_missing(TENANT, [digest]) == [digest]
    with pytest.raises(FailedPrecondition):
        await writer.commit()

    writer = await blob_store.writer(TENANT, digest)
    await writer.write(data)
    await writer.commit()
    await writer.abort()
    assert await blob_store.get_bytes(TENANT, digest) == data


async def test_a_blob_over_the_size_limit_is_refused(blob_store: BlobStore) -> None:
    limit = blob_store.max_blob_size
    assert limit > 0
    too_big = Digest("0" * 64, limit + 1)
    with pytest.raises(ResourceExhausted):
        await blob_store.writer(TENANT, too_big)
    with pytest.raises(ResourceExhausted):
        await blob_store.put_bytes(TENANT, bytes(limit + 1))


async def test_a_blob_of_exactly_the_size_limit_is_accepted(blob_store: BlobStore) -> None:
    data = os.urandom(blob_store.max_blob_size)
    digest = await upload(blob_store, TENANT, data, chunk=1 << 20)
    assert await blob_store.get_bytes(TENANT, digest) == data


# ---- tenants and absent blobs -------------------------------------------------------------------------------


async def test_tenants_do_not_see_each_others_blobs(blob_store: BlobStore) -> None:
    digest = await blob_store.put_bytes(TENANT, b"secret of tenant a")
    assert await blob_store.find_missing(OTHER, [digest]) == [digest]
    with pytest.raises(NotFound):
        await blob_store.get_bytes(OTHER, digest)
    with pytest.raises(NotFound):
        await read_all(blob_store, OTHER, digest)
    # The other tenant uploading the same bytes stores its own copy; both read back.
    assert await blob_store.put_bytes(OTHER, b"secret of tenant a") == digest
    assert await blob_store.get_bytes(OTHER, digest) == b"secret of tenant a"
    assert await blob_store.get_bytes(TENANT, digest) == b"secret of tenant a"


async def test_reading_an_absent_blob_raises_not_found_on_first_iteration(blob_store: BlobStore) -> None:
    digest = Digest.of(b"never stored")
    stream = blob_store.read(TENANT, digest)  # creating the stream does not raise
    with pytest.raises(NotFound):
        await anext(stream)
    with pytest.raises(NotFound):
        await blob_store.get_bytes(TENANT, digest)
