"""Tasks the queue gave up on: delivered `max_deliver` times, never finished (each attempt's worker
died). They end FAILED with a reason instead of staying unreported. Every queue lists them
(`TaskQueue.exhausted`): JetStream from its max-deliveries advisories, the embedded queue from its rows."""

from __future__ import annotations

import asyncio
import logging

from runner.domain import models as m
from runner.domain.errors import CodexError
from runner.ports import TaskQueue
from runner.tasks.service import TaskService

log = logging.getLogger(__name__)


async def fail_exhausted(service: TaskService, queue: TaskQueue) -> int:
    """Fail and forget every exhausted task; returns how many."""
    done = 0
    for item in await queue.exhausted():
        reason = (f"the task was started {item.attempts} times and no attempt finished (the worker running it "
                  "stopped each time); see the runner's log")
        await service.finish(item.task.task_id, m.TaskState.FAILED, reason)
        await queue.discard(item.task.task_id)
        log.warning("task failed after its last delivery", extra={"task_id": item.task.task_id,
                                                                   "attempts": item.attempts})
        done += 1
    return done


async def sweep_forever(service: TaskService, queue: TaskQueue, every_s: float = 5.0) -> None:
    while True:
        try:
            await fail_exhausted(service, queue)
        except CodexError as exc:
            log.warning("sweep of exhausted tasks failed", extra={"error": str(exc)})
        await asyncio.sleep(every_s)
