"""Tasks the queue gave up on: delivered `max_deliver` times, never finished (each attempt's worker
died). They end FAILED with a reason instead of staying unreported. On JetStream the same comes from the
max-deliveries advisory; the embedded queue lists them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from runner.domain import models as m
from runner.domain.errors import CodexError
from runner.ports import QueuedTask
from runner.tasks.service import TaskService

log = logging.getLogger(__name__)


class Exhausted(Protocol):
    @property
    def task(self) -> QueuedTask: ...

    @property
    def attempts(self) -> int: ...


class ExhaustionSource(Protocol):
    async def exhausted(self, limit: int = 100) -> Sequence[Exhausted]: ...

    async def discard(self, task_id: str) -> bool: ...


async def fail_exhausted(service: TaskService, source: ExhaustionSource) -> int:
    """Fail and forget every exhausted task; returns how many."""
    done = 0
    for item in await source.exhausted():
        reason = (f"the task was started {item.attempts} times and no attempt finished (the worker running it "
                  "stopped each time); see the runner's log")
        await service.finish(item.task.task_id, m.TaskState.FAILED, reason)
        await source.discard(item.task.task_id)
        log.warning("task failed after its last delivery", extra={"task_id": item.task.task_id,
                                                                   "attempts": item.attempts})
        done += 1
    return done


async def sweep_forever(service: TaskService, source: ExhaustionSource, every_s: float = 5.0) -> None:
    while True:
        try:
            await fail_exhausted(service, source)
        except CodexError as exc:
            log.warning("sweep of exhausted tasks failed", extra={"error": str(exc)})
        await asyncio.sleep(every_s)
