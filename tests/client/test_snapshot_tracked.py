"""Files git tracks are in the snapshot even where an ignore pattern matches them, as in git."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from client_helpers import Git, kinds_of, paths_of, write_tree

from runner.client.snapshot import take_snapshot
from runner.domain.models import FileKind


def commit(git: Git, root: Path, *force_added: str) -> None:
    git(root, "add", "-A")
    if force_added:
        git(root, "add", "-f", "--", *force_added)
    git(root, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "c")


@pytest.fixture
def repo(tmp_path: Path, git: Git) -> Path:
    write_tree(tmp_path, {
        ".gitignore": "*.log\nbuild/\n.vscode/\n",
        "src/app.py": "", "fixtures/expected.log": "tracked", "build/bundle.js": "tracked",
        "build/other.js": "not tracked", ".vscode/settings.json": "{}", ".vscode/launch.json": "{}",
        "debug.log": "not tracked",
    })
    git.init(tmp_path)
    commit(git, tmp_path, "fixtures/expected.log", "build/bundle.js", ".vscode/settings.json")
    os.symlink("bundle.js", tmp_path / "build" / "link.js")
    git(tmp_path, "add", "-f", "build/link.js")
    return tmp_path


def test_tracked_files_are_included_as_git_lists_them(repo: Path, git: Git) -> None:
    expected = git.untracked(repo) | {os.fsdecode(p) for p in git(repo, "ls-files", "-z").split(b"\0") if p}
    snapshot = take_snapshot(repo)
    assert set(paths_of(snapshot)) == expected
    assert {"fixtures/expected.log", "build/bundle.js", ".vscode/settings.json"} <= expected
    assert not {"debug.log", "build/other.js", ".vscode/launch.json"} & expected
    assert kinds_of(snapshot)["build/link.js"] is FileKind.SYMLINK


def test_the_callers_exclude_patterns_still_apply_to_tracked_files(repo: Path) -> None:
    snapshot = take_snapshot(repo, exclude=["*.log", "build/"])
    assert set(paths_of(snapshot)) == {".gitignore", "src/app.py", ".vscode/settings.json"}


def test_a_tracked_file_deleted_from_the_work_tree_is_not_there(repo: Path) -> None:
    (repo / "build" / "bundle.js").unlink()
    snapshot = take_snapshot(repo)
    assert "build/bundle.js" not in paths_of(snapshot)
    assert not snapshot.skipped


def test_a_workspace_inside_the_repository_gets_its_own_tracked_files(repo: Path) -> None:
    # build/ is ignored by the repository, but it is the folder the user picked: its contents count.
    assert set(paths_of(take_snapshot(repo / "build"))) == {"bundle.js", "link.js", "other.js"}
    assert set(paths_of(take_snapshot(repo / "fixtures"))) == {"expected.log"}


def test_a_tracked_folder_replaced_by_a_link_is_not_followed(repo: Path,
                                                             tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "bundle.js").write_text("outside the workspace")
    for name in os.listdir(repo / "build"):
        os.unlink(repo / "build" / name)
    (repo / "build").rmdir()
    os.symlink(outside, repo / "build")
    snapshot = take_snapshot(repo)
    assert not any(p.startswith("build/") for p in paths_of(snapshot))


def test_without_git_the_snapshot_goes_on(repo: Path, tmp_path_factory: pytest.TempPathFactory,
                                          monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("PATH", str(tmp_path_factory.mktemp("empty-path")))
    with caplog.at_level(logging.INFO, logger="runner.client.tracked"):
        snapshot = take_snapshot(repo)
    assert "fixtures/expected.log" not in paths_of(snapshot) and "src/app.py" in paths_of(snapshot)
    assert any("git is not installed" in r.getMessage() for r in caplog.records)


def test_when_git_fails_the_snapshot_goes_on(repo: Path, caplog: pytest.LogCaptureFixture) -> None:
    (repo / ".git" / "index").write_bytes(b"DIRC not really an index")
    with caplog.at_level(logging.WARNING, logger="runner.client.tracked"):
        snapshot = take_snapshot(repo)
    assert "src/app.py" in paths_of(snapshot)
    assert any("git ls-files failed" in r.getMessage() for r in caplog.records)


def test_outside_a_repository_git_is_not_asked(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_tree(tmp_path, {"a.txt": "", ".gitignore": "*.log\n", "b.log": ""})
    with caplog.at_level(logging.DEBUG, logger="runner.client.tracked"):
        assert paths_of(take_snapshot(tmp_path)) == [".gitignore", "a.txt"]
    assert not caplog.records
