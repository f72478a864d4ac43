"""The user keeps editing: hunks re-anchored by context, misfits shown disabled with a reason and never
applied, edits a client claims but skipped detected, unsaved buffers sent as the editor sees them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .conftest import write_tree

APP = "".join(f"def f{i}():\n    return {i}\n\n\n" for i in range(12))


def edit_step(old: str, new: str, path: str = "app.py") -> dict[str, Any]:
    return {"name": "edit_file_content", "arguments": {"file_path": path, "old_string": old, "new_string": new}}


TWO_HUNKS: dict[str, Any] = {"name": "two-hunks", "steps": [{"content": "Editing.", "tool_calls": [
    edit_step("    return 2\n", "    return 200\n"), edit_step("    return 9\n", "    return 900\n")]}]}


async def run_to_completion(editor: Any, instruction: str = "Change things", **extra: Any) -> str:
    started = await editor.command("codexSys.runTask", {"instruction": instruction, **extra})
    await editor.wait_for(editor.progress_ended, "the task to end")
    return str(started["taskId"])


@pytest.mark.parametrize("flavor", ["vscode", "neovim"])
async def test_lines_inserted_above_move_the_hunks_and_they_still_apply(lsp_factory: Any, short_tmp: Path,
                                                                      flavor: str) -> None:
    root = write_tree(short_tmp / "p", {"app.py": APP})
    editor = await lsp_factory(flavor, TWO_HUNKS, [root])
    editor.open("app.py")
    await run_to_completion(editor)
    await editor.wait_for(lambda: len(editor.diagnostics("app.py")) == 2, "two diagnostics")
    before = sorted(d.range.start.line for d in editor.diagnostics("app.py"))

    editor.change("app.py", "import os\nimport sys\n\n" + APP)
    await editor.wait_for(lambda: sorted(d.range.start.line for d in editor.diagnostics("app.py"))
                          == [line + 3 for line in before], "diagnostics moved down by three lines")
    actions = await editor.code_actions("app.py", before[1] + 3)
    result = await editor.run_action(actions[0])
    assert result["skipped"] == []
    assert editor.text("app.py") == "import os\nimport sys\n\n" + APP.replace("    return 9\n", "    return 900\n")


@pytest.mark.parametrize("flavor", ["vscode", "neovim"])
async def test_a_hunk_whose_code_was_edited_is_disabled_with_the_reason_and_never_applied(
        lsp_factory: Any, short_tmp: Path, flavor: str) -> None:
    root = write_tree(short_tmp / "p", {"app.py": APP})
    editor = await lsp_factory(flavor, TWO_HUNKS, [root])
    editor.open("app.py")
    task_id = await run_to_completion(editor)
    await editor.wait_for(lambda: len(editor.diagnostics("app.py")) == 2, "two diagnostics")
    line = min(d.range.start.line for d in editor.diagnostics("app.py"))

    edited = APP.replace("    return 2\n", "    return 2  # the user's change\n")
    editor.change("app.py", edited)
    await editor.wait_for(lambda: any("no longer fits" in d.message for d in editor.diagnostics("app.py")),
                          "the misfit shown")
    misfit = next(d for d in editor.diagnostics("app.py") if "no longer fits" in d.message)
    assert "edited after the task started" in misfit.message and misfit.range.start.line == line

    actions = await editor.code_actions("app.py", line)
    apply_one = actions[0]
    if flavor == "vscode":  # it advertises disabledSupport
        assert apply_one.disabled is not None and "edited after the task started" in apply_one.disabled.reason
    else:
        assert apply_one.disabled is None and "no longer fits" in apply_one.title
    result = await editor.run_action(apply_one)  # a client that runs it anyway gets a refusal
    assert result["applied"] == [] and "edited after the task started" in result["skipped"][0]["reason"]
    assert editor.text("app.py") == edited
    assert any("not:" in m.message and task_id in m.message for m in editor.client.messages)

    result = await editor.command("codexSys.applyTask", {"taskId": task_id})  # Apply all: the rest only
    assert len(result["applied"]) == 1 and len(result["skipped"]) == 1
    assert editor.text("app.py") == edited.replace("    return 9\n", "    return 900\n")


async def test_an_edit_the_client_claims_but_skipped_is_not_marked_applied(lsp_factory: Any, short_tmp: Path) -> None:
    root = write_tree(short_tmp / "p", {"app.py": APP})
    editor = await lsp_factory("neovim", TWO_HUNKS, [root])
    editor.open("app.py")
    task_id = await run_to_completion(editor)
    await editor.wait_for(lambda: len(editor.diagnostics("app.py")) == 2, "two diagnostics")
    editor.drop_edits = True  # answers `applied: true` and changes nothing, as Neovim 0.7 does with a stale edit
    result = await editor.command("codexSys.applyTask", {"taskId": task_id, "hunks": ["1"]})
    assert result["applied"] == [] and "did not apply" in result["skipped"][0]["reason"]
    editor.drop_edits = False
    result = await editor.command("codexSys.applyTask", {"taskId": task_id, "hunks": ["1"]})
    assert result == {"applied": ["1"], "skipped": []}
    assert editor.text("app.py") == APP.replace("    return 2\n", "    return 200\n")


@pytest.mark.parametrize("flavor", ["vscode", "neovim"])
async def test_unsaved_buffers_are_what_the_task_sees(lsp_factory: Any, short_tmp: Path, flavor: str) -> None:
    root = write_tree(short_tmp / "p", {"app.py": "x = 1\n", "ignored.log": "on disk\n", ".gitignore": "*.log\n"})
    scenario = {"name": "unsaved", "steps": [{"content": "Editing the buffer's text.", "tool_calls": [
        edit_step("x = 2\n", "x = 3\n"),
        {"name": "run_shell_command", "arguments": {"command_string": "cp ignored.log copied.txt"}}]}]}
    editor = await lsp_factory(flavor, scenario, [root])
    editor.open("app.py")
    editor.change("app.py", "x = 2\n")  # not saved: the disk still says x = 1
    editor.open("ignored.log")
    editor.change("ignored.log", "in the buffer\n")
    task_id = await run_to_completion(editor)
    listed = (await editor.command("codexSys.listTasks"))["tasks"]
    assert listed[0]["state"] == "COMPLETED", listed
    result = await editor.command("codexSys.applyTask", {"taskId": task_id})
    assert result["skipped"] == [] and len(result["applied"]) == 2
    # An ignored file's buffer reaches the sandbox too (the copy shows it); changes to ignored files
    # never come back in a diff.
    assert editor.text("app.py") == "x = 3\n" and editor.text("copied.txt") == "in the buffer\n"
    assert (root / "app.py").read_text() == "x = 1\n"  # the editor saves, not the server


@pytest.mark.parametrize("flavor", ["vscode", "neovim"])
async def test_files_deleted_renamed_or_binary(lsp_factory: Any, short_tmp: Path, flavor: str) -> None:
    body = "".join(f"line {i}\n" for i in range(30))
    root = write_tree(short_tmp / "p", {"gone.txt": "bye\n", "dirty.txt": "keep\n", "old.txt": body})
    scenario = {"name": "files", "steps": [{"content": "Files.", "tool_calls": [
        {"name": "run_shell_command", "arguments": {
            "command_string": "rm gone.txt dirty.txt && mv old.txt new.txt && printf 'line 0\\n' >> new.txt"
                              " && printf '\\000\\001' > data.bin"}}]}]}
    editor = await lsp_factory(flavor, scenario, [root])
    task_id = await run_to_completion(editor)
    editor.open("dirty.txt")
    editor.change("dirty.txt", "keep, with unsaved changes\n")
    result = await editor.command("codexSys.applyTask", {"taskId": task_id})
    reasons = {r["reason"] for r in result["skipped"]}
    assert any("unsaved changes" in r for r in reasons), reasons
    assert any(f"codex-sys apply {task_id}" in r and "binary" in r for r in reasons), reasons
    assert len(result["applied"]) == 2, result  # the delete and the rename
    assert not (root / "gone.txt").exists() and (root / "dirty.txt").exists()
    assert not (root / "old.txt").exists() and editor.text("new.txt") == body + "line 0\n"
    assert not (root / "data.bin").exists()
    kinds = [type(c).__name__ for e in editor.edits_received for c in (e.document_changes or [])]
    assert "DeleteFile" in kinds and "RenameFile" in kinds


async def test_a_file_deleted_after_the_task_started_is_skipped_with_the_reason(lsp_factory: Any,
                                                                                 short_tmp: Path) -> None:
    root = write_tree(short_tmp / "p", {"app.py": APP})
    editor = await lsp_factory("vscode", TWO_HUNKS, [root])
    task_id = await run_to_completion(editor)
    (root / "app.py").unlink()
    result = await editor.command("codexSys.applyTask", {"taskId": task_id})
    assert result["applied"] == [] and {r["reason"] for r in result["skipped"]} == {"the file no longer exists"}


async def test_show_diff_and_discard(lsp_factory: Any, short_tmp: Path) -> None:
    root = write_tree(short_tmp / "p", {"app.py": APP})
    editor = await lsp_factory("vscode", TWO_HUNKS, [root])
    editor.open("app.py")
    task_id = await run_to_completion(editor)
    shown = await editor.command("codexSys.showDiff", {"taskId": task_id})
    assert shown["diff"].startswith("diff --git a/app.py b/app.py") and "+    return 900" in shown["diff"]
    assert Path(shown["uri"].removeprefix("file://")).read_text() == shown["diff"]
    await editor.wait_for(lambda: editor.client.shown_documents, "window/showDocument")
    assert editor.client.shown_documents[0].uri == shown["uri"]

    await editor.wait_for(lambda: len(editor.diagnostics("app.py")) == 2, "two diagnostics")
    assert await editor.command("codexSys.discardTask", {"taskId": task_id}) == {"taskId": task_id, "discarded": True}
    await editor.wait_for(lambda: editor.diagnostics("app.py") == [], "diagnostics cleared")
    assert await editor.code_actions("app.py", 5) == []
    result = await editor.command("codexSys.applyTask", {"taskId": task_id})
    assert result["applied"] == []
    assert editor.text("app.py") == APP

