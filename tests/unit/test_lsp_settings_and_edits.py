"""The language server's settings layers, command arguments, and WorkspaceEdits per client."""

from __future__ import annotations

import re

import pytest
from lsprotocol import types as lsp
from pytest_lsp import client_capabilities

from lsp_server.arguments import run_args, task_args
from lsp_server.settings import DEFAULT_MAX_FILES, Settings, layer
from lsp_server.workspace_edits import CreatePlan, DeletePlan, EditSupport, RenamePlan, TextPlan, build_edit
from runner.domain.errors import InvalidArgument


def test_layers_later_wins_and_empty_values_do_not_override() -> None:
    base = Settings.from_env({"CODEX_SYS_RUNNER": "host:1", "CODEX_SYS_TOKEN": "env-token"})
    init = layer(base, {"runner": {"address": "host:2", "token": "init-token"}, "model": "m1"})
    # VS Code reports "" for settings nobody set: they must not wipe the token the extension passed.
    got = layer(init, {"runner": {"address": "", "token": None}, "model": "m2",
                       "snapshot": {"exclude": ["dist/"], "maxFiles": 10, "maxBytes": 2048}})
    assert (got.runner_address, got.runner_token, got.model) == ("host:2", "init-token", "m2")
    assert (got.exclude, got.max_files, got.max_bytes, got.problems) == (("dist/",), 10, 2048, ())


@pytest.mark.parametrize(("raw", "named"), [
    ({"snapshot": {"maxFiles": "lots"}}, "codexSys.snapshot.maxFiles must be a positive whole number"),
    ({"snapshot": {"maxBytes": -1}}, "codexSys.snapshot.maxBytes must be a positive whole number"),
    ({"snapshot": {"maxFiles": True}}, "codexSys.snapshot.maxFiles must be a positive whole number"),
    ({"snapshot": {"exclude": "dist/"}}, "codexSys.snapshot.exclude must be a list of patterns"),
    ({"runner": {"token": 123}}, "codexSys.runner.token must be a string, not int"),
    ("nonsense", "codexSys settings must be an object"),
])
def test_a_wrong_value_is_named_and_the_value_below_kept(raw: object, named: str) -> None:
    got = layer(Settings(), raw)
    assert any(named in p for p in got.problems), got.problems
    assert got.max_files == DEFAULT_MAX_FILES and got.runner_token == ""
    assert "123" not in " ".join(got.problems)  # a token's value is never repeated back


def test_an_empty_list_is_no_settings() -> None:  # Neovim's Lua encodes {} as []
    assert layer(Settings(model="m"), []) == Settings(model="m")


LINES_0_1 = {"start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 0}}
LINES_5_1 = {"start": {"line": 5, "character": 0}, "end": {"line": 1, "character": 0}}


def test_run_arguments() -> None:
    got = run_args([{"instruction": "  fix it  ", "uris": ["file:///p/a.py"],
                     "range": {"start": {"line": 3, "character": 2}, "end": {"line": 6, "character": 0}}}])
    assert got.range is not None
    assert (got.instruction, got.uris, got.range.start, got.range.end) == ("fix it", ("file:///p/a.py",), 3, 5)
    for bad, message in [([], "instruction is empty"), ([{"instruction": ""}], "instruction is empty"),
                         ([{"instruction": "x", "uris": "a"}], "uris must be a list"),
                         ([{"instruction": "x", "range": LINES_0_1}], "needs the document"),
                         ([{"instruction": "x", "uris": ["file:///a"], "range": LINES_5_1}],
                          "ends (line 1) before it starts"),
                         ([{"instruction": "x"}, {"instruction": "y"}], "one object argument")]:
        with pytest.raises(InvalidArgument, match=re.escape(message)):
            run_args(bad)


def test_task_arguments() -> None:
    assert task_args([], "codexSys.showDiff").task_id is None
    got = task_args([{"taskId": "t0123456789abcdef", "hunks": [1, "2"]}], "codexSys.applyTask", allow_hunks=True)
    assert (got.task_id, got.hunks) == ("t0123456789abcdef", ("1", "2"))
    with pytest.raises(InvalidArgument, match="is not a task id"):
        task_args([{"taskId": "../etc"}], "codexSys.applyTask")
    with pytest.raises(InvalidArgument, match="hunks must be a list"):
        task_args([{"taskId": "t0123456789abcdef", "hunks": "1"}], "codexSys.applyTask", allow_hunks=True)


EDIT = lsp.TextEdit(range=lsp.Range(lsp.Position(1, 0), lsp.Position(2, 0)), new_text="x\n")


def test_vscode_gets_versioned_document_changes_and_file_operations() -> None:
    support = EditSupport.of(client_capabilities("visual-studio-code@v1.65.2"))
    assert support.document_changes and support.can("create") and support.can("rename")
    edit = build_edit([TextPlan("file:///p/a", 7, (EDIT,)), CreatePlan("file:///p/n", "new\n"),
                       DeletePlan("file:///p/d"), RenamePlan("file:///p/o", "file:///p/r", (EDIT,))], support)
    kinds = [type(c).__name__ for c in edit.document_changes or []]
    assert kinds == ["TextDocumentEdit", "CreateFile", "TextDocumentEdit", "DeleteFile", "RenameFile",
                     "TextDocumentEdit"]
    first = edit.document_changes[0]  # type: ignore[index]
    assert isinstance(first, lsp.TextDocumentEdit) and first.text_document.version == 7
    created = edit.document_changes[2]  # type: ignore[index]
    assert isinstance(created, lsp.TextDocumentEdit) and created.edits[0].range.end == lsp.Position(1, 0)


def test_neovim_gets_changes_for_text_and_unversioned_document_changes_for_files() -> None:
    support = EditSupport.of(client_capabilities("neovim@v0.7.0"))
    assert not support.document_changes and support.can("delete")
    text_only = build_edit([TextPlan("file:///p/a", 7, (EDIT,))], support)
    assert text_only.document_changes is None and text_only.changes == {"file:///p/a": [EDIT]}
    with_file = build_edit([TextPlan("file:///p/a", 7, (EDIT,)), DeletePlan("file:///p/d")], support)
    first = with_file.document_changes[0]  # type: ignore[index]
    assert isinstance(first, lsp.TextDocumentEdit) and first.text_document.version is None


def test_a_client_without_resource_operations_cannot_touch_files() -> None:
    support = EditSupport.of(lsp.ClientCapabilities())
    assert not support.document_changes and not support.can("create")
