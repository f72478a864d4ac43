"""Hashing files (small, large, on worker threads) and the records built without re-validation."""

from __future__ import annotations

import hashlib
import os
from dataclasses import fields
from pathlib import Path

import pytest

from runner.client.hashing import CHUNK, POOL_MIN_BYTES, FileGrew, HashJob, HashResult, hash_file, hash_files
from runner.client.records import trusted_digest, trusted_entry
from runner.client.snapshot import take_snapshot
from runner.domain.models import Digest, FileKind, ManifestEntry


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17])
def test_hash_file_matches_hashlib(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)
    result = hash_file(str(tmp_path / "f"), size, limit=size)
    assert result == HashResult(hashlib.sha256(data).hexdigest(), size)


def test_a_stale_size_hint_still_reads_the_whole_file(tmp_path: Path) -> None:
    data = os.urandom(5000)
    (tmp_path / "f").write_bytes(data)
    for hint in (0, 100, 4999, 5001, 2 * CHUNK):
        assert hash_file(str(tmp_path / "f"), hint, limit=1 << 30).hexdigest == hashlib.sha256(data).hexdigest()


def test_reading_stops_past_the_limit(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * (CHUNK * 2))
    with pytest.raises(FileGrew):
        hash_file(str(tmp_path / "f"), 10, limit=CHUNK)


def test_links_and_folders_are_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    os.symlink("f", tmp_path / "link")
    (tmp_path / "d").mkdir()
    with pytest.raises(OSError):
        hash_file(str(tmp_path / "link"), 1, limit=10)
    with pytest.raises(IsADirectoryError):
        hash_file(str(tmp_path / "d"), 0, limit=10)


def test_many_files_with_big_ones_on_worker_threads(tmp_path: Path) -> None:
    jobs: list[HashJob] = []
    expected: list[str] = []
    sizes = [POOL_MIN_BYTES // 4 + i for i in range(5)] + [10, 0, 5000] * 20
    for i, size in enumerate(sizes):
        data = os.urandom(size)
        path = tmp_path / f"f{i}"
        path.write_bytes(data)
        jobs.append(HashJob(str(path), size, limit=1 << 30))
        expected.append(hashlib.sha256(data).hexdigest())
    jobs.append(HashJob(str(tmp_path / "missing"), 1, limit=10))
    results = hash_files(jobs, workers=3)
    assert [r.hexdigest for r in results[:-1] if isinstance(r, HashResult)] == expected
    assert isinstance(results[-1], FileNotFoundError)
    assert hash_files(jobs[:3], workers=1)[0] == results[0]


def test_a_cold_snapshot_of_big_files_is_correct(tmp_path: Path) -> None:
    blobs = {f"big{i}.bin": os.urandom(POOL_MIN_BYTES // 3) for i in range(4)}
    for name, data in blobs.items():
        (tmp_path / name).write_bytes(data)
    snapshot = take_snapshot(tmp_path)
    assert {e.path: e.digest for e in snapshot.manifest.entries} == {n: Digest.of(d) for n, d in blobs.items()}


def test_trusted_records_equal_validated_ones() -> None:
    assert [f.name for f in fields(Digest)] == ["hash", "size"]
    assert [f.name for f in fields(ManifestEntry)] == ["path", "kind", "digest"]
    digest = trusted_digest(hashlib.sha256(b"abc").hexdigest(), 3)
    assert digest == Digest.of(b"abc") and hash(digest) == hash(Digest.of(b"abc"))
    entry = trusted_entry("a/b", FileKind.EXECUTABLE, digest)
    assert entry == ManifestEntry("a/b", FileKind.EXECUTABLE, Digest.of(b"abc"))
    assert repr(entry) == repr(ManifestEntry("a/b", FileKind.EXECUTABLE, Digest.of(b"abc")))
