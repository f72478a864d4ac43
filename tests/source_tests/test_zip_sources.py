"""Zip archives as task sources: normal ones unpack into the manifest they should, hostile ones are refused
with the entry and the rule, and nothing is ever written outside the task's folder."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from runner.adapters.embedded import FsBlobStore
from runner.domain import models as m
from runner.domain.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from runner.sources import checks, zip_archive
from runner.sources.fetcher import SourceFetcher
from runner.sources.ingest import IngestLimits
from runner.sources.settings import SourceSettings

from .zips import build, entry, patch, symlink

pytestmark = pytest.mark.timeout(30)
TENANT = "tenant-a"
LIMITS = IngestLimits(max_files=1000, max_total_bytes=64 << 20, max_file_bytes=32 << 20)


def _tree(root: Path) -> dict[str, bytes | str]:
    """Every path under `root` with its bytes (files) or link target (symlinks)."""
    found: dict[str, bytes | str] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = os.readlink(path)
            elif path.is_file():
                found[rel] = path.read_bytes()
            else:
                found[rel] = "<dir>"
    return found


@pytest.fixture
def sandbox(tmp_path: Path) -> tuple[Path, Path, dict[str, bytes | str]]:
    """A target folder inside a sentinel folder whose other contents must stay as they are."""
    outer = tmp_path / "outer"
    (outer / "sentinel").mkdir(parents=True)
    (outer / "sentinel" / "keep.txt").write_text("keep\n")
    (outer / "evil.txt").write_text("original\n")
    target = outer / "target"
    target.mkdir()
    return outer, target, _tree(outer)


def _unpack(data: bytes, dest: Path, settings: SourceSettings) -> zip_archive.Plan:
    with zip_archive.open_archive(io.BytesIO(data)) as archive:
        planned = zip_archive.plan(archive, settings)
        zip_archive.extract(archive, planned, dest, settings)
        return planned


def _outside_unchanged(outer: Path, before: dict[str, bytes | str]) -> None:
    after = {k: v for k, v in _tree(outer).items() if not k.startswith("target")}
    assert after == {k: v for k, v in before.items() if not k.startswith("target")}


# ---- archives that unpack ----------------------------------------------------------------------------


def test_common_top_folder_is_stripped_modes_and_inner_symlinks_kept(sandbox, settings: SourceSettings) -> None:
    outer, target, before = sandbox
    data = build([entry("proj-main/"), entry("proj-main/README.md", b"# hi\n"),
                  entry("proj-main/bin/run.sh", b"#!/bin/sh\n", mode=0o755),
                  entry("proj-main/src/app.py", b"print(1)\n"), symlink("proj-main/docs", "src"),
                  symlink("proj-main/src/readme", "../README.md"), entry("proj-main/.git/config", b"[core]\n")])
    planned = _unpack(data, target, settings)
    assert planned.stripped == "proj-main"
    assert planned.left_out == [".git/config"]
    tree = _tree(target)
    assert tree == {"README.md": b"# hi\n", "bin": "<dir>", "bin/run.sh": b"#!/bin/sh\n", "src": "<dir>",
                    "src/app.py": b"print(1)\n", "docs": "src", "src/readme": "../README.md"}
    assert stat.S_IMODE((target / "bin/run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((target / "README.md").stat().st_mode) == 0o644
    _outside_unchanged(outer, before)


def test_no_common_top_folder_keeps_paths(tmp_path: Path, settings: SourceSettings) -> None:
    data = build([entry("a/x.txt", b"x"), entry("b.txt", b"b"), entry("./c//d.txt", b"d")])
    planned = _unpack(data, tmp_path, settings)
    assert planned.stripped == ""
    assert _tree(tmp_path) == {"a": "<dir>", "a/x.txt": b"x", "b.txt": b"b", "c": "<dir>", "c/d.txt": b"d"}


def test_a_single_top_level_file_is_not_stripped(tmp_path: Path, settings: SourceSettings) -> None:
    planned = _unpack(build([entry("only.txt", b"1")]), tmp_path, settings)
    assert planned.stripped == "" and _tree(tmp_path) == {"only.txt": b"1"}


async def test_fetcher_unpacks_ingests_and_cleans_up(tmp_path: Path, blobs: FsBlobStore,
                                                      settings: SourceSettings) -> None:
    data = build([entry("p/", b""), entry("p/calc.py", b"def f():\n    return 1\n"),
                  entry("p/run.sh", b"#!/bin/sh\n", mode=0o755), symlink("p/link", "calc.py")])
    digest = await blobs.put_bytes(TENANT, data)
    record = m.TaskRecord(id="t1", tenant=TENANT, instruction="x", model="m", manifest_digest=None,
                          source=m.TaskSource(m.SourceKind.ZIP, zip_digest=digest))
    fetcher = SourceFetcher(settings, tmp_path / "sources", LIMITS)
    fetched = await fetcher.fetch(record, 1, blobs)
    kinds = {e.path: e.kind for e in fetched.manifest.entries}
    assert kinds == {"calc.py": m.FileKind.FILE, "run.sh": m.FileKind.EXECUTABLE, "link": m.FileKind.SYMLINK}
    assert not await blobs.find_missing(TENANT, [e.digest for e in fetched.manifest.entries])
    assert "top folder p/ stripped" in fetched.note and "3 files" in fetched.note
    assert list((tmp_path / "sources").iterdir()) == []  # the private folder is removed


# ---- refused from the central directory (at create time and again in the worker) --------------------


def _crafted_names() -> list[tuple[str, bytes, str]]:
    return [
        ("zip-slip", build([entry("ok.txt", b"1"), entry("../evil.txt", b"pwned")]), "zip-slip"),
        ("zip-slip-nested", build([entry("a/../../evil.txt", b"pwned")]), "zip-slip"),
        ("absolute", build([entry("/tmp/cx-evil-absolute.txt", b"pwned")]), "absolute path"),
        ("drive-letter", build([entry("C:/evil.txt", b"pwned")]), "absolute path"),
        ("backslash", build([entry("a\\..\\..\\evil.txt", b"pwned")]), "backslash"),
        ("symlink-out", build([entry("a.txt", b"1"), symlink("link", "../../evil.txt")]), "outside the workspace"),
        ("symlink-absolute", build([symlink("link", "/etc/passwd")]), "absolute path"),
        ("symlink-chain-out", build([symlink("up", ".."), symlink("sub/deeper", "../up/..")]),
         "outside the workspace"),
        ("duplicate", build([entry("a.txt", b"1"), entry("a.txt", b"2")]), "appears twice"),
        ("file-and-folder", build([entry("a", b"1"), entry("a/b", b"2")]), "both a file and a folder"),
        ("device", build([entry("dev", b"", kind=stat.S_IFCHR)]), "not a file, folder or symbolic link"),
        ("encrypted", patch(build([entry("secret.txt", b"data")]), b"secret.txt", set_flags=0x1), "encrypted"),
        ("non-utf8", patch(build([entry("cafX.txt", b"data")]), b"cafX.txt", new_name=b"caf\xe9.txt",
                           clear_flags=0x800), "b'caf\\xe9.txt'"),
        ("bad-utf8-flagged", patch(build([entry("cafX.txt", b"data")]), b"cafX.txt", new_name=b"caf\xe9.txt",
                                   set_flags=0x800), "flagged UTF-8"),
        ("truncated", build([entry("a.txt", b"x" * 5000)])[:-30], "corrupt"),
        ("not-a-zip", b"this is not a zip archive at all", "not a zip archive"),
    ]


@pytest.mark.parametrize(("name", "data", "reason"), _crafted_names(), ids=[c[0] for c in _crafted_names()])
async def test_hostile_archives_are_refused_with_the_reason(name: str, data: bytes, reason: str, sandbox,
                                                           blobs: FsBlobStore, settings: SourceSettings) -> None:
    outer, target, before = sandbox
    with pytest.raises(InvalidArgument) as refused:
        _unpack(data, target, settings)
    assert "zip archive refused" in str(refused.value) and reason in str(refused.value)
    assert _tree(target) == {}
    _outside_unchanged(outer, before)
    assert not Path("/tmp/cx-evil-absolute.txt").exists()
    # The API refuses it the same way before anything is queued.
    digest = await blobs.put_bytes(TENANT, data)
    with pytest.raises(InvalidArgument, match="zip archive refused"):
        await checks.check_zip(blobs, TENANT, digest, settings)


def test_too_many_entries(tmp_path: Path, settings: SourceSettings) -> None:
    data = build([entry(f"f{i}.txt", b"x") for i in range(11)])
    with pytest.raises(ResourceExhausted, match=r"11 entries; the limit is 10 .*CODEX_SYS_ZIP_MAX_ENTRIES"):
        _unpack(data, tmp_path, replace(settings, max_entries=10))


def test_ratio_bomb(tmp_path: Path, settings: SourceSettings) -> None:
    data = build([entry("zeros.bin", bytes(8 << 20))])
    assert len(data) < 64 << 10
    with pytest.raises(ResourceExhausted, match=r"'zeros.bin' expands .* ratio over 200.*CODEX_SYS_ZIP_MAX_RATIO"):
        _unpack(data, tmp_path, settings)
    assert _tree(tmp_path) == {}


def test_total_size_over_the_limit(tmp_path: Path, settings: SourceSettings) -> None:
    blob = os.urandom(1 << 20)
    data = build([entry(f"part{i}.bin", blob) for i in range(3)])
    with pytest.raises(ResourceExhausted, match=r"3\.0 MiB unpacked; the limit is 2 MiB .*ZIP_MAX_UNPACKED_MB"):
        _unpack(data, tmp_path, replace(settings, max_unpacked_bytes=2 << 20))


async def test_archive_over_the_size_limit_and_missing_blob(blobs: FsBlobStore, settings: SourceSettings) -> None:
    data = build([entry("a.txt", os.urandom(4096))])
    digest = await blobs.put_bytes(TENANT, data)
    with pytest.raises(ResourceExhausted, match="CODEX_SYS_ZIP_MAX_MB"):
        await checks.check_zip(blobs, TENANT, digest, replace(settings, max_zip_bytes=1024))
    with pytest.raises(FailedPrecondition, match="has not been uploaded"):
        await checks.check_zip(blobs, "tenant-b", digest, settings)


# ---- refused while unpacking: the bytes produced, not the headers, are what count ------------------------


def test_header_lying_about_sizes_is_caught_while_streaming(sandbox, settings: SourceSettings) -> None:
    outer, target, before = sandbox
    honest = build([entry("bomb.bin", bytes(4 << 20)), entry("b.txt", b"b")])
    lying = patch(honest, b"bomb.bin", file_size=1000)  # the headers say 1000 bytes, the data holds 4 MiB
    with pytest.raises(InvalidArgument, match=r"zip archive refused: entry 'bomb.bin' is corrupt"):
        _unpack(lying, target, settings)
    assert sum(len(v) for v in _tree(target).values() if isinstance(v, bytes)) <= 1000
    _outside_unchanged(outer, before)


def test_total_produced_is_bounded_even_when_the_plan_allowed_it(tmp_path: Path, settings: SourceSettings) -> None:
    data = build([entry(f"part{i}.bin", os.urandom(1 << 20)) for i in range(3)])
    with zip_archive.open_archive(io.BytesIO(data)) as archive:
        planned = zip_archive.plan(archive, settings)
        with pytest.raises(ResourceExhausted, match="more than 2 MiB unpacked"):
            zip_archive.extract(archive, planned, tmp_path, replace(settings, max_unpacked_bytes=2 << 20))


def test_flipped_crc_is_corrupt(sandbox, settings: SourceSettings) -> None:
    outer, target, before = sandbox
    data = patch(build([entry("a.txt", b"hello" * 100)]), b"a.txt", crc_xor=0x1)
    with pytest.raises(InvalidArgument, match=r"entry 'a.txt' is corrupt \(Bad CRC-32"):
        _unpack(data, target, settings)
    _outside_unchanged(outer, before)


async def test_fetcher_refusal_removes_its_folder(tmp_path: Path, blobs: FsBlobStore,
                                                  settings: SourceSettings) -> None:
    data = patch(build([entry("a.txt", b"hello" * 100)]), b"a.txt", crc_xor=0x1)
    digest = await blobs.put_bytes(TENANT, data)
    record = m.TaskRecord(id="t2", tenant=TENANT, instruction="x", model="m", manifest_digest=None,
                          source=m.TaskSource(m.SourceKind.ZIP, zip_digest=digest))
    with pytest.raises(InvalidArgument, match="Bad CRC-32"):
        await SourceFetcher(settings, tmp_path / "sources", LIMITS).fetch(record, 1, blobs)
    assert list((tmp_path / "sources").iterdir()) == []
    assert zipfile.is_zipfile(io.BytesIO(data))
