"""The blob store's I/O runner (`io_batch`): batching, and never leaving a caller waiting forever."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from runner.adapters.embedded import io_batch
from runner.adapters.embedded.io_batch import BatchRunner
from runner.domain.errors import Unavailable

pytestmark = pytest.mark.timeout(20)


async def test_operations_run_off_the_event_loop_and_return_their_results() -> None:
    runner = BatchRunner(lanes=2)
    loop_thread = threading.get_ident()

    def job(i: int) -> tuple[int, int]:
        return i, threading.get_ident()

    try:
        results = await asyncio.gather(*(runner.run(functools.partial(job, i)) for i in range(100)))
    finally:
        await runner.close()
    assert [i for i, _ in results] == list(range(100))
    assert all(thread != loop_thread for _, thread in results)


async def test_operations_submitted_while_busy_share_one_hop(monkeypatch: pytest.MonkeyPatch) -> None:
    batches: list[int] = []
    run_all = io_batch._run_all

    def counting(ops: list[Callable[[], Any]]) -> Any:
        batches.append(len(ops))
        return run_all(ops)

    monkeypatch.setattr(io_batch, "_run_all", counting)
    runner = BatchRunner(lanes=1)
    started = threading.Event()

    def slow() -> None:
        started.set()
        time.sleep(0.1)

    try:
        first = runner.submit(slow)
        await asyncio.to_thread(started.wait, 5)
        assert await asyncio.gather(*(runner.run(functools.partial(int, i)) for i in range(50))) == list(range(50))
        await first
    finally:
        await runner.close()
    assert batches == [1, 50]


async def test_an_error_reaches_its_caller_and_the_runner_goes_on() -> None:
    runner = BatchRunner(lanes=1)

    def fails() -> None:
        raise OSError("disk on fire")

    def stops() -> None:
        raise StopIteration  # cannot be set on a future as such

    try:
        outcomes = await asyncio.gather(runner.run(fails), runner.run(stops), runner.run(lambda: "fine"),
                                        return_exceptions=True)
        assert isinstance(outcomes[0], OSError)
        assert isinstance(outcomes[1], RuntimeError)
        assert outcomes[2] == "fine"
        assert await runner.run(lambda: 42) == 42
    finally:
        await runner.close()


async def test_a_pool_that_cannot_run_fails_the_callers_instead_of_hanging() -> None:
    runner = BatchRunner(lanes=1)
    runner._executor.shutdown()  # as if no thread could be started
    with pytest.raises(Unavailable):
        await asyncio.wait_for(runner.run(lambda: 1), 5)
    with pytest.raises(Unavailable):
        await asyncio.wait_for(runner.run(lambda: 2), 5)
    await asyncio.wait_for(runner.close(), 5)


async def test_a_cancelled_caller_leaves_its_operation_to_finish() -> None:
    runner = BatchRunner(lanes=1)
    done = threading.Event()

    def slow() -> None:
        time.sleep(0.1)
        done.set()

    try:
        task = asyncio.create_task(runner.run(slow))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await runner.close()  # waits for the running operation
    assert done.is_set()
