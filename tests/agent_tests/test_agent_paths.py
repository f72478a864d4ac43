"""Path confinement: every way of naming a place outside the workspace is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.errors import ToolError
from agent.paths import PathRefused, Workspace

pytestmark = pytest.mark.timeout(10)


@pytest.fixture
def layout(tmp_path: Path) -> Workspace:
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "a.py").write_text("a\n")
    (tmp_path / "outside.txt").write_text("secret\n")
    (tmp_path / "ws-evil").mkdir()  # a sibling whose name starts like the workspace
    os.symlink(tmp_path / "outside.txt", ws / "link-out")
    os.symlink(tmp_path, ws / "dir-out")
    os.symlink("src/a.py", ws / "link-in")
    os.symlink(tmp_path / "missing.txt", ws / "dangling-out")
    return Workspace(ws)


@pytest.mark.parametrize("path", ["src/a.py", "./src/../src/a.py", "src//a.py", ".", "new/file.txt", "link-in"])
def test_paths_inside_resolve(layout: Workspace, path: str) -> None:
    real = layout.resolve(path)
    assert layout.contains(real)


def test_absolute_path_inside_is_accepted(layout: Workspace) -> None:
    assert layout.resolve(str(layout.root / "src" / "a.py")) == layout.root / "src" / "a.py"


def test_symlink_inside_resolves_to_its_target(layout: Workspace) -> None:
    assert layout.resolve("link-in") == layout.root / "src" / "a.py"


@pytest.mark.parametrize("path", [
    "/etc/passwd",
    "../outside.txt",
    "src/../../outside.txt",
    "../ws-evil/x",
    "link-out",
    "dir-out/outside.txt",
    "dangling-out",
    "~/x",
])
def test_paths_outside_are_refused(layout: Workspace, path: str) -> None:
    with pytest.raises(PathRefused, match="outside the workspace"):
        layout.resolve(path)


@pytest.mark.parametrize("path", ["", "   ", "a\0b"])
def test_unusable_paths_are_refused(layout: Workspace, path: str) -> None:
    with pytest.raises(PathRefused):
        layout.resolve(path)


def test_refusal_is_a_tool_error_for_the_model(layout: Workspace) -> None:
    with pytest.raises(ToolError) as info:
        layout.resolve("../outside.txt", what="file_path")
    assert "file_path '../outside.txt'" in str(info.value)


def test_relative_names(layout: Workspace) -> None:
    assert layout.relative(layout.root) == "."
    assert layout.relative(layout.root / "src" / "a.py") == "src/a.py"


def test_workspace_root_given_through_a_symlink(tmp_path: Path, layout: Workspace) -> None:
    alias = tmp_path / "alias"
    os.symlink(layout.root, alias)
    ws = Workspace(alias)
    assert ws.resolve("src/a.py") == layout.root / "src" / "a.py"
    with pytest.raises(PathRefused):
        ws.resolve("../outside.txt")
