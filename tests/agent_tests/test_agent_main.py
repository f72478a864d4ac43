"""`python -m agent` end to end: a real subprocess, the real gateway, the scripted model behind it.

Each test starts the agent as a sandbox would (bare interpreter, spec on stdin), lets it work through a
scenario, and checks what the worker would collect: exit status, result.json, diff.patch (applied to a
pristine copy of the snapshot with `git apply`), summary.md, prompt.txt, setup.log, the events that
reached the runner, and the requests that reached the model.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from agent_testing import REPO_ROOT, AgentRun, Stack, git, run_agent, spec_dict, wait_dead

from agent.wire import (
    AssistantMessageEvent,
    LogEvent,
    PhaseEvent,
    ToolCallFinishedEvent,
    ToolCallStartedEvent,
)
from runner.gateway import Budget

MakeStack = Callable[[dict[str, Any]], Awaitable[Stack]]
pytestmark = pytest.mark.timeout(60)


def _project(ws: Path) -> None:
    (ws / "AGENTS.md").write_text("Root rules for agents: keep it short.\n")
    (ws / "src").mkdir()
    (ws / "src" / "AGENTS.md").write_text("Rules for src: greet the world.\n")
    (ws / "src" / "app.py").write_text("print('hello')\n")
    (ws / "README.md").write_text("# Demo\n")
    (ws / ".gitignore").write_text("build/\n")


async def _run(stack: Stack, ws: Path, tmp_path: Path, budget: Budget | None = None, **spec: Any) -> AgentRun:
    out = tmp_path / "out"
    token = stack.open_session(budget=budget)
    line = json.dumps(spec_dict(ws, out, stack.socket, token=token, **spec)).encode() + b"\n"
    run = await run_agent(line, out)
    assert token not in run.stderr, "the token must never be logged"
    return run


def _kinds(events: list[Any]) -> list[str]:
    out = []
    for e in events:
        if isinstance(e, PhaseEvent):
            out.append(e.phase)
        elif isinstance(e, ToolCallStartedEvent):
            out.append(f"start:{e.name}")
        elif isinstance(e, ToolCallFinishedEvent):
            out.append(f"end:{e.name}:{'ok' if e.ok else 'error'}")
        elif isinstance(e, AssistantMessageEvent):
            out.append("say")
        elif isinstance(e, LogEvent):
            out.append(f"log:{e.stream}")
    return out


FULL = {
    "name": "full",
    "steps": [
        {"content": "Looking around.",
         "tool_calls": [{"name": "run_shell_command", "arguments": {"command_string": "ls; cat generated.txt"}}],
         "expect_in_prompt": ["Root rules for agents", "Rules for src", "Fix the greeting"]},
        {"tool_calls": [{"name": "read_file_content", "arguments": {"file_path": "src/app.py"}}]},
        {"tool_calls": [{"name": "edit_file_content", "arguments": {
            "file_path": "src/app.py", "old_string": "'hello'", "new_string": "'hello, world'"}}]},
        {"tool_calls": [{"name": "write_file_content", "arguments": {
            "file_path": "docs/GREETING.md", "content": "The app greets the world.\n"}},
                        {"name": "run_shell_command", "arguments": {
                            "command_string": "git rm -q README.md 2>/dev/null || rm README.md; "
                                              "mkdir -p build && echo x > build/out.txt"}}]},
    ],
    "final": "Fixed the greeting and documented it.",
}


async def test_a_whole_task(make_stack: MakeStack, ws: Path, tmp_path: Path) -> None:
    _project(ws)
    pristine = tmp_path / "pristine"
    shutil.copytree(ws, pristine)
    (ws / "setup.sh").write_text("echo installing\nmkdir -p build && echo dep > build/dep.txt\n"
                                 "echo made by setup > generated.txt\n")
    (pristine / "setup.sh").write_text((ws / "setup.sh").read_text())
    stack = await make_stack(FULL)

    run = await _run(stack, ws, tmp_path, instruction="Fix the greeting.")

    assert run.exit_code == 0, run.stderr
    result = run.result()
    assert (result.status, result.reason, result.steps, result.files_changed) == ("completed", "", 5, 3)
    assert run.file("summary.md") == "Fixed the greeting and documented it."
    assert run.file("setup.log").startswith("installing\nsetup.sh finished successfully in ")

    patch = run.file("diff.patch")
    assert "generated.txt" not in patch and "build/" not in patch and "setup.sh" not in patch
    applied = git(pristine, "apply", str(run.output / "diff.patch"), check=False)
    assert applied.returncode == 0, applied.stderr.decode()
    assert (pristine / "src" / "app.py").read_text() == "print('hello, world')\n"
    assert (pristine / "docs" / "GREETING.md").read_text() == "The app greets the world.\n"
    assert not (pristine / "README.md").exists()

    # prompt.txt holds exactly what the model was sent first.
    first = stack.chat_bodies()[0]
    system, user = first["messages"][0]["content"], first["messages"][1]["content"]
    assert run.file("prompt.txt") == f"=== system ===\n{system}\n=== user ===\n{user}\n"
    assert user == "Fix the greeting."
    assert "## src/AGENTS.md (applies to files under src/)" in system
    # Each tool result went back paired with its call; the shell saw setup's file.
    second = stack.chat_bodies()[1]["messages"]
    assert second[2]["tool_calls"][0]["function"]["name"] == "run_shell_command"
    assert second[3]["role"] == "tool" and second[3]["tool_call_id"] == second[2]["tool_calls"][0]["id"]
    assert second[3]["content"].startswith("exit code: 0\nstdout:\n")
    assert "made by setup" in second[3]["content"]
    assert len(stack.chat_bodies()) == 5

    kinds = _kinds(stack.sink.events)
    assert kinds == [
        "SETTING_UP", "log:setup", "log:setup", "RUNNING",
        "say", "start:run_shell_command", "end:run_shell_command:ok",
        "start:read_file_content", "end:read_file_content:ok",
        "start:edit_file_content", "end:edit_file_content:ok",
        "start:write_file_content", "end:write_file_content:ok",
        "start:run_shell_command", "end:run_shell_command:ok",
        "say", "UPLOADING",
    ]
    started = [e for e in stack.sink.events if isinstance(e, ToolCallStartedEvent)]
    assert started[0].arguments == "ls; cat generated.txt"
    assert started[3].arguments == "docs/GREETING.md (26 characters)"
    finished = [e for e in stack.sink.events if isinstance(e, ToolCallFinishedEvent)]
    assert finished[0].exit_code == 0 and finished[1].exit_code is None
    assert all(f.duration_s >= 0 for f in finished)


async def test_malformed_calls_and_escapes_go_back_to_the_model(make_stack: MakeStack, ws: Path,
                                                                tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("secret\n")
    (ws / "link-out").symlink_to(secret)
    stack = await make_stack({"name": "bad", "steps": [{"tool_calls": [
        {"name": "edit_file_content", "raw_arguments": "{oops"},
        {"name": "format_disk", "arguments": {}},
        {"name": "read_file_content", "arguments": {"file_path": "../secret.txt"}},
        {"name": "write_file_content", "arguments": {"file_path": "link-out", "content": "pwned"}},
        {"name": "write_file_content", "arguments": {"file_path": "ok.txt"}},
    ]}], "final": "I could not do it."})

    run = await _run(stack, ws, tmp_path)

    assert run.exit_code == 0, run.stderr
    assert run.result().status == "completed"
    assert secret.read_text() == "secret\n"
    tool_messages = [m["content"] for m in stack.chat_bodies()[1]["messages"] if m["role"] == "tool"]
    assert len(tool_messages) == 5
    assert tool_messages[0].startswith("Error: the arguments of edit_file_content are not valid JSON")
    assert tool_messages[1].startswith("Error: there is no tool named 'format_disk'")
    assert "outside the workspace" in tool_messages[2] and "outside the workspace" in tool_messages[3]
    assert tool_messages[4] == "Error: write_file_content needs the argument(s) content"
    finished = [e for e in stack.sink.events if isinstance(e, ToolCallFinishedEvent)]
    assert [f.ok for f in finished] == [False] * 5
    assert run.file("diff.patch") == ""


def _counting_steps(n: int) -> dict[str, Any]:
    step = {"content": "One more.",
            "tool_calls": [{"name": "run_shell_command", "arguments": {"command_string": "echo step >> count.txt"}}]}
    return {"name": "counting", "steps": [step] * n, "final": "never reached"}


async def test_step_budget_stops_the_loop_but_keeps_the_work(make_stack: MakeStack, ws: Path,
                                                             tmp_path: Path) -> None:
    stack = await make_stack(_counting_steps(10))
    run = await _run(stack, ws, tmp_path, max_steps=3)
    assert run.exit_code == 1
    result = run.result()
    assert (result.status, result.reason, result.steps, result.files_changed) == (
        "failed", "step budget of 3 steps exhausted", 3, 1)
    assert (ws / "count.txt").read_text() == "step\n" * 3
    assert "+step\n+step\n+step\n" in run.file("diff.patch")
    assert run.file("summary.md").startswith("The agent stopped before finishing: step budget of 3 steps exhausted.")
    assert "One more." in run.file("summary.md")
    assert len(stack.chat_bodies()) == 3
    assert stack.sink.events[-1] == PhaseEvent("UPLOADING")


async def test_exhausted_gateway_budget_stops_with_its_message(make_stack: MakeStack, ws: Path,
                                                               tmp_path: Path) -> None:
    stack = await make_stack(_counting_steps(10))
    run = await _run(stack, ws, tmp_path, budget=Budget(max_requests=2, requests_per_second=1000))
    assert run.exit_code == 1
    result = run.result()
    assert result.status == "failed"
    assert result.reason.startswith("the gateway refused the model request: ")
    assert "2" in result.reason
    assert result.steps == 2
    assert (ws / "count.txt").read_text() == "step\n" * 2
    assert "+step\n+step\n" in run.file("diff.patch")


async def test_rate_limits_are_waited_out(make_stack: MakeStack, ws: Path, tmp_path: Path) -> None:
    stack = await make_stack(_counting_steps(4))
    run = await _run(stack, ws, tmp_path, budget=Budget(requests_per_second=4))
    assert run.exit_code == 0, run.stderr
    assert run.result().steps == 5
    assert "rate limited by the gateway" in run.stderr


async def test_model_server_errors_are_retried(make_stack: MakeStack, ws: Path, tmp_path: Path) -> None:
    stack = await make_stack({"name": "flaky", "steps": [
        {"error": {"status": 500, "message": "provider hiccup", "times": 1}, "content": "Done after a retry."}]})
    run = await _run(stack, ws, tmp_path)
    assert run.exit_code == 0, run.stderr
    assert run.file("summary.md") == "Done after a retry."
    assert [r.status for r in stack.provider.chat_requests] == [500, 200]


async def test_failing_setup_ends_the_task_before_the_model(make_stack: MakeStack, ws: Path, tmp_path: Path) -> None:
    (ws / "setup.sh").write_text("echo broken dependency\nexit 3\n")
    stack = await make_stack({"name": "unused"})
    run = await _run(stack, ws, tmp_path)
    assert run.exit_code == 1
    result = run.result()
    assert (result.status, result.reason) == ("failed", "setup.sh exited with status 3 (see setup.log)")
    assert run.file("setup.log").startswith("broken dependency\nsetup.sh exited with status 3 after ")
    assert run.file("diff.patch") == ""
    assert stack.provider.chat_requests == []
    assert _kinds(stack.sink.events) == ["SETTING_UP", "log:setup", "log:setup", "UPLOADING"]


async def test_setup_timeout(make_stack: MakeStack, ws: Path, tmp_path: Path) -> None:
    (ws / "setup.sh").write_text("echo waiting\nsleep 1000\n")
    stack = await make_stack({"name": "unused"})
    run = await _run(stack, ws, tmp_path, setup_timeout_s=0.5)
    assert run.exit_code == 1
    assert run.result().reason == "setup.sh timed out after 0.5 s"
    assert "timed out after 0.5 s" in run.file("setup.log")


async def test_no_setup_script(make_stack: MakeStack, ws: Path, tmp_path: Path) -> None:
    stack = await make_stack({"name": "noop", "final": "Nothing to do."})
    run = await _run(stack, ws, tmp_path)
    assert run.exit_code == 0
    assert run.file("setup.log") == "No setup.sh in the workspace; setup skipped.\n"
    assert _kinds(stack.sink.events) == ["RUNNING", "say", "UPLOADING"]
    assert sorted(p.name for p in run.output.iterdir()) == [
        "diff.patch", "prompt.txt", "result.json", "setup.log", "summary.md"]


async def test_sigterm_mid_command_still_leaves_the_outputs(make_stack: MakeStack, ws: Path, tmp_path: Path) -> None:
    stack = await make_stack({"name": "long", "steps": [
        {"tool_calls": [{"name": "write_file_content", "arguments": {"file_path": "a.txt", "content": "a\n"}}]},
        {"tool_calls": [{"name": "run_shell_command",
                         "arguments": {"command_string": "sleep 1000 & echo $! > sleeper.pid; wait"}}]},
    ]})
    out = tmp_path / "out"
    line = json.dumps(spec_dict(ws, out, stack.socket, token=stack.open_session())).encode() + b"\n"
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO_ROOT), "HOME": str(tmp_path)}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-S", "-m", "agent", stdin=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env=env)
    assert proc.stdin is not None and proc.stderr is not None
    proc.stdin.write(line)
    await proc.stdin.drain()
    proc.stdin.close()
    for _ in range(1000):
        if (ws / "sleeper.pid").exists() and (ws / "sleeper.pid").read_text().strip():
            break
        await asyncio.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    stderr = (await proc.stderr.read()).decode()
    assert await proc.wait() == 1, stderr
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "failed"
    assert result["reason"] == "the agent was stopped by SIGTERM"
    assert "b/a.txt" in (out / "diff.patch").read_text()
    assert wait_dead(int((ws / "sleeper.pid").read_text())), stderr
    assert stack.sink.events[-1] == PhaseEvent("UPLOADING")


async def test_unreachable_gateway_fails_the_task(ws: Path, tmp_path: Path, short_dir: Path) -> None:
    out = tmp_path / "out"
    line = json.dumps(spec_dict(ws, out, short_dir / "nobody.sock")).encode() + b"\n"
    run = await run_agent(line, out)
    assert run.exit_code == 1
    assert run.result().reason.startswith("the model could not be reached after 5 attempts: gateway socket ")
    assert "tok-SECRET-agent-test" not in run.stderr


@pytest.mark.parametrize(("spec", "message"), [
    (b"", "no task spec on standard input"),
    (b"this is not json\n", "task spec is not JSON"),
    (b"[1]\n", "task spec: expected a JSON object, got list"),
    (b'{"task_id": "t"}\n', "missing"),
    ("unknown", "unknown field(s) ['colour']"),
    ("steps0", "max_steps must be a positive integer, got 0"),
    ("steps_str", "max_steps must be a positive integer, got '5'"),
    ("timeout", "command_timeout_s must be a positive number of seconds, got -1"),
    ("no_ws", "is not a directory"),
    ("limit", "tool_output_limit must be at least 1000 characters"),
    ("empty_instruction", "instruction must be a non-empty string"),
])
async def test_invalid_spec_exits_2(ws: Path, tmp_path: Path, spec: bytes | str, message: str) -> None:
    out = tmp_path / "out"
    base = spec_dict(ws, out, tmp_path / "gw.sock")
    variants: dict[str, dict[str, Any]] = {
        "unknown": {**base, "colour": "red"},
        "steps0": {**base, "max_steps": 0},
        "steps_str": {**base, "max_steps": "5"},
        "timeout": {**base, "command_timeout_s": -1},
        "no_ws": {**base, "workspace": str(tmp_path / "missing")},
        "limit": {**base, "tool_output_limit": 10},
        "empty_instruction": {**base, "instruction": "  "},
    }
    line = spec if isinstance(spec, bytes) else json.dumps(variants[spec]).encode() + b"\n"
    run = await run_agent(line, out, timeout_s=20)
    assert run.exit_code == 2
    assert "invalid task spec" in run.stderr
    assert message in run.stderr
    assert "tok-SECRET-agent-test" not in run.stderr
    assert not (out / "result.json").exists()


async def test_no_tool_runs_before_the_baseline_is_recorded(make_stack: MakeStack, ws: Path,
                                                            tmp_path: Path) -> None:
    # Enough files that recording the baseline takes longer than the model's (instant) first answer:
    # a tool that ran early would have its change swallowed by the baseline and missing from the diff.
    for d in range(30):
        (ws / f"pkg{d}").mkdir()
        for f in range(100):
            (ws / f"pkg{d}" / f"m{f}.py").write_text(f"VALUE = {d * 100 + f}\n")
    stack = await make_stack({"name": "eager", "steps": [{"tool_calls": [
        {"name": "edit_file_content", "arguments": {"file_path": "pkg0/m0.py", "old_string": "VALUE = 0",
                                                    "new_string": "VALUE = -1"}},
        {"name": "run_shell_command", "arguments": {"command_string": "rm pkg29/m99.py"}}]}], "final": "ok"})
    run = await _run(stack, ws, tmp_path)
    assert run.exit_code == 0, run.stderr
    patch = run.file("diff.patch")
    assert "-VALUE = 0\n+VALUE = -1\n" in patch
    assert "deleted file mode 100644" in patch and "a/pkg29/m99.py" in patch
    assert run.result().files_changed == 2
