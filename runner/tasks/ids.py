"""Task identifiers: short, URL-safe, and deterministic for an idempotent create (tenant + request id)."""

from __future__ import annotations

import hashlib
import re
import secrets

from runner.domain.errors import InvalidArgument

_TASK_ID = re.compile(r"^t[0-9a-f]{16}$")


def new_task_id(tenant: str, request_id: str = "") -> str:
    if request_id:
        return "t" + hashlib.sha256(f"{tenant}\0{request_id}".encode()).hexdigest()[:16]
    return "t" + secrets.token_hex(8)


def check_task_id(task_id: str) -> str:
    if not _TASK_ID.match(task_id):
        raise InvalidArgument(f"{task_id[:80]!r} is not a task id (expected 't' and 16 hex digits)")
    return task_id
