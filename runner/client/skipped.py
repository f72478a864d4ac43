"""What a snapshot left out that the user might expect in it, and why (ignored files are not listed)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum

__all__ = ["SkipReason", "SkippedFile", "display_path"]


class SkipReason(Enum):
    SPECIAL_FILE = "special file"
    SYMLINK_OUTSIDE = "symbolic link out of the workspace"
    BAD_NAME = "unsupported name"
    UNREADABLE = "unreadable"
    CHANGED = "changed during the snapshot"
    OVERLAY_CONFLICT = "unsaved buffer conflicts with the workspace"


@dataclass(frozen=True, slots=True)
class SkippedFile:
    path: str  # workspace-relative, as `display_path` shows it
    reason: SkipReason
    detail: str  # a sentence for a person

    def __str__(self) -> str:
        return f"{self.path}: {self.detail}"


def display_path(path: str) -> str:
    """A path as a person should see it: bytes that are not UTF-8 as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")
