"""End to end in a real Neovim 0.7.2: the plugin, the real `codex-sys lsp`, the embedded runner it starts
(real gRPC, real bubblewrap sandboxes) under a private CODEX_SYS_HOME, and a scripted provider on TCP.
A person runs a task, watches its progress, accepts a hunk with a code action, applies all, discards,
and finds stale changes refused rather than applied blindly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from nvim_harness import CODEX, Editor, call, lines, project

from runner.scripted_llm import Scenario

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

INSTRUCTION = "Make the values bigger"
APP = "".join(f"VALUE_{i:02d} = {i}\n" for i in range(1, 46))
UTIL = "def helper():\n    return 1\n"
EDITS = {  # the hunks of app.py, each far enough from the others to be a hunk of its own
    "A": ("VALUE_03 = 3\n", "VALUE_03 = 300\nVALUE_03B = 301\n"),
    "B": ("VALUE_20 = 20\nVALUE_21 = 21\n", "VALUE_20 = 2000\n"),
    "C": ("VALUE_40 = 40\n", "VALUE_40 = 4000\n"),
}
UTIL_AFTER = "def helper():\n    return 2\n"
CHANGES_MD = "# Changes\n\n- bigger values\n"
NOTES_MD = "Every value is bigger now.\n"  # created in a folder that does not exist yet
LINE = {"A": 2, "B": 19, "C": 39}  # 0-based first line each hunk replaces


def edited(text: str, *which: str) -> str:
    for key in which:
        old, new = EDITS[key]
        assert text.count(old) == 1
        text = text.replace(old, new)
    return text


def edit_scenario(first_step: dict[str, Any] | None = None) -> Scenario:
    steps: list[dict[str, Any]] = [
        {"content": "I will raise the values.",
         "tool_calls": [call("edit_file_content", file_path="app.py", old_string=EDITS["A"][0],
                             new_string=EDITS["A"][1])]},
        {"tool_calls": [call("edit_file_content", file_path="app.py", old_string=EDITS["B"][0],
                             new_string=EDITS["B"][1])]},
        {"tool_calls": [call("edit_file_content", file_path="app.py", old_string=EDITS["C"][0],
                             new_string=EDITS["C"][1])]},
        {"tool_calls": [call("edit_file_content", file_path="util.py", old_string="return 1", new_string="return 2")]},
        {"tool_calls": [call("write_file_content", file_path="CHANGES.md", content=CHANGES_MD)]},
        {"tool_calls": [call("write_file_content", file_path="docs/NOTES.md", content=NOTES_MD)]},
    ]
    if first_step:
        steps[0] = {**steps[0], **first_step}
    return Scenario.from_dict({"name": "nvim-edits", "steps": steps, "final": "Raised the values."})


class Session:
    """An editor on a fresh project, with the real server behind it."""

    def __init__(self, editor: Editor, root: Path) -> None:
        self.ed = editor
        self.root = root
        self.app = root / "app.py"
        self.util = root / "util.py"
        self.changes = root / "CHANGES.md"
        self.notes = root / "docs" / "NOTES.md"

    def run(self, command: str = f"CodexRun {INSTRUCTION}", count: int = 1) -> str:
        return self.ed.run_task(command, count)

    def diagnostic_at(self, path: Path, line: int) -> dict[str, Any]:
        found = [d for d in self.ed.diagnostics(path) if d["lnum"] == line]
        assert len(found) == 1, self.ed.diagnostics(path)
        return found[0]

    def set_line(self, path: Path, line: int, text: str) -> None:
        self.ed.lua("vim.api.nvim_buf_set_lines(codex_test.bufnr(...), select(2, ...), select(2, ...) + 1, false, "
                    "{select(3, ...)})", str(path), line, text)

    def insert_lines(self, path: Path, line: int, new: list[str]) -> None:
        self.ed.lua("vim.api.nvim_buf_set_lines(codex_test.bufnr(...), select(2, ...), select(2, ...), false, "
                    "select(3, ...))", str(path), line, new)


def start_session(short_tmp, codex_editor, request, plugin: bool) -> Session:
    marker = request.node.get_closest_marker("scenario")
    scenario = marker.args[0] if marker else edit_scenario()
    root = project(short_tmp / "proj", {"app.py": APP, "util.py": UTIL})
    editor = codex_editor(scenario, cwd=root, plugin=plugin)
    s = Session(editor, root)
    if plugin:
        editor.open(s.app)
    else:  # what a configuration without the plugin does (nvim-lspconfig, or vim.lsp.start_client by hand)
        editor.open(s.app)
        editor.lua("codex_test.start_plain(...)", {"name": "codex-sys", "cmd": [CODEX, "lsp"], "root_dir": str(root)})
        editor.wait("return codex_test.client().initialized", what="the client")
    return s


@pytest.fixture
def session(short_tmp, codex_editor, request) -> Session:
    return start_session(short_tmp, codex_editor, request, plugin=True)


@pytest.fixture
def plain_session(short_tmp, codex_editor, request) -> Session:
    return start_session(short_tmp, codex_editor, request, plugin=False)


def test_run_a_task_then_accept_one_hunk_with_its_code_action(session):
    s, ed = session, session.ed
    task_id = s.run()

    diags = ed.wait_diagnostics(s.app, 3)
    assert [d["lnum"] for d in diags] == [LINE["A"], LINE["B"], LINE["C"]]
    assert {d["source"] for d in diags} == {"codex-sys"}
    assert {d["code"] for d in diags} == {task_id}
    assert {d["severity"] for d in diags} == {3}  # vim.diagnostic.severity.INFO
    assert [d["message"] for d in diags] == [f"Codex {task_id}: {INSTRUCTION} (+2 -1)",
                                             f"Codex {task_id}: {INSTRUCTION} (+1 -2)",
                                             f"Codex {task_id}: {INSTRUCTION} (+1 -1)"]
    assert all(d["data"]["taskId"] == task_id for d in diags)
    assert len(ed.wait_diagnostics(s.util, 1)) == 1

    # The progress went from the snapshot to the end of the task, on one token.
    ed.wait("local p = require('codex_sys').progress(); return #p > 0 and p[#p].kind == 'end'",
            what="the end of the progress")
    progress = ed.lua("return require('codex_sys').progress()")
    assert progress[0]["kind"] == "begin" and progress[-1]["kind"] == "end"
    assert len({p["token"] for p in progress}) == 1
    messages = [p["message"] or "" for p in progress]
    assert any(m == "running" for m in messages), messages
    assert any("edit_file_content" in m for m in messages), messages
    assert f"task {task_id} completed: 6 change(s) in 4 file(s)" in messages[-1]

    hunk_b = s.diagnostic_at(s.app, LINE["B"])["data"]["hunk"]
    offered = ed.code_action(s.app, LINE["B"], "^Apply this change")
    assert [a["title"] for a in offered] == [f"Apply this change (+1 -2, task {task_id})",
                                             f"Apply all changes from task {task_id} (6 left)",
                                             f"Discard task {task_id}"]
    assert offered[0]["kind"] == "quickfix" and offered[0]["isPreferred"] is True
    assert offered[0]["command"]["arguments"] == [{"taskId": task_id, "hunks": [hunk_b]}]

    result = ed.wait_result("codexSys.applyTask")
    assert result["result"] == {"applied": [hunk_b], "skipped": []}
    assert ed.lines(s.app) == lines(edited(APP, "B"))
    assert s.app.read_text() == APP  # applied to the buffer, not saved
    assert f"codex-sys: applied 1 change of task {task_id}" in [n["msg"] for n in ed.notifications()]
    assert "Workspace edit" not in ed.messages()  # Neovim's own line, left out: the plugin reports
    diags = ed.wait_diagnostics(s.app, 2)
    assert [d["lnum"] for d in diags] == [LINE["A"], LINE["C"] - 1]

    # :CodexApply takes the change on the cursor line, here hunk C (moved up one line by hunk B).
    ed.lua("vim.api.nvim_win_set_cursor(0, {select(1, ...) + 1, 0})", LINE["C"] - 1)
    ed.cmd("CodexApply")
    result = ed.wait_result("codexSys.applyTask", 2)
    assert result["result"]["skipped"] == [] and len(result["result"]["applied"]) == 1
    assert ed.lines(s.app) == lines(edited(APP, "B", "C"))
    assert [d["lnum"] for d in ed.wait_diagnostics(s.app, 1)] == [LINE["A"]]


def test_apply_all_changes_every_buffer_and_saves_to_the_expected_files(session):
    s, ed = session, session.ed
    task_id = s.run()
    ed.wait_diagnostics(s.app, 3)

    ed.cmd("CodexApplyAll")
    result = ed.wait_result("codexSys.applyTask")
    assert result["arguments"] == {"taskId": task_id}
    assert len(result["result"]["applied"]) == 6 and result["result"]["skipped"] == []
    assert ed.lines(s.app) == lines(edited(APP, "A", "B", "C"))
    assert ed.lines(s.util) == lines(UTIL_AFTER)
    assert ed.lines(s.changes) == lines(CHANGES_MD)
    assert ed.lines(s.notes) == lines(NOTES_MD)
    ed.wait_diagnostics(s.app, 0)
    ed.wait_diagnostics(s.util, 0)
    notes = [n["msg"] for n in ed.notifications()]
    assert f"codex-sys: applied 6 changes of task {task_id}" in notes

    ed.cmd("wall")
    assert s.app.read_text() == edited(APP, "A", "B", "C")
    assert s.util.read_text() == UTIL_AFTER
    assert s.changes.read_text() == CHANGES_MD
    assert s.notes.read_text() == NOTES_MD
    assert ed.tasks()[0]["changes"] == 0


def test_discard_clears_the_diagnostics_and_leaves_the_text(session):
    s, ed = session, session.ed
    task_id = s.run()
    ed.wait_diagnostics(s.app, 3)
    ed.wait_diagnostics(s.util, 1)

    ed.cmd("CodexDiscard")
    result = ed.wait_result("codexSys.discardTask")
    assert result["arguments"] == {"taskId": task_id}
    assert result["result"] == {"taskId": task_id, "discarded": True}
    ed.wait_diagnostics(s.app, 0)
    ed.wait_diagnostics(s.util, 0)
    assert ed.lines(s.app) == lines(APP)

    ed.lua("codex_test.choose = '^Apply'; vim.api.nvim_win_set_cursor(0, {20, 0}); vim.lsp.buf.code_action()")
    ed.wait("for _, n in ipairs(codex_test.notifications) do "
            "if n.msg == 'No code actions available' then return true end end")
    assert ed.lines(s.app) == lines(APP)


def test_a_hunk_edited_since_the_snapshot_is_refused_with_its_reason(session):
    s, ed = session, session.ed
    task_id = s.run()
    ed.wait_diagnostics(s.app, 3)
    hunk_a = s.diagnostic_at(s.app, LINE["A"])["data"]["hunk"]

    s.set_line(s.app, LINE["A"], "VALUE_03 = 33")  # the line hunk A replaces
    stale = lines(APP)
    stale[LINE["A"]] = "VALUE_03 = 33"
    ed.wait("for _, d in ipairs(codex_test.diagnostics(...)) do "
            "if d.message:find('no longer fits', 1, true) then return true end end", str(s.app),
            what="the stale diagnostic")
    offered = ed.code_action(s.app, LINE["A"], "^Apply this change")
    assert offered[0]["title"].startswith(f"Apply this change (+2 -1, task {task_id}) — no longer fits: ")
    assert offered[0]["isPreferred"] is False

    result = ed.wait_result("codexSys.applyTask")
    assert result["result"]["applied"] == []
    [(skipped_hunk, reason)] = [(x["hunk"], x["reason"]) for x in result["result"]["skipped"]]
    assert skipped_hunk == hunk_a and reason
    assert ed.lines(s.app) == stale
    warnings = [n["msg"] for n in ed.notifications() if n["level"] == 3]
    assert len([w for w in warnings if reason in w]) == 1, warnings  # said once, by the server or the plugin
    assert any(f"change {hunk_a}" in w and task_id in w for w in warnings), warnings

    # Apply all takes what still fits and leaves the stale hunk out.
    ed.cmd(f"CodexApplyAll {task_id}")
    result = ed.wait_result("codexSys.applyTask", 2)
    assert len(result["result"]["applied"]) == 5
    assert [x["hunk"] for x in result["result"]["skipped"]] == [hunk_a]
    expected = "\n".join(stale) + "\n"
    assert ed.lines(s.app) == lines(edited(expected, "B", "C"))


@pytest.mark.scenario(edit_scenario({"delay_s": 3}))
def test_lines_inserted_while_the_task_runs_move_its_hunks(session):
    s, ed = session, session.ed
    task_id = s.run()
    header = ["# one", "# two", "# three"]
    s.insert_lines(s.app, 0, header)  # the snapshot is already taken; the task still runs
    assert ed.tasks()[0]["state"] not in ("COMPLETED", "FAILED")

    diags = ed.wait_diagnostics(s.app, 3, timeout=60)
    assert [d["lnum"] for d in diags] == [LINE["A"] + 3, LINE["B"] + 3, LINE["C"] + 3]
    ed.code_action(s.app, LINE["B"] + 3, "^Apply this change")
    result = ed.wait_result("codexSys.applyTask")
    assert len(result["result"]["applied"]) == 1, result
    assert ed.lines(s.app) == header + lines(edited(APP, "B"))

    # One more line after the task ended, between hunks; the others still land where they belong.
    s.insert_lines(s.app, 30, ["# four"])
    before = ed.text(s.app)
    ed.cmd(f"CodexApplyAll {task_id}")
    result = ed.wait_result("codexSys.applyTask", 2)
    assert result["result"]["skipped"] == [], result
    assert ed.lines(s.app) == lines(edited(before, "A", "C"))


@pytest.mark.scenario(Scenario.from_dict({"name": "slow", "steps": [
    {"content": "Thinking.", "tool_calls": [call("run_shell_command", command_string="true")]},
    {"delay_s": 60, "content": "Still thinking."}]}))
def test_cancel_a_running_task(session):
    s, ed = session, session.ed
    task_id = s.run()
    ed.wait("for _, p in ipairs(require('codex_sys').progress()) do "
            "if (p.message or ''):find('run_shell_command', 1, true) then return true end end",
            timeout=60, what="the first tool call in the progress")

    ed.cmd("CodexCancel")
    result = ed.wait_result("codexSys.cancelTask")
    assert result["arguments"] == {"taskId": task_id}
    assert not result.get("error"), result
    ed.wait_state(task_id, "CANCELLED", timeout=30)
    ed.wait("local p = require('codex_sys').progress(); return p[#p].kind == 'end'", what="the end of the progress")
    last = ed.lua("local p = require('codex_sys').progress(); return p[#p].message")
    assert f"task {task_id} ended CANCELLED" in last
    assert ed.diagnostics(s.app) == []
    assert ed.lines(s.app) == lines(APP)


def test_a_blank_instruction_is_refused_visibly(session):
    ed = session.ed
    ed.lua("codex_test.answers = {'   '}")
    ed.cmd("CodexRun")
    result = ed.wait_result("codexSys.runTask")
    assert result["error"], result
    errors = [n["msg"] for n in ed.notifications() if n["level"] == 4]
    assert len(errors) == 1 and "instruction" in errors[0], errors  # shown and failed: said once
    assert errors[0] in ed.messages()
    assert ed.tasks() == []


@pytest.mark.scenario(edit_scenario({"expect_in_prompt": ["The user selected app.py:20-21"]}))
def test_a_range_run_focuses_the_agent_on_the_selection(session):
    s, ed = session, session.ed
    task_id = s.run("20,21CodexRun Make these bigger")
    ed.wait_state(task_id, "COMPLETED")
    ed.wait_diagnostics(s.app, 3)


def test_diff_and_tasks_show_the_task(session):
    s, ed = session, session.ed
    task_id = s.run()
    ed.wait_diagnostics(s.app, 3)

    ed.cmd("CodexDiff")
    ed.wait("return vim.bo.filetype == 'diff'", what="the diff buffer")
    shown = ed.lua("return vim.api.nvim_buf_get_lines(0, 0, -1, false)")
    patch = Path(ed.lua("return vim.uri_to_fname(vim.b.codex_sys_patch)"))
    assert shown == lines(patch.read_text())
    assert "+VALUE_20 = 2000" in shown and "-VALUE_21 = 21" in shown and "+++ b/CHANGES.md" in shown
    ed.cmd("close")

    ed.lua("codex_test.choose = {'COMPLETED', '^Discard'}")
    ed.cmd("CodexTasks")
    ed.wait_result("codexSys.discardTask")
    menus = ed.lua("return codex_test.menus()")
    assert menus[0]["items"] == [f"{task_id}  COMPLETED  {INSTRUCTION}  [6/6 changes fit]"]
    assert menus[1]["items"] == ["Show diff", "Apply all changes", "Discard changes"]
    ed.wait_diagnostics(s.app, 0)


def test_without_the_plugin_the_builtin_client_gets_every_change(plain_session):
    s, ed = plain_session, plain_session.ed
    got = ed.exec_sync("codexSys.runTask", {"instruction": INSTRUCTION})
    assert not got.get("error"), got
    task_id = got["result"]["taskId"]
    ed.wait_diagnostics(s.app, 3)

    offered = ed.code_action(s.app, LINE["C"], "^Apply this change")
    assert offered[0]["title"] == f"Apply this change (+1 -1, task {task_id})"
    ed.wait(f"return codex_test.lines(...)[{LINE['C'] + 1}] == 'VALUE_40 = 4000'", str(s.app),
            what="hunk C in the buffer")
    assert ed.lines(s.app) == lines(edited(APP, "C"))

    got = ed.exec_sync("codexSys.applyTask", {"taskId": task_id})
    assert not got.get("error"), got
    assert got["result"]["skipped"] == [] and len(got["result"]["applied"]) == 5, got["result"]
    assert ed.lines(s.app) == lines(edited(APP, "A", "B", "C"))
    assert ed.lines(s.util) == lines(UTIL_AFTER)
    assert ed.lines(s.changes) == lines(CHANGES_MD)
    assert ed.lines(s.notes) == lines(NOTES_MD)
