"""Confining the model's paths to the workspace.

Every path a tool receives comes from the model and is resolved here before anything touches the disk.
A path may be relative to the workspace root or absolute; either way it is resolved the way the kernel
would follow it (symlinks in every component, `..`, repeated slashes) and refused unless the result is
the root itself or lies below it. Resolving the whole path, not only its parents, is what refuses
writing *through* a symlink that points outside, and a dangling symlink whose target is outside.

The sandbox is the real security boundary (a shell command can `cat /etc/passwd` anyway); this check
keeps the file tools honest about their contract and gives the model a clear error instead of a
surprising success somewhere else.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent.errors import ToolError


class PathRefused(ToolError):
    """A path the tools will not touch; the message is meant for the model."""


class Workspace:
    """The workspace root and the rules for paths inside it."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(os.path.realpath(root))

    def resolve(self, user_path: str, *, what: str = "path") -> Path:
        """The real path `user_path` refers to; raises `PathRefused` when it is outside the workspace.

        The returned path has every symlink resolved, so opening it cannot be redirected by a link
        (short of a concurrent change, which only the sandboxed commands could make).
        """
        if not isinstance(user_path, str):
            raise PathRefused(f"{what} must be a string")
        if not user_path.strip():
            raise PathRefused(f"{what} is empty")
        if "\0" in user_path:
            raise PathRefused(f"{what} contains a NUL character")
        joined = self.root / os.path.expanduser(user_path) if user_path.startswith("~") else self.root / user_path
        real = Path(os.path.realpath(joined))
        if not self.contains(real):
            raise PathRefused(
                f"{what} {user_path!r} resolves to {str(real)!r}, which is outside the workspace {str(self.root)!r}; "
                "only files inside the workspace can be used"
            )
        return real

    def contains(self, real_path: Path) -> bool:
        return real_path == self.root or real_path.is_relative_to(self.root)

    def relative(self, real_path: Path) -> str:
        """How to name a resolved path to the model: relative to the root, `.` for the root itself."""
        if real_path == self.root:
            return "."
        try:
            return real_path.relative_to(self.root).as_posix()
        except ValueError:
            return str(real_path)
