"""The revisions of task records that every `TaskStore` writes, and the errors of compare-and-set.

A record is created at revision 1 and every successful update adds one; an update names the revision
it read, and a store that holds another refuses it with `Conflict`, so two writers never lose an update
whichever process they are in. Each store enforces this its own way (a conditional `UPDATE` in the state
database, `kv.update(last=...)` on JetStream); the versions they write and the errors they raise are made
here, so both runners say the same.
"""

from __future__ import annotations

import dataclasses

from runner.domain.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from runner.domain.models import TaskRecord


def first_version(record: TaskRecord) -> TaskRecord:
    """What `create` stores: the record at revision 1. `InvalidArgument` without an id."""
    if not record.id:
        raise InvalidArgument("a task record needs an id")
    return dataclasses.replace(record, revision=1)


def next_version(record: TaskRecord) -> TaskRecord:
    """What `update` stores in place of the stored revision `record.revision`."""
    return dataclasses.replace(record, revision=record.revision + 1)


def already_exists(task_id: str) -> AlreadyExists:
    return AlreadyExists(f"task {task_id!r} already exists")


def not_found(task_id: str) -> NotFound:
    return NotFound(f"task {task_id!r} does not exist")


def conflict(record: TaskRecord, current: int) -> Conflict:
    """An update of `record` refused: the store holds revision `current`."""
    return Conflict(f"task {record.id!r} was changed concurrently (revision {current}, not {record.revision}); "
                    "read it again and retry")
