"""Contract of `TaskStore`, for every adapter in `conftest.TASK_STORES`."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from runner.domain.errors import AlreadyExists, Conflict, NotFound
from runner.domain.models import TaskState
from runner.ports import TaskStore

from .samples import full_record, record

pytestmark = pytest.mark.timeout(30)


async def test_create_sets_revision_1_and_get_returns_the_record(task_store: TaskStore) -> None:
    original = full_record()
    created = await task_store.create(original)
    assert created == dataclasses.replace(original, revision=1)
    assert await task_store.get(original.id) == created


async def test_create_twice_raises_already_exists(task_store: TaskStore) -> None:
    rec = record()
    await task_store.create(rec)
    with pytest.raises(AlreadyExists):
        await task_store.create(dataclasses.replace(rec, instruction="another"))
    assert (await task_store.get(rec.id)).instruction == rec.instruction


async def test_get_of_an_unknown_task_raises_not_found(task_store: TaskStore) -> None:
    with pytest.raises(NotFound):
        await task_store.get("no-such-task")


async def test_update_at_the_current_revision_bumps_it(task_store: TaskStore) -> None:
    created = await task_store.create(record())
    running = await task_store.update(created.with_state(TaskState.PREPARING))
    assert running.revision == 2
    assert running.state is TaskState.PREPARING
    assert await task_store.get(created.id) == running
    again = await task_store.update(dataclasses.replace(running, attempt=1, files_changed=3))
    assert again.revision == 3
    assert await task_store.get(created.id) == again


async def test_update_from_a_stale_revision_raises_conflict_and_changes_nothing(task_store: TaskStore) -> None:
    created = await task_store.create(record())
    current = await task_store.update(created.with_state(TaskState.PREPARING))
    with pytest.raises(Conflict):
        await task_store.update(created.with_state(TaskState.CANCELLED, "stale writer"))
    assert await task_store.get(created.id) == current


async def test_update_of_an_unknown_task_raises_not_found(task_store: TaskStore) -> None:
    with pytest.raises(NotFound):
        await task_store.update(dataclasses.replace(record(), revision=1))


async def test_two_writers_from_the_same_read_exactly_one_wins(task_store: TaskStore) -> None:
    created = await task_store.create(record())
    outcomes = await asyncio.gather(
        task_store.update(created.with_state(TaskState.CANCELLED, "user cancelled")),
        task_store.update(created.with_state(TaskState.PREPARING)),
        return_exceptions=True)
    winners = [o for o in outcomes if not isinstance(o, BaseException)]
    losers = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(winners) == 1 and len(losers) == 1
    assert isinstance(losers[0], Conflict)
    assert await task_store.get(created.id) == winners[0]


async def test_read_modify_write_loops_lose_no_update(task_store: TaskStore) -> None:
    created = await task_store.create(record())

    async def increment() -> None:
        while True:
            current = await task_store.get(created.id)
            try:
                await task_store.update(dataclasses.replace(current, files_changed=current.files_changed + 1))
                return
            except Conflict:
                await asyncio.sleep(0)

    await asyncio.gather(*(increment() for _ in range(20)))
    final = await task_store.get(created.id)
    assert final.files_changed == 20
    assert final.revision == 21


async def test_list_is_per_tenant_newest_first_with_a_limit(task_store: TaskStore) -> None:
    times = [1_700_000_300.0, 1_700_000_100.0, 1_700_000_500.0, 1_700_000_200.0, 1_700_000_400.0]
    mine = [await task_store.create(record("tenant-a", created_at=t)) for t in times]
    await task_store.create(record("tenant-b", created_at=1_700_000_600.0))
    listed = await task_store.list("tenant-a")
    assert [r.created_at for r in listed] == sorted(times, reverse=True)
    assert {r.id for r in listed} == {r.id for r in mine}
    assert all(r.revision == 1 for r in listed)
    assert [r.created_at for r in await task_store.list("tenant-a", limit=2)] == [1_700_000_500.0, 1_700_000_400.0]
    assert await task_store.list("tenant-c") == []


async def test_list_filters_by_state(task_store: TaskStore) -> None:
    queued = await task_store.create(record(created_at=1.0))
    running = await task_store.create(record(created_at=2.0))
    running = await task_store.update(running.with_state(TaskState.PREPARING))
    failed = await task_store.create(record(created_at=3.0))
    failed = await task_store.update(failed.with_state(TaskState.FAILED, "boom"))

    assert await task_store.list("tenant-a", states=[TaskState.PREPARING]) == [running]
    both = await task_store.list("tenant-a", states=[TaskState.QUEUED, TaskState.FAILED])
    assert both == [failed, queued]
    assert await task_store.list("tenant-a", states=[TaskState.COMPLETED]) == []
    assert len(await task_store.list("tenant-a", states=())) == 3


async def test_list_reflects_updates(task_store: TaskStore) -> None:
    created = await task_store.create(record())
    updated = await task_store.update(created.with_state(TaskState.CANCELLED, "by user"))
    assert await task_store.list("tenant-a") == [updated]
    assert await task_store.list("tenant-a", states=[TaskState.QUEUED]) == []


async def test_list_created_since_gives_the_tenants_tasks_from_that_time_oldest_first(task_store: TaskStore) -> None:
    tenant = "tenant-a"
    older = await task_store.create(record(tenant, created_at=1_700_000_000.0))
    at_cut = await task_store.create(record(tenant, created_at=1_700_000_100.0, state=TaskState.COMPLETED))
    newest = await task_store.create(record(tenant, created_at=1_700_000_200.0))
    between = await task_store.create(record(tenant, created_at=1_700_000_150.0))
    await task_store.create(record("tenant-b", created_at=1_700_000_300.0))
    got = await task_store.list_created_since(tenant, 1_700_000_100.0)
    assert [r.id for r in got] == [at_cut.id, between.id, newest.id]
    assert got[0] == at_cut and older.id not in {r.id for r in got}
    running = await task_store.update(between.with_state(TaskState.PREPARING))
    assert running in await task_store.list_created_since(tenant, 0)
    assert await task_store.list_created_since(tenant, 1_700_000_201.0) == []
