"""The pack format: deterministic bytes any tar reads, a faithful round trip, and an unpacker that
refuses every hostile archive with a clear error and writes nothing outside its folder."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runner.adapters.embedded.fs_blob_store import FsBlobStore
from runner.domain.errors import InvalidArgument, NotFound, Unavailable
from runner.domain.models import EMPTY_DIGEST, Digest, FileKind, Manifest, ManifestEntry
from runner.snapshots import PackError, pack_key, unpack, unpack_file, write_pack

pytestmark = pytest.mark.timeout(30)

TENANT = "tenant-a"
LONG = "deep/" + "/".join(["a-rather-long-folder-name"] * 8) + "/file.txt"  # > 100 bytes: a PAX path


@pytest.fixture
async def blobs(tmp_path: Path) -> AsyncIterator[FsBlobStore]:
    async with FsBlobStore(tmp_path / "blobs", 64 << 20) as store:
        yield store


async def sample(blobs: FsBlobStore) -> Manifest:
    async def entry(path: str, kind: FileKind, data: bytes) -> ManifestEntry:
        return ManifestEntry(path, kind, await blobs.put_bytes(TENANT, data))

    return Manifest((
        await entry("src/main.py", FileKind.FILE, b"print('hi')\n"),
        await entry("README.md", FileKind.FILE, b"# readme\n"),
        await entry("bin/run", FileKind.EXECUTABLE, b"#!/bin/sh\necho run\n"),
        await entry("docs/readme", FileKind.SYMLINK, b"../README.md"),
        await entry(LONG, FileKind.FILE, b"long path\n"),
        await entry("ünïcödé/名前.txt", FileKind.FILE, b"unicode\n"),
        await entry("big.bin", FileKind.FILE, os.urandom(3 << 20)),
        ManifestEntry("empty.txt", FileKind.FILE, EMPTY_DIGEST),  # never uploaded: nothing to read
    ))


async def build(blobs: FsBlobStore, manifest: Manifest, path: Path) -> tuple[bytes, Digest]:
    digest = await write_pack(blobs, TENANT, manifest, path)
    data = path.read_bytes()
    assert Digest.of(data) == digest
    return data, digest


# ---- format ---------------------------------------------------------------------------------------------


async def test_the_same_manifest_gives_the_same_bytes(blobs: FsBlobStore, tmp_path: Path) -> None:
    manifest = await sample(blobs)
    shuffled = Manifest(tuple(reversed(manifest.entries)))
    first, digest = await build(blobs, manifest, tmp_path / "1.tar")
    second, again = await build(blobs, shuffled, tmp_path / "2.tar")
    assert first == second and digest == again
    assert pack_key(manifest) == pack_key(shuffled)
    assert len(first) % tarfile.RECORDSIZE == 0
    changed = Manifest((*manifest.entries[:-1], ManifestEntry("empty.txt", FileKind.EXECUTABLE, EMPTY_DIGEST)))
    assert pack_key(changed) != pack_key(manifest)


async def test_entries_are_sorted_with_fixed_owner_time_and_modes(blobs: FsBlobStore, tmp_path: Path) -> None:
    manifest = await sample(blobs)
    data, _ = await build(blobs, manifest, tmp_path / "p.tar")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names, key=lambda n: n.encode())
    assert set(names) == {e.path for e in manifest.entries}
    for member in members:
        assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == (0, 0, 0, "", "")
    by_name = {m.name: m for m in members}
    assert by_name["bin/run"].mode == 0o755 and by_name["README.md"].mode == 0o644
    assert by_name["docs/readme"].issym() and by_name["docs/readme"].linkname == "../README.md"
    assert not any(m.isdir() for m in members)


async def test_plain_tar_extracts_a_pack(blobs: FsBlobStore, tmp_path: Path) -> None:
    manifest = await sample(blobs)
    await build(blobs, manifest, tmp_path / "p.tar")
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["tar", "-xf", str(tmp_path / "p.tar"), "-C", str(out)], check=True, capture_output=True)
    assert (out / LONG).read_bytes() == b"long path\n"
    assert (out / "ünïcödé/名前.txt").read_bytes() == b"unicode\n"
    assert os.readlink(out / "docs/readme") == "../README.md"


# ---- round trip ------------------------------------------------------------------------------------------


async def test_unpack_gives_back_the_manifests_files(blobs: FsBlobStore, tmp_path: Path) -> None:
    manifest = await sample(blobs)
    _, digest = await build(blobs, manifest, tmp_path / "p.tar")
    root = tmp_path / "ws"
    root.mkdir()
    old = os.umask(0o077)
    try:
        done = unpack_file(tmp_path / "p.tar", manifest, root, expected=digest)
    finally:
        os.umask(old)
    assert (done.files, done.symlinks) == (7, 1)
    for entry in manifest.entries:
        path = root / entry.path
        if entry.kind is FileKind.SYMLINK:
            assert os.fsencode(os.readlink(path)) == await blobs.get_bytes(TENANT, entry.digest)
            continue
        expected = b"" if entry.digest.size == 0 else await blobs.get_bytes(TENANT, entry.digest)
        assert path.read_bytes() == expected
        assert stat.S_IMODE(path.stat().st_mode) == (0o755 if entry.kind is FileKind.EXECUTABLE else 0o644)
    assert stat.S_IMODE((root / "src").stat().st_mode) == 0o755


async def test_building_needs_every_blob_and_refuses_links_out(blobs: FsBlobStore, tmp_path: Path) -> None:
    missing = Manifest((ManifestEntry("f", FileKind.FILE, Digest.of(b"never stored")),))
    with pytest.raises(NotFound):
        await write_pack(blobs, TENANT, missing, tmp_path / "1.tar")
    out = Manifest((ManifestEntry("up", FileKind.SYMLINK, await blobs.put_bytes(TENANT, b"../etc")),))
    with pytest.raises(InvalidArgument, match="outside the workspace"):
        await write_pack(blobs, TENANT, out, tmp_path / "2.tar")
    bad = Manifest((ManifestEntry("../x", FileKind.FILE, EMPTY_DIGEST),))
    with pytest.raises(InvalidArgument):
        await write_pack(blobs, TENANT, bad, tmp_path / "3.tar")


# ---- hostile archives ---------------------------------------------------------------------------------------


def tar_of(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "",
           pax: dict[str, str] | None = None) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.mode = 0o644
    if pax:
        info.pax_headers = pax
    return info, data if kind == tarfile.REGTYPE else None


def file_entry(path: str, data: bytes, kind: FileKind = FileKind.FILE) -> ManifestEntry:
    return ManifestEntry(path, kind, Digest.of(data))


GOOD = file_entry("a.txt", b"a")

HOSTILE = {
    "absolute path": (tar_of(member("/etc/passwd", b"x")), [GOOD], "absolute"),
    "dot-dot": (tar_of(member("../escape.txt", b"x")), [GOOD], "not canonical"),
    "dot-dot inside": (tar_of(member("a/../../b", b"x")), [GOOD], "not canonical"),
    "not in the manifest": (tar_of(member("a.txt", b"a"), member("extra.txt", b"x")), [GOOD], "not in the manifest"),
    "duplicate": (tar_of(member("a.txt", b"a"), member("a.txt", b"a")), [GOOD], "appears twice"),
    "wrong bytes": (tar_of(member("a.txt", b"b")), [GOOD], "do not match"),
    "wrong size": (tar_of(member("a.txt", b"ab")), [GOOD], "is 2 bytes"),
    "missing entry": (tar_of(member("a.txt", b"a")), [GOOD, file_entry("b.txt", b"b")], "lacks 1 entries"),
    "hard link": (tar_of(member("a.txt", b"a"), member("h", kind=tarfile.LNKTYPE, link="a.txt")),
                  [GOOD, file_entry("h", b"a")], "hard link"),
    "hard link out": (tar_of(member("h", kind=tarfile.LNKTYPE, link="/etc/passwd")),
                      [file_entry("h", b"root")], "hard link"),
    "device": (tar_of(member("dev", kind=tarfile.CHRTYPE)), [file_entry("dev", b"")], "character device"),
    "fifo": (tar_of(member("fifo", kind=tarfile.FIFOTYPE)), [file_entry("fifo", b"")], "FIFO"),
    "folder": (tar_of(member("d", kind=tarfile.DIRTYPE)), [file_entry("d", b"")], "a folder"),
    "symlink out": (tar_of(member("up", kind=tarfile.SYMTYPE, link="../../etc")),
                    [file_entry("up", b"../../etc", FileKind.SYMLINK)], "outside the workspace"),
    "absolute symlink": (tar_of(member("abs", kind=tarfile.SYMTYPE, link="/etc/passwd")),
                         [file_entry("abs", b"/etc/passwd", FileKind.SYMLINK)], "absolute"),
    "symlink elsewhere": (tar_of(member("l", kind=tarfile.SYMTYPE, link="b")),
                          [file_entry("l", b"a", FileKind.SYMLINK)], "not to the manifest's target"),
    "symlink for a file": (tar_of(member("a.txt", kind=tarfile.SYMTYPE, link="x")), [GOOD], "is a symlink"),
    "file for a symlink": (tar_of(member("l", b"a")), [file_entry("l", b"a", FileKind.SYMLINK)], "is a file"),
    "huge header": (tar_of(member("a.txt", b"a", pax={"comment": "x" * (1 << 20)})), [GOOD], "longer than"),
    "pax path out": (tar_of(member("a.txt", b"a", pax={"path": "../../outside.txt"})), [GOOD], "not canonical"),
    "not a tar": (os.urandom(4096), [GOOD], "not a readable tar"),
    "cut short": (tar_of(member("a.txt", b"a" * 5000))[:2048], [file_entry("a.txt", b"a" * 5000)], "unexpected end"),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_hostile_packs_are_refused(tmp_path: Path, case: str) -> None:
    data, entries, message = HOSTILE[case]
    root = tmp_path / "ws"
    root.mkdir()
    with pytest.raises(PackError, match=message):
        unpack(io.BytesIO(data), Manifest(tuple(entries)), root)
    outside = {p.name for p in tmp_path.iterdir()}
    assert outside == {"ws"}
    assert not any(p.is_symlink() or p.is_char_device() or p.is_fifo() for p in root.rglob("*"))


def test_a_pack_whose_bytes_differ_from_its_digest_is_damaged(tmp_path: Path) -> None:
    data = tar_of(member("a.txt", b"a"))
    root = tmp_path / "ws"
    root.mkdir()
    with pytest.raises(Unavailable, match="damaged"):
        unpack(io.BytesIO(data + b"\0" * 512), Manifest((GOOD,)), root, expected=Digest.of(data))


def test_nothing_is_written_through_a_symlink_the_pack_makes(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    data = tar_of(member("a", kind=tarfile.SYMTYPE, link="real"), member("a/b", b"through the link"))
    manifest = Manifest((file_entry("a", b"real", FileKind.SYMLINK), file_entry("a/b", b"through the link")))
    root = tmp_path / "ws"
    root.mkdir()
    with pytest.raises(OSError):
        unpack(io.BytesIO(data), manifest, root)
    assert not (root / "real").exists() and list(outside.iterdir()) == []
