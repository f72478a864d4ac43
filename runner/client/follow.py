"""Following a task's events across dropped connections: the CLI's `run`/`watch` and the language
server's progress both read a task through `follow_events`.

WatchTask replays from a sequence number and then follows live, so a follower that lost its stream asks
again from the last sequence it saw: nothing is missed, and an event is never yielded twice (older ones
are dropped here, whatever the server sends). `revive` restarts the embedded runner when it went away;
its tasks are taken back when it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from runner.client.connection import RunnerClient
from runner.domain import models as m
from runner.domain.errors import Unavailable

__all__ = ["WATCH_RETRIES", "follow_events"]

log = logging.getLogger(__name__)
WATCH_RETRIES = 20


async def follow_events(client: RunnerClient, task_id: str, after_seq: int = 0,
                        revive: Callable[[], Awaitable[None]] | None = None,
                        retries: int = WATCH_RETRIES) -> AsyncIterator[m.Event]:
    """Yield the task's events after `after_seq` until the stream ends (the task ended); Unavailable
    once the runner stayed unreachable for `retries` attempts in a row (backoff up to 5 s)."""
    last_seq = after_seq
    failures = 0
    while True:
        try:
            async for event in client.watch(task_id, last_seq):
                if event.seq <= last_seq:
                    continue
                last_seq = event.seq
                failures = 0
                yield event
            return
        except Unavailable as exc:
            failures += 1
            if failures > retries:
                raise
            log.info("task stream lost; resuming", extra={"task_id": task_id, "after_seq": last_seq,
                                                          "attempt": failures, "error": str(exc)})
            await asyncio.sleep(min(0.1 * 2 ** failures, 5.0))
            if revive is not None:
                with contextlib.suppress(Unavailable):
                    await revive()
            await client.reconnect()
