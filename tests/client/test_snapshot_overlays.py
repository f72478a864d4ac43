"""Overlays: unsaved editor buffers laid over the workspace."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from client_helpers import kinds_of, paths_of, write_tree

from runner.client.digest_cache import DigestCache
from runner.client.skipped import SkipReason
from runner.client.snapshot import Snapshot, take_snapshot
from runner.domain.errors import InvalidArgument
from runner.domain.models import Digest, FileKind
from runner.domain.paths import validate_manifest


def digest_of(snapshot: Snapshot, path: str) -> Digest:
    return next(e.digest for e in snapshot.manifest.entries if e.path == path)


def test_overlay_replaces_the_file_on_disk(tmp_path: Path) -> None:
    write_tree(tmp_path, {"a.py": "saved\n", "b.py": "b\n"})
    snapshot = take_snapshot(tmp_path, overlays={"a.py": b"unsaved\n"})
    assert paths_of(snapshot) == ["a.py", "b.py"]
    assert digest_of(snapshot, "a.py") == Digest.of(b"unsaved\n")
    assert snapshot.sources[Digest.of(b"unsaved\n")] == b"unsaved\n"
    assert snapshot.stats.total_bytes == len(b"unsaved\n") + len(b"b\n")
    assert snapshot.stats.hashed_files == 1  # a.py on disk is not even read


def test_overlay_adds_a_file_not_on_disk(tmp_path: Path) -> None:
    write_tree(tmp_path, {"a.py": ""})
    snapshot = take_snapshot(tmp_path, overlays={"new/dir/c.py": b"new\n", "z.py": b""})
    assert paths_of(snapshot) == ["a.py", "new/dir/c.py", "z.py"]
    assert kinds_of(snapshot)["new/dir/c.py"] is FileKind.FILE
    validate_manifest(snapshot.manifest, max_files=10, max_total_bytes=100)


def test_overlay_of_an_ignored_file_is_included(tmp_path: Path) -> None:
    write_tree(tmp_path, {".gitignore": "*.local\nbuild/\n", "settings.local": "x", "build/gen.py": "g"})
    snapshot = take_snapshot(tmp_path, overlays={"settings.local": b"open in the editor",
                                                 "build/gen.py": b"open too"})
    assert paths_of(snapshot) == [".gitignore", "build/gen.py", "settings.local"]
    assert digest_of(snapshot, "build/gen.py") == Digest.of(b"open too")


def test_overlay_keeps_an_executable_executable_and_turns_a_link_into_a_file(tmp_path: Path) -> None:
    write_tree(tmp_path, {"run.sh": "old", "target.txt": "t"})
    (tmp_path / "run.sh").chmod(0o755)
    os.symlink("target.txt", tmp_path / "link")
    snapshot = take_snapshot(tmp_path, overlays={"run.sh": b"new", "link": b"edited through the link"})
    kinds = kinds_of(snapshot)
    assert kinds["run.sh"] is FileKind.EXECUTABLE
    assert kinds["link"] is FileKind.FILE
    assert snapshot.sources[digest_of(snapshot, "link")] == b"edited through the link"


def test_overlay_that_would_make_a_file_and_folder_of_one_path_is_skipped(tmp_path: Path) -> None:
    write_tree(tmp_path, {"a.py": "", "pkg/mod.py": ""})
    os.symlink("pkg", tmp_path / "alias")
    snapshot = take_snapshot(tmp_path, overlays={
        "a.py/child": b"a.py is a file", "pkg": b"pkg is a folder", "alias/mod.py": b"alias is a link",
        ".git/COMMIT_EDITMSG": b"not part of a workspace", "ok.py": b"fine"})
    assert paths_of(snapshot) == ["a.py", "alias", "ok.py", "pkg/mod.py"]
    assert {s.path: s.reason for s in snapshot.skipped} == dict.fromkeys(
        ["a.py/child", "pkg", "alias/mod.py", ".git/COMMIT_EDITMSG"], SkipReason.OVERLAY_CONFLICT)
    validate_manifest(snapshot.manifest, max_files=10, max_total_bytes=100)


def test_overlay_for_a_file_that_cannot_be_read_replaces_the_skip(tmp_path: Path) -> None:
    write_tree(tmp_path, {"a.py": ""})
    os.mkfifo(tmp_path / "pipe")
    snapshot = take_snapshot(tmp_path, overlays={"pipe": b"the buffer wins"})
    assert "pipe" in paths_of(snapshot)
    assert not snapshot.skipped


@pytest.mark.parametrize("bad", ["/abs.py", "../out.py", "a/../b.py", "a//b.py", "./a.py", "a\\b.py", ""])
def test_overlay_paths_must_be_canonical_relative_paths(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InvalidArgument):
        take_snapshot(tmp_path, overlays={bad: b""})


def test_overlay_contents_must_be_bytes(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="not bytes"):
        take_snapshot(tmp_path, overlays={"a.py": "text"})  # type: ignore[dict-item]


def test_overlays_do_not_touch_the_digest_cache(tmp_path: Path) -> None:
    write_tree(tmp_path, {"a.py": "on disk"})
    cache = DigestCache(None, racy_window_ns=0)
    take_snapshot(tmp_path, cache=cache, overlays={"a.py": b"in the editor"})
    again = take_snapshot(tmp_path, cache=cache)
    assert digest_of(again, "a.py") == Digest.of(b"on disk")
