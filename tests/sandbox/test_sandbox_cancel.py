"""Cancellation and shutdown: the whole sandbox is gone within 2 s, whatever it started, and nothing
of it is left on the host."""

from __future__ import annotations

import asyncio
import textwrap
import time

import pytest
from sandbox_testing import (
    Gateway,
    MakeExecutor,
    alive,
    eventually,
    make_job,
    outer_bwrap,
    process_group_exists,
    results_of,
    sandbox_cgroups,
    sandbox_processes,
)

from runner.config import HomeLayout
from runner.domain.models import FileKind, Manifest, ManifestEntry
from runner.ports import BlobStore

pytestmark = pytest.mark.timeout(40)

# Children that try to outlive the agent: a plain one, one in its own session, a double-forked daemon.
_STUBBORN = textwrap.dedent("""
    subprocess.Popen(["sleep", "300"])
    subprocess.Popen(["setsid", "sh", "-c", "sleep 300 & sleep 301"])
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            time.sleep(300)
        os._exit(0)
    time.sleep(0.3)
    gateway_request(b"ready")
    time.sleep(300)
""")


def _leftover_folders(home: HomeLayout) -> list[str]:
    return [p.name for p in home.sandboxes.iterdir() if p.name.startswith("sb-")]


async def test_cancel_kills_the_whole_sandbox_within_2_s(make_executor: MakeExecutor, gateway: Gateway,
                                                         marker: str, home: HomeLayout) -> None:
    executor = await make_executor()
    running = asyncio.create_task(executor.run(make_job(_STUBBORN)))
    await asyncio.to_thread(gateway.wait_requests, 1, 15)
    pids = sandbox_processes(marker)
    assert len(pids) >= 7, pids  # bwrap, its init, the agent, sleep, setsid's sh + 2 sleeps, the daemon
    bwrap = outer_bwrap(pids)

    t0 = time.monotonic()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    elapsed = time.monotonic() - t0

    assert elapsed < 2.0
    assert not alive(pids)
    assert not process_group_exists(bwrap)
    assert _leftover_folders(home) == []
    assert sandbox_cgroups() == []


async def test_cancel_at_any_moment_leaves_nothing_behind(make_executor: MakeExecutor, blobs: BlobStore,
                                                          marker: str, home: HomeLayout) -> None:
    executor = await make_executor()
    data = await blobs.put_bytes("tenant-a", b"x" * 4096)
    manifest = Manifest(tuple(ManifestEntry(f"d{i % 10}/f{i}", FileKind.FILE, data) for i in range(300)))
    for delay in (0.0, 0.001, 0.003, 0.006, 0.01, 0.02, 0.04, 0.08, 0.15):
        running = asyncio.create_task(executor.run(make_job("time.sleep(300)", manifest)))
        await asyncio.sleep(delay)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        assert not alive(sandbox_processes(marker)), delay
        assert _leftover_folders(home) == [], delay
        assert sandbox_cgroups() == [], delay
    # The executor is still fine afterwards.
    outcome = await executor.run(make_job("results['ok'] = True"))
    assert results_of(outcome) == {"ok": True}


async def test_close_kills_the_warm_pool(make_executor: MakeExecutor, marker: str, home: HomeLayout) -> None:
    executor = await make_executor(pool_size=2)
    await executor.wait_warm()
    # Two sandboxes, each: bubblewrap, its init, the agent.
    await eventually(lambda: len(sandbox_processes(marker)) >= 6)
    pids = sandbox_processes(marker)
    await executor.close()
    assert not alive(pids)
    assert _leftover_folders(home) == []
    assert sandbox_cgroups() == []


async def test_close_while_a_task_runs(make_executor: MakeExecutor, gateway: Gateway, marker: str,
                                       home: HomeLayout) -> None:
    executor = await make_executor(pool_size=1)
    running = asyncio.create_task(executor.run(make_job(_STUBBORN)))
    await asyncio.to_thread(gateway.wait_requests, 1, 15)
    running.cancel()  # what the worker does on shutdown: cancel its runs, then close the executor
    await executor.close()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert not alive(sandbox_processes(marker))
    assert _leftover_folders(home) == []
