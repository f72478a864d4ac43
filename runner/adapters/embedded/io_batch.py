"""Blocking file operations run off the event loop, small ones grouped into one thread hop.

A hop to a worker thread and back costs tens to hundreds of microseconds: more than writing a 10 KB
file to the page cache. Paying one hop per small blob would make the blob store, not the network, the
bottleneck of a first upload of many small files. So operations submitted while the worker threads are
busy wait in a queue and the next free lane takes all of them (up to `max_batch`) in one hop:

* one caller at a time: one hop per operation, exactly like `loop.run_in_executor`;
* many concurrent callers (an upload that commits blobs concurrently): one hop per batch.

Extra lanes (up to `lanes` batches at once on the store's own thread pool) start only when enough work
is queued (`_LANE_COST`: a few dozen small operations, or a MiB to hash and write): a second thread that
takes one small operation at a time only adds GIL contention and hops, while large reads and writes do
gain from a second core (`hashlib` and file I/O release the GIL).

`submit` returns a future that is never cancelled by the caller going away: an operation that was
submitted always runs to its end, so callers that must clean up after it (a blob writer aborting after
its commit was cancelled) can wait for it. Callers that may be cancelled await it through
`asyncio.shield`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from runner.domain.errors import Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

_Op = tuple[Callable[[], Any], "asyncio.Future[Any]", int]
# Queued cost (about one unit per small operation or 32 KiB of data) that justifies another lane.
_LANE_COST = 32
_COST_UNIT = 32 * 1024
_Outcome = tuple[bool, Any]


def _run_all(ops: list[Callable[[], Any]]) -> list[_Outcome]:
    outcomes: list[_Outcome] = []
    for op in ops:
        try:
            outcomes.append((True, op()))
        except BaseException as exc:  # handed back to the awaiting coroutine
            outcomes.append((False, exc))
    return outcomes


def _fail(batch: list[_Op], error: Exception, cause: BaseException | None) -> None:
    error.__cause__ = cause
    for _, fut, _ in batch:
        if not fut.done():
            fut.set_exception(error)


class BatchRunner:
    """Runs blocking callables on a private thread pool, batching those submitted while it is busy."""

    def __init__(self, lanes: int = 4, max_batch: int = 256, name: str = "blob-io") -> None:
        if lanes < 1 or max_batch < 1:
            raise ValueError("lanes and max_batch must be at least 1")
        self._lanes = lanes
        self._max_batch = max_batch
        self._executor = ThreadPoolExecutor(max_workers=lanes, thread_name_prefix=name)
        self._pending: deque[_Op] = deque()
        self._pending_cost = 0
        self._running = 0
        self._closed = False
        self._idle: asyncio.Event | None = None

    def submit(self, fn: Callable[[], T], nbytes: int = 0) -> asyncio.Future[T]:
        """Queue `fn` (which handles about `nbytes` of data) to run in a worker thread; the future carries
        its result or exception."""
        if self._closed:
            raise Unavailable("the blob store is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        cost = 1 + nbytes // _COST_UNIT
        self._pending.append((fn, fut, cost))
        self._pending_cost += cost
        self._start_lanes(loop)
        return fut

    async def run(self, fn: Callable[[], T], nbytes: int = 0) -> T:
        """Run `fn` in a worker thread and return its result; cancelling the caller leaves `fn` running."""
        return await asyncio.shield(self.submit(fn, nbytes))

    def _start_lanes(self, loop: asyncio.AbstractEventLoop) -> None:
        while self._pending and (self._running == 0
                                 or (self._running < self._lanes and self._pending_cost >= _LANE_COST)):
            batch: list[_Op] = []
            while self._pending and len(batch) < self._max_batch:
                op = self._pending.popleft()
                self._pending_cost -= op[2]
                batch.append(op)
            try:
                inner = loop.run_in_executor(self._executor, _run_all, [op for op, _, _ in batch])
            except RuntimeError as exc:  # no thread could be started (or the pool is shut down)
                log.error("cannot run blob I/O", exc_info=True, extra={"operations": len(batch)})
                _fail(batch, Unavailable(f"the blob store cannot run file operations: {exc}"), exc)
                continue
            self._running += 1
            inner.add_done_callback(functools.partial(self._finish, loop, batch))

    def _finish(self, loop: asyncio.AbstractEventLoop, batch: list[_Op],
                done: asyncio.Future[list[_Outcome]]) -> None:
        self._running -= 1
        try:
            if done.cancelled() or done.exception() is not None:
                # Only the executor shutting down gets here: the operations themselves never raise out.
                _fail(batch, Unavailable("the blob store's I/O threads stopped"), None)
            else:
                for (_, fut, _), (ok, value) in zip(batch, done.result(), strict=True):
                    if fut.done():
                        continue
                    if ok:
                        fut.set_result(value)
                    elif isinstance(value, StopIteration):  # a future cannot carry StopIteration
                        fut.set_exception(RuntimeError(repr(value)))
                    else:
                        fut.set_exception(value)
        finally:
            self._start_lanes(loop)
            if not self._running and self._idle is not None:
                self._idle.set()

    async def close(self) -> None:
        """Let running and queued operations finish, then stop the threads."""
        if self._closed:
            return
        self._closed = True  # no new operations; queued ones still run
        if self._running:
            self._idle = asyncio.Event()
            await self._idle.wait()
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)
