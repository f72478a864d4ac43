"""Fixtures for the snapshotter's tests: real folders, and real git to compare with."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from client_helpers import Git


@pytest.fixture
def git_env(tmp_path_factory: pytest.TempPathFactory) -> Mapping[str, str]:
    """An environment in which git reads no configuration of the machine or the user (no global
    excludes file), so that it answers by the repository's own rules only."""
    home = tmp_path_factory.mktemp("git-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": os.devnull, "LC_ALL": "C"})
    return env


@pytest.fixture
def git(git_env: Mapping[str, str]) -> Git:
    return Git(git_env)


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temporary folder that other users can enter (pytest's own is private to its user)."""
    path = Path(tempfile.mkdtemp(prefix="codex-sys-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for folder, dirs, _ in os.walk(path):
            for d in dirs:
                os.chmod(os.path.join(folder, d), 0o755)
        shutil.rmtree(path, ignore_errors=True)
