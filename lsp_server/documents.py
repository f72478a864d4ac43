"""Today's text of a workspace file: the open document's, else the file on disk.

`dirty` tells whether an open document differs from its file (unsaved changes), which LSP does not say
directly: the server compares. A file that is not UTF-8 text cannot take a text edit from the editor, so
it comes back with `text=None` and the reason.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pygls.workspace import Workspace

__all__ = ["FileText", "read_file_text", "read_file_texts"]


@dataclass(frozen=True, slots=True)
class FileText:
    uri: str
    exists: bool  # on disk, or open in the editor
    text: str | None  # None: missing, or not UTF-8 text (see `problem`)
    version: int | None  # the open document's version; None when not open
    dirty: bool  # open with text that differs from the file on disk
    problem: str = ""

    @property
    def is_open(self) -> bool:
        return self.version is not None


def _read(path: Path) -> tuple[bool, bytes | None]:
    try:
        with open(path, "rb") as f:
            return True, f.read()
    except FileNotFoundError:
        return False, None
    except IsADirectoryError:
        return True, None
    except OSError:
        return os.path.lexists(path), None


async def read_file_text(workspace: Workspace, uri: str, path: Path, check_dirty: bool = False) -> FileText:
    """`dirty` is only worked out with `check_dirty` (it reads the file of an open document)."""
    doc = workspace.text_documents.get(uri)
    if doc is not None:
        if not check_dirty:
            return FileText(uri, True, doc.source, doc.version, False)
        _, data = await asyncio.to_thread(_read, path)
        dirty = data is None or data != doc.source.encode("utf-8", "surrogatepass")
        return FileText(uri, True, doc.source, doc.version, dirty)
    return _disk_text(uri, *await asyncio.to_thread(_read, path))


def _disk_text(uri: str, exists: bool, data: bytes | None) -> FileText:
    if not exists:
        return FileText(uri, False, None, None, False, "the file no longer exists")
    if data is None:
        return FileText(uri, True, None, None, False, "the path is not a readable file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return FileText(uri, True, None, None, False, "the file is not UTF-8 text")
    return FileText(uri, True, text, None, False)


async def read_file_texts(workspace: Workspace, files: Sequence[tuple[str, Path]]) -> list[FileText]:
    """`read_file_text` for many files (uri, path), the files on disk read in one trip to a thread."""
    on_disk = [path for uri, path in files if uri not in workspace.text_documents]
    read = dict(zip(on_disk, await asyncio.to_thread(lambda: [_read(p) for p in on_disk]), strict=True))
    out = []
    for uri, path in files:
        doc = workspace.text_documents.get(uri)
        out.append(FileText(uri, True, doc.source, doc.version, False) if doc is not None
                   else _disk_text(uri, *read[path]))
    return out
