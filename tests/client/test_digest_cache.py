"""The digest cache: what makes a hit or a miss, racy entries, the file on disk and its corruption."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest
from client_helpers import write_tree

from runner.client.digest_cache import DigestCache
from runner.client.snapshot import Snapshot, take_snapshot
from runner.domain.errors import InvalidArgument, ResourceExhausted
from runner.domain.models import Digest, FileKind, ManifestEntry


def digest_of(snapshot: Snapshot, path: str) -> Digest:
    return next(e.digest for e in snapshot.manifest.entries if e.path == path)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    write_tree(root, {"a.txt": "alpha", "b.txt": "bravo", "sub/c.txt": "charlie"})
    return root


def fresh_cache(tmp_path: Path, root: Path) -> DigestCache:
    """A cache that keeps entries however recent (tests of racy entries use the default window)."""
    return DigestCache.for_workspace(root, tmp_path / "cache", racy_window_ns=0)


def test_unchanged_files_are_not_read_again(tmp_path: Path, workspace: Path) -> None:
    cache = fresh_cache(tmp_path, workspace)
    first = take_snapshot(workspace, cache=cache)
    assert (first.stats.hashed_files, first.stats.cache_hits) == (3, 0)
    second = take_snapshot(workspace, cache=cache)  # in memory, as the language server keeps it
    assert (second.stats.hashed_files, second.stats.cache_hits) == (0, 3)
    assert second.manifest == first.manifest
    cache.save()
    third = take_snapshot(workspace, cache=fresh_cache(tmp_path, workspace))  # from disk, as the CLI
    assert (third.stats.hashed_files, third.stats.cache_hits) == (0, 3)
    assert third.manifest == first.manifest


def test_touch_modify_and_same_size_edits_are_misses(tmp_path: Path, workspace: Path) -> None:
    cache = fresh_cache(tmp_path, workspace)
    take_snapshot(workspace, cache=cache)
    a, b, c = workspace / "a.txt", workspace / "b.txt", workspace / "sub" / "c.txt"
    st = b.stat()

    # Touched: same bytes, another mtime (in the past: one in the future would be racy, never cached).
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns - 1_000_000_000))
    b.write_bytes(b"BRAVO")  # same size, new content...
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns))  # ...and the old mtime put back: ctime still tells
    c.write_bytes(b"charlie!")  # a plain edit

    snapshot = take_snapshot(workspace, cache=cache)
    assert snapshot.stats.hashed_files == 3 and snapshot.stats.cache_hits == 0
    assert digest_of(snapshot, "a.txt") == Digest.of(b"alpha")
    assert digest_of(snapshot, "b.txt") == Digest.of(b"BRAVO")
    assert digest_of(snapshot, "sub/c.txt") == Digest.of(b"charlie!")
    assert take_snapshot(workspace, cache=cache).stats.cache_hits == 3


def test_a_file_replaced_by_rename_is_a_miss(tmp_path: Path, workspace: Path) -> None:
    cache = fresh_cache(tmp_path, workspace)
    take_snapshot(workspace, cache=cache)
    a = workspace / "a.txt"
    st = a.stat()
    tmp = workspace / "a.txt.tmp"
    tmp.write_bytes(b"ALPHA")  # an editor's atomic save: new inode, same size, even the same times
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    tmp.replace(a)
    snapshot = take_snapshot(workspace, cache=cache)
    assert digest_of(snapshot, "a.txt") == Digest.of(b"ALPHA")
    assert snapshot.stats.hashed_files == 1


def test_racy_entries_are_not_kept(tmp_path: Path, workspace: Path) -> None:
    """A file modified within the racy window of the snapshot that hashed it could be modified again
    within the same timestamp tick, unseen: it is hashed again until it has aged."""
    cache = DigestCache(None)  # the default 2 s window
    now = time.time_ns()
    old = now - 10**10
    entry = ManifestEntry("f", FileKind.FILE, Digest.of(b"x"))

    def stat(mtime_ns: int, ctime_ns: int) -> os.stat_result:
        # (mode, ino, dev, nlink, uid, gid, size, 3 int times, 3 float times, atime_ns, mtime_ns, ctime_ns)
        return os.stat_result((0o100644, 1, 0, 1, 0, 0, 1, 0, 0, 0, 0.0, 0.0, 0.0, 0, mtime_ns, ctime_ns))

    with cache.session(started_ns=now) as session:
        assert not session.store(stat(now, old), entry)  # mtime too recent
        assert not session.store(stat(old, now), entry)  # ctime too recent
        assert session.store(stat(old, old), entry)
    assert len(cache) == 1


def test_files_written_just_before_a_snapshot_are_hashed_again_until_they_age(workspace: Path) -> None:
    cache = DigestCache(None)
    assert take_snapshot(workspace, cache=cache).stats.hashed_files == 3
    (workspace / "a.txt").write_bytes(b"ALPHA")  # the same size, maybe within the same tick
    again = take_snapshot(workspace, cache=cache)
    assert again.stats.hashed_files == 3 and digest_of(again, "a.txt") == Digest.of(b"ALPHA")
    time.sleep(2.2)
    assert take_snapshot(workspace, cache=cache).stats.hashed_files == 3  # now old enough to keep
    assert take_snapshot(workspace, cache=cache).stats.cache_hits == 3


def test_vanished_and_newly_ignored_files_are_dropped_on_save(tmp_path: Path, workspace: Path) -> None:
    cache = fresh_cache(tmp_path, workspace)
    take_snapshot(workspace, cache=cache)
    cache.save()
    (workspace / "a.txt").unlink()
    (workspace / ".gitignore").write_bytes(b"sub/\n")
    take_snapshot(workspace, cache=cache)
    cache.save()
    reloaded = fresh_cache(tmp_path, workspace)
    assert len(reloaded) == 2  # b.txt and .gitignore
    snapshot = take_snapshot(workspace, cache=reloaded)
    assert snapshot.stats.cache_hits == 2


def test_save_is_atomic_private_and_skipped_when_nothing_changed(tmp_path: Path, workspace: Path) -> None:
    cache = fresh_cache(tmp_path, workspace)
    take_snapshot(workspace, cache=cache)
    cache.save()
    assert cache.path is not None
    files = list((tmp_path / "cache").iterdir())
    assert files == [cache.path]  # no temporary file left behind
    assert cache.path.name.startswith("digests-") and cache.path.stat().st_mode & 0o777 == 0o600
    before = cache.path.stat()
    take_snapshot(workspace, cache=cache)
    cache.save()  # all hits, nothing dropped: nothing written
    after = cache.path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_cache_for_another_workspace_is_refused(tmp_path: Path, workspace: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(InvalidArgument, match="digest cache"):
        take_snapshot(other, cache=fresh_cache(tmp_path, workspace))


def test_the_cache_folders_are_private(tmp_path: Path, workspace: Path) -> None:
    cache = DigestCache.for_workspace(workspace, tmp_path / "home" / "cache", racy_window_ns=0)
    take_snapshot(workspace, cache=cache)
    cache.save()
    assert (tmp_path / "home").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "home" / "cache").stat().st_mode & 0o777 == 0o700


def test_the_cache_of_a_workspace_is_found_through_a_symbolic_link(tmp_path: Path, workspace: Path) -> None:
    cache = fresh_cache(tmp_path, workspace)
    take_snapshot(workspace, cache=cache)
    cache.save()
    os.symlink(workspace, tmp_path / "alias")
    via_link = fresh_cache(tmp_path, tmp_path / "alias")
    assert via_link.path == cache.path
    assert take_snapshot(tmp_path / "alias", cache=via_link).stats.cache_hits == 3


@pytest.mark.parametrize("damage", ["garbage", "empty", "truncated", "flipped", "magic", "other-workspace"])
def test_a_corrupt_cache_file_is_ignored_and_replaced(tmp_path: Path, workspace: Path, damage: str,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    cache = fresh_cache(tmp_path, workspace)
    take_snapshot(workspace, cache=cache)
    cache.save()
    assert cache.path is not None
    data = cache.path.read_bytes()
    if damage == "garbage":
        data = os.urandom(len(data))
    elif damage == "empty":
        data = b""
    elif damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "flipped":
        data = data[:-5] + bytes([data[-5] ^ 0x01]) + data[-4:]  # one bit of one digest
    elif damage == "magic":
        data = b"XXXXXXXX" + data[8:]
    else:
        other = tmp_path / "other"
        other.mkdir()
        cache.path.rename(cache.path.with_name("saved"))
        moved = DigestCache.for_workspace(other, tmp_path / "cache", racy_window_ns=0)
        assert moved.path is not None
        cache.path.with_name("saved").rename(moved.path)
        cache = moved
        data = moved.path.read_bytes()
    assert cache.path is not None
    cache.path.write_bytes(data)

    with caplog.at_level(logging.WARNING, logger="runner.client.digest_cache"):
        loaded = DigestCache.load(cache.path, workspace=cache.workspace, racy_window_ns=0)
    if damage != "empty":
        assert len(loaded) == 0
        assert any("digest cache" in r.getMessage() for r in caplog.records)
    root = workspace if damage != "other-workspace" else tmp_path / "other"
    snapshot = take_snapshot(root, cache=loaded)
    assert all(e.digest == Digest.of((root / e.path).read_bytes()) for e in snapshot.manifest.entries)
    loaded.save()
    assert len(DigestCache.load(cache.path, workspace=cache.workspace)) == len(snapshot.manifest.entries)


def test_a_failed_snapshot_leaves_the_cache_as_it_was(tmp_path: Path, workspace: Path) -> None:
    cache = fresh_cache(tmp_path, workspace)
    take_snapshot(workspace, cache=cache)
    (workspace / "d.txt").write_bytes(b"delta")
    with pytest.raises(ResourceExhausted):
        take_snapshot(workspace, cache=cache, max_files=2)
    assert len(cache) == 3
    assert take_snapshot(workspace, cache=cache).stats.cache_hits == 3


def test_saving_where_it_cannot_be_written_is_logged_not_raised(tmp_path: Path, workspace: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "not-a-folder").write_bytes(b"")
    cache = DigestCache.for_workspace(workspace, tmp_path / "not-a-folder" / "cache", racy_window_ns=0)
    take_snapshot(workspace, cache=cache)
    with caplog.at_level(logging.WARNING, logger="runner.client.digest_cache"):
        cache.save()
    assert any("not saved" in r.getMessage() for r in caplog.records)
