"""Baseline and diff: only the agent phase's changes, in a patch `git apply` takes on the snapshot."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
from agent_testing import git

from agent.baseline import BaselineError, ShadowRepo

pytestmark = pytest.mark.timeout(30)

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
LONG_TEXT = "".join(f"line {i} of a file long enough for rename detection\n" for i in range(40))


def _snapshot(ws: Path) -> None:
    """What the editor sent: a small project with an ignore file and its own .git."""
    (ws / ".gitignore").write_text("build/\n*.pyc\n")
    (ws / "src").mkdir()
    (ws / "src" / "app.py").write_text("print('hello')\n")
    (ws / "src" / "moved.txt").write_text(LONG_TEXT)
    (ws / "src" / "gone.txt").write_text("delete me\n")
    (ws / "logo.png").write_bytes(PNG)
    (ws / "tool.sh").write_text("#!/bin/sh\necho tool\n")
    (ws / "link").symlink_to("src/app.py")


def _tree(root: Path, skip: set[str]) -> dict[str, tuple[str, bytes]]:
    """Every file under root (but `skip` top-level names and .git) with its kind and content."""
    out: dict[str, tuple[str, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = [d for d in dirnames if d != ".git" and str(rel_dir / d) not in skip]
        for name in filenames:
            path = Path(dirpath) / name
            rel = str(rel_dir / name)
            if rel in skip:
                continue
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path).encode())
            else:
                mode = "exec" if path.stat().st_mode & stat.S_IXUSR else "file"
                out[rel] = (mode, path.read_bytes())
    return out


def test_diff_has_only_the_agent_phase_and_applies_to_the_snapshot(ws: Path, tmp_path: Path,
                                                                   repo: ShadowRepo) -> None:
    _snapshot(ws)
    git(ws, "init", "-q")
    git(ws, "add", "-A")
    git(ws, "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-qm", "user's own history")
    users_head = git(ws, "rev-parse", "HEAD").stdout
    pristine = tmp_path / "pristine"
    shutil.copytree(ws, pristine, symlinks=True)

    # setup.sh's work: installed deps (ignored) and a generated file (not ignored) — neither in the diff.
    (ws / "build").mkdir()
    (ws / "build" / "out.o").write_bytes(b"\0obj")
    (ws / "generated.txt").write_text("made by setup\n")
    repo.record_baseline()

    # The agent phase.
    (ws / "src" / "app.py").write_text("print('hello, world')\n")
    (ws / "src" / "new.py").write_text("NEW = 1\n")
    (ws / "src" / "gone.txt").unlink()
    (ws / "src" / "moved.txt").rename(ws / "renamed.txt")
    (ws / "logo.png").write_bytes(PNG[::-1])
    (ws / "data.bin").write_bytes(b"\x00\x01\x02binary")
    (ws / "tool.sh").chmod(0o755)
    (ws / "link2").symlink_to("renamed.txt")
    (ws / "build" / "more.o").write_bytes(b"\0ignored")  # ignored
    (ws / "src" / "cache.pyc").write_bytes(b"\0ignored")  # ignored

    patch = repo.diff()
    text = patch.decode()
    assert "diff --git a/src/app.py b/src/app.py" in text
    assert "new file mode 100644" in text and "b/src/new.py" in text
    assert "deleted file mode 100644" in text and "a/src/gone.txt" in text
    assert "rename from src/moved.txt\nrename to renamed.txt" in text
    assert "GIT binary patch" in text
    assert "old mode 100644\nnew mode 100755" in text
    assert "new file mode 120000" in text
    for absent in ("generated.txt", "build/", ".pyc", ".git/", "setup"):
        assert absent not in text, absent
    assert sorted(repo.changed_paths()) == sorted(
        ["data.bin", "link2", "logo.png", "renamed.txt", "src/app.py", "src/gone.txt", "src/new.py", "tool.sh"])

    (tmp_path / "agent.patch").write_bytes(patch)
    applied = git(pristine, "apply", "--whitespace=nowarn", str(tmp_path / "agent.patch"), check=False)
    assert applied.returncode == 0, applied.stderr.decode()
    skip = {"build", "generated.txt", "src/cache.pyc"}
    assert _tree(pristine, skip) == _tree(ws, skip)

    # The user's repository in the workspace is untouched.
    assert git(ws, "rev-parse", "HEAD").stdout == users_head
    assert "baseline" not in git(ws, "log", "--oneline").stdout.decode()


def test_no_change_gives_an_empty_diff(ws: Path, repo: ShadowRepo) -> None:
    _snapshot(ws)
    repo.record_baseline()
    assert repo.diff() == b""
    assert repo.changed_paths() == []


def test_empty_workspace(ws: Path, repo: ShadowRepo) -> None:
    repo.record_baseline()
    (ws / "first.txt").write_text("1\n")
    assert "b/first.txt" in repo.diff().decode()


def test_the_shadow_repository_lives_outside_the_workspace(ws: Path, repo: ShadowRepo) -> None:
    repo.record_baseline()
    assert not repo.git_dir.is_relative_to(ws)
    assert list(ws.iterdir()) == []


def test_diff_is_independent_of_the_callers_git_configuration(ws: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[diff]\n\tnoprefix = true\n\tmnemonicPrefix = true\n[core]\n\tautocrlf = true\n")
    monkeypatch.setenv("HOME", str(home))
    repo = ShadowRepo(ws, tmp_path / "shadow")
    repo.init()
    repo.record_baseline()
    (ws / "a.txt").write_text("a\r\n")
    text = repo.diff().decode()
    assert "--- /dev/null\n+++ b/a.txt" in text
    assert "+a\r\n" in text


def test_list_files_honours_ignores_and_skips_git_dirs(ws: Path, repo: ShadowRepo) -> None:
    (ws / ".gitignore").write_text("node_modules/\n")
    (ws / "node_modules" / "pkg").mkdir(parents=True)
    (ws / "node_modules" / "pkg" / "AGENTS.md").write_text("ignored\n")
    (ws / ".git").mkdir()
    (ws / ".git" / "config").write_text("")
    (ws / "a.py").write_text("")
    assert sorted(repo.list_files()) == [".gitignore", "a.py"]


def test_diff_without_a_baseline_is_an_error(ws: Path, repo: ShadowRepo) -> None:
    with pytest.raises(BaselineError, match="no baseline"):
        repo.diff()


def test_git_failure_is_reported(ws: Path, tmp_path: Path) -> None:
    repo = ShadowRepo(ws, tmp_path / "shadow")  # never initialised
    with pytest.raises(BaselineError, match="git add failed"):
        repo.record_baseline()


def test_unusual_file_names_round_trip(ws: Path, tmp_path: Path, repo: ShadowRepo) -> None:
    (ws / "keep.txt").write_text("k\n")
    pristine = tmp_path / "pristine"
    shutil.copytree(ws, pristine)
    repo.record_baseline()
    names = ["with space.txt", "ünïcødé.md", 'quote"d.txt', "dir with space/x.py"]
    for name in names:
        (ws / name).parent.mkdir(parents=True, exist_ok=True)
        (ws / name).write_text(f"{name}\n")
    (tmp_path / "p.patch").write_bytes(repo.diff())
    applied = git(pristine, "apply", str(tmp_path / "p.patch"), check=False)
    assert applied.returncode == 0, applied.stderr.decode()
    for name in names:
        assert (pristine / name).read_text() == f"{name}\n"
    assert sorted(repo.changed_paths()) == sorted(names)
