"""What Neovim 0.7.2 itself (its built-in client, without the plugin) does with the workspace edits the
language server relies on (docs/lsp.md "Edits"): `documentChanges` with create/rename/delete operations
and unversioned TextDocumentEdits, although it advertises only `resourceOperations`, not
`documentChanges`. Each test sends one `workspace/applyEdit` from a recording server (fake_lsp.py) and
pins down the answer, the buffers and the files: no real server can be made to send such edits.

The last test reads, from the same recording server, the one thing about the plugin that no behaviour of
the real server shows (test_nvim_plugin.py checks everything else against the real server): the settings
messages exactly as sent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from nvim_harness import FAKE_LSP, Editor, project

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

BUFFERS = """
local out = {}
for _, b in ipairs(vim.api.nvim_list_bufs()) do
  local name = vim.api.nvim_buf_get_name(b)
  if name ~= '' then
    local loaded = vim.api.nvim_buf_is_loaded(b)
    out[vim.fn.fnamemodify(name, ':t')] = {
      loaded = loaded, modified = vim.bo[b].modified,
      lines = loaded and vim.api.nvim_buf_get_lines(b, 0, -1, false) or nil,
    }
  end
end
return out"""


def rng(l1: int, c1: int, l2: int, c2: int) -> dict[str, Any]:
    return {"start": {"line": l1, "character": c1}, "end": {"line": l2, "character": c2}}


class Workspace:
    def __init__(self, editor: Editor, root: Path) -> None:
        self.editor = editor
        self.root = root

    def uri(self, name: str) -> str:
        return (self.root / name).as_uri()

    def apply(self, edit: dict[str, Any]) -> dict[str, Any]:
        got = self.editor.exec_sync("fake.applyEdit", {"edit": edit, "label": "codex-sys"})
        assert "error" not in got or not got["error"], got
        return dict(got["result"]["response"])

    def buffers(self) -> dict[str, dict[str, Any]]:
        return dict(self.editor.lua(BUFFERS))

    def disk(self) -> dict[str, str]:
        return {str(p.relative_to(self.root)): p.read_text() for p in sorted(self.root.rglob("*"))
                if p.is_file() and ".git" not in p.relative_to(self.root).parts}

    def edit_buffer(self, name: str, line: int, text: str) -> None:
        self.editor.lua("vim.api.nvim_buf_set_lines(codex_test.bufnr(...), select(2, ...), select(2, ...) + 1, "
                        "false, {select(3, ...)})", str(self.root / name), line, text)


@pytest.fixture
def ws(editor_factory, short_tmp) -> Workspace:
    root = short_tmp / "p"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    for name, text in {"open.txt": "a\nb\nc\n", "closed.txt": "1\n2\n3\n", "old.txt": "old\n",
                       "gone.txt": "bye\n"}.items():
        (root / name).write_text(text)
    editor = editor_factory(cwd=root)
    for name in ("old.txt", "gone.txt", "open.txt"):
        editor.open(root / name)
    editor.lua("codex_test.start_plain(...)", {"cmd": [sys.executable, str(FAKE_LSP)], "root_dir": str(root),
                                               "cmd_env": {"FAKE_LSP_LOG": str(editor.folder / "log")}})
    editor.lua("for _, b in ipairs(vim.api.nvim_list_bufs()) do vim.lsp.buf_attach_client(b, codex_test.client_id) end")
    editor.wait("return codex_test.client().initialized")
    return Workspace(editor, root)


def test_neovim_advertises_resource_operations_but_not_document_changes(ws):
    caps = ws.editor.lua("return vim.lsp.protocol.make_client_capabilities().workspace.workspaceEdit")
    assert caps == {"resourceOperations": ["rename", "create", "delete"]}


def test_create_then_unversioned_edit_fills_an_unsaved_buffer_of_an_empty_new_file(ws):
    got = ws.apply({"documentChanges": [
        {"kind": "create", "uri": ws.uri("new.txt")},
        {"textDocument": {"uri": ws.uri("new.txt"), "version": None},
         "edits": [{"range": rng(0, 0, 0, 0), "newText": "hello\nworld\n"}]}]})
    assert got == {"applied": True}
    assert ws.disk()["new.txt"] == ""  # created empty; the text is only in the buffer
    # The empty file's buffer has one empty line, and the inserted text keeps its final newline:
    # written as is, the file would end with an extra empty line.
    assert ws.buffers()["new.txt"] == {"loaded": True, "modified": True, "lines": ["hello", "world", ""]}


def test_create_then_edit_without_the_final_newline_gives_the_exact_text(ws):
    got = ws.apply({"documentChanges": [
        {"kind": "create", "uri": ws.uri("new.txt")},
        {"textDocument": {"uri": ws.uri("new.txt"), "version": None},
         "edits": [{"range": rng(0, 0, 0, 0), "newText": "hello\nworld"}]}]})
    assert got == {"applied": True}
    assert ws.buffers()["new.txt"]["lines"] == ["hello", "world"]
    ws.editor.cmd(f"buffer {ws.editor.lua('return codex_test.bufnr(...)', str(ws.root / 'new.txt'))} | write")
    assert ws.disk()["new.txt"] == "hello\nworld\n"


def test_create_then_edit_of_the_whole_first_line_gives_the_exact_text(ws):
    # A range reaching past the end of the empty buffer: Neovim drops the empty line it kept.
    got = ws.apply({"documentChanges": [
        {"kind": "create", "uri": ws.uri("new.txt")},
        {"textDocument": {"uri": ws.uri("new.txt"), "version": None},
         "edits": [{"range": rng(0, 0, 1, 0), "newText": "hello\nworld\n"}]}]})
    assert got == {"applied": True}
    assert ws.buffers()["new.txt"]["lines"] == ["hello", "world"]


def test_create_in_a_folder_that_does_not_exist_fails(ws):
    got = ws.apply({"documentChanges": [
        {"kind": "create", "uri": ws.uri("sub/dir/n.txt")},
        {"textDocument": {"uri": ws.uri("sub/dir/n.txt"), "version": None},
         "edits": [{"range": rng(0, 0, 0, 0), "newText": "x"}]}]})
    assert got["applied"] is False
    assert "attempt to index local 'file' (a nil value)" in got["failureReason"]
    assert not (ws.root / "sub").exists()


def test_create_over_an_existing_file_truncates_it_on_disk(ws):
    got = ws.apply({"documentChanges": [{"kind": "create", "uri": ws.uri("closed.txt")}]})
    assert got == {"applied": True}
    assert ws.disk()["closed.txt"] == ""
    got = ws.apply({"documentChanges": [
        {"kind": "create", "uri": ws.uri("old.txt"), "options": {"ignoreIfExists": True}}]})
    assert got == {"applied": True}
    assert ws.disk()["old.txt"] == "old\n"


def test_unversioned_edits_apply_to_open_and_unloaded_files_without_saving(ws):
    ws.edit_buffer("open.txt", 0, "a2")  # the user's unsaved edit
    got = ws.apply({"documentChanges": [
        {"textDocument": {"uri": ws.uri("open.txt"), "version": None},
         "edits": [{"range": rng(1, 0, 2, 0), "newText": "B\n"}]},
        {"textDocument": {"uri": ws.uri("closed.txt"), "version": None},
         "edits": [{"range": rng(0, 0, 1, 0), "newText": "ONE\n"}]}]})
    assert got == {"applied": True}
    buffers = ws.buffers()
    assert buffers["open.txt"] == {"loaded": True, "modified": True, "lines": ["a2", "B", "c"]}
    assert buffers["closed.txt"] == {"loaded": True, "modified": True, "lines": ["ONE", "2", "3"]}
    assert ws.disk()["open.txt"] == "a\nb\nc\n"
    assert ws.disk()["closed.txt"] == "1\n2\n3\n"


def test_a_stale_versioned_edit_is_skipped_yet_answered_applied(ws):
    ws.edit_buffer("open.txt", 0, "a2")
    version = ws.editor.lua("return vim.lsp.util.buf_versions[codex_test.bufnr(...)]", str(ws.root / "open.txt"))
    got = ws.apply({"documentChanges": [
        {"textDocument": {"uri": ws.uri("open.txt"), "version": version - 1},
         "edits": [{"range": rng(2, 0, 2, 1), "newText": "C"}]}]})
    assert got == {"applied": True}
    assert ws.buffers()["open.txt"]["lines"] == ["a2", "b", "c"]
    assert "newer than edits." in ws.editor.messages()
    # Only the first TextDocumentEdit of a list has its version checked.
    got = ws.apply({"documentChanges": [
        {"textDocument": {"uri": ws.uri("closed.txt"), "version": None},
         "edits": [{"range": rng(0, 0, 0, 1), "newText": "X"}]},
        {"textDocument": {"uri": ws.uri("open.txt"), "version": version - 1},
         "edits": [{"range": rng(2, 0, 2, 1), "newText": "C"}]}]})
    assert got == {"applied": True}
    assert ws.buffers()["open.txt"]["lines"] == ["a2", "b", "C"]


def test_rename_writes_the_old_buffer_first_even_with_unsaved_changes(ws):
    ws.edit_buffer("old.txt", 0, "old-edited")
    got = ws.apply({"documentChanges": [
        {"kind": "rename", "oldUri": ws.uri("old.txt"), "newUri": ws.uri("renamed.txt")}]})
    assert got == {"applied": True}
    disk = ws.disk()
    assert "old.txt" not in disk
    assert disk["renamed.txt"] == "old-edited\n"  # the unsaved edit went to disk with the rename
    buffers = ws.buffers()
    assert "old.txt" not in buffers
    assert buffers["renamed.txt"] == {"loaded": False, "modified": False}


def test_delete_removes_the_file_and_wipes_its_buffer_unsaved_changes_included(ws):
    ws.edit_buffer("gone.txt", 0, "unsaved")
    got = ws.apply({"documentChanges": [{"kind": "delete", "uri": ws.uri("gone.txt")}]})
    assert got == {"applied": True}
    assert "gone.txt" not in ws.disk()
    assert "gone.txt" not in ws.buffers()


def test_a_failing_operation_leaves_the_earlier_ones_applied(ws):
    got = ws.apply({"documentChanges": [
        {"textDocument": {"uri": ws.uri("open.txt"), "version": None},
         "edits": [{"range": rng(0, 0, 0, 1), "newText": "A"}]},
        {"kind": "delete", "uri": ws.uri("missing.txt")}]})
    assert got["applied"] is False
    assert "Cannot delete not existing file or folder" in got["failureReason"]
    assert ws.buffers()["open.txt"]["lines"] == ["A", "b", "c"]


def test_the_plugin_advertises_configuration_and_sends_empty_settings_as_objects(editor_factory, short_tmp):
    """Seen only on the wire: the real server takes a setting from initializationOptions,
    didChangeConfiguration or the answer to workspace/configuration alike (the plugin sends the same
    values in each, so whether it advertises and answers workspace/configuration changes nothing there), and
    it accepts `[]` where an object is due, which is how Neovim's JSON encoder writes an empty Lua table.
    Other servers need objects."""
    root = project(short_tmp / "s", {"x.py": "x = 1\n"})
    editor = editor_factory(cwd=root)
    log = editor.folder / "fake-lsp.jsonl"
    editor.setup_base = {"cmd": [sys.executable, str(FAKE_LSP)], "cmd_env": {"FAKE_LSP_LOG": str(log)}}

    def received(method: str) -> list[dict[str, Any]]:
        return [m["params"] for m in map(json.loads, log.read_text().splitlines()) if m.get("method") == method]

    settings = {"runner": {}, "snapshot": {"exclude": []}}
    editor.setup(settings=settings)
    editor.open(root / "x.py")
    got = editor.exec_sync("fake.configuration", {"section": "codexSys"})
    assert got["result"]["response"] == [settings]
    [init] = received("initialize")
    assert init["initializationOptions"] == settings
    assert init["capabilities"]["workspace"]["configuration"] is True
    assert init["capabilities"]["workspace"]["didChangeConfiguration"] == {"dynamicRegistration": False}

    editor.setup(settings={})
    got = editor.exec_sync("fake.configuration", {"section": "codexSys"})  # after the notification, in order
    assert got["result"]["response"] == [{}]
    assert received("workspace/didChangeConfiguration") == [{"settings": {"codexSys": {}}}]
