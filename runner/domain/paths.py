"""Validation of workspace-relative paths that arrive from outside (manifests, artifact names).

A path is accepted only in its one canonical form: relative, '/'-separated, no empty, '.' or '..'
segments, no NUL or backslash, at most `MAX_PATH_BYTES` bytes. Symlink targets must stay inside the
workspace when resolved from the link's own folder.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping

from runner.domain.errors import InvalidArgument
from runner.domain.models import FileKind, Manifest

MAX_PATH_BYTES = 4096
MAX_SEGMENT_BYTES = 255


def check_relative_path(path: str, what: str = "path") -> str:
    if not path:
        raise InvalidArgument(f"{what} is empty")
    if "\x00" in path or "\\" in path:
        raise InvalidArgument(f"{what} {path[:200]!r} contains a NUL byte or a backslash")
    if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise InvalidArgument(f"{what} {path[:80]!r}... is longer than {MAX_PATH_BYTES} bytes")
    if path.startswith("/"):
        raise InvalidArgument(f"{what} {path[:200]!r} is absolute; paths must be relative to the workspace")
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidArgument(
                f"{what} {path[:200]!r} is not canonical (empty, '.' or '..' segment); "
                "paths must stay inside the workspace")
        if len(segment.encode("utf-8", "surrogateescape")) > MAX_SEGMENT_BYTES:
            raise InvalidArgument(f"{what} {path[:200]!r} has a segment longer than {MAX_SEGMENT_BYTES} bytes")
    return path


MAX_SYMLINK_HOPS = 40


def check_symlink_targets(targets: Mapping[str, str]) -> None:
    """Refuse any symlink that resolves outside the workspace.

    Resolution follows the kernel, not string normalisation: `a/..` after a symlink `a` goes up from
    where `a` points, so every link in `targets` (link path -> target) is followed as the kernel would.
    """
    for link_path, target in targets.items():
        if not target or "\x00" in target:
            raise InvalidArgument(f"symlink {link_path!r} has an empty or NUL-containing target")
        if target.startswith("/"):
            raise InvalidArgument(
                f"symlink {link_path!r} points to absolute path {target[:200]!r}, outside the workspace")
    for link_path, target in targets.items():
        _resolve(link_path, target, targets)


def _resolve(link_path: str, target: str, targets: Mapping[str, str]) -> None:
    hops = 0
    # Components still to walk, and the resolved folder so far (as a list of segments under the root).
    pending = [*target.split("/")]
    here = link_path.split("/")[:-1]
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not here:
                raise InvalidArgument(f"symlink {link_path!r} points to {target[:200]!r}, outside the workspace")
            here.pop()
            continue
        candidate = "/".join([*here, part])
        inner = targets.get(candidate)
        if inner is None:
            here.append(part)
            continue
        hops += 1
        if hops > MAX_SYMLINK_HOPS:
            raise InvalidArgument(f"symlink {link_path!r} takes more than {MAX_SYMLINK_HOPS} links to resolve")
        pending = [*inner.split("/"), *pending]


def validate_manifest(manifest: Manifest, max_files: int, max_total_bytes: int) -> None:
    """Raise `InvalidArgument` naming the first bad entry. Symlink targets are checked by the caller
    once their blobs are readable (`check_symlink_target`)."""
    if len(manifest.entries) > max_files:
        raise InvalidArgument(f"snapshot has {len(manifest.entries)} files; the limit is {max_files}")
    total = manifest.total_size
    if total > max_total_bytes:
        raise InvalidArgument(f"snapshot is {total} bytes; the limit is {max_total_bytes}")
    seen: set[str] = set()
    dirs: set[str] = set()
    for entry in manifest.entries:
        check_relative_path(entry.path, "manifest path")
        if entry.path in seen:
            raise InvalidArgument(f"manifest path {entry.path!r} appears twice")
        seen.add(entry.path)
        parent = posixpath.dirname(entry.path)
        while parent and parent not in dirs:
            dirs.add(parent)
            parent = posixpath.dirname(parent)
        if entry.kind is FileKind.SYMLINK and entry.digest.size > MAX_PATH_BYTES:
            raise InvalidArgument(f"symlink {entry.path!r} has a target longer than {MAX_PATH_BYTES} bytes")
    clash = seen & dirs
    if clash:
        raise InvalidArgument(f"manifest path {sorted(clash)[0]!r} is both a file and a folder")


def check_symlink_target(link_path: str, target: str) -> None:
    """One symlink on its own (no other links to follow)."""
    check_symlink_targets({link_path: target})
