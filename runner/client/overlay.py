"""Overlays: editor buffers not saved yet, laid over the walked workspace.

The language server sends what the user sees, so an overlay (path -> bytes) wins over the file on disk:
it replaces a file's contents (an executable stays executable; a symbolic link becomes a file with the
buffer's contents, as the editor would write it), or adds a file that is not on disk yet. It applies even
where the ignore rules would leave the file out, since the user has it open.

An overlay that would make a path both a file and a folder (a buffer `a/b` where `a` is a file, or a
buffer `a` where `a/...` exists), or that lies inside `.git`, is left out and reported, rather than
failing the whole snapshot over one buffer. Paths themselves are checked strictly (`check_relative_path`):
a bad one is the caller's bug, so it raises.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator, Mapping

from runner.client.records import trusted_entry
from runner.client.skipped import SkipReason
from runner.client.walk import Walk
from runner.domain.errors import InvalidArgument
from runner.domain.models import Digest, FileKind
from runner.domain.paths import check_relative_path

__all__ = ["apply_overlays", "check_overlays"]


def check_overlays(overlays: Mapping[str, bytes]) -> dict[str, bytes]:
    """Validate overlay paths and contents (InvalidArgument) and return a copy."""
    for path, content in overlays.items():
        check_relative_path(path, "overlay path")
        if not isinstance(content, bytes):
            raise InvalidArgument(f"overlay {path!r} is {type(content).__name__}, not bytes")
    return dict(overlays)


def apply_overlays(walk: Walk, overlays: Mapping[str, bytes]) -> dict[str, bytes]:
    """Lay `overlays` over the walk's results; the overlays applied (path -> bytes)."""
    applied: dict[str, bytes] = {}
    if not overlays:
        return applied
    done = {e.path: i for i, e in enumerate(walk.entries)}
    pending = {p[0]: i for i, p in enumerate(walk.pending)}
    replaced_pending: set[int] = set()
    folders: set[str] | None = None
    for path, content in sorted(overlays.items()):
        walk.skipped.pop(path, None)  # e.g. unreadable on disk: the buffer is what counts
        if ".git" in path.split("/"):
            walk.skip(path, SkipReason.OVERLAY_CONFLICT, "unsaved changes left out: the file is inside .git")
            continue
        digest = Digest.of(content)
        if path in done or path in pending:
            if path in done:
                i = done[path]
                old_kind, old_size = walk.entries[i].kind, walk.entries[i].digest.size
            else:
                i = pending[path]
                old_kind, old_size = walk.pending[i][1], walk.pending[i][3].st_size
                replaced_pending.add(i)
            kind = FileKind.EXECUTABLE if old_kind is FileKind.EXECUTABLE else FileKind.FILE
            entry = trusted_entry(path, kind, digest)
            if path in done:
                walk.entries[i] = entry
            else:
                done[path] = len(walk.entries)
                walk.entries.append(entry)
            walk.total_bytes += len(content) - old_size
        else:
            parent = next((p for p in _parents(path) if p in done or p in pending), None)
            if parent is not None:
                walk.skip(path, SkipReason.OVERLAY_CONFLICT,
                          f"unsaved changes left out: {parent} is a file in the workspace, not a folder")
                continue
            if folders is None:
                folders = _folders_of([*done, *pending])
            if path in folders:
                walk.skip(path, SkipReason.OVERLAY_CONFLICT,
                          "unsaved changes left out: it is a folder in the workspace")
                continue
            done[path] = len(walk.entries)
            walk.entries.append(trusted_entry(path, FileKind.FILE, digest))
            folders.update(_parents(path))
            walk.total_bytes += len(content)
        applied[path] = content
    if replaced_pending:
        walk.pending = [p for i, p in enumerate(walk.pending) if i not in replaced_pending]
    walk.too_big = [(p, size) for p, size in walk.too_big if p not in applied]
    walk.too_big.extend((p, len(c)) for p, c in applied.items() if len(c) > walk.max_file_bytes)
    return applied


def _parents(path: str) -> Iterator[str]:
    parent = posixpath.dirname(path)
    while parent:
        yield parent
        parent = posixpath.dirname(parent)


def _folders_of(paths: Iterable[str]) -> set[str]:
    folders: set[str] = set()
    for path in paths:
        for parent in _parents(path):
            if parent in folders:
                break
            folders.add(parent)
    return folders
