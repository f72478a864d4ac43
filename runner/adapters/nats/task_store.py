"""`TaskStore` on a JetStream KV bucket: task records with compare-and-set updates and a per-tenant listing.

**Keys.** A record lives at `rec.<tenant>.<task>` and who owns a task at `own.<task>` (both as `token`s):
the record key puts a tenant's tasks under one subject prefix, which is the per-tenant index `list` reads,
and the owner key finds a record from its task id alone (the tenant never changes, so each process
caches it). `create` writes the owner key, then the record, each with `kv.create` (stored only if the key
has no value): a second create of the same id, from any process, raises `AlreadyExists`. A create that
died between the two writes leaves an owner key without a record; `get` reports the task as missing and a
new create of it by the same tenant completes it.

**Revisions.** The domain's `revision` (1 after create, +1 per update) is part of the stored JSON; the
KV revision (the stream sequence of the stored message) is what compare-and-set needs. `update(record)`
finds the KV revision at which the record's domain revision was stored (from a per-process cache of the
last revision it saw of each task, else by reading the key) and writes with `kv.update(last=<that KV
revision>)`. Every successful write moves both together, and two writes can never start from the same
KV revision and both succeed, so a domain revision names exactly one stored version and no update is
lost between processes: the loser gets `Conflict` (`wrong last sequence`), like a stale caller does.

**Retries.** Reads retry through an outage for `retry_s`; so do writes, made safe to repeat: when a
retried write meets `wrong last sequence` and the stored value is exactly what it was writing, an earlier
try stored it and only the acknowledgement was lost, so it succeeds.

**Listing.** `list(tenant)` opens an ephemeral consumer on `$KV.<bucket>.rec.<tenant>.*` that delivers the
last message of every subject, i.e. the current record of each of the tenant's tasks, then sorts by
`created_at` (ties: the order of creation, the KV revision of the first write, kept in the stored value)
and filters by state in the process. Its cost grows with the tenant's task count: one message per task
(about 1 KB) per call, whatever the limit. That suits thousands of tasks per tenant; beyond, records
should move to a retention policy or a summary index.

Reads go to the stream leader (`STREAM.MSG.GET`), never to a possibly lagging replica, so a record read
just after a write reflects it.
"""

from __future__ import annotations

import builtins
import json
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import nats.js.errors
from nats.js.kv import KeyValue

from runner.adapters.json_codec import DecodeError, from_json, to_json
from runner.adapters.nats.connection import NatsConnection
from runner.adapters.nats.layout import Layout
from runner.adapters.nats.reader import StreamReader
from runner.adapters.nats.retry import retrying
from runner.adapters.task_revisions import already_exists, conflict, first_version, next_version, not_found
from runner.closing import AsyncClosing
from runner.domain.errors import Unavailable
from runner.domain.models import TaskRecord, TaskState

log = logging.getLogger(__name__)

KV_OPERATION = "KV-Operation"


@dataclass(frozen=True, slots=True)
class _Stored:
    record: TaskRecord
    kv_revision: int
    order: int  # KV revision of the record's first write: the order of creation


@dataclass(frozen=True, slots=True)
class _Seen:
    revision: int
    kv_revision: int
    order: int


def _encode(record: TaskRecord, order: int | None) -> bytes:
    body = {"order": order, "task": to_json(record)}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _decode(data: bytes, kv_revision: int) -> _Stored:
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeError(f"a stored task record is not valid JSON: {exc}") from exc
    if not isinstance(body, dict) or set(body) != {"order", "task"}:
        raise DecodeError("a stored task record must be an object with exactly 'order' and 'task'")
    order = body["order"]
    if order is not None and (not isinstance(order, int) or isinstance(order, bool)):
        raise DecodeError(f"a stored task record's order must be an integer, not {order!r}")
    return _Stored(from_json(TaskRecord, body["task"]), kv_revision, kv_revision if order is None else order)


class KvTaskStore(AsyncClosing):
    """Task records in the `Layout.tasks_bucket` of a shared `NatsConnection` (which is not closed here)."""

    def __init__(self, conn: NatsConnection, layout: Layout, *, cached_tasks: int = 10_000,
                 list_timeout_s: float | None = None) -> None:
        self._conn = conn
        self._layout = layout
        self._stream = layout.tasks_stream
        self._kv: KeyValue | None = None
        self._owners: OrderedDict[str, str] = OrderedDict()
        self._seen: OrderedDict[str, _Seen] = OrderedDict()
        self._cached_tasks = cached_tasks
        self._list_timeout_s = list_timeout_s or conn.settings.request_timeout_s
        self._closed = False

    async def close(self) -> None:
        """Stop accepting calls; the connection stays open."""
        self._closed = True

    # ---- TaskStore -------------------------------------------------------------------------------------

    async def create(self, record: TaskRecord) -> TaskRecord:
        self._check_open()
        stored = first_version(record)
        value = _encode(stored, None)
        tries = 0

        async def attempt() -> TaskRecord:
            nonlocal tries
            tries += 1
            kv = await self._bucket()
            try:
                await kv.create(self._layout.owner_key(record.id), record.tenant.encode())
            except nats.js.errors.KeyWrongLastSequenceError:
                if await self._load_owner(record.id) != record.tenant:
                    raise already_exists(record.id) from None
            key = self._layout.task_key(record.tenant, record.id)
            try:
                kv_revision = await kv.create(key, value)
            except nats.js.errors.KeyWrongLastSequenceError:
                current = await self._load(record.tenant, record.id)
                if tries > 1 and current is not None and current.record == stored:
                    self._remember(record.id, record.tenant, current)
                    return stored
                raise already_exists(record.id) from None
            self._remember(record.id, record.tenant, _Stored(stored, kv_revision, kv_revision))
            return stored

        return await retrying(self._conn, f"create task {record.id}", attempt)

    async def get(self, task_id: str) -> TaskRecord:
        self._check_open()

        async def attempt() -> TaskRecord:
            tenant = self._owners.get(task_id) or await self._load_owner(task_id)
            current = None if tenant is None else await self._load(tenant, task_id)
            if current is None:
                raise not_found(task_id)
            return current.record

        return await retrying(self._conn, f"read task {task_id}", attempt)

    async def update(self, record: TaskRecord) -> TaskRecord:
        self._check_open()
        stored = next_version(record)
        key = self._layout.task_key(record.tenant, record.id)
        tries = 0

        async def attempt() -> TaskRecord:
            nonlocal tries
            tries += 1
            seen = self._seen.get(record.id)
            if seen is None or seen.revision != record.revision or self._owners.get(record.id) != record.tenant:
                current = await self._load(record.tenant, record.id)
                if current is None:
                    raise not_found(record.id)
                if current.record.revision != record.revision:
                    raise conflict(record, current.record.revision)
                seen = _Seen(record.revision, current.kv_revision, current.order)
            kv = await self._bucket()
            try:
                kv_revision = await kv.update(key, _encode(stored, seen.order), last=seen.kv_revision)
            except nats.js.errors.KeyWrongLastSequenceError:
                self._seen.pop(record.id, None)
                current = await self._load(record.tenant, record.id)
                if current is None:
                    raise not_found(record.id) from None
                if tries > 1 and current.record == stored:
                    return stored  # an earlier try stored it; its acknowledgement was lost
                raise conflict(record, current.record.revision) from None
            self._remember(record.id, record.tenant, _Stored(stored, kv_revision, seen.order))
            return stored

        return await retrying(self._conn, f"update task {record.id}", attempt)

    async def list(self, tenant: str, limit: int = 50, states: Sequence[TaskState] = ()) -> list[TaskRecord]:
        self._check_open()
        if limit <= 0:
            return []
        wanted = frozenset(states)
        current = await retrying(self._conn, f"list the tasks of tenant {tenant}", lambda: self._scan(tenant))
        for stored in current:
            self._remember(stored.record.id, tenant, stored)
        chosen = [s for s in current if not wanted or s.record.state in wanted]
        chosen.sort(key=lambda s: (s.record.created_at, s.order), reverse=True)
        return [s.record for s in chosen[:limit]]

    async def list_created_since(self, tenant: str, since: float) -> builtins.list[TaskRecord]:
        self._check_open()
        current = await retrying(self._conn, f"list the tasks of tenant {tenant}", lambda: self._scan(tenant))
        chosen = [s for s in current if s.record.created_at >= since]
        chosen.sort(key=lambda s: (s.record.created_at, s.order))
        return [s.record for s in chosen]

    # ---- internals -------------------------------------------------------------------------------------

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self._conn.js.key_value(self._layout.tasks_bucket)
        return self._kv

    async def _get_raw(self, key: str) -> tuple[bytes, int] | None:
        """The current value and KV revision of `key` from the stream leader, or None."""
        try:
            raw = await self._conn.js.get_msg(self._stream, subject=self._layout.kv_subject(key))
        except nats.js.errors.NotFoundError:
            return None
        if (raw.headers or {}).get(KV_OPERATION) in ("DEL", "PURGE"):
            return None
        return raw.data or b"", int(raw.seq or 0)

    async def _load_owner(self, task_id: str) -> str | None:
        found = await self._get_raw(self._layout.owner_key(task_id))
        if found is None:
            return None
        try:
            tenant = found[0].decode()
        except UnicodeDecodeError as exc:
            raise DecodeError(f"the owner of task {task_id!r} is not UTF-8") from exc
        self._owners[task_id] = tenant
        self._owners.move_to_end(task_id)
        self._trim(self._owners)
        return tenant

    async def _load(self, tenant: str, task_id: str) -> _Stored | None:
        found = await self._get_raw(self._layout.task_key(tenant, task_id))
        if found is None:
            return None
        stored = _decode(*found)
        if stored.record.id != task_id or stored.record.tenant != tenant:
            raise DecodeError(f"the record at the key of task {task_id!r} of {tenant!r} is of task "
                              f"{stored.record.id!r} of {stored.record.tenant!r}")
        self._remember(task_id, tenant, stored)
        return stored

    async def _scan(self, tenant: str) -> builtins.list[_Stored]:
        subject = self._layout.kv_subject(self._layout.tasks_key_prefix(tenant) + "*")
        reader = StreamReader(self._conn, self._stream, subject)
        latest: dict[str, _Stored] = {}
        try:
            if await reader.open(last_per_subject=True):
                while True:
                    message = await reader.next(self._list_timeout_s)
                    if message is None:
                        raise TimeoutError(f"the records of tenant {tenant} stopped arriving")
                    if message.headers.get(KV_OPERATION) in ("DEL", "PURGE"):
                        latest.pop(message.subject, None)
                    else:
                        latest[message.subject] = _decode(message.data, message.stream_seq)
                    if message.pending == 0:
                        break
        finally:
            await reader.close()
        return list(latest.values())

    def _remember(self, task_id: str, tenant: str, stored: _Stored) -> None:
        self._owners[task_id] = tenant
        self._owners.move_to_end(task_id)
        self._seen[task_id] = _Seen(stored.record.revision, stored.kv_revision, stored.order)
        self._seen.move_to_end(task_id)
        self._trim(self._owners)
        self._trim(self._seen)

    def _trim(self, cache: OrderedDict[str, Any]) -> None:
        while len(cache) > self._cached_tasks:
            cache.popitem(last=False)

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the task store is closed")
