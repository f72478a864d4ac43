"""The arguments every `EventLog` refuses, in the same words whichever runner is asked."""

from __future__ import annotations

from runner.domain.errors import InvalidArgument


def check_task_id(task_id: str) -> None:
    """Events are appended to a task: `InvalidArgument` for an empty id."""
    if not task_id:
        raise InvalidArgument("an event needs a task id")


def check_after_seq(after_seq: int) -> None:
    """`read` and `watch` start after an event's seq, or 0 for the start: never below."""
    if after_seq < 0:
        raise InvalidArgument(f"after_seq {after_seq} is negative")
