"""What the worker needs from the gateway: a per-task LLM session with a budget and a transcript."""

from __future__ import annotations

from typing import Protocol

from runner.gateway.budget import Budget
from runner.gateway.session import SessionReport


class LLMSessions(Protocol):
    def open_session(self, task_id: str, tenant: str, budget: Budget) -> str:
        """Start a task's session; returns the task's bearer token."""

    async def close_session(self, task_id: str) -> SessionReport:
        """End it: the token stops working; returns the transcript and usage."""
