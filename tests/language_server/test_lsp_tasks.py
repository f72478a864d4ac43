"""Several tasks, several folders, cancel from the editor's progress, and a runner that goes away."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as lsp

from .conftest import write_tree


def write_step(path: str, content: str, delay_s: float = 0) -> dict[str, Any]:
    return {"content": f"Writing {path}.", "delay_s": delay_s,
            "tool_calls": [{"name": "write_file_content", "arguments": {"file_path": path, "content": content}}]}


async def test_multi_root_a_task_runs_on_the_folder_of_its_documents(lsp_factory: Any, short_tmp: Path) -> None:
    a = write_tree(short_tmp / "alpha", {"main.py": "print('a')\n"})
    b = write_tree(short_tmp / "beta", {"lib/util.py": "X = 1\n", "other.py": "Y = 2\n"})
    scenario = {"name": "b", "steps": [{"content": "Editing.", "expect_in_prompt": ["lib/util.py:1-1"], "tool_calls": [
        {"name": "edit_file_content", "arguments": {"file_path": "lib/util.py", "old_string": "X = 1\n",
                                                    "new_string": "X = 10\n"}}]}]}
    editor = await lsp_factory("vscode", scenario, [a, b])
    uri = editor.open("lib/util.py", b)
    started = await editor.command("codexSys.runTask", {
        "instruction": "bump X", "uris": [uri],
        "range": {"start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 0}}})
    assert started["folder"] == editor.uri("", b).rstrip("/")
    await editor.wait_for(lambda: editor.diagnostics("lib/util.py", b), "the hunk marked in beta")
    result = await editor.command("codexSys.applyTask", {"taskId": started["taskId"]})
    assert result["applied"] == ["1"] and editor.text("lib/util.py", b) == "X = 10\n"
    assert not (a / "lib").exists()

    with pytest.raises(Exception, match="a task runs on one folder"):
        await editor.command("codexSys.runTask", {"instruction": "x", "uris": [uri, editor.uri("main.py", a)]})


async def test_several_tasks_at_once_are_listed_with_their_states(lsp_factory: Any, short_tmp: Path) -> None:
    root = write_tree(short_tmp / "p", {"a.txt": "a\n"})
    scenario = {"name": "two", "steps": [write_step("one.txt", "1\n", delay_s=1.0)]}
    editor = await lsp_factory("neovim", scenario, [root])
    first = await editor.command("codexSys.runTask", {"instruction": "first"})
    second = await editor.command("codexSys.runTask", {"instruction": "second"})
    listed = (await editor.command("codexSys.listTasks"))["tasks"]
    assert [t["taskId"] for t in listed] == [second["taskId"], first["taskId"]]
    assert {t["state"] for t in listed} <= {"QUEUED", "PREPARING", "SETTING_UP", "RUNNING", "UPLOADING", "COMPLETED"}
    await editor.wait_for(lambda: len(editor.progress_ended()) == 2, "both tasks to end")
    listed = (await editor.command("codexSys.listTasks"))["tasks"]
    assert [(t["state"], t["changes"], t["applicable"]) for t in listed] == [("COMPLETED", 1, 1)] * 2


@pytest.mark.parametrize("flavor", ["vscode", "neovim"])
async def test_cancelling_the_progress_cancels_the_task(lsp_factory: Any, short_tmp: Path, flavor: str) -> None:
    root = write_tree(short_tmp / "p", {"a.txt": "a\n"})
    editor = await lsp_factory(flavor, {"name": "slow", "steps": [write_step("x.txt", "x\n", delay_s=60)]}, [root])
    started = await editor.command("codexSys.runTask", {"instruction": "take your time"})
    token = await editor.wait_for(lambda: next(
        (t for t, r in editor.client.progress_reports.items()
         if any((getattr(x, "message", "") or "") == "running" for x in r)), None), "the task to run")
    editor.client.window_work_done_progress_cancel(lsp.WorkDoneProgressCancelParams(token=token))
    await editor.wait_for(editor.progress_ended, "the progress to end", timeout=20)
    listed = (await editor.command("codexSys.listTasks"))["tasks"]
    assert listed[0]["taskId"] == started["taskId"] and listed[0]["state"] == "CANCELLED"
    end = editor.client.progress_reports[token][-1]
    assert "CANCELLED" in end.message


async def test_the_stream_resumes_when_the_embedded_runner_dies_mid_task(short_tmp: Path, lsp_factory: Any,
                                                                          provider_factory: Any) -> None:
    provider = await provider_factory({"name": "slow", "steps": [write_step("late.txt", "made it\n", delay_s=2)]})
    root = write_tree(short_tmp / "p", {"a.txt": "a\n"})
    editor = await lsp_factory("vscode", None, [root], provider=provider)
    started = await editor.command("codexSys.runTask", {"instruction": "slowly"})
    await editor.wait_for(lambda: provider.server.chat_requests, "the agent's first request")
    os.kill(int((editor.home / "runner.pid").read_text()), signal.SIGKILL)
    await editor.wait_for(editor.progress_ended, "the task to end after the runner came back", timeout=90)
    listed = (await editor.command("codexSys.listTasks"))["tasks"]
    assert listed[0]["taskId"] == started["taskId"] and listed[0]["state"] == "COMPLETED", listed
    assert (await editor.command("codexSys.applyTask", {"taskId": started["taskId"]}))["applied"] == ["1"]
    assert editor.text("late.txt") == "made it\n"
    reports = next(iter(editor.client.progress_reports.values()))
    ends = [r for r in reports if isinstance(r, lsp.WorkDoneProgressEnd)]
    assert len(ends) == 1 and "completed" in ends[0].message
