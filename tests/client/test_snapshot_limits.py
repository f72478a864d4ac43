"""Limits: checked before anything is read, with messages that name the numbers and the culprits."""

from __future__ import annotations

from pathlib import Path

import pytest
from client_helpers import write_tree

from runner.client.limits import format_bytes
from runner.client.snapshot import take_snapshot
from runner.domain.errors import ResourceExhausted


def test_too_many_files_names_the_folders_that_hold_them(tmp_path: Path) -> None:
    write_tree(tmp_path, {f"node_modules/pkg{i}/index.js": "" for i in range(60)})
    write_tree(tmp_path, {f"src/m{i}.py": "" for i in range(10)})
    with pytest.raises(ResourceExhausted) as info:
        take_snapshot(tmp_path, max_files=50)
    message = str(info.value)
    assert "more than 50 files" in message
    assert "(the limit); of the first 5" in message  # the walk stopped early: counts are of those seen
    assert message.split("most are under ", 1)[1].startswith("node_modules/ (")
    assert ".gitignore" in message


def test_the_walk_stops_soon_after_the_file_limit(tmp_path: Path) -> None:
    write_tree(tmp_path, {f"d{i}/f{j}": "" for i in range(30) for j in range(10)})
    with pytest.raises(ResourceExhausted, match="more than 25 files"):
        take_snapshot(tmp_path, max_files=25)


def test_too_many_bytes_names_the_largest_files(tmp_path: Path) -> None:
    write_tree(tmp_path, {"data/big.bin": b"x" * 3000, "data/mid.bin": b"x" * 2000, "small.txt": b"x" * 10})
    with pytest.raises(ResourceExhausted) as info:
        take_snapshot(tmp_path, max_total_bytes=4096)
    message = str(info.value)
    assert "has 4.9 KiB in 3 files; the limit is 4.0 KiB" in message
    assert message.index("data/big.bin (2.9 KiB)") < message.index("data/mid.bin (2.0 KiB)")
    assert "small.txt" not in message  # too small to matter
    assert "exclude" in message


def test_a_file_over_the_per_file_limit_is_named(tmp_path: Path) -> None:
    write_tree(tmp_path, {"video.mp4": b"x" * 5000, "ok.txt": b"fine"})
    with pytest.raises(ResourceExhausted) as info:
        take_snapshot(tmp_path, max_file_bytes=4096)
    assert "1 file(s)" in str(info.value) and "video.mp4 (4.9 KiB)" in str(info.value)
    assert "per-file limit of 4.0 KiB" in str(info.value)


def test_ignored_files_do_not_count(tmp_path: Path) -> None:
    write_tree(tmp_path, {".gitignore": "*.bin\n", "huge.bin": b"x" * 10_000, "a.txt": "a"})
    assert len(take_snapshot(tmp_path, max_total_bytes=1000, max_file_bytes=1000).manifest.entries) == 2


def test_overlays_count_against_the_limits(tmp_path: Path) -> None:
    write_tree(tmp_path, {"a.txt": "a", "big.txt": b"x" * 5000})
    take_snapshot(tmp_path, max_file_bytes=100, overlays={"big.txt": b"small now"})  # the buffer replaces it
    with pytest.raises(ResourceExhausted, match=r"new\.txt"):
        take_snapshot(tmp_path, max_file_bytes=6000, max_total_bytes=6000, overlays={"new.txt": b"y" * 2000})
    with pytest.raises(ResourceExhausted, match=r"more than 2 files|3 files"):
        take_snapshot(tmp_path, max_files=2, overlays={"new.txt": b""})


def test_limits_hold_at_exactly_the_limit(tmp_path: Path) -> None:
    write_tree(tmp_path, {"a": b"x" * 100, "b": b"x" * 100})
    snapshot = take_snapshot(tmp_path, max_files=2, max_total_bytes=200, max_file_bytes=100)
    assert snapshot.stats.total_bytes == 200


@pytest.mark.parametrize(("n", "text"), [(0, "0 bytes"), (1023, "1023 bytes"), (1024, "1.0 KiB"),
                                         (2 << 30, "2.0 GiB"), (int(1.5 * (1 << 20)), "1.5 MiB"),
                                         (5 << 40, "5.0 TiB"), (3 << 50, "3072.0 TiB")])
def test_format_bytes(n: int, text: str) -> None:
    assert format_bytes(n) == text
