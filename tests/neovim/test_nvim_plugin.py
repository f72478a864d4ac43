"""The Neovim plugin in a real Neovim 0.7.2 against a language server that records what it is sent
(tests/neovim/fake_lsp.py): clients per root, settings, the arguments each command sends, what the
person sees."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from nvim_harness import FAKE_LSP, Editor

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

SETTINGS = {"runner": {"address": "unix:/tmp/nowhere.sock", "token": ""}, "model": "m-1",
            "snapshot": {"exclude": ["*.log"], "maxFiles": 1000, "maxBytes": 1048576}}


def project(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def uri(path: Path) -> str:
    return path.resolve().as_uri()


class Fake:
    """An editor set up with the fake server; `log()` reads what the server(s) received."""

    def __init__(self, editor: Editor, folder: Path, **options: Any) -> None:
        self.editor = editor
        self.log_path = folder / "fake-lsp.jsonl"
        editor.setup(cmd=[sys.executable, str(FAKE_LSP)], cmd_env={"FAKE_LSP_LOG": str(self.log_path)},
                     **options)

    def log(self) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines()]

    def commands(self, name: str) -> list[dict[str, Any]]:
        return [m["params"] for m in self.log()
                if m.get("method") == "workspace/executeCommand" and m["params"]["command"] == name]

    def wait_messages(self, method: str, count: int = 1, timeout: float = 20) -> list[dict[str, Any]]:
        """The params of the first `count` messages of `method` the server received."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = [m["params"] for m in self.log() if m.get("method") == method]
            if len(found) >= count:
                return found[:count]
            time.sleep(0.05)
        raise AssertionError(f"the server never got {method} #{count}\n" + self.editor.report())

    def wait_command(self, name: str, count: int = 1, timeout: float = 20) -> dict[str, Any]:
        """The `count`-th `name` command the server received."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = self.commands(name)
            if len(found) >= count:
                return found[count - 1]
            time.sleep(0.05)
        raise AssertionError(f"the server never got {name} #{count}\n" + self.editor.report())


@pytest.fixture
def fake(editor_factory, short_tmp):
    def make(cwd: Path | None = None, **options: Any) -> Fake:
        editor = editor_factory(cwd=cwd)
        return Fake(editor, editor.folder, **options)
    return make


def test_one_client_per_root_with_settings_and_capabilities(fake, short_tmp):
    a = project(short_tmp / "a", {"x.py": "x = 1\n", "sub/y.py": "y = 2\n"})
    b = project(short_tmp / "b", {"z.py": "z = 3\n"})
    (short_tmp / "loose.txt").write_text("loose\n")
    f = fake(cwd=short_tmp, settings=SETTINGS)
    ed = f.editor

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

    inits = [m for m in f.log() if m.get("method") == "initialize"]
    assert len(inits) == 3
    by_root = {m["params"]["rootUri"]: m for m in inits}
    init_a = by_root[uri(a)]["params"]
    assert init_a["workspaceFolders"] == [{"uri": uri(a), "name": "a"}]
    assert init_a["initializationOptions"] == SETTINGS
    assert init_a["capabilities"]["workspace"]["configuration"] is True
    assert init_a["capabilities"]["workspace"]["applyEdit"] is True
    assert init_a["capabilities"]["window"]["workDoneProgress"] is True
    f.wait_messages("textDocument/didOpen", 4)
    opened: dict[int, set[str]] = {}
    for m in f.log():
        if m.get("method") == "textDocument/didOpen":
            opened.setdefault(m["pid"], set()).add(m["params"]["textDocument"]["uri"])
    assert opened[by_root[uri(a)]["pid"]] == {uri(a / "x.py"), uri(a / "sub" / "y.py")}
    assert opened[by_root[uri(b)]["pid"]] == {uri(b / "z.py")}

    # Opening another file of a root reuses its client.
    (a / "w.py").write_text("w = 4\n")
    ed.open(a / "w.py")
    f.wait_messages("textDocument/didOpen", 5)
    assert len([m for m in f.log() if m.get("method") == "initialize"]) == 3
    assert ed.lua("return #vim.lsp.buf_get_clients(0)") == 1


def test_settings_answer_workspace_configuration_and_follow_setup(fake, short_tmp):
    a = project(short_tmp / "a", {"x.py": "x = 1\n"})
    f = fake(cwd=a, settings=SETTINGS)
    ed = f.editor
    ed.open(a / "x.py")

    got = ed.exec_sync("fake.configuration", {"section": "codexSys"})
    assert got["result"]["response"] == [SETTINGS]

    ed.lua("require('codex_sys').setup(...)", {"cmd": [sys.executable, str(FAKE_LSP)],
                                               "cmd_env": {"FAKE_LSP_LOG": str(f.log_path)},
                                               "settings": {"model": "m-2"}})
    assert f.wait_messages("workspace/didChangeConfiguration") == [{"settings": {"codexSys": {"model": "m-2"}}}]
    got = ed.exec_sync("fake.configuration", {"section": "codexSys"})
    assert got["result"]["response"] == [{"model": "m-2"}]


def test_run_sends_the_folder_or_the_selection(fake, short_tmp):
    a = project(short_tmp / "a", {"x.py": "one = 1\nañb = 2\nhéllo wörld\nlast\n"})
    f = fake(cwd=a)
    ed = f.editor
    ed.open(a / "x.py")

    ed.cmd("CodexRun Tidy everything up")
    args = f.wait_command("codexSys.runTask")["arguments"][0]
    assert args == {"instruction": "Tidy everything up", "folder": uri(a)}

    ed.cmd("2,3CodexRun Explain these lines")
    args = f.wait_command("codexSys.runTask", 2)["arguments"][0]
    assert args == {"instruction": "Explain these lines", "uris": [uri(a / "x.py")],
                    "range": {"start": {"line": 1, "character": 0}, "end": {"line": 2, "character": 11}}}

    # A charwise selection from the "b" of "añb" (screen column 3) to the second "l" of "héllo".
    ed.cmd('execute "normal! 2G3|v3G4|\\<Esc>"')
    ed.cmd("'<,'>CodexRun Rename it")
    args = f.wait_command("codexSys.runTask", 3)["arguments"][0]
    assert args == {"instruction": "Rename it", "uris": [uri(a / "x.py")],
                    "range": {"start": {"line": 1, "character": 2}, "end": {"line": 2, "character": 4}}}

    ed.wait_result("codexSys.runTask", 3)
    notes = [n["msg"] for n in ed.notifications()]
    assert notes[:3] == ["codex-sys: task fake-1 started", "codex-sys: task fake-2 started",
                         "codex-sys: task fake-3 started"]


def test_run_prompts_and_a_blank_instruction_shows_the_servers_error(fake, short_tmp):
    a = project(short_tmp / "a", {"x.py": "x = 1\n"})
    f = fake(cwd=a)
    ed = f.editor
    ed.open(a / "x.py")

    ed.lua("codex_test.answers = {false, '   ', 'Add a test'}")
    ed.cmd("CodexRun")  # cancelled: nothing is sent
    ed.cmd("CodexRun")
    ed.wait_result("codexSys.runTask")
    ed.cmd("CodexRun")
    f.wait_command("codexSys.runTask", 2)
    assert [c["arguments"][0]["instruction"] for c in f.commands("codexSys.runTask")] == ["   ", "Add a test"]
    assert ed.lua("return codex_test.inputs") == ["Codex instruction: "] * 3
    errors = [n["msg"] for n in ed.notifications() if n["level"] == 4]
    assert errors == ["codex-sys: the instruction is blank"]
    assert "codex-sys: the instruction is blank" in ed.messages()


def test_commands_default_to_the_newest_task_and_complete_ids(fake, short_tmp):
    a = project(short_tmp / "a", {"x.py": "x = 1\n"})
    f = fake(cwd=a)
    ed = f.editor
    ed.open(a / "x.py")
    ed.cmd("CodexRun first")
    ed.cmd("CodexRun second")
    ed.wait_result("codexSys.runTask", 2)

    ed.cmd("CodexCancel")
    assert f.wait_command("codexSys.cancelTask")["arguments"] == [{"taskId": "fake-2"}]
    ed.cmd("CodexDiscard fake-1")
    assert f.wait_command("codexSys.discardTask")["arguments"] == [{"taskId": "fake-1"}]
    ed.cmd("CodexApplyAll")
    assert f.wait_command("codexSys.applyTask")["arguments"] == [{"taskId": "fake-2"}]
    assert ed.lua("return vim.fn.getcompletion('CodexDiff fa', 'cmdline')") == ["fake-2", "fake-1"]


def test_diff_opens_a_scratch_diff_buffer(fake, short_tmp):
    a = project(short_tmp / "a", {"x.py": "x = 1\n"})
    f = fake(cwd=a)
    ed = f.editor
    ed.open(a / "x.py")
    ed.cmd("CodexRun first")
    ed.wait_result("codexSys.runTask")

    ed.cmd("CodexDiff")
    f.wait_command("codexSys.showDiff")
    ed.wait("return vim.bo.filetype == 'diff'", what="the diff buffer")
    buf = ed.lua("""return {name = vim.api.nvim_buf_get_name(0), lines = vim.api.nvim_buf_get_lines(0, 0, -1, false),
                           modifiable = vim.bo.modifiable, buftype = vim.bo.buftype,
                           windows = #vim.api.nvim_list_wins()}""")
    assert buf == {"name": "codex-sys://diff/fake-1", "lines": ["--- a/x", "+++ b/x", "@@ -1 +1 @@", "-old", "+new"],
                   "modifiable": False, "buftype": "nofile", "windows": 2}


def test_tasks_lists_and_acts_on_the_chosen_task(fake, short_tmp):
    a = project(short_tmp / "a", {"x.py": "x = 1\n"})
    f = fake(cwd=a)
    ed = f.editor
    ed.open(a / "x.py")
    ed.cmd("CodexRun first task")
    ed.cmd("CodexRun second task")
    ed.wait_result("codexSys.runTask", 2)

    ed.lua("codex_test.choose = {'^fake%-1 ', '^Cancel'}")
    ed.cmd("CodexTasks")
    assert f.wait_command("codexSys.cancelTask")["arguments"] == [{"taskId": "fake-1"}]
    selects = ed.lua("return codex_test.menus()")
    assert selects[0]["prompt"] == "Codex tasks:"
    assert selects[0]["items"] == ["fake-2  QUEUED     second task", "fake-1  QUEUED     first task"]
    assert selects[1]["items"] == ["Show diff", "Cancel task"]


def test_progress_is_echoed_and_can_be_turned_off(fake, short_tmp):
    a = project(short_tmp / "a", {"x.py": "x = 1\n"})
    f = fake(cwd=a)
    ed = f.editor
    ed.open(a / "x.py")
    values = [{"kind": "begin", "title": "Codex fake-1", "message": "QUEUED", "cancellable": True},
              {"kind": "report", "message": "RUNNING: run_shell_command ls"},
              {"kind": "end", "message": "COMPLETED: 2 files changed"}]
    ed.exec_sync("fake.progress", {"token": "t-1", "values": values})
    ed.wait("return #require('codex_sys').progress() == 3")
    assert [(p["kind"], p["title"], p["message"]) for p in ed.lua("return require('codex_sys').progress()")] == [
        ("begin", "Codex fake-1", "QUEUED"), ("report", "Codex fake-1", "RUNNING: run_shell_command ls"),
        ("end", "Codex fake-1", "COMPLETED: 2 files changed")]
    # Headless, the echo lands on the editor's output.
    out = ed.output.read_text(errors="replace")
    assert "Codex fake-1: RUNNING: run_shell_command ls" in out
    assert "Codex fake-1: COMPLETED: 2 files changed" in out

    ed.lua("require('codex_sys').setup(...)", {"cmd": [sys.executable, str(FAKE_LSP)],
                                               "cmd_env": {"FAKE_LSP_LOG": str(f.log_path)}, "progress": False})
    ed.exec_sync("fake.progress", {"token": "t-2", "values": [
        {"kind": "begin", "title": "Codex fake-2", "message": "quiet please"}, {"kind": "end"}]})
    ed.wait("return #require('codex_sys').progress() == 5")
    assert "quiet please" not in ed.output.read_text(errors="replace")


def test_default_and_empty_settings_are_sent_as_objects(fake, short_tmp):
    # Neovim encodes an empty Lua table as a JSON array: the plugin must send objects.
    a = project(short_tmp / "a", {"x.py": "x = 1\n"})
    f = fake(cwd=a, settings={"runner": {}, "snapshot": {"exclude": []}})
    ed = f.editor
    ed.open(a / "x.py")
    got = ed.exec_sync("fake.configuration", {"section": "codexSys"})
    assert got["result"]["response"] == [{"runner": {}, "snapshot": {"exclude": []}}]
    init = next(m for m in f.log() if m.get("method") == "initialize")
    assert init["params"]["initializationOptions"] == {"runner": {}, "snapshot": {"exclude": []}}

    ed.lua("require('codex_sys').setup(...)", {"cmd": [sys.executable, str(FAKE_LSP)],
                                               "cmd_env": {"FAKE_LSP_LOG": str(f.log_path)}})
    assert f.wait_messages("workspace/didChangeConfiguration") == [{"settings": {"codexSys": {}}}]
    got = ed.exec_sync("fake.configuration", {"section": "codexSys"})
    assert got["result"]["response"] == [{}]


def test_files_are_created_and_renamed_into_new_folders(fake, short_tmp):
    # Neovim 0.7.2 alone fails such an edit (test_nvim_workspace_edit.py); the plugin makes the folders.
    a = project(short_tmp / "a", {"x.py": "x = 1\n", "old.txt": "old\n"})
    f = fake(cwd=a)
    ed = f.editor
    ed.open(a / "x.py")
    new, moved = (a / "docs" / "deep" / "new.md").as_uri(), (a / "archive" / "old.txt").as_uri()
    got = ed.exec_sync("fake.applyEdit", {"edit": {"documentChanges": [
        {"kind": "create", "uri": new},
        {"textDocument": {"uri": new, "version": None},
         "edits": [{"range": {"start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 0}},
                    "newText": "# New\n"}]},
        {"kind": "rename", "oldUri": uri(a / "old.txt"), "newUri": moved}]}})
    assert got["result"]["response"] == {"applied": True}
    assert ed.lines(a / "docs" / "deep" / "new.md") == ["# New"]
    assert (a / "archive" / "old.txt").read_text() == "old\n"
    assert not (a / "old.txt").exists()


def test_a_server_that_cannot_start_is_reported_and_checkhealth_says_why(fake, editor_factory, short_tmp):
    a = project(short_tmp / "a", {"x.py": "x = 1\n"})
    ed = editor_factory(cwd=a)
    ed.setup(cmd=[str(short_tmp / "no-such-codex-sys"), "lsp"])
    ed.open(a / "x.py")
    errors = [n["msg"] for n in ed.notifications() if n["level"] == 4]
    assert errors == [f"codex-sys: could not start {short_tmp / 'no-such-codex-sys'} lsp"]
    ed.cmd("checkhealth codex_sys")
    report = "\n".join(ed.lua("return vim.api.nvim_buf_get_lines(0, 0, -1, false)"))
    assert f"ERROR: {short_tmp / 'no-such-codex-sys'} is not executable" in report


def test_commands_given_while_the_server_starts_are_sent_in_order(fake, short_tmp):
    a = project(short_tmp / "a", {"x.py": "x = 1\n"})
    f = fake(cwd=a)
    ed = f.editor
    # One Lua call: the client cannot be initialized before the last command is given.
    ed.lua(f"vim.cmd('edit {a / 'x.py'}'); assert(not require('codex_sys').client(0).initialized); "
           "for i = 1, 5 do vim.cmd('CodexRun task ' .. i) end; vim.cmd('CodexCancel fake-1')")
    f.wait_command("codexSys.cancelTask")
    sent = [m["params"]["command"] + " " + str(m["params"]["arguments"][0].get("instruction", ""))
            for m in f.log() if m.get("method") == "workspace/executeCommand"]
    assert sent == [f"codexSys.runTask task {i}" for i in range(1, 6)] + ["codexSys.cancelTask "]


def test_a_file_outside_any_project_gets_a_client_only_when_asked(fake, short_tmp):
    work = short_tmp / "work"
    work.mkdir()
    loose = short_tmp / "loose"
    loose.mkdir()
    (loose / "n.txt").write_text("n\n")
    f = fake(cwd=work)
    ed = f.editor
    ed.open(loose / "n.txt")
    assert ed.lua("return vim.tbl_count(require('codex_sys').clients())") == 0, ed.report()
    ed.cmd("CodexRun Tidy up")
    assert f.wait_command("codexSys.runTask")["arguments"] == [{"instruction": "Tidy up", "folder": uri(loose)}]
    assert ed.lua("return vim.tbl_keys(require('codex_sys').clients())") == [str(loose)]
