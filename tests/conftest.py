"""Fixtures for every test folder."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A private folder with a short path: unix socket paths (runner, gateway, Neovim) are limited to 107
    bytes, and pytest's tmp_path can be longer."""
    path = Path(tempfile.mkdtemp(prefix="cx-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
