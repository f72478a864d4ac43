"""Domain values with every field set away from its default, shared by the contract suites."""

from __future__ import annotations

import uuid

from runner.domain.models import (
    ArtifactRef,
    AssistantMessage,
    Digest,
    EventPayload,
    LogLine,
    StateChanged,
    TaskLimits,
    TaskRecord,
    TaskResult,
    TaskState,
    TokenUsage,
    TokenUsageEvent,
    ToolCallFinished,
    ToolCallStarted,
)


def new_id() -> str:
    return uuid.uuid4().hex


def record(tenant: str = "tenant-a", *, task_id: str | None = None, created_at: float = 1_700_000_000.0,
           state: TaskState = TaskState.QUEUED) -> TaskRecord:
    return TaskRecord(
        id=task_id or new_id(),
        tenant=tenant,
        instruction="Rename `foo` to `bar` — everywhere, \u00e9t\u00e9 \U0001F600\nline two",
        model="gpt-4.1",
        manifest_digest=Digest.of(b"manifest"),
        state=state,
        reason="",
        created_at=created_at,
        updated_at=created_at + 0.5,
    )


def full_record(tenant: str = "tenant-a") -> TaskRecord:
    """A record with every field away from its default."""
    return TaskRecord(
        id=new_id(),
        tenant=tenant,
        instruction="Fix the failing test\n\twith tabs and \"quotes\" and \\ backslashes",
        model="deepseek-chat",
        manifest_digest=Digest.of(b"another manifest"),
        state=TaskState.RUNNING,
        reason="retrying after the worker restarted",
        created_at=1_700_000_123.25,
        updated_at=1_700_000_456.5,
        attempt=2,
        cancel_requested=True,
        limits=TaskLimits(wall_time_s=60.5, max_steps=7, max_llm_requests=9, max_llm_tokens=12_345,
                          command_timeout_s=3.5, setup_timeout_s=4.0, memory_bytes=1 << 29, max_processes=64,
                          max_file_bytes=1 << 20),
        artifacts=(ArtifactRef("diff.patch", Digest.of(b"diff")), ArtifactRef("summary.md", Digest.of(b"sum"))),
        usage=TokenUsage(prompt_tokens=1000, completion_tokens=234, requests=3),
        files_changed=4,
    )


def every_payload() -> list[EventPayload]:
    """One payload of every event kind, with unusual but valid values."""
    return [
        StateChanged(TaskState.PREPARING, "attempt 2"),
        LogLine("setup", "pip install -e . \u2713\n"),
        ToolCallStarted("call_1", "run_shell_command", "pytest -q tests/ (cwd .)"),
        ToolCallFinished("call_1", "run_shell_command", ok=False, exit_code=1, output="1 failed\n", duration_s=2.75),
        ToolCallFinished("call_2", "write_file_content", ok=True, exit_code=None, output="", duration_s=0.0),
        AssistantMessage("I renamed the function and updated **3** call sites."),
        TokenUsageEvent(TokenUsage(100, 20, 1), TokenUsage(1100, 220, 5)),
        TaskResult(TaskState.COMPLETED, "", 3, ("diff.patch", "summary.md")),
    ]


def result(state: TaskState = TaskState.COMPLETED) -> TaskResult:
    return TaskResult(state, "" if state is TaskState.COMPLETED else "stopped", 1, ("diff.patch",))
