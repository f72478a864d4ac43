"""Writing a snapshot into a workspace: contents, modes, symlinks, folders; copies, never links; bad
entries refused before anything is written through them. Both ways of copying are checked: the
filesystem store's own `copy_to`, and plain streaming through the BlobStore port."""

from __future__ import annotations

import logging
import os
import stat
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from contract.port_only import PortOnly
from sandbox_testing import TENANT, MakeExecutor, make_job, results_of

from runner.adapters.embedded.fs_blob_store import FsBlobStore
from runner.adapters.local_executor.materialize import CopiesBlobsToFiles, materialize
from runner.domain.errors import InvalidArgument, NotFound
from runner.domain.models import EMPTY_DIGEST, Digest, FileKind, Manifest, ManifestEntry
from runner.ports import BlobStore

pytestmark = pytest.mark.timeout(30)
log = logging.getLogger(__name__)


@pytest.fixture(params=["copy_to", "port"])
def store(request: pytest.FixtureRequest, blobs: FsBlobStore) -> BlobStore:
    chosen: BlobStore = blobs if request.param == "copy_to" else PortOnly(blobs)
    assert isinstance(chosen, CopiesBlobsToFiles) == (request.param == "copy_to")
    return chosen


@pytest.fixture
def strict_umask() -> Iterator[None]:
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


async def _entry(store: BlobStore, path: str, kind: FileKind, data: bytes) -> ManifestEntry:
    return ManifestEntry(path, kind, await store.put_bytes(TENANT, data))


@pytest.mark.usefixtures("strict_umask")
@pytest.mark.parametrize("extra_files", [0, 150], ids=["small", "threaded"])
async def test_files_modes_symlinks_and_folders(store: BlobStore, blobs: FsBlobStore, tmp_path: Path,
                                                extra_files: int) -> None:
    entries = [
        await _entry(store, "README.md", FileKind.FILE, b"# readme\n"),
        await _entry(store, "bin/tool", FileKind.EXECUTABLE, b"#!/bin/sh\necho tool ran\n"),
        await _entry(store, "src/pkg/mod.py", FileKind.FILE, b"x = 1\n"),
        await _entry(store, "deep/a/b/c/d.txt", FileKind.FILE, b"deep"),
        await _entry(store, "link-to-readme", FileKind.SYMLINK, b"README.md"),
        await _entry(store, "src/pkg/up", FileKind.SYMLINK, b"../../README.md"),
        ManifestEntry("empty.txt", FileKind.FILE, EMPTY_DIGEST),  # never uploaded: nothing to read
    ]
    for i in range(extra_files):
        entries.append(await _entry(store, f"many/d{i % 7}/f{i}.txt", FileKind.FILE, f"file {i}".encode()))
    root = tmp_path / "ws"
    root.mkdir()

    stats = await materialize(store, TENANT, Manifest(tuple(entries)), root)

    assert (stats.files, stats.symlinks) == (5 + extra_files, 2)
    assert (root / "README.md").read_bytes() == b"# readme\n"
    assert (root / "deep/a/b/c/d.txt").read_bytes() == b"deep"
    assert (root / "empty.txt").read_bytes() == b""
    assert stat.S_IMODE((root / "README.md").stat().st_mode) == 0o644
    assert stat.S_IMODE((root / "bin/tool").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "deep/a/b").stat().st_mode) == 0o755
    assert os.readlink(root / "link-to-readme") == "README.md"
    assert (root / "src/pkg/up").read_bytes() == b"# readme\n"
    for i in range(extra_files):
        assert (root / f"many/d{i % 7}/f{i}.txt").read_bytes() == f"file {i}".encode()
    # A copy, not a link to the stored blob: writing the workspace can never change the store.
    readme = (root / "README.md").stat()
    stored = blobs.path_of(TENANT, entries[0].digest).stat()
    assert readme.st_nlink == 1 and readme.st_ino != stored.st_ino


@pytest.mark.parametrize(("path", "target", "message"), [
    ("up", b"../outside", "outside the workspace"),
    ("a/b/up", b"../../../etc", "outside the workspace"),
    ("abs", b"/etc/passwd", "absolute path"),
])
async def test_symlinks_out_of_the_workspace_are_refused(store: BlobStore, tmp_path: Path, path: str,
                                                         target: bytes, message: str) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    manifest = Manifest((await _entry(store, path, FileKind.SYMLINK, target),))
    with pytest.raises(InvalidArgument, match=message):
        await materialize(store, TENANT, manifest, root)
    assert not any(p.is_symlink() for p in root.rglob("*"))


async def test_bad_paths_are_refused_before_anything_is_written(store: BlobStore, tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    good = await _entry(store, "a.txt", FileKind.FILE, b"a")
    for bad in ("../escape.txt", "/etc/x", "a/../../b", "a//b"):
        with pytest.raises(InvalidArgument):
            await materialize(store, TENANT, Manifest((good, ManifestEntry(bad, FileKind.FILE, good.digest))), root)
    assert list(root.iterdir()) == []
    assert not (tmp_path / "escape.txt").exists()


async def test_nothing_is_written_through_a_symlink(store: BlobStore, tmp_path: Path) -> None:
    # A manifest whose folder "a" is also a symlink (validation refuses it upstream; here too).
    root = tmp_path / "ws"
    root.mkdir()
    manifest = Manifest((
        await _entry(store, "a", FileKind.SYMLINK, b"real"),
        await _entry(store, "a/b", FileKind.FILE, b"through the link"),
        await _entry(store, "real/x", FileKind.FILE, b"x"),
    ))
    with pytest.raises(OSError):
        await materialize(store, TENANT, manifest, root)
    assert not (root / "real" / "b").exists()


async def test_a_missing_blob_is_a_clear_error(store: BlobStore, tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    missing = Digest.of(b"never uploaded")
    with pytest.raises(NotFound):
        await materialize(store, TENANT, Manifest((ManifestEntry("f", FileKind.FILE, missing),)), root)


async def test_the_sandbox_sees_the_snapshot(make_executor: MakeExecutor, blobs: FsBlobStore) -> None:
    entries = (
        await _entry(blobs, "README.md", FileKind.FILE, b"# readme\n"),
        await _entry(blobs, "bin/tool", FileKind.EXECUTABLE, b"#!/bin/sh\necho tool ran in $(pwd)\n"),
        await _entry(blobs, "docs/readme-link", FileKind.SYMLINK, b"../README.md"),
    )
    executor = await make_executor()
    outcome = await executor.run(make_job(textwrap.dedent("""
        results["tree"] = sorted(os.path.join(d, f) for d, _, fs in os.walk(".") for f in fs)
        results["tool"] = subprocess.run(["./bin/tool"], capture_output=True, text=True).stdout
        results["executable"] = {p: os.access(p, os.X_OK) for p in ("bin/tool", "README.md")}
        results["link"] = [os.readlink("docs/readme-link"), open("docs/readme-link").read()]
        open("README.md", "a").write("edited\\n")  # the agent owns its copy
        results["edited"] = open("README.md").read()
    """), Manifest(entries)))
    found = results_of(outcome)
    assert found["tree"] == ["./README.md", "./bin/tool", "./docs/readme-link"]
    assert found["tool"] == "tool ran in /workspace\n"
    assert found["executable"] == {"bin/tool": True, "README.md": False}
    assert found["link"] == ["../README.md", "# readme\n"]
    assert found["edited"] == "# readme\nedited\n"
    assert await blobs.get_bytes(TENANT, entries[0].digest) == b"# readme\n"


@pytest.mark.timeout(60)
async def test_a_large_snapshot(store: BlobStore, tmp_path: Path) -> None:
    """5,000 files in 100 folders: correct, and the time it takes is reported (not asserted)."""
    entries = [await _entry(store, f"d{i % 100}/f{i}.txt", FileKind.FILE, f"content {i}\n".encode() * 20)
               for i in range(5000)]
    root = tmp_path / "ws"
    root.mkdir()
    t0 = time.monotonic()
    stats = await materialize(store, TENANT, Manifest(tuple(entries)), root)
    log.info("materialised 5,000 files with %s in %.1f ms", type(store).__name__, (time.monotonic() - t0) * 1000)
    assert stats.files == 5000
    assert (root / "d42/f4242.txt").read_bytes() == b"content 4242\n" * 20
