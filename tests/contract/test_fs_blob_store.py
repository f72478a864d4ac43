"""What only the embedded `FsBlobStore` promises: its layout on disk, verification against damage done to
its files, tenant-name checks, persistence, and the helpers the local executor uses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runner.adapters.embedded import FsBlobStore
from runner.domain.errors import InvalidArgument, NotFound, Unavailable
from runner.domain.models import Digest

pytestmark = pytest.mark.timeout(30)

TENANT = "tenant-a"
MAX = 8 << 20


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FsBlobStore]:
    async with FsBlobStore(tmp_path / "blobs", MAX) as s:
        yield s


def damage(path: Path, *, truncate: bool = False) -> None:
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        if truncate:
            f.truncate(path.stat().st_size - 1)
        else:
            f.seek(path.stat().st_size // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0x01]))


async def test_layout_is_tenant_then_sha256_then_two_hex_digits(store: FsBlobStore, tmp_path: Path) -> None:
    digest = await store.put_bytes(TENANT, b"layout")
    path = tmp_path / "blobs" / TENANT / "sha256" / digest.hash[:2] / digest.hash
    assert store.path_of(TENANT, digest) == path
    assert path.read_bytes() == b"layout"
    assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert list((tmp_path / "blobs" / ".tmp").iterdir()) == []
    with pytest.raises(NotFound):
        store.path_of(TENANT, Digest.of(b"absent"))


@pytest.mark.parametrize("tenant", ["", "../x", "a/b", ".hidden", "-dash", "x" * 129, "t\x00", "caf\u00e9"])
async def test_tenant_names_that_could_leave_the_namespace_are_refused(store: FsBlobStore, tenant: str) -> None:
    digest = Digest.of(b"x")
    with pytest.raises(InvalidArgument):
        await store.put_bytes(tenant, b"x")
    with pytest.raises(InvalidArgument):
        await store.writer(tenant, digest)
    with pytest.raises(InvalidArgument):
        await store.find_missing(tenant, [digest])
    with pytest.raises(InvalidArgument):
        await store.get_bytes(tenant, digest)
    with pytest.raises(InvalidArgument):
        await anext(store.read(tenant, digest))


@pytest.mark.parametrize("size", [5000, 3 << 20])
async def test_a_blob_damaged_on_disk_is_unavailable_then_set_aside(store: FsBlobStore, tmp_path: Path,
                                                                    size: int) -> None:
    data = os.urandom(size)
    digest = await store.put_bytes(TENANT, data)
    damage(store.path_of(TENANT, digest))

    with pytest.raises(Unavailable):
        async for _ in store.read(TENANT, digest, chunk_size=1 << 20):
            pass
    # Set aside: reported missing, so the next upload repairs it.
    assert len(list((tmp_path / "blobs" / ".quarantine").iterdir())) == 1
    assert await store.find_missing(TENANT, [digest]) == [digest]
    await store.put_bytes(TENANT, data)
    assert await store.get_bytes(TENANT, digest) == data


async def test_get_bytes_of_a_damaged_blob_is_unavailable(store: FsBlobStore) -> None:
    digest = await store.put_bytes(TENANT, os.urandom(1000))
    damage(store.path_of(TENANT, digest))
    with pytest.raises(Unavailable):
        await store.get_bytes(TENANT, digest)


async def test_a_truncated_blob_is_unavailable_and_reported_missing(store: FsBlobStore) -> None:
    data = os.urandom(2 << 20)
    digest = await store.put_bytes(TENANT, data)
    damage(store.path_of(TENANT, digest), truncate=True)
    with pytest.raises(Unavailable):
        await anext(store.read(TENANT, digest))
    assert await store.find_missing(TENANT, [digest]) == [digest]


async def test_a_stored_hash_asked_for_with_another_size_is_not_found_and_left_alone(store: FsBlobStore) -> None:
    digest = await store.put_bytes(TENANT, b"twelve bytes")
    with pytest.raises(NotFound):
        await store.get_bytes(TENANT, Digest(digest.hash, 13))
    assert await store.get_bytes(TENANT, digest) == b"twelve bytes"


async def test_a_damaged_blob_replaced_by_a_sound_upload_is_repaired(store: FsBlobStore) -> None:
    data = os.urandom(4000)
    digest = await store.put_bytes(TENANT, data)
    damage(store.path_of(TENANT, digest), truncate=True)
    await store.put_bytes(TENANT, data)  # a stored file of the wrong size is replaced
    assert await store.get_bytes(TENANT, digest) == data


async def test_blobs_survive_a_new_store_on_the_same_folder(tmp_path: Path) -> None:
    async with FsBlobStore(tmp_path / "blobs", MAX) as first:
        digest = await first.put_bytes(TENANT, b"kept")
    async with FsBlobStore(tmp_path / "blobs", MAX) as second:
        assert await second.find_missing(TENANT, [digest]) == []
        assert await second.get_bytes(TENANT, digest) == b"kept"


async def test_find_missing_notices_blobs_removed_behind_its_back(store: FsBlobStore) -> None:
    digests = await asyncio.gather(*(store.put_bytes(TENANT, f"blob {i}".encode()) for i in range(600)))
    # Make every shard folder old enough for its listing to be cached, then prime the cache.
    shards = store.path_of(TENANT, digests[0]).parent.parent
    old = time.time() - 60
    for shard in shards.iterdir():
        os.utime(shard, (old, old))
    assert await store.find_missing(TENANT, digests) == []
    assert await store.find_missing(TENANT, digests) == []
    # Another process removes two blobs (and adds one): the folders' mtimes change.
    removed = [digests[10], digests[500]]
    for d in removed:
        store.path_of(TENANT, d).unlink()
    assert await store.find_missing(TENANT, digests) == removed
    assert await store.find_missing(TENANT, removed[:1]) == removed[:1]


async def test_copy_to_makes_a_new_file_with_the_mode(store: FsBlobStore, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    digest = await store.put_bytes(TENANT, data)
    for verify in (False, True):
        dest = tmp_path / f"copy-{verify}"
        store.copy_to(TENANT, digest, dest, mode=0o755, verify=verify)
        assert dest.read_bytes() == data
        assert stat.S_IMODE(dest.stat().st_mode) & 0o100
        dest.write_bytes(b"changed")  # the copy is independent of the stored blob
    assert await store.get_bytes(TENANT, digest) == data


async def test_copy_to_refuses_an_existing_file_or_symlink(store: FsBlobStore, tmp_path: Path) -> None:
    digest = await store.put_bytes(TENANT, b"data")
    target = tmp_path / "outside"
    target.write_bytes(b"do not touch")
    link = tmp_path / "link"
    link.symlink_to(target)
    for dest in (target, link):
        with pytest.raises(FileExistsError):
            store.copy_to(TENANT, digest, dest)
    assert target.read_bytes() == b"do not touch"
    with pytest.raises(NotFound):
        store.copy_to(TENANT, Digest.of(b"absent"), tmp_path / "new")
    assert not (tmp_path / "new").exists()


async def test_copy_to_with_verify_refuses_a_damaged_blob(store: FsBlobStore, tmp_path: Path) -> None:
    digest = await store.put_bytes(TENANT, os.urandom(10_000))
    damage(store.path_of(TENANT, digest))
    with pytest.raises(Unavailable):
        store.copy_to(TENANT, digest, tmp_path / "dest", verify=True)
    assert not (tmp_path / "dest").exists()


async def test_no_temp_file_is_left_behind(store: FsBlobStore, tmp_path: Path) -> None:
    tmp = tmp_path / "blobs" / ".tmp"
    big = os.urandom(3 << 20)
    digest = Digest.of(big)
    # a refused commit, an abort, a failed write and a close with a writer open
    writer = await store.writer(TENANT, digest)
    await writer.write(big[:-1] + bytes([big[-1] ^ 1]))  # the last byte differs, whatever it was
    with pytest.raises(InvalidArgument):
        await writer.commit()
    writer = await store.writer(TENANT, digest)
    await writer.write(big[: 2 << 20])
    await writer.abort()
    writer = await store.writer(TENANT, digest)
    await writer.write(big)
    with pytest.raises(InvalidArgument):
        await writer.write(b"!")
    writer = await store.writer(TENANT, digest)
    await writer.write(big[: 2 << 20])
    await store.close()
    assert list(tmp.iterdir()) == []


async def test_a_cancelled_commit_leaves_either_the_blob_or_nothing(store: FsBlobStore, tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    digest = Digest.of(data)
    writer = await store.writer(TENANT, digest)
    await writer.write(data)
    commit = asyncio.create_task(writer.commit())
    await asyncio.sleep(0)
    commit.cancel()
    with pytest.raises(asyncio.CancelledError):
        await commit
    await writer.abort()
    assert list((tmp_path / "blobs" / ".tmp").iterdir()) == []
    if not await store.find_missing(TENANT, [digest]):
        assert await store.get_bytes(TENANT, digest) == data


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_abandoned_and_cancelled_reads_release_their_files(store: FsBlobStore) -> None:
    data = os.urandom(4 << 20)
    digest = await store.put_bytes(TENANT, data)
    before = open_fds()
    for _ in range(5):
        async for _chunk in store.read(TENANT, digest, chunk_size=1 << 20):
            break  # abandon after the first chunk
    for delay in (0, 0.001, 0.005):
        reading = asyncio.create_task(read_all(store, digest))
        await asyncio.sleep(delay)
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
    async with asyncio.timeout(5):
        while open_fds() > before:
            await asyncio.sleep(0.01)
    # Nothing was consumed from someone else's file: every blob still reads back whole and sound.
    assert await read_all(store, digest) == data
    assert await store.find_missing(TENANT, [digest]) == []


async def read_all(store: FsBlobStore, digest: Digest) -> bytes:
    return b"".join([chunk async for chunk in store.read(TENANT, digest, chunk_size=1 << 20)])


async def test_temp_files_of_a_crashed_process_are_swept(tmp_path: Path) -> None:
    tmp = tmp_path / "blobs" / ".tmp"
    tmp.mkdir(parents=True)
    stale, fresh = tmp / "1-stale", tmp / "2-fresh"
    stale.write_bytes(b"left over")
    fresh.write_bytes(b"being written by another process")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    async with FsBlobStore(tmp_path / "blobs", MAX) as store:
        await store.put_bytes(TENANT, b"first write sweeps")
    assert sorted(p.name for p in tmp.iterdir()) == ["2-fresh"]
