"""Gateway sessions: one per running task, reached by a bearer token that dies with it.

`SessionTable.open` makes a fresh `secrets.token_urlsafe(32)` token. The table keeps only the token's
SHA-256: a lookup is keyed by that digest (so how long it takes says nothing about the token) and the
match is confirmed with `hmac.compare_digest`. Closing a session removes it at once, so its token is
refused from then on, and cancels the requests it still has in flight so that the report is final.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from runner.domain.errors import AlreadyExists, InvalidArgument, NotFound
from runner.domain.models import TokenUsage
from runner.gateway.budget import Budget, BudgetMeter
from runner.gateway.transcript import Transcript

_TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


@dataclass(frozen=True, slots=True)
class SessionReport:
    """What a task's session leaves behind when it closes."""

    task_id: str
    tenant: str
    transcript: bytes  # the task's llm_response.txt
    usage: TokenUsage  # prompt and completion tokens as reported, and the number of answered requests
    budget_exceeded: str | None  # the first budget-exhaustion message, if the task ran out
    requests_refused: int  # refused by budget or rate limit


@dataclass(eq=False, slots=True)
class Session:
    task_id: str
    tenant: str
    token_digest: bytes
    meter: BudgetMeter
    transcript: Transcript
    inflight: set[asyncio.Task[Any]] = field(default_factory=set)
    closed: bool = False
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def next_seq(self) -> int:
        return next(self._seq)


class SessionTable:
    def __init__(self) -> None:
        self._by_digest: dict[bytes, Session] = {}
        self._by_task: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._by_task)

    def open(self, task_id: str, tenant: str, budget: Budget, transcript: Transcript) -> tuple[str, Session]:
        if task_id in self._by_task:
            raise AlreadyExists(f"task {task_id} already has an open gateway session; close it first")
        token = secrets.token_urlsafe(32)
        digest = _digest(token)
        session = Session(task_id, tenant, digest, BudgetMeter(budget), transcript)
        self._by_digest[digest] = session
        self._by_task[task_id] = session
        return token, session

    def authenticate(self, token: str) -> Session | None:
        digest = _digest(token)
        session = self._by_digest.get(digest)
        if session is None or session.closed or not hmac.compare_digest(session.token_digest, digest):
            return None
        return session

    def get(self, task_id: str) -> Session | None:
        return self._by_task.get(task_id)

    def remove(self, task_id: str) -> Session:
        session = self._by_task.pop(task_id, None)
        if session is None:
            raise NotFound(f"task {task_id} has no open gateway session")
        self._by_digest.pop(session.token_digest, None)
        session.closed = True
        return session

    def all(self) -> list[Session]:
        return list(self._by_task.values())


def check_task_id(task_id: str) -> str:
    """Task ids name files in the transcripts folder: keep them plain."""
    if not _TASK_ID.match(task_id):
        raise InvalidArgument(f"task id {task_id[:80]!r} is not 1-128 letters, digits, '.', '_' or '-'")
    return task_id
