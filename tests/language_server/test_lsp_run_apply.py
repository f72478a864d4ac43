"""Run a task from the editor and take its changes: progress, diagnostics, code actions, edits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .conftest import write_tree

APP = "".join(f"def f{i}():\n    return {i}\n\n\n" for i in range(12))
SCENARIO: dict[str, Any] = {
    "name": "two-hunks-and-a-file",
    "steps": [
        {"content": "Change f1 and f10, add notes.",
         "tool_calls": [
             {"name": "edit_file_content", "arguments": {
                 "file_path": "app.py", "old_string": "def f1():\n    return 1\n",
                 "new_string": "def f1():\n    return 100\n"}},
             {"name": "edit_file_content", "arguments": {
                 "file_path": "app.py", "old_string": "def f10():\n    return 10\n",
                 "new_string": "def f10():\n    return 1000\n"}},
             {"name": "write_file_content", "arguments": {"file_path": "docs/notes.md", "content": "# Notes\n"}}]},
    ],
    "final": "Changed f1 and f10; wrote docs/notes.md.",
}


@pytest.mark.parametrize("flavor", ["vscode", "neovim"])
async def test_run_a_task_then_apply_one_hunk_then_the_rest(lsp_factory: Any, short_tmp: Path, flavor: str) -> None:
    root = write_tree(short_tmp / "proj", {"app.py": APP, "README.md": "hello\n"})
    editor = await lsp_factory(flavor, SCENARIO, [root])
    editor.open("app.py")
    started = await editor.command("codexSys.runTask", {"instruction": "Change f1 and f10"})
    task_id = started["taskId"]
    assert task_id.startswith("t") and started["folder"].endswith("/proj")

    diags = await editor.wait_for(lambda: len(editor.diagnostics("app.py")) == 2 and editor.diagnostics("app.py"),
                                  "two diagnostics on app.py")
    assert all(d.severity.value == 3 and d.source == "codex-sys" and d.code == task_id for d in diags)
    lines = sorted(d.range.start.line for d in diags)
    assert lines == [APP.splitlines().index("    return 1"), APP.splitlines().index("    return 10")]

    progress = await editor.wait_for(editor.progress_ended, "the end of the progress")
    assert len(progress) == 1
    kinds = [type(r).__name__ for r in progress[0]]
    assert kinds[0] == "WorkDoneProgressBegin" and kinds[-1] == "WorkDoneProgressEnd"
    assert progress[0][0].cancellable is True
    assert any("edit_file_content" in (r.message or "") for r in progress[0][1:-1])

    first = min(diags, key=lambda d: d.range.start.line)
    actions = await editor.code_actions("app.py", first.range.start.line)
    titles = [a.title for a in actions]
    assert titles[0].startswith("Apply this change (+1 -1")
    assert f"Apply all changes from task {task_id} (3 left)" in titles
    assert f"Discard task {task_id}" in titles

    result = await editor.run_action(actions[0])
    assert result["applied"] == [first.data["hunk"]] and result["skipped"] == []
    expected_one = APP.replace("    return 1\n", "    return 100\n", 1)
    assert editor.text("app.py") == expected_one
    await editor.wait_for(lambda: len(editor.diagnostics("app.py")) == 1, "one diagnostic left")

    apply_all = next(a for a in await editor.code_actions("app.py", editor.diagnostics("app.py")[0].range.start.line)
                     if a.title.startswith("Apply all"))
    result = await editor.run_action(apply_all)
    assert len(result["applied"]) == 2 and result["skipped"] == []
    assert editor.text("app.py") == expected_one.replace("    return 10\n", "    return 1000\n")
    notes = root / "docs" / "notes.md"
    assert notes.exists() and editor.text("docs/notes.md") == "# Notes\n"
    await editor.wait_for(lambda: editor.diagnostics("app.py") == [], "diagnostics cleared")

    listed = (await editor.command("codexSys.listTasks"))["tasks"]
    assert [(t["taskId"], t["state"], t["changes"]) for t in listed] == [(task_id, "COMPLETED", 0)]
