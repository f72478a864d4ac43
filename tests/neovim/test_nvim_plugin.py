"""The Neovim plugin in a real Neovim 0.7.2 against the real `codex-sys lsp` (its embedded runner, real
bubblewrap sandboxes, a scripted provider): clients per root, settings, what each command sends and does,
what the person sees. What reaches the agent is read where the agent's requests arrive, at the scripted
provider (`editor.provider`); what the server did, from its answers and `codexSys.listTasks`."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from nvim_harness import CODEX, call, lines, project

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

QUICK: dict[str, Any] = {"name": "quick", "final": "Nothing to change."}  # completes at once, no changes
SLOW: dict[str, Any] = {"name": "slow", "steps": [{"delay_s": 30, "content": "Thinking."}]}  # stays RUNNING


def one_edit(path: str, old: str, new: str) -> dict[str, Any]:
    return {"name": "one-edit", "final": "Done.", "steps": [
        {"tool_calls": [call("edit_file_content", file_path=path, old_string=old, new_string=new)]}]}


def uri(path: Path) -> str:
    return path.resolve().as_uri()


def blob_id(text: str) -> str:
    """git's object id of a file holding `text`."""
    data = text.encode()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def notes(ed: Any, level: int | None = None) -> list[str]:
    return [n["msg"] for n in ed.notifications() if level is None or n["level"] == level]


def test_one_client_per_root_with_settings_and_capabilities(codex_editor, short_tmp):
    a = project(short_tmp / "a", {"x.py": "x = 1\n", "sub/y.py": "y = 2\n", "debug.log": "log\n"})
    b = project(short_tmp / "b", {"z.py": "z = 3\n"})
    (short_tmp / "loose.txt").write_text("loose\n")
    settings = {"runner": {"address": "", "token": ""}, "model": "m-1",
                "snapshot": {"exclude": ["*.log"], "maxFiles": 1000, "maxBytes": 1048576}}
    scenario = {"name": "double-y", "final": "Doubled y.", "steps": [
        {"tool_calls": [call("run_shell_command", command_string="ls -a")]},
        {"tool_calls": [call("edit_file_content", file_path="sub/y.py", old_string="y = 22", new_string="y = 222")]}]}
    ed = codex_editor(scenario, cwd=short_tmp, settings=settings)

    for path in (a / "x.py", a / "sub" / "y.py", b / "z.py", short_tmp / "loose.txt"):
        ed.open(path)
    ed.cmd("enew")  # a buffer without a file gets no client
    roots = ed.wait("""
        local out = {}
        for root, client in pairs(require('codex_sys').clients()) do
          if not client.initialized then return nil end
          out[root] = #vim.lsp.get_buffers_by_client_id(client.id)
        end
        return vim.tbl_count(out) == 3 and out or nil""", what="three initialized clients")
    assert roots == {str(a): 2, str(b): 1, str(short_tmp): 1}

    # An unsaved change of a/sub/y.py reached a's server (its snapshot has it), whose workspace folder is a.
    ed.open(a / "sub" / "y.py")
    ed.cmd("call setline(1, 'y = 22')")
    task_id = ed.run_task("1CodexRun Double y")
    assert ed.results("codexSys.runTask")[0]["result"]["folder"] == uri(a)
    ed.wait_diagnostics(a / "sub" / "y.py", 1)
    assert "The user selected sub/y.py:1-1 " in ed.provider.prompt("Double y")
    # The settings reached it: the model asked for, and the snapshot without the excluded file.
    assert ed.provider.models("Double y") == {"m-1"}
    assert ed.provider.tool_results("Double y")[0] == "exit code: 0\nstdout:\n.\n..\nsub\nx.py"  # ls -a
    # The capabilities: progress as work-done progress, the change through workspace/applyEdit.
    begins = [p["message"] for p in ed.lua("return require('codex_sys').progress()") if p["kind"] == "begin"]
    assert begins == ["Double y: snapshot of a"]
    ed.cmd("CodexApply")
    assert len(ed.wait_result("codexSys.applyTask")["result"]["applied"]) == 1
    assert ed.lines(a / "sub" / "y.py") == ["y = 222"]

    # Each root has a server of its own: b's knows nothing of a's task.
    assert [t["taskId"] for t in ed.tasks()] == [task_id]
    ed.open(b / "z.py")
    assert ed.tasks() == []

    # Opening another file of a root reuses its client.
    (a / "w.py").write_text("w = 4\n")
    ed.open(a / "w.py")
    assert ed.lua("return vim.tbl_count(require('codex_sys').clients())") == 3
    assert ed.lua("return vim.tbl_map(function(c) return c.id end, vim.lsp.buf_get_clients(0))") == [
        ed.lua("return require('codex_sys').clients()[...].id", str(a))]
    assert ed.tasks()[0]["taskId"] == task_id


def test_settings_answer_workspace_configuration_and_follow_setup(codex_editor, short_tmp):
    a = project(short_tmp / "a", {"x.py": "x = 1\n", "y.py": "y = 2\n"})
    ed = codex_editor(QUICK, cwd=a, settings={"model": "m-1"})
    ed.open(a / "x.py")

    ed.wait_state(ed.run_task("CodexRun one"), "COMPLETED")
    assert ed.provider.models("one") == {"m-1"}

    ed.setup(settings={"model": "m-2"})
    ed.wait_state(ed.run_task("CodexRun two", 2), "COMPLETED")
    assert ed.provider.models("two") == {"m-2"}

    ed.setup(settings={"model": "m-2", "snapshot": {"maxFiles": 1}})
    ed.cmd("CodexRun three")
    refused = ed.wait_result("codexSys.runTask", 3)
    assert refused["error"], refused
    errors = notes(ed, 4)
    assert len(errors) == 1 and "more than 1 files (the limit)" in errors[0], errors
    assert ed.provider.conversation("three") == []

    # An invalid setting is named, and its default used.
    ed.setup(settings={"model": "m-3", "snapshot": {"maxFiles": 0}})
    ed.wait_state(ed.run_task("CodexRun four", 4), "COMPLETED")
    assert ed.provider.models("four") == {"m-3"}
    assert notes(ed, 3) == ["Codex: codexSys.snapshot.maxFiles must be a positive whole number, not 0; "
                            "the default is used."]
    assert [t["instruction"] for t in ed.tasks()] == ["four", "two", "one"]


def test_run_sends_the_folder_or_the_selection(codex_editor, short_tmp):
    a = project(short_tmp / "a", {"x.py": "one = 1\nañb = 2\nhéllo wörld\nlast\n"})
    ed = codex_editor(QUICK, cwd=a)
    ed.open(a / "x.py")

    first = ed.run_task("CodexRun Tidy everything up")
    assert ed.results("codexSys.runTask")[0]["arguments"] == {"instruction": "Tidy everything up", "folder": uri(a)}

    second = ed.run_task("2,3CodexRun Explain these lines", 2)
    assert ed.results("codexSys.runTask")[1]["arguments"] == {
        "instruction": "Explain these lines", "uris": [uri(a / "x.py")],
        "range": {"start": {"line": 1, "character": 0}, "end": {"line": 2, "character": 11}}}

    # A charwise selection from the "b" of "añb" (screen column 3) to the second "l" of "héllo".
    ed.cmd('execute "normal! 2G3|v3G4|\\<Esc>"')
    third = ed.run_task("'<,'>CodexRun Rename it", 3)
    assert ed.results("codexSys.runTask")[2]["arguments"] == {
        "instruction": "Rename it", "uris": [uri(a / "x.py")],
        "range": {"start": {"line": 1, "character": 2}, "end": {"line": 2, "character": 4}}}

    assert {r["result"]["folder"] for r in ed.results("codexSys.runTask")} == {uri(a)}
    for task_id in (first, second, third):
        ed.wait_state(task_id, "COMPLETED")
    assert "The user selected" not in ed.provider.prompt("Tidy everything up")
    for instruction in ("Explain these lines", "Rename it"):
        prompt = ed.provider.prompt(instruction)
        assert "The user pointed at these files: x.py." in prompt
        assert "The user selected x.py:2-3 " in prompt
    assert notes(ed)[:3] == [f"codex-sys: task {first} started", f"codex-sys: task {second} started",
                             f"codex-sys: task {third} started"]


def test_run_prompts_and_a_blank_instruction_shows_the_servers_error(codex_editor, short_tmp):
    a = project(short_tmp / "a", {"x.py": "x = 1\n"})
    ed = codex_editor(QUICK, cwd=a)
    ed.open(a / "x.py")

    ed.lua("codex_test.answers = {false, '   ', 'Add a test'}")
    ed.cmd("CodexRun")  # cancelled: nothing is sent
    ed.cmd("CodexRun")
    assert ed.wait_result("codexSys.runTask")["error"]
    task_id = ed.run_task("CodexRun", 2)
    assert [r["arguments"]["instruction"] for r in ed.results("codexSys.runTask")] == ["   ", "Add a test"]
    assert ed.lua("return codex_test.inputs") == ["Codex instruction: "] * 3
    message = "Codex: the instruction is empty: say what the agent should do"
    assert notes(ed, 4) == [message]  # shown by the server and failed the request: said once
    assert message in ed.messages()
    ed.wait_state(task_id, "COMPLETED")
    assert [t["instruction"] for t in ed.tasks()] == ["Add a test"]
    assert len(ed.provider.conversation("Add a test")) == 1


def test_commands_default_to_the_newest_task_and_complete_ids(codex_editor, short_tmp):
    a = project(short_tmp / "a", {"x.py": "x = 1\n"})
    ed = codex_editor(SLOW, cwd=a)
    ed.open(a / "x.py")
    first = ed.run_task("CodexRun first")
    second = ed.run_task("CodexRun second", 2)
    assert first != second

    ed.cmd("CodexCancel")
    cancelled = ed.wait_result("codexSys.cancelTask")
    assert cancelled["arguments"] == {"taskId": second} and cancelled["result"]["taskId"] == second
    ed.wait_state(second, "CANCELLED")
    ed.cmd(f"CodexDiscard {first}")
    assert ed.wait_result("codexSys.discardTask")["result"] == {"taskId": first, "discarded": True}
    ed.cmd("CodexApplyAll")
    refused = ed.wait_result("codexSys.applyTask")
    assert refused["arguments"] == {"taskId": second}
    assert refused["error"]["message"].startswith(f"Codex: task {second} has no changes to apply: it ended CANCELLED")
    assert ed.lua("return vim.fn.getcompletion('CodexDiff t', 'cmdline')") == [second, first]
    assert ed.lua("return vim.fn.getcompletion(..., 'cmdline')", f"CodexDiff {first[:-1]}") == [first]

    ed.cmd(f"CodexCancel {first}")
    assert ed.wait_result("codexSys.cancelTask", 2)["result"]["taskId"] == first
    ed.wait_state(first, "CANCELLED")


def test_diff_opens_a_scratch_diff_buffer(codex_editor, short_tmp):
    a = project(short_tmp / "a", {"x.py": "x = 1\n"})
    ed = codex_editor(one_edit("x.py", "x = 1", "x = 2"), cwd=a)
    ed.open(a / "x.py")
    task_id = ed.run_task("CodexRun Bump x")
    ed.wait_diagnostics(a / "x.py", 1)

    ed.cmd("CodexDiff")
    ed.wait("return vim.bo.filetype == 'diff'", what="the diff buffer")
    buf = ed.lua("""return {name = vim.api.nvim_buf_get_name(0), lines = vim.api.nvim_buf_get_lines(0, 0, -1, false),
                           modifiable = vim.bo.modifiable, buftype = vim.bo.buftype,
                           windows = #vim.api.nvim_list_wins()}""")
    before, after = blob_id("x = 1\n"), blob_id("x = 2\n")
    assert buf == {"name": f"codex-sys://diff/{task_id}",
                   "lines": ["diff --git a/x.py b/x.py", f"index {before}..{after} 100644",
                             "--- a/x.py", "+++ b/x.py", "@@ -1 +1 @@", "-x = 1", "+x = 2"],
                   "modifiable": False, "buftype": "nofile", "windows": 2}
    patch = Path(ed.lua("return vim.uri_to_fname(vim.b.codex_sys_patch)"))
    assert lines(patch.read_text()) == buf["lines"]


def test_tasks_lists_and_acts_on_the_chosen_task(codex_editor, short_tmp):
    a = project(short_tmp / "a", {"x.py": "x = 1\n"})
    ed = codex_editor(SLOW, cwd=a)
    ed.open(a / "x.py")
    first = ed.run_task("CodexRun first task")
    second = ed.run_task("CodexRun second task", 2)
    ed.wait_state(first, "RUNNING")
    ed.wait_state(second, "RUNNING")

    ed.lua("codex_test.choose = ...", [f"^{first} ", "^Cancel"])
    ed.cmd("CodexTasks")
    cancelled = ed.wait_result("codexSys.cancelTask")
    assert cancelled["arguments"] == {"taskId": first}
    ed.wait_state(first, "CANCELLED")
    menus = ed.lua("return codex_test.menus()")
    assert menus[0]["prompt"] == "Codex tasks:"
    assert menus[0]["items"] == [f"{second}  RUNNING    second task", f"{first}  RUNNING    first task"]
    assert menus[1]["prompt"] == f"Task {first}:"
    assert menus[1]["items"] == ["Show diff", "Cancel task"]
    assert ed.tasks()[0]["taskId"] == second and ed.tasks()[0]["state"] == "RUNNING"

    ed.cmd("CodexCancel")
    ed.wait_state(second, "CANCELLED")


def test_progress_is_echoed_and_can_be_turned_off(codex_editor, short_tmp):
    a = project(short_tmp / "a", {"x.py": "x = 1\n"})
    ed = codex_editor(QUICK, cwd=a)
    ed.open(a / "x.py")
    progress = "return require('codex_sys').progress()"
    ended = "local p = require('codex_sys').progress(); return #p > select(1, ...) and p[#p].kind == 'end'"

    loud = ed.run_task("CodexRun Loud task")
    ed.wait(ended, 0, what="the end of the progress")
    seen = ed.lua(progress)
    assert len({p["token"] for p in seen}) == 1 and {p["title"] for p in seen} == {"Codex"}
    assert [p["kind"] for p in seen if p["kind"] != "report"] == ["begin", "end"]
    messages = [p["message"] for p in seen]
    assert messages[0] == "Loud task: snapshot of a" and "running" in messages
    assert messages[-1] == f"Codex: task {loud} completed with no changes."
    # Headless, the echo lands on the editor's output.
    out = ed.output.read_text(errors="replace")
    assert "Codex: Loud task: snapshot of a" in out
    assert "Codex: running" in out

    ed.setup(progress=False)
    ed.run_task("CodexRun Quiet task", 2)
    ed.wait(ended, len(seen), what="the end of the second progress")
    assert ed.lua(progress)[len(seen)]["message"] == "Quiet task: snapshot of a"  # recorded, not echoed
    out = ed.output.read_text(errors="replace")
    assert "Quiet task" not in out
    assert out.count("Codex: running") == 1


def test_default_and_empty_settings_are_taken_as_no_settings(codex_editor, short_tmp):
    # Neovim encodes an empty Lua table as a JSON array; the server names a setting of the wrong type
    # (test_settings_answer_workspace_configuration_and_follow_setup) and here has nothing to say. The
    # JSON as sent (objects): test_nvim_workspace_edit.py.
    a = project(short_tmp / "a", {"x.py": "x = 1\n"})
    ed = codex_editor(QUICK, cwd=a, settings={"runner": {}, "snapshot": {"exclude": []}})
    ed.open(a / "x.py")
    ed.wait_state(ed.run_task("CodexRun with empty settings"), "COMPLETED")

    ed.setup(settings={})
    ed.wait_state(ed.run_task("CodexRun with no settings", 2), "COMPLETED")
    assert {n["level"] for n in ed.notifications()} == {2}, ed.notifications()  # INFO only
    # Nothing overrides the runner's defaults: its model, CODEX_SYS_MODEL.
    assert ed.provider.models("with empty settings") == ed.provider.models("with no settings") == {"scripted-nvim"}


def test_files_are_created_and_renamed_into_new_folders(codex_editor, short_tmp):
    # Neovim 0.7.2 alone fails such an edit (test_nvim_workspace_edit.py); the plugin makes the folders.
    a = project(short_tmp / "a", {"x.py": "x = 1\n", "old.txt": "old\n"})
    scenario = {"name": "files", "final": "Done.", "steps": [
        {"tool_calls": [call("write_file_content", file_path="docs/deep/new.md", content="# New\n")]},
        {"tool_calls": [call("run_shell_command", command_string="mkdir archive && mv old.txt archive/old.txt")]}]}
    ed = codex_editor(scenario, cwd=a)
    ed.open(a / "x.py")
    task_id = ed.run_task("CodexRun Move things")
    assert ed.wait_state(task_id, "COMPLETED")["changes"] == 2

    ed.cmd("CodexApplyAll")
    result = ed.wait_result("codexSys.applyTask")
    assert len(result["result"]["applied"]) == 2 and result["result"]["skipped"] == [], result
    assert ed.lines(a / "docs" / "deep" / "new.md") == ["# New"]
    assert (a / "archive" / "old.txt").read_text() == "old\n"
    assert not (a / "old.txt").exists()
    assert f"codex-sys: applied 2 changes of task {task_id}" in notes(ed)


def test_a_server_that_cannot_start_is_reported_and_checkhealth_says_why(codex_editor, short_tmp):
    a = project(short_tmp / "a", {"x.py": "x = 1\n"})
    missing = short_tmp / "no-such-codex-sys"
    ed = codex_editor(QUICK, cwd=a, cmd=[str(missing), "lsp"])
    ed.open(a / "x.py")
    assert notes(ed, 4) == [f"codex-sys: could not start {missing} lsp"]
    ed.cmd("checkhealth codex_sys")
    report = "\n".join(ed.lua("return vim.api.nvim_buf_get_lines(0, 0, -1, false)"))
    assert f"ERROR: {missing} is not executable" in report

    # With the real server, the report says where it is and that its client is up.
    ed.cmd("tabclose")
    ed.setup()
    client_id = ed.wait("local c = require('codex_sys').client(0); return c.initialized and c.id",
                        what="the client")
    ed.cmd("checkhealth codex_sys")
    report = "\n".join(ed.lua("return vim.api.nvim_buf_get_lines(0, 0, -1, false)"))
    assert f"OK: {CODEX}: {CODEX}" in report
    assert f"client {client_id} for {a} (ready)" in report


def test_commands_given_while_the_server_starts_are_sent_in_order(codex_editor, short_tmp):
    a = project(short_tmp / "a", {"x.py": "x = 1\n"})
    ed = codex_editor(QUICK, cwd=a)
    # One Lua call: the client cannot be initialized before the last command is given.
    ed.lua(f"vim.cmd('edit {a / 'x.py'}'); assert(not require('codex_sys').client(0).initialized); "
           "for i = 1, 5 do vim.cmd('CodexRun task ' .. i) end")
    ed.wait_result("codexSys.runTask", 5)
    assert [r.get("error") for r in ed.results("codexSys.runTask")] == [None] * 5
    # The server begins each task's progress as it takes the command: in the order they were given.
    begins = [p["message"] for p in ed.lua("return require('codex_sys').progress()") if p["kind"] == "begin"]
    assert begins == [f"task {i}: snapshot of a" for i in range(1, 6)]
    assert sorted(t["instruction"] for t in ed.tasks()) == [f"task {i}" for i in range(1, 6)]
    started = {r["result"]["taskId"] for r in ed.results("codexSys.runTask")}
    assert len(started) == 5
    assert sorted(n for n in notes(ed) if n.endswith(" started")) == sorted(
        f"codex-sys: task {task_id} started" for task_id in started)


def test_a_file_outside_any_project_gets_a_client_only_when_asked(codex_editor, short_tmp):
    work = short_tmp / "work"
    work.mkdir()
    loose = short_tmp / "loose"
    loose.mkdir()
    (loose / "n.txt").write_text("n\n")
    ed = codex_editor(one_edit("n.txt", "n", "m"), cwd=work)
    ed.open(loose / "n.txt")
    assert ed.lua("return vim.tbl_count(require('codex_sys').clients())") == 0, ed.report()
    task_id = ed.run_task("CodexRun Tidy up")
    assert ed.results("codexSys.runTask")[0]["arguments"] == {"instruction": "Tidy up", "folder": uri(loose)}
    assert ed.results("codexSys.runTask")[0]["result"] == {"taskId": task_id, "folder": uri(loose)}
    assert ed.lua("return vim.tbl_keys(require('codex_sys').clients())") == [str(loose)]
    [mark] = ed.wait_diagnostics(loose / "n.txt", 1)
    assert mark["code"] == task_id
