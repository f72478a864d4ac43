"""Fixtures for the agent's tests: real temporary workspaces, real git, real subprocesses."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_testing import RecordingSink, Stack, make_toolbox, start_stack, stop_stack

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


@pytest.fixture
async def make_stack(short_dir: Path) -> AsyncIterator[Callable[[dict[str, Any]], Awaitable[Stack]]]:
    stacks: list[Stack] = []

    async def make(scenario: dict[str, Any]) -> Stack:
        stack = await start_stack(short_dir, scenario)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        await stop_stack(stack)
