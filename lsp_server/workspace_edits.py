"""Changes as a WorkspaceEdit the client at hand can apply.

Clients differ, and the differences are handled here, once:
- `documentChanges` advertised (VS Code): TextDocumentEdits with the version the server checked the
  text at (the client refuses the edit if the document moved on), and create/delete/rename operations;
- not advertised (Neovim 0.7): plain `changes` by URI, the server having checked the text itself;
  where a file must be created, deleted or renamed and the client advertises `resourceOperations`,
  `documentChanges` with unversioned document edits, which such clients apply;
- neither: file operations cannot be expressed, and the planner skips them with a reason (`can`).

Positions: a hunk replaces whole lines, so ranges start at character 0; the one exception is the end of
a last line without a newline, measured in the negotiated position encoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lsprotocol import types as lsp

from lsp_server.anchoring import Fit
from lsp_server.textlines import units
from runner.domain.changes import Hunk

__all__ = ["CreatePlan", "DeletePlan", "EditSupport", "FilePlan", "RenamePlan", "TextPlan", "build_edit",
           "hunk_edit", "line_range"]


@dataclass(frozen=True, slots=True)
class EditSupport:
    document_changes: bool
    resource_operations: frozenset[str]
    encoding: str = "utf-16"

    @classmethod
    def of(cls, caps: lsp.ClientCapabilities | None, encoding: str = "utf-16") -> EditSupport:
        we = caps.workspace.workspace_edit if caps and caps.workspace else None
        ops = frozenset(str(getattr(k, "value", k)) for k in (we.resource_operations or [])) if we else frozenset()
        return cls(bool(we and we.document_changes), ops, encoding)

    def can(self, operation: str) -> bool:
        """Whether the client can create/delete/rename files in an edit."""
        return operation in self.resource_operations


@dataclass(frozen=True, slots=True)
class TextPlan:
    uri: str
    version: int | None
    edits: tuple[lsp.TextEdit, ...]


@dataclass(frozen=True, slots=True)
class CreatePlan:
    uri: str
    text: str


@dataclass(frozen=True, slots=True)
class DeletePlan:
    uri: str


@dataclass(frozen=True, slots=True)
class RenamePlan:
    old_uri: str
    new_uri: str
    edits: tuple[lsp.TextEdit, ...]  # on the renamed file, against its old text


FilePlan = TextPlan | CreatePlan | DeletePlan | RenamePlan


def line_range(lines: Sequence[str], first: int, count: int, encoding: str) -> lsp.Range:
    """The range of `count` whole lines from `first` (0-based), end of text included."""
    end = first + count
    if end < len(lines) or not lines or lines[-1].endswith("\n"):
        end_pos = lsp.Position(end, 0)
    else:  # the range reaches a last line that has no newline
        end_pos = lsp.Position(len(lines) - 1, units(lines[-1], encoding))
    return lsp.Range(lsp.Position(first, 0), end_pos)


def hunk_edit(hunk: Hunk, fit: Fit, lines: Sequence[str], encoding: str) -> lsp.TextEdit:
    return lsp.TextEdit(range=line_range(lines, fit.line, fit.length, encoding), new_text=hunk.new_text)


def _doc_edit(uri: str, version: int | None, edits: Sequence[lsp.TextEdit]) -> lsp.TextDocumentEdit:
    return lsp.TextDocumentEdit(
        text_document=lsp.OptionalVersionedTextDocumentIdentifier(uri=uri, version=version), edits=list(edits))


def build_edit(plans: Sequence[FilePlan], support: EditSupport) -> lsp.WorkspaceEdit:
    file_ops = any(not isinstance(p, TextPlan) for p in plans)
    if not support.document_changes and not file_ops:
        return lsp.WorkspaceEdit(changes={p.uri: list(p.edits) for p in plans if isinstance(p, TextPlan)})
    versioned = support.document_changes
    out: list[lsp.TextDocumentEdit | lsp.CreateFile | lsp.RenameFile | lsp.DeleteFile] = []
    for p in plans:
        if isinstance(p, TextPlan):
            out.append(_doc_edit(p.uri, p.version if versioned else None, p.edits))
        elif isinstance(p, CreatePlan):
            out.append(lsp.CreateFile(uri=p.uri,
                                      options=lsp.CreateFileOptions(overwrite=False, ignore_if_exists=False)))
            if p.text:
                # The whole new document, to 1:0: Neovim's new buffer has one empty line, and text
                # inserted at 0:0 before it would save with an extra newline; clients that follow the
                # spec clamp 1:0 to the end of the empty document.
                out.append(_doc_edit(p.uri, None, [lsp.TextEdit(
                    range=lsp.Range(lsp.Position(0, 0), lsp.Position(1, 0)), new_text=p.text)]))
        elif isinstance(p, DeletePlan):
            out.append(lsp.DeleteFile(uri=p.uri,
                                      options=lsp.DeleteFileOptions(recursive=False, ignore_if_not_exists=False)))
        else:
            out.append(lsp.RenameFile(old_uri=p.old_uri, new_uri=p.new_uri,
                                      options=lsp.RenameFileOptions(overwrite=False, ignore_if_exists=False)))
            if p.edits:
                out.append(_doc_edit(p.new_uri, None, p.edits))
    return lsp.WorkspaceEdit(document_changes=out)
