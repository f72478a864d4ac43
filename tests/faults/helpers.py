"""Shared steps of the fault tests: scenarios, a CLI bound to a runner, and checks on event streams."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from e2e.conftest import Codex
from e2e.deployments import Distributed, Member


def slow_scenario(seconds: float = 2.0, name: str = "slow") -> dict[str, Any]:
    """A task that runs a command for `seconds`, then writes NOTES.md: its diff is known exactly."""
    return {"name": name, "steps": [
        {"tool_calls": [{"name": "run_shell_command",
                         "arguments": {"command_string": f"sleep {seconds}; echo SLEPT"}}]},
        {"tool_calls": [{"name": "write_file_content",
                         "arguments": {"file_path": "NOTES.md", "content": "survived\n"}}]}],
        "final": "Wrote the notes."}


def cli(cluster: Distributed, home: Path, runner: Member | None = None) -> Codex:
    """The real CLI, talking to `runner` (default: the first) with the deployment's token."""
    return Codex(home, cluster.client_env(home, runner), cluster=cluster)


def events_of(stdout: str) -> list[dict[str, Any]]:
    return [line for line in map(json.loads, filter(None, stdout.splitlines())) if line["type"] == "event"]


def assert_gap_free_once(events: list[dict[str, Any]], what: str) -> None:
    """Numbered 1..N with no gap and no repeat, and exactly one result, last."""
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), f"{what}: sequence has a gap or a repeat: {seqs}"
    results = [e for e in events if e["kind"] == "task_result"]
    assert len(results) == 1 and events[-1] is results[0], f"{what}: {len(results)} results"


def worker_of(cluster: Distributed, task_id: str) -> Member:
    """The worker whose log shows it started `task_id`'s sandbox (the live one, if several did)."""
    having = [w for w in cluster.workers if task_id in w.log() and w.alive]
    assert having, f"no live worker ran {task_id}:\n{cluster.logs()}"
    return having[-1]
