"""`KvTaskStore` across processes (one connection each): compare-and-set holds between them, records are
found by id from anywhere, and any task id or tenant fits the keys."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
from contract.samples import record

from runner.adapters.nats import KvTaskStore
from runner.domain.errors import AlreadyExists, Conflict, NotFound
from runner.domain.models import TaskState

from .conftest import OpenAdapters

pytestmark = pytest.mark.timeout(90)


async def test_two_processes_updating_from_the_same_read_exactly_one_wins_every_time(
        open_adapters: OpenAdapters) -> None:
    one, two = (await open_adapters()).tasks, (await open_adapters()).tasks
    for _ in range(50):
        created = await one.create(record())
        read_one, read_two = await one.get(created.id), await two.get(created.id)
        outcomes = await asyncio.gather(one.update(read_one.with_state(TaskState.CANCELLED, "by user")),
                                        two.update(read_two.with_state(TaskState.PREPARING)),
                                        return_exceptions=True)
        winners = [o for o in outcomes if not isinstance(o, BaseException)]
        losers = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(winners) == 1, outcomes
        assert len(losers) == 1 and isinstance(losers[0], Conflict), outcomes
        assert await one.get(created.id) == winners[0] == await two.get(created.id)
        assert winners[0].revision == 2


async def test_read_modify_write_loops_in_two_processes_lose_no_update(open_adapters: OpenAdapters) -> None:
    stores = [(await open_adapters()).tasks for _ in range(2)]
    created = await stores[0].create(record())

    async def increment(store: KvTaskStore) -> None:
        while True:
            current = await store.get(created.id)
            try:
                await store.update(dataclasses.replace(current, files_changed=current.files_changed + 1))
                return
            except Conflict:
                await asyncio.sleep(0)

    await asyncio.gather(*(increment(stores[i % 2]) for i in range(30)))
    final = await stores[1].get(created.id)
    assert (final.files_changed, final.revision) == (30, 31)


async def test_a_stale_process_gets_conflict_even_with_a_cached_revision(open_adapters: OpenAdapters) -> None:
    one, two = (await open_adapters()).tasks, (await open_adapters()).tasks
    created = await one.create(record())
    newer = await two.update((await two.get(created.id)).with_state(TaskState.PREPARING))
    with pytest.raises(Conflict, match="revision 2, not 1"):
        await one.update(created.with_state(TaskState.CANCELLED))  # `one` last saw revision 1 itself
    assert await one.get(created.id) == newer
    assert (await one.update(newer.with_state(TaskState.RUNNING))).revision == 3


async def test_create_of_an_existing_id_by_another_process_or_tenant_raises_already_exists(
        open_adapters: OpenAdapters) -> None:
    one, two = (await open_adapters()).tasks, (await open_adapters()).tasks
    mine = await one.create(record("tenant-a"))
    with pytest.raises(AlreadyExists):
        await two.create(record("tenant-a", task_id=mine.id))
    with pytest.raises(AlreadyExists):
        await two.create(record("tenant-b", task_id=mine.id))
    assert await two.list("tenant-b") == []
    outcomes = await asyncio.gather(*(store.create(record(task_id="t-race")) for store in (one, two, one, two)),
                                    return_exceptions=True)
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
    assert all(isinstance(o, AlreadyExists) for o in outcomes if isinstance(o, BaseException))


async def test_a_create_that_stopped_after_claiming_the_id_is_completed_by_a_retry(open_adapters: OpenAdapters) -> None:
    adapters = await open_adapters()
    store, layout = adapters.tasks, adapters.layout
    lost = record("tenant-a")
    kv = await adapters.connection.js.key_value(layout.tasks_bucket)
    await kv.create(layout.owner_key(lost.id), b"tenant-a")  # the owner key, and then the process died
    with pytest.raises(NotFound):
        await store.get(lost.id)
    assert (await store.create(lost)).revision == 1
    assert (await store.get(lost.id)).instruction == lost.instruction


async def test_ids_and_tenants_of_any_characters_are_stored_apart(open_adapters: OpenAdapters) -> None:
    store = (await open_adapters()).tasks
    odd = [("a.b", "tenant.one"), ("a b*>", "tenant one"), ("é/ü", "ténant"), ("=61", "=61")]
    for task_id, tenant in odd:
        await store.create(record(tenant, task_id=task_id))
    for task_id, tenant in odd:
        got = await store.get(task_id)
        assert (got.id, got.tenant) == (task_id, tenant)
        assert [r.id for r in await store.list(tenant)] == [task_id]


async def test_list_orders_equal_creation_times_newest_insert_first(open_adapters: OpenAdapters) -> None:
    store = (await open_adapters()).tasks
    created = [await store.create(record(created_at=1_700_000_000.0)) for _ in range(5)]
    updated = await store.update(created[0].with_state(TaskState.PREPARING))  # an update keeps its place
    listed = await store.list("tenant-a")
    assert [r.id for r in listed] == [r.id for r in reversed(created)]
    assert listed[-1] == updated


async def test_a_record_is_stored_as_json_with_its_domain_revision(open_adapters: OpenAdapters) -> None:
    adapters = await open_adapters()
    created = await adapters.tasks.create(record())
    await adapters.tasks.update(created.with_state(TaskState.PREPARING))
    kv = await adapters.connection.js.key_value(adapters.layout.tasks_bucket)
    entry = await kv.get(adapters.layout.task_key("tenant-a", created.id))
    stored = json.loads(entry.value or b"")
    assert set(stored) == {"order", "task"}
    assert stored["task"]["revision"] == 2 and stored["task"]["state"] == "PREPARING"
    assert stored["order"] < (entry.revision or 0)  # the KV revision of the create
