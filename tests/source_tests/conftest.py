"""Fixtures of the source tests: one git daemon and one git http-backend (with Basic auth) per session,
serving sample repositories, and an embedded BlobStore per test."""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from git_servers import GitDaemon, GitHttpServer, SampleRepo, make_repo

from runner.adapters.embedded import FsBlobStore
from runner.sources.settings import SourceSettings

HTTP_USER = "alice"
HTTP_SECRET = "s3cret-token-9f8e7d6c"
REPO = Path(__file__).resolve().parents[2]


def calc_files() -> dict[str, bytes]:
    """The example project the scripted scenario `demo-fix-calc` fixes."""
    folder = REPO / "examples" / "calc"
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@dataclass
class GitHosts:
    base: Path
    repo: SampleRepo  # small, with branches and tags
    calc: SampleRepo  # examples/calc
    big: SampleRepo  # ~3 MiB of incompressible data
    daemon: GitDaemon
    http: GitHttpServer


@pytest.fixture(scope="session")
def git_hosts() -> Iterator[GitHosts]:
    base = Path(tempfile.mkdtemp(prefix="cx-git-"))
    repos = base / "repos"
    repo = make_repo(repos, "repo.git", files={"README.md": b"# sample\n", "src/app.py": b"print('hi')\n",
                                               "bin/run.sh": b"#!/bin/sh\necho run\n", "docs/link": b""},
                     executables=("bin/run.sh",))
    calc = make_repo(repos, "calc.git", files=calc_files())
    big = make_repo(repos, "big.git", files={"blob.bin": _random(3 << 20)})
    daemon = GitDaemon(base, repos).start()
    http = GitHttpServer(repos, auth=(HTTP_USER, HTTP_SECRET)).start()
    yield GitHosts(base, repo, calc, big, daemon, http)
    http.stop()
    daemon.stop()
    shutil.rmtree(base, ignore_errors=True)


def _random(size: int) -> bytes:
    return random.Random(7).randbytes(size)


@pytest.fixture
def settings() -> SourceSettings:
    return SourceSettings(check_timeout_s=10, clone_timeout_s=30)


@pytest.fixture
async def blobs(tmp_path: Path) -> AsyncIterator[FsBlobStore]:
    async with FsBlobStore(tmp_path / "blobs", 64 << 20) as store:
        yield store


# The end-to-end fixtures (the real CLI against an embedded or a NATS + MinIO runner), shared with tests/e2e.
from e2e.conftest import codex_factory, deployment, provider_factory  # noqa: E402, F401
