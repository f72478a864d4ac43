"""A scripted editor on top of pytest-lsp's real LSP client, for driving the real `codex-sys lsp` process.

It keeps documents with versions and sends didOpen/didChange as an editor does, and it answers
`workspace/applyEdit` the way the two editors it stands for do (their recorded capabilities are sent at
initialize):
- "vscode": checks every versioned document edit first and refuses the whole edit when one is stale
  (`applied: false`); creates, deletes and renames files on disk;
- "neovim" (0.7): applies `changes`; in `documentChanges` it skips a document edit whose version is
  older than the buffer's and still answers `applied: true`, as Neovim 0.7 does; file operations on disk.
Edits to a document that is not open open it first, as both editors load a buffer for it.

The real Neovim is driven end to end in tests/neovim; this harness covers both clients' capabilities
against the real server, runner and sandboxes, with exact control over timing.
"""

from __future__ import annotations

import asyncio
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pygls import uris
from pytest_lsp import LanguageClient, client_capabilities

CLIENTS = {"vscode": "visual-studio-code@v1.65.2", "neovim": "neovim@v0.7.0"}


def utf16_offset(text: str, pos: lsp.Position) -> int:
    lines = text.split("\n")
    if pos.line >= len(lines):
        return len(text)
    offset = sum(len(line) + 1 for line in lines[: pos.line])
    line = lines[pos.line]
    units = 0
    for i, ch in enumerate(line):
        if units >= pos.character:
            return offset + i
        units += 2 if ord(ch) > 0xFFFF else 1
    return offset + len(line)


def apply_text_edits(text: str, edits: list[lsp.TextEdit]) -> str:
    spans = sorted(((utf16_offset(text, e.range.start), utf16_offset(text, e.range.end), e.new_text) for e in edits),
                   reverse=True)
    for start, end, new in spans:
        text = text[:start] + new + text[end:]
    return text


@dataclass
class Doc:
    text: str
    version: int


@dataclass
class Editor:
    client: LanguageClient
    flavor: str
    root: Path
    docs: dict[str, Doc] = field(default_factory=dict)
    edits_received: list[lsp.WorkspaceEdit] = field(default_factory=list)
    drop_edits: bool = False  # answer `applied: true` and change nothing (Neovim 0.7 with a stale edit)

    def uri(self, rel: str, root: Path | None = None) -> str:
        uri = uris.from_fs_path(str((root or self.root) / rel))
        assert uri is not None
        return uri

    # ---- documents ----------------------------------------------------------------------------------

    def open(self, rel: str, root: Path | None = None) -> str:
        uri = self.uri(rel, root)
        path = Path(uris.to_fs_path(uri) or "")
        self._open_uri(uri, path.read_text())
        return uri

    def _open_uri(self, uri: str, text: str) -> None:
        self.docs[uri] = Doc(text, 1)
        self.client.text_document_did_open(lsp.DidOpenTextDocumentParams(
            lsp.TextDocumentItem(uri=uri, language_id="plaintext", version=1, text=text)))

    def change(self, rel: str, text: str, root: Path | None = None) -> None:
        self._set(self.uri(rel, root), text)

    def _set(self, uri: str, text: str) -> None:
        doc = self.docs[uri]
        doc.text, doc.version = text, doc.version + 1
        self.client.text_document_did_change(lsp.DidChangeTextDocumentParams(
            text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=doc.version),
            content_changes=[lsp.TextDocumentContentChangeWholeDocument(text=text)]))

    def text(self, rel: str, root: Path | None = None) -> str:
        return self.docs[self.uri(rel, root)].text

    def close(self, rel: str) -> None:
        uri = self.uri(rel)
        self.docs.pop(uri)
        self.client.text_document_did_close(lsp.DidCloseTextDocumentParams(lsp.TextDocumentIdentifier(uri)))

    # ---- requests -----------------------------------------------------------------------------------

    async def command(self, name: str, *args: Any) -> Any:
        return await self.client.workspace_execute_command_async(
            lsp.ExecuteCommandParams(command=name, arguments=list(args)))

    async def code_actions(self, rel: str, line: int, root: Path | None = None) -> list[lsp.CodeAction]:
        uri = self.uri(rel, root)
        got = await self.client.text_document_code_action_async(lsp.CodeActionParams(
            text_document=lsp.TextDocumentIdentifier(uri),
            range=lsp.Range(lsp.Position(line, 0), lsp.Position(line, 0)),
            context=lsp.CodeActionContext(diagnostics=list(self.client.diagnostics.get(uri, [])))))
        actions = [a for a in got or [] if isinstance(a, lsp.CodeAction)]
        assert len(actions) == len(got or []), f"the server answered bare commands: {got}"
        return actions

    async def run_action(self, action: lsp.CodeAction) -> Any:
        assert action.command is not None, action
        return await self.command(action.command.command, *(action.command.arguments or []))

    def diagnostics(self, rel: str, root: Path | None = None) -> list[lsp.Diagnostic]:
        return list(self.client.diagnostics.get(self.uri(rel, root), []))

    async def wait_for(self, check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = check()
            if value:
                return value
            if loop.time() > deadline:
                raise AssertionError(f"timed out waiting for {what}; messages: "
                                     f"{[m.message for m in self.client.messages]}")
            await asyncio.sleep(0.02)

    def progress_of(self, message_part: str = "") -> list[list[Any]]:
        """The progress reports, per token, of tokens whose begin mentions `message_part`."""
        out = []
        for reports in self.client.progress_reports.values():
            if reports and isinstance(reports[0], lsp.WorkDoneProgressBegin) and message_part in (
                    reports[0].message or ""):
                out.append(reports)
        return out

    def progress_ended(self) -> list[list[Any]]:
        """The progress report lists, once every one of them has ended (else [])."""
        lists = self.progress_of()
        return lists if lists and all(isinstance(r[-1], lsp.WorkDoneProgressEnd) for r in lists) else []

    # ---- workspace/applyEdit ------------------------------------------------------------------------

    def apply_edit(self, params: lsp.ApplyWorkspaceEditParams) -> lsp.ApplyWorkspaceEditResult:
        edit = params.edit
        self.edits_received.append(edit)
        if self.drop_edits:
            return lsp.ApplyWorkspaceEditResult(applied=True)
        if edit.changes:
            for uri, edits in edit.changes.items():
                self._edit(uri, list(edits))
            return lsp.ApplyWorkspaceEditResult(applied=True)
        changes = list(edit.document_changes or [])
        if self.flavor == "vscode":
            for change in changes:
                if isinstance(change, lsp.TextDocumentEdit) and change.text_document.version is not None:
                    doc = self.docs.get(change.text_document.uri)
                    if doc is not None and doc.version != change.text_document.version:
                        return lsp.ApplyWorkspaceEditResult(applied=False, failure_reason="stale version")
        for change in changes:
            if isinstance(change, lsp.TextDocumentEdit):
                doc = self.docs.get(change.text_document.uri)
                version = change.text_document.version
                if doc is not None and version is not None and doc.version > version:
                    continue  # Neovim 0.7: skipped, yet `applied: true`
                self._edit(change.text_document.uri, [e for e in change.edits if isinstance(e, lsp.TextEdit)])
            elif isinstance(change, lsp.CreateFile):
                path = Path(uris.to_fs_path(change.uri) or "")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("")
                self._open_uri(change.uri, "")
            elif isinstance(change, lsp.DeleteFile):
                os.remove(uris.to_fs_path(change.uri) or "")
                if change.uri in self.docs:
                    self.docs.pop(change.uri)
                    self.client.text_document_did_close(lsp.DidCloseTextDocumentParams(
                        lsp.TextDocumentIdentifier(change.uri)))
            elif isinstance(change, lsp.RenameFile):
                os.rename(uris.to_fs_path(change.old_uri) or "", uris.to_fs_path(change.new_uri) or "")
                doc = self.docs.pop(change.old_uri, None)
                if doc is not None:
                    self.client.text_document_did_close(lsp.DidCloseTextDocumentParams(
                        lsp.TextDocumentIdentifier(change.old_uri)))
                self._open_uri(change.new_uri, Path(uris.to_fs_path(change.new_uri) or "").read_text())
        return lsp.ApplyWorkspaceEditResult(applied=True)

    def _edit(self, uri: str, edits: list[lsp.TextEdit]) -> None:
        if uri not in self.docs:
            self._open_uri(uri, Path(uris.to_fs_path(uri) or "").read_text())
        self._set(uri, apply_text_edits(self.docs[uri].text, edits))


def capabilities(flavor: str) -> lsp.ClientCapabilities:
    return client_capabilities(CLIENTS[flavor])


def structure_code_actions(client: LanguageClient) -> None:
    """lsprotocol decodes a CodeAction that carries a `command` as a Command: tell them apart by shape."""
    converter = client.protocol._converter

    def hook(obj: Any, _: Any) -> lsp.Command | lsp.CodeAction:
        if isinstance(obj.get("command"), str):
            return converter.structure(obj, lsp.Command)
        return converter.structure(obj, lsp.CodeAction)

    converter.register_structure_hook(typing.Union[lsp.Command, lsp.CodeAction], hook)  # noqa: UP007 - lsprotocol's spelling
