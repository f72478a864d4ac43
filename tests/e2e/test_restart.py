"""The embedded runner killed in the middle of a task: the next start takes the task back and finishes it,
with every event kept and none repeated."""

from __future__ import annotations

import asyncio
import json
import os
import signal

import pytest

from .conftest import copy_example, read_until_tool_call

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


@pytest.mark.parametrize("deployment", ["embedded"], indirect=True)  # distributed: tests/faults
async def test_a_task_survives_the_runner_being_killed(short_tmp, provider_factory, codex_factory):
    steps = [{"tool_calls": [{"name": "run_shell_command", "arguments": {"command_string": "sleep 2; echo SLEPT"}}]},
             {"tool_calls": [{"name": "write_file_content",
                              "arguments": {"file_path": "NOTES.md", "content": "survived\n"}}]}]
    provider = await provider_factory({"name": "slow", "steps": steps, "final": "Wrote the notes."})
    codex = await codex_factory(provider)
    ws = copy_example(short_tmp)

    proc = await codex.start("run", "--json", "Write notes", cwd=ws)
    task_id = await read_until_tool_call(proc, codex)
    pid = int((codex.home / "runner.pid").read_text())
    os.kill(pid, signal.SIGKILL)  # the runner and, dying with it, its sandbox

    # The CLI starts a runner again on the same state, which takes the task back as attempt 2, and
    # follows it from the last event it had.
    rest, _ = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, codex.stderr_file.read_text()[-2000:] + codex.runner_log()[-3000:]
    assert json.loads(rest.decode().splitlines()[-1])["status"] == "COMPLETED"

    watched = await codex.run("watch", "--json", task_id)
    assert watched.result["status"] == "COMPLETED"
    seqs = [e["seq"] for e in watched.events]
    assert seqs == list(range(1, len(seqs) + 1))
    states = [e["state"] for e in watched.events if e["kind"] == "state_changed"]
    assert states.count("PREPARING") == 2 and states[-1] == "COMPLETED"
    status = await codex.run("status", "--json", task_id)
    assert json.loads(status.stdout)["attempt"] == 2
    diff = await codex.run("diff", task_id)
    assert "+survived" in diff.stdout
