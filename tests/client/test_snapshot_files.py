"""What a snapshot holds for each kind of file, and what it leaves out with a reason."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from client_helpers import kinds_of, paths_of, write_tree

from runner.client.skipped import SkipReason
from runner.client.snapshot import Snapshot, take_snapshot
from runner.domain.errors import InvalidArgument
from runner.domain.models import Digest, FileKind
from runner.domain.paths import check_relative_path, check_symlink_target, validate_manifest


def reasons(snapshot: Snapshot) -> dict[str, SkipReason]:
    return {s.path: s.reason for s in snapshot.skipped}


def blob(snapshot: Snapshot, path: str) -> bytes:
    entry = next(e for e in snapshot.manifest.entries if e.path == path)
    source = snapshot.sources[entry.digest]
    return source if isinstance(source, bytes) else Path(source).read_bytes()


def test_regular_and_executable_files(tmp_path: Path) -> None:
    write_tree(tmp_path, {"plain.txt": "hello\n", "run.sh": "#!/bin/sh\n", "group-x": "", "other-x": "",
                          "sub/empty": ""})
    (tmp_path / "run.sh").chmod(0o755)
    (tmp_path / "group-x").chmod(0o610)
    (tmp_path / "other-x").chmod(0o601)
    snapshot = take_snapshot(tmp_path)
    assert kinds_of(snapshot) == {"plain.txt": FileKind.FILE, "run.sh": FileKind.EXECUTABLE,
                                  "group-x": FileKind.EXECUTABLE, "other-x": FileKind.EXECUTABLE,
                                  "sub/empty": FileKind.FILE}
    entry = snapshot.manifest.entries[paths_of(snapshot).index("plain.txt")]
    assert entry.digest == Digest.of(b"hello\n")
    assert snapshot.sources[entry.digest] == str(tmp_path / "plain.txt")


def test_symbolic_links_inside_are_kept_with_their_target_as_content(tmp_path: Path) -> None:
    write_tree(tmp_path, {"a.txt": "A", "dir/b.txt": "B"})
    os.symlink("a.txt", tmp_path / "to-a")
    os.symlink("../a.txt", tmp_path / "dir" / "up-to-a")
    os.symlink("dir", tmp_path / "to-dir")  # a link to a folder is not followed
    os.symlink("missing", tmp_path / "dangling")  # inside, even if nothing is there
    os.symlink("to-a", tmp_path / "chain")
    snapshot = take_snapshot(tmp_path)
    kinds = kinds_of(snapshot)
    for link in ("to-a", "dir/up-to-a", "to-dir", "dangling", "chain"):
        assert kinds[link] is FileKind.SYMLINK
        assert blob(snapshot, link) == os.readlink(tmp_path / link).encode()
    assert "to-dir/b.txt" not in kinds
    assert not snapshot.skipped


def test_symbolic_links_out_of_the_workspace_are_skipped(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    write_tree(root, {"a.txt": "A", "dir/x": ""})
    write_tree(tmp_path, {"secret": "S"})
    os.symlink("../secret", root / "up")
    os.symlink("../../secret", root / "dir" / "up2")
    os.symlink(str(tmp_path / "secret"), root / "absolute")
    os.symlink(str(root / "a.txt"), root / "absolute-inside")  # absolute paths mean nothing in a sandbox
    os.symlink("dir/../../secret", root / "sneaky")
    snapshot = take_snapshot(root)
    assert paths_of(snapshot) == ["a.txt", "dir/x"]
    assert reasons(snapshot) == dict.fromkeys(["absolute", "absolute-inside", "dir/up2", "sneaky", "up"],
                                              SkipReason.SYMLINK_OUTSIDE)
    assert "absolute path" in next(s.detail for s in snapshot.skipped if s.path == "absolute")


def test_special_files_are_skipped_with_what_they_are(tmp_path: Path) -> None:
    write_tree(tmp_path, {"a.txt": "", ".gitignore": "*.ignored\n"})
    os.mkfifo(tmp_path / "pipe")
    os.mkfifo(tmp_path / "pipe.ignored")  # ignored: not reported
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tmp_path / "sock"))
        snapshot = take_snapshot(tmp_path)
    finally:
        sock.close()
    assert paths_of(snapshot) == [".gitignore", "a.txt"]
    assert reasons(snapshot) == {"pipe": SkipReason.SPECIAL_FILE, "sock": SkipReason.SPECIAL_FILE}
    details = {s.path: s.detail for s in snapshot.skipped}
    assert "FIFO" in details["pipe"] and "socket" in details["sock"]


def test_names_that_cannot_be_manifest_paths_are_skipped(tmp_path: Path) -> None:
    write_tree(tmp_path, {"ok.txt": "", "caf\u00e9.txt": "", "back\\slash": "", "dir\\x/y": ""})
    (tmp_path / os.fsdecode(b"latin1-\xe9.txt")).write_bytes(b"")
    (tmp_path / os.fsdecode(b"bad-\xff")).mkdir()
    (tmp_path / os.fsdecode(b"bad-\xff") / "inner").write_bytes(b"")
    os.symlink(os.fsdecode(b"target-\xfe"), tmp_path / "link-to-bad-name")
    snapshot = take_snapshot(tmp_path)
    assert paths_of(snapshot) == ["caf\u00e9.txt", "ok.txt"]
    assert reasons(snapshot) == {
        "back\\slash": SkipReason.BAD_NAME, "dir\\x": SkipReason.BAD_NAME, "latin1-\\xe9.txt": SkipReason.BAD_NAME,
        "bad-\\xff": SkipReason.BAD_NAME, "link-to-bad-name": SkipReason.BAD_NAME}
    assert "UTF-8" in str(next(s for s in snapshot.skipped if s.path == "latin1-\\xe9.txt"))


def test_paths_too_long_are_skipped_not_fatal(tmp_path: Path) -> None:
    """Folders nested past what the system can open by path (PATH_MAX, 4,096 bytes): reported, and the
    rest of the workspace is still taken. (Made with relative operations, the only way to make them.)"""
    write_tree(tmp_path, {"top.txt": ""})
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    depth = 0
    try:
        while depth * 201 < 4300:
            os.mkdir("d" * 200, dir_fd=fd)
            child = os.open("d" * 200, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
            depth += 1
            if depth == 5:
                os.close(os.open("shallow", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
        os.close(os.open("deep", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    finally:
        os.close(fd)
    snapshot = take_snapshot(tmp_path)
    assert paths_of(snapshot) == ["/".join(["d" * 200] * 5) + "/shallow", "top.txt"]
    assert len(snapshot.skipped) == 1
    (skipped,) = snapshot.skipped
    assert skipped.reason is SkipReason.BAD_NAME and "long" in skipped.detail  # ours or the system's limit
    validate_manifest(snapshot.manifest, max_files=10, max_total_bytes=10)
    # Clean up with relative operations too (rmtree would hit the same limit).
    subprocess.run(["rm", "-rf", "d" * 200], cwd=tmp_path, check=True, timeout=60)


def test_empty_folders_and_git_metadata_leave_no_entry(tmp_path: Path) -> None:
    write_tree(tmp_path, {"empty/": "", "deep/er/": "", ".git/HEAD": "ref: x\n", "a": ""})
    assert paths_of(take_snapshot(tmp_path)) == ["a"]


def test_manifest_is_sorted_deterministic_and_valid(tmp_path: Path) -> None:
    names = ["b", "a-b", "a.b", "a/b", "a0", "A", "\u00e9", "z/y/x", "a/!", "a b", "_", "~", "a/c-d", "a/c/d"]
    one, two = tmp_path / "one", tmp_path / "two"
    write_tree(one, {n: n for n in names})
    write_tree(two, {n: n for n in reversed(names)})  # another creation order, another directory order
    first, second = take_snapshot(one), take_snapshot(two)
    assert first.manifest == second.manifest == take_snapshot(one).manifest
    paths = paths_of(first)
    assert paths == sorted(paths) == sorted(paths, key=lambda p: p.encode())  # code point = UTF-8 byte order
    validate_manifest(first.manifest, max_files=100, max_total_bytes=1 << 20)
    for entry in first.manifest.entries:
        assert check_relative_path(entry.path) == entry.path


def test_sources_give_each_distinct_blob_once(tmp_path: Path) -> None:
    write_tree(tmp_path, {"a": "same", "b": "same", "c": "other"})
    os.symlink("a", tmp_path / "link")
    snapshot = take_snapshot(tmp_path)
    digests = {e.digest for e in snapshot.manifest.entries}
    assert set(snapshot.sources) == digests and len(snapshot.sources) == 3
    for entry in snapshot.manifest.entries:
        assert entry.digest in snapshot.sources
        data = blob(snapshot, entry.path)
        assert Digest.of(data) == entry.digest
        if entry.kind is FileKind.SYMLINK:
            check_symlink_target(entry.path, data.decode())
    assert snapshot.sources[Digest.of(b"same")] == str(tmp_path / "a")  # the first path with the content
    assert Digest.of(b"nowhere") not in snapshot.sources
    with pytest.raises(KeyError):
        snapshot.sources[Digest.of(b"nowhere")]


def test_root_must_be_a_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(InvalidArgument, match="not a folder"):
        take_snapshot(tmp_path / "file")
    with pytest.raises(InvalidArgument, match="not a folder"):
        take_snapshot(tmp_path / "missing")


_AS_NOBODY = """
import json, sys
from runner.client.snapshot import take_snapshot
s = take_snapshot(sys.argv[1])
print(json.dumps({"paths": [e.path for e in s.manifest.entries],
                  "skipped": {k.path: [k.reason.name, k.detail] for k in s.skipped}}))
"""


def test_unreadable_files_and_folders_are_skipped(shared_tmp: Path) -> None:
    """Run as a user who cannot read them (root reads everything: the snapshot runs as nobody)."""
    write_tree(shared_tmp, {"ok.txt": "", "secret.txt": "s", "locked/inner.txt": "", "open/x": ""})
    for path in shared_tmp.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    (shared_tmp / "secret.txt").chmod(0o000)
    (shared_tmp / "locked").chmod(0o000)
    command = [sys.executable, "-c", _AS_NOBODY, str(shared_tmp)]
    if os.geteuid() == 0:
        # setpriv, not subprocess(user=...): the interpreter may live where only root can reach it, and
        # setpriv drops root's powers only once the interpreter is running.
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root and setpriv (util-linux) is not installed to drop privileges")
        command = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run(command, capture_output=True, text=True, cwd="/", timeout=60, check=False,
                            env={"PYTHONPATH": str(repo), "PATH": os.environ.get("PATH", "")})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["paths"] == ["ok.txt", "open/x"]
    assert {k: v[0] for k, v in out["skipped"].items()} == {"locked": "UNREADABLE", "secret.txt": "UNREADABLE"}
    assert "Permission denied" in out["skipped"]["secret.txt"][1]


def test_a_workspace_copied_elsewhere_gives_the_same_manifest(tmp_path: Path) -> None:
    write_tree(tmp_path / "a", {"x/y": "1", "z": "2", ".gitignore": "*.o\n", "w.o": ""})
    os.symlink("z", tmp_path / "a" / "l")
    shutil.copytree(tmp_path / "a", tmp_path / "b", symlinks=True)
    assert take_snapshot(tmp_path / "a").manifest == take_snapshot(tmp_path / "b").manifest
