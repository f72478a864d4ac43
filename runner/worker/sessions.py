"""What the worker needs from the gateway: a per-task LLM session with a budget and a transcript."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from runner.domain.models import TokenUsage


@dataclass(frozen=True, slots=True)
class SessionBudget:
    max_requests: int
    max_tokens: int
    wall_time_s: float


@dataclass(frozen=True, slots=True)
class SessionReport:
    transcript: bytes
    usage: TokenUsage
    budget_exhausted: str | None


class LLMSessions(Protocol):
    def open_session(self, task_id: str, tenant: str, budget: SessionBudget) -> str:
        """Start a task's session; returns the task's bearer token."""

    async def close_session(self, task_id: str) -> SessionReport:
        """End it: the token stops working; returns the transcript and usage."""
