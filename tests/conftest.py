"""Fixtures for every test folder."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from servers import MinioServer, NatsServer


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A private folder with a short path: unix socket paths (runner, gateway, Neovim) are limited to 107
    bytes, and pytest's tmp_path can be longer."""
    path = Path(tempfile.mkdtemp(prefix="cx-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


# ---- real infrastructure: one NATS and one MinIO per test session (each test uses its own names) ------


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    """A `nats-server -js` shared by the session. Tests must not stop it: `nats_server_factory` gives
    a private one for fault tests."""
    workdir = Path(tempfile.mkdtemp(prefix="cx-nats-", dir="/tmp"))
    server = NatsServer(workdir).start()
    yield server
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def minio_server() -> Iterator[MinioServer]:
    """A MinIO server shared by the session; each test makes its own bucket."""
    workdir = Path(tempfile.mkdtemp(prefix="cx-minio-", dir="/tmp"))
    server = MinioServer(workdir).start()
    yield server
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def nats_server_factory(short_tmp: Path) -> Iterator[Callable[[], NatsServer]]:
    """Private NATS servers a test may stop, kill and restart."""
    started: list[NatsServer] = []

    def make() -> NatsServer:
        workdir = short_tmp / f"nats{len(started)}"
        workdir.mkdir()
        server = NatsServer(workdir).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop(kill=True)


@pytest.fixture
def minio_server_factory(short_tmp: Path) -> Iterator[Callable[[], MinioServer]]:
    """Private MinIO servers a test may stop and restart."""
    started: list[MinioServer] = []

    def make() -> MinioServer:
        workdir = short_tmp / f"minio{len(started)}"
        workdir.mkdir()
        server = MinioServer(workdir).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop(kill=True)
