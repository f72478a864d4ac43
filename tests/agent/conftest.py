"""Fixtures for the agent's tests: real temporary workspaces, real git, real subprocesses."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_testing import RecordingSink, make_toolbox

from agent.baseline import ShadowRepo
from agent.tools import Toolbox


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    return root


@pytest.fixture
def repo(ws: Path, tmp_path: Path) -> ShadowRepo:
    shadow = ShadowRepo(ws, tmp_path / "shadow")
    shadow.init()
    return shadow


@pytest.fixture
def toolbox(ws: Path, repo: ShadowRepo) -> Toolbox:
    return make_toolbox(ws, repo)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # Unix socket paths are limited to 107 bytes; pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="agent-", dir="/tmp") as d:
        yield Path(d)
