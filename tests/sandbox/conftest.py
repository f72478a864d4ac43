"""Fixtures for the local executor's tests: real bubblewrap sandboxes, a real blob store, a real gateway
socket. Only the agent is replaced, by the probe agent (agents/probe_agent.py), so that each test says
inside the sandbox exactly what it checks."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sandbox_testing import Gateway, MakeExecutor, probe_command

from runner.adapters.embedded.fs_blob_store import FsBlobStore
from runner.adapters.local_executor import LocalExecutor
from runner.config import HomeLayout

BWRAP = shutil.which("bwrap")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.sandbox)
            if BWRAP is None:
                item.add_marker(pytest.mark.skip(reason="bubblewrap (bwrap) is not installed"))


@pytest.fixture
def home() -> Iterator[HomeLayout]:
    """A CODEX_SYS_HOME. Short path under /tmp: a unix socket path must fit in 108 bytes."""
    root = Path(tempfile.mkdtemp(prefix="cxs-"))
    layout = HomeLayout(root)
    layout.ensure()
    try:
        yield layout
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def blobs(home: HomeLayout) -> AsyncIterator[FsBlobStore]:
    async with FsBlobStore(home.blobs, 1 << 30) as store:
        yield store


@pytest.fixture
def gateway(home: HomeLayout) -> Iterator[Gateway]:
    gw = Gateway(home.gateway_socket)
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture
def marker() -> str:
    """Unique per test; it is on the command line of the test's sandboxes."""
    return f"cxs-marker-{uuid.uuid4().hex}"


@pytest.fixture
async def make_executor(home: HomeLayout, blobs: FsBlobStore, gateway: Gateway,
                        marker: str) -> AsyncIterator[MakeExecutor]:
    made: list[LocalExecutor] = []

    async def make(**kwargs: Any) -> LocalExecutor:
        kwargs.setdefault("agent", probe_command(marker))
        kwargs.setdefault("pool_size", 0)
        executor = LocalExecutor(blobs, home.sandboxes, gateway.path, **kwargs)
        await executor.start()
        made.append(executor)
        return executor

    yield make
    for executor in made:
        await executor.close()
