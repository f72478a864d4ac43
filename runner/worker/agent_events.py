"""The gateway's sink: the agent's events become task events, its phases become task states."""

from __future__ import annotations

from collections.abc import Sequence

from agent.wire import (
    AgentEvent,
    AssistantMessageEvent,
    LogEvent,
    PhaseEvent,
    ToolCallFinishedEvent,
    ToolCallStartedEvent,
)
from runner.domain import models as m
from runner.tasks.service import TaskService

_PHASES = {
    "SETTING_UP": m.TaskState.SETTING_UP,
    "RUNNING": m.TaskState.RUNNING,
    "UPLOADING": m.TaskState.UPLOADING,
}
MAX_TEXT = 64_000


def to_payload(event: AgentEvent) -> m.EventPayload | None:
    if isinstance(event, LogEvent):
        return m.LogLine(event.stream[:32], event.text[:MAX_TEXT])
    if isinstance(event, ToolCallStartedEvent):
        return m.ToolCallStarted(event.call_id[:128], event.name[:128], event.arguments[:2000])
    if isinstance(event, ToolCallFinishedEvent):
        return m.ToolCallFinished(event.call_id[:128], event.name[:128], event.ok, event.exit_code,
                                  event.output[:MAX_TEXT], event.duration_s)
    if isinstance(event, AssistantMessageEvent):
        return m.AssistantMessage(event.text[:MAX_TEXT])
    return None


class TaskEventSink:
    """Implements `runner.gateway.sink.AgentEventSink` on top of the TaskService."""

    def __init__(self, service: TaskService) -> None:
        self._service = service

    async def agent_events(self, task_id: str, events: Sequence[AgentEvent]) -> None:
        for event in events:
            if isinstance(event, PhaseEvent):
                await self._service.transition(task_id, _PHASES[event.phase])
                continue
            payload = to_payload(event)
            if payload is not None:
                await self._service.events.append(task_id, payload)

    async def token_usage(self, task_id: str, usage: m.TokenUsage, total: m.TokenUsage) -> None:
        await self._service.events.append(task_id, m.TokenUsageEvent(usage, total))
