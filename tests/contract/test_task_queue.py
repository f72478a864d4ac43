"""Contract of `TaskQueue` and `Delivery`, for every adapter in `conftest.TASK_QUEUES`.

Redelivery tests use short ack deadlines (0.5-1 s) and wait at most a few seconds for what must happen;
"nothing is delivered" is checked by receiving with a timeout that covers the relevant deadline.
Exhaustion is eventual (a queue may notice it only when next asked for work, as JetStream does), so
those tests keep a receiver asking past the last deadline, then wait a few seconds for the listing.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from runner.ports import Delivery, ExhaustedTask, QueuedTask, TaskQueue

from .conftest import MakeQueue
from .samples import new_id

pytestmark = pytest.mark.timeout(30)


def task(tenant: str = "tenant-a") -> QueuedTask:
    return QueuedTask(task_id=new_id(), tenant=tenant)


def delivered(delivery: Delivery | None) -> Delivery:
    assert delivery is not None, "expected a delivery"
    return delivery


async def test_enqueue_then_receive_delivers_attempt_1(make_queue: MakeQueue) -> None:
    queue = await make_queue()
    queued = task()
    await queue.enqueue(queued)
    delivery = delivered(await queue.receive(timeout_s=5))
    assert delivery.task == queued
    assert delivery.attempt == 1
    await delivery.ack()


async def test_receive_returns_none_after_the_timeout(make_queue: MakeQueue) -> None:
    queue = await make_queue()
    started = time.monotonic()
    assert await queue.receive(timeout_s=0.3) is None
    assert 0.25 <= time.monotonic() - started < 5
    assert await queue.receive(timeout_s=0) is None


async def test_enqueue_is_idempotent_by_task_id(make_queue: MakeQueue) -> None:
    queue = await make_queue()
    queued = task()
    await queue.enqueue(queued)
    await queue.enqueue(queued)
    await asyncio.gather(*(queue.enqueue(queued) for _ in range(5)))
    delivery = delivered(await queue.receive(timeout_s=5))
    assert delivery.task == queued
    assert await queue.receive(timeout_s=0.3) is None
    # Enqueuing it again while it is being worked on does not queue a second copy either.
    await queue.enqueue(queued)
    assert await queue.receive(timeout_s=0.3) is None
    await delivery.ack()


async def test_a_waiting_receiver_is_woken_by_enqueue(make_queue: MakeQueue) -> None:
    queue = await make_queue()
    waiting = asyncio.ensure_future(queue.receive(timeout_s=20))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    queued = task()
    started = time.monotonic()
    await queue.enqueue(queued)
    delivery = delivered(await asyncio.wait_for(waiting, 5))
    assert delivery.task == queued
    assert time.monotonic() - started < 2
    await delivery.ack()


async def test_each_task_goes_to_exactly_one_of_many_receivers(make_queue: MakeQueue) -> None:
    queue = await make_queue()
    queued = [task() for _ in range(30)]
    got: list[Delivery] = []

    async def worker() -> None:
        while (delivery := await queue.receive(timeout_s=0.5)) is not None:
            got.append(delivery)
            await delivery.ack()

    workers = [asyncio.create_task(worker()) for _ in range(5)]
    for q in queued:
        await queue.enqueue(q)
    await asyncio.gather(*workers)
    assert sorted(d.task.task_id for d in got) == sorted(q.task_id for q in queued)
    assert all(d.attempt == 1 for d in got)


async def test_an_acked_task_is_never_delivered_again(make_queue: MakeQueue) -> None:
    queue = await make_queue(ack_wait_s=0.5)
    await queue.enqueue(task())
    delivery = delivered(await queue.receive(timeout_s=5))
    await delivery.ack()
    await delivery.ack()  # twice is harmless
    assert await queue.receive(timeout_s=1.2) is None


async def test_a_termed_task_is_never_delivered_again(make_queue: MakeQueue) -> None:
    queue = await make_queue(ack_wait_s=0.5)
    await queue.enqueue(task())
    delivery = delivered(await queue.receive(timeout_s=5))
    await delivery.term()
    assert await queue.receive(timeout_s=1.2) is None


async def test_an_unacked_task_is_delivered_again_after_the_deadline(make_queue: MakeQueue) -> None:
    queue = await make_queue(ack_wait_s=0.5)
    queued = task()
    await queue.enqueue(queued)
    started = time.monotonic()
    first = delivered(await queue.receive(timeout_s=5))
    assert await queue.receive(timeout_s=0.1) is None  # hidden while the deadline runs
    second = delivered(await queue.receive(timeout_s=5))
    assert second.task == queued
    assert (first.attempt, second.attempt) == (1, 2)
    assert time.monotonic() - started >= 0.45
    third = delivered(await queue.receive(timeout_s=5))
    assert third.attempt == 3
    await third.ack()


async def test_in_progress_extends_the_deadline(make_queue: MakeQueue) -> None:
    queue = await make_queue(ack_wait_s=1.0)
    await queue.enqueue(task())
    delivery = delivered(await queue.receive(timeout_s=5))
    for _ in range(8):  # 2 s in all, twice the ack deadline
        await asyncio.sleep(0.25)
        await delivery.in_progress()
        assert await queue.receive(timeout_s=0) is None
    await delivery.ack()
    assert await queue.receive(timeout_s=1.2) is None


async def test_nak_delivers_again_after_the_delay(make_queue: MakeQueue) -> None:
    queue = await make_queue(ack_wait_s=30)
    queued = task()
    await queue.enqueue(queued)
    first = delivered(await queue.receive(timeout_s=5))
    started = time.monotonic()
    await first.nak(0.5)
    assert await queue.receive(timeout_s=0.2) is None
    again = delivered(await queue.receive(timeout_s=5))
    assert time.monotonic() - started >= 0.4
    assert again.task == queued
    assert again.attempt == 2
    await again.ack()


async def test_nak_without_delay_delivers_again_at_once(make_queue: MakeQueue) -> None:
    queue = await make_queue(ack_wait_s=30)
    await queue.enqueue(task())
    first = delivered(await queue.receive(timeout_s=5))
    waiting = asyncio.ensure_future(queue.receive(timeout_s=10))
    await asyncio.sleep(0.05)
    await first.nak(0)
    again = delivered(await asyncio.wait_for(waiting, 3))
    assert again.attempt == 2
    await again.ack()


async def test_a_nakked_task_does_not_hold_up_the_others(make_queue: MakeQueue) -> None:
    queue = await make_queue(ack_wait_s=30)
    slow, other = task(), task()
    await queue.enqueue(slow)
    first = delivered(await queue.receive(timeout_s=5))
    await first.nak(10)
    await queue.enqueue(other)
    delivery = delivered(await queue.receive(timeout_s=5))
    assert delivery.task == other
    await delivery.ack()


async def test_a_task_is_not_delivered_more_than_max_deliver_times(make_queue: MakeQueue) -> None:
    queue = await make_queue(ack_wait_s=0.4, max_deliver=2)
    await queue.enqueue(task())
    first = delivered(await queue.receive(timeout_s=5))
    second = delivered(await queue.receive(timeout_s=5))
    assert (first.attempt, second.attempt) == (1, 2)
    assert await queue.receive(timeout_s=1.5) is None
    # Other tasks still flow.
    fresh = task()
    await queue.enqueue(fresh)
    delivery = delivered(await queue.receive(timeout_s=5))
    assert delivery.task == fresh


async def test_tenant_travels_with_the_task(make_queue: MakeQueue) -> None:
    queue = await make_queue()
    queued = task("tenant-z")
    await queue.enqueue(queued)
    delivery = delivered(await queue.receive(timeout_s=5))
    assert delivery.task.tenant == "tenant-z"
    await delivery.ack()


# ---- exhaustion: tasks the queue gave up on -------------------------------------------------------------


async def listed_exhausted(queue: TaskQueue, count: int = 1, within_s: float = 5.0) -> list[ExhaustedTask]:
    """`queue.exhausted()` once it lists `count` tasks (or whatever it lists after `within_s`)."""
    deadline = time.monotonic() + within_s
    while True:
        found = await queue.exhausted()
        if len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


async def test_a_task_delivered_max_deliver_times_without_an_ack_is_exhausted_until_discarded(
        make_queue: MakeQueue) -> None:
    queue = await make_queue(ack_wait_s=0.4, max_deliver=2)
    queued = task()
    await queue.enqueue(queued)
    first = delivered(await queue.receive(timeout_s=5))
    assert await queue.exhausted() == []
    second = delivered(await queue.receive(timeout_s=5))
    assert (first.attempt, second.attempt) == (1, 2)
    assert await queue.exhausted() == []  # the last delivery is still running
    before = time.time()
    assert await queue.receive(timeout_s=1.0) is None  # its deadline passes
    [exhausted] = await listed_exhausted(queue)
    assert exhausted.task == queued
    assert exhausted.attempts == 2
    assert before - 1 <= exhausted.exhausted_at <= time.time()
    assert await queue.exhausted() == [exhausted]  # listed until discarded
    assert await queue.discard(queued.task_id)
    assert not await queue.discard(queued.task_id)
    assert await queue.exhausted() == []
    assert await queue.receive(timeout_s=0.5) is None  # and never delivered again


async def test_exhausted_tasks_are_listed_oldest_first_up_to_the_limit(make_queue: MakeQueue) -> None:
    queue = await make_queue(ack_wait_s=0.3, max_deliver=1)
    queued = [task() for _ in range(3)]
    for q in queued:
        await queue.enqueue(q)
        assert delivered(await queue.receive(timeout_s=5)).task == q
        await asyncio.sleep(0.05)
    assert await queue.receive(timeout_s=0.8) is None
    exhausted = await listed_exhausted(queue, 3)
    assert [e.task for e in exhausted] == queued
    assert all(e.attempts == 1 for e in exhausted)
    assert [e.task for e in await queue.exhausted(limit=2)] == queued[:2]
    assert await queue.discard(queued[1].task_id)
    assert [e.task for e in await queue.exhausted()] == [queued[0], queued[2]]


async def test_acked_termed_and_retried_tasks_are_not_exhausted(make_queue: MakeQueue) -> None:
    queue = await make_queue(ack_wait_s=0.3, max_deliver=2)
    acked, termed, retried = task(), task(), task()
    for q in (acked, termed, retried):
        await queue.enqueue(q)
    got = {d.task.task_id: d for d in [delivered(await queue.receive(timeout_s=5)) for _ in range(3)]}
    await got[acked.task_id].ack()
    await got[termed.task_id].term()
    await got[retried.task_id].nak(0)
    again = delivered(await queue.receive(timeout_s=5))
    assert (again.task, again.attempt) == (retried, 2)
    await again.ack()
    assert await queue.receive(timeout_s=0.8) is None
    assert await listed_exhausted(queue, within_s=0.5) == []


async def test_discard_of_a_task_that_is_not_exhausted_is_false_and_leaves_it_queued(make_queue: MakeQueue) -> None:
    queue = await make_queue()
    queued = task()
    await queue.enqueue(queued)
    assert not await queue.discard(queued.task_id)
    delivery = delivered(await queue.receive(timeout_s=5))
    assert delivery.task == queued
    assert not await queue.discard(queued.task_id)  # in flight
    await delivery.ack()
    assert not await queue.discard("no-such-task")
