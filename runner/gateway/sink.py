"""What the gateway reports to the rest of the runner: the agent's events and the token usage it saw."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from agent.wire import AgentEvent
from runner.domain.models import TokenUsage


class AgentEventSink(Protocol):
    async def agent_events(self, task_id: str, events: Sequence[AgentEvent]) -> None:
        """Record events the agent posted (phase changes become task state transitions)."""

    async def token_usage(self, task_id: str, usage: TokenUsage, total: TokenUsage) -> None:
        """One LLM request's usage and the task's running total."""
