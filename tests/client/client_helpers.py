"""Helpers for the snapshotter's tests (a module of its own: conftest is for fixtures)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from runner.client.snapshot import Snapshot
from runner.domain.models import FileKind


class Git:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self.exe = shutil.which("git")
        if self.exe is None:
            pytest.skip("git is not installed")

    def __call__(self, cwd: Path, *args: str) -> bytes:
        assert self.exe is not None
        return subprocess.run([self.exe, *args], cwd=cwd, env=self.env, check=True, capture_output=True,
                              timeout=30).stdout

    def init(self, root: Path) -> None:
        self(root, "init", "-q", ".")

    def untracked(self, cwd: Path, *extra: str) -> set[str]:
        """What `git ls-files --others --exclude-standard` lists from `cwd` (relative to it)."""
        out = self(cwd, "ls-files", "--others", "--exclude-standard", "-z", *extra)
        return {os.fsdecode(p) for p in out.split(b"\0") if p}


def write_tree(root: Path, files: Mapping[str, bytes | str]) -> None:
    """Create files (parents included); a path ending in '/' makes an empty folder."""
    for rel, content in files.items():
        path = root / rel
        if rel.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)


def paths_of(snapshot: Snapshot) -> list[str]:
    return [e.path for e in snapshot.manifest.entries]


def kinds_of(snapshot: Snapshot) -> dict[str, FileKind]:
    return {e.path: e.kind for e in snapshot.manifest.entries}


def age(root: Path, seconds: float = 10.0) -> None:
    """Nothing to do with content: push every file's mtime into the past (ctime cannot be moved)."""
    when = int((os.path.getmtime(root) - seconds) * 1e9)
    for folder, _, names in os.walk(root):
        for name in names:
            os.utime(os.path.join(folder, name), ns=(when, when), follow_symlinks=False)
