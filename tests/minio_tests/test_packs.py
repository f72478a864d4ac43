"""The local executor's `materialize` on MinIO goes through the snapshot's pack: built once from the
blobs, stored under `packs/`, then fetched in one request; a pack that vanished or was damaged is built
again; concurrent materialisations build it once."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import stat
import time
from pathlib import Path

import pytest
from contract.port_only import PortOnly
from minio import Minio

from runner.adapters.local_executor.materialize import materialize
from runner.adapters.minio import MinioBlobStore
from runner.domain.errors import InvalidArgument, NotFound, Unavailable
from runner.domain.models import EMPTY_DIGEST, Digest, FileKind, Manifest, ManifestEntry
from runner.ports import BlobStore

from .conftest import MAX_BLOB_SIZE

pytestmark = pytest.mark.timeout(60)
log = logging.getLogger(__name__)

TENANT = "tenant-a"


async def snapshot(store: BlobStore) -> Manifest:
    async def entry(path: str, kind: FileKind, data: bytes) -> ManifestEntry:
        return ManifestEntry(path, kind, await store.put_bytes(TENANT, data))

    return Manifest((
        await entry("README.md", FileKind.FILE, b"# readme\n"),
        await entry("bin/tool", FileKind.EXECUTABLE, b"#!/bin/sh\necho tool\n"),
        await entry("src/pkg/mod.py", FileKind.FILE, b"x = 1\n"),
        await entry("src/pkg/up", FileKind.SYMLINK, b"../../README.md"),
        await entry("data/big.bin", FileKind.FILE, os.urandom(3 << 20)),
        ManifestEntry("empty.txt", FileKind.FILE, EMPTY_DIGEST),
    ))


async def check_tree(store: BlobStore, manifest: Manifest, root: Path) -> None:
    for entry in manifest.entries:
        path = root / entry.path
        if entry.kind is FileKind.SYMLINK:
            assert os.readlink(path) == (await store.get_bytes(TENANT, entry.digest)).decode()
        elif entry.digest.size == 0:
            assert path.read_bytes() == b""
        else:
            assert path.read_bytes() == await store.get_bytes(TENANT, entry.digest)
            assert stat.S_IMODE(path.stat().st_mode) == (0o755 if entry.kind is FileKind.EXECUTABLE else 0o644)


def fresh(tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    root.mkdir()
    return root


def objects(raw: Minio, bucket: str, prefix: str) -> list[str]:
    return [o.object_name or "" for o in raw.list_objects(bucket, prefix=prefix, recursive=True)]


async def test_materialize_builds_the_pack_once_then_uses_it(store: MinioBlobStore, raw: Minio,
                                                            tmp_path: Path) -> None:
    manifest = await snapshot(store)
    stats = await materialize(store, TENANT, manifest, fresh(tmp_path, "first"))
    file_bytes = sum(e.digest.size for e in manifest.entries if e.kind is not FileKind.SYMLINK)
    assert (stats.files, stats.symlinks, stats.bytes) == (5, 1, file_bytes)
    await check_tree(store, manifest, tmp_path / "first")
    packs = objects(raw, store.settings.bucket, "packs/")
    assert len(packs) == 1 and packs[0].startswith("packs/tenant-a/")

    # With every blob gone, only the pack can still provide the snapshot.
    blobs = {e.digest: await store.get_bytes(TENANT, e.digest) for e in manifest.entries if e.digest.size}
    for name in objects(raw, store.settings.bucket, "cas/"):
        raw.remove_object(store.settings.bucket, name)
    await materialize(store, TENANT, manifest, fresh(tmp_path, "second"))
    for entry in manifest.entries:
        if entry.kind is not FileKind.SYMLINK and entry.digest.size:
            assert (tmp_path / "second" / entry.path).read_bytes() == blobs[entry.digest]

    # Another process (another store: nothing remembered) finds the stored pack too.
    async with await MinioBlobStore.open(store.settings, max_blob_size=MAX_BLOB_SIZE) as other:
        await materialize(other, TENANT, manifest, fresh(tmp_path, "third"))
    assert os.readlink(tmp_path / "third/src/pkg/up") == "../../README.md"


async def test_a_vanished_or_damaged_pack_is_built_again(store: MinioBlobStore, raw: Minio, tmp_path: Path) -> None:
    manifest = await snapshot(store)
    ref = await store.packs.ensure(TENANT, manifest)
    [name] = objects(raw, store.settings.bucket, "packs/")
    raw.remove_object(store.settings.bucket, name)
    await materialize(store, TENANT, manifest, fresh(tmp_path, "after-removal"))  # remembered, gone: rebuilt
    await check_tree(store, manifest, tmp_path / "after-removal")
    assert objects(raw, store.settings.bucket, "packs/") == [name]

    # Damaged in place, its recorded digest kept: the fetch is refused, the pack removed, and rebuilt.
    damaged = os.urandom(ref.digest.size)
    raw.put_object(store.settings.bucket, name, io.BytesIO(damaged), len(damaged), metadata={"sha256": ref.digest.hash})
    async with await MinioBlobStore.open(store.settings, max_blob_size=MAX_BLOB_SIZE) as other:
        with pytest.raises(Unavailable, match="damaged"):
            await materialize(other, TENANT, manifest, fresh(tmp_path, "damaged"))
        assert objects(raw, store.settings.bucket, "packs/") == []
        await materialize(other, TENANT, manifest, fresh(tmp_path, "rebuilt"))
        await check_tree(store, manifest, tmp_path / "rebuilt")


async def test_concurrent_materialisations_build_one_pack(store: MinioBlobStore, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    manifest = await snapshot(store)
    caplog.set_level(logging.INFO, logger="runner.snapshots.packs")
    roots = [fresh(tmp_path, f"ws{i}") for i in range(4)]
    await asyncio.gather(*(materialize(store, TENANT, manifest, root) for root in roots))
    for root in roots:
        await check_tree(store, manifest, root)
    assert sum(r.getMessage() == "built a snapshot pack" for r in caplog.records) == 1


async def test_errors_are_those_of_materialize(store: MinioBlobStore, tmp_path: Path) -> None:
    missing = Manifest((ManifestEntry("f", FileKind.FILE, Digest.of(b"never uploaded")),))
    with pytest.raises(NotFound):
        await materialize(store, TENANT, missing, fresh(tmp_path, "a"))
    out = Manifest((ManifestEntry("up", FileKind.SYMLINK, await store.put_bytes(TENANT, b"../outside")),))
    with pytest.raises(InvalidArgument, match="outside the workspace"):
        await materialize(store, TENANT, out, fresh(tmp_path, "b"))
    good = ManifestEntry("a.txt", FileKind.FILE, await store.put_bytes(TENANT, b"a"))
    with pytest.raises(InvalidArgument):
        await materialize(store, TENANT, Manifest((good, ManifestEntry("../x", FileKind.FILE, good.digest))),
                          fresh(tmp_path, "c"))
    assert list((tmp_path / "c").iterdir()) == []
    assert (await materialize(store, TENANT, Manifest(()), fresh(tmp_path, "d"))).files == 0


@pytest.mark.timeout(180)
async def test_a_large_snapshot_through_the_pack_and_file_by_file(store: MinioBlobStore, tmp_path: Path) -> None:
    """2,000 files in 100 folders: correct both ways; times reported (not asserted)."""
    items = [(f"d{i % 100}/f{i}.txt", f"content {i}\n".encode() * 20) for i in range(2000)]
    await store.put_many(TENANT, [(Digest.of(data), data) for _, data in items])
    manifest = Manifest(tuple(ManifestEntry(path, FileKind.FILE, Digest.of(data)) for path, data in items))
    timings = {}
    for name, via in (("file by file", PortOnly(store)), ("first, building the pack", store),
                      ("pack reused", store)):
        root = fresh(tmp_path, name.replace(" ", "-").replace(",", ""))
        started = time.monotonic()
        await materialize(via, TENANT, manifest, root)
        timings[name] = (time.monotonic() - started) * 1000
        assert (root / "d42/f1942.txt").read_bytes() == b"content 1942\n" * 20
    log.info("materialised 2,000 files from MinIO: %s",
             ", ".join(f"{name} {ms:.0f} ms" for name, ms in timings.items()))
