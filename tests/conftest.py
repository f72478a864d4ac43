"""Fixtures for every test folder."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from kube_cluster import ControlPlane
from servers import MinioServer, NatsServer, ServerProcess

S = TypeVar("S", bound=ServerProcess)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A private folder with a short path: unix socket paths (runner, gateway, Neovim) are limited to 107
    bytes, and pytest's tmp_path can be longer."""
    path = Path(tempfile.mkdtemp(prefix="cx-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


# ---- real infrastructure: one NATS and one MinIO per test session (each test uses its own names) ------


def _session_server(kind: type[S], prefix: str) -> Iterator[S]:
    workdir = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    server = kind(workdir)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def _private_servers(kind: type[S], folder: Path) -> Iterator[Callable[[], S]]:
    started: list[S] = []

    def make() -> S:
        workdir = folder / f"{kind.__name__.lower()}{len(started)}"
        workdir.mkdir()
        server = kind(workdir)
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop(kill=True)


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    """A `nats-server -js` shared by the session. Tests must not stop it: `nats_server_factory` gives
    a private one for fault tests."""
    yield from _session_server(NatsServer, "cx-nats-")


@pytest.fixture(scope="session")
def minio_server() -> Iterator[MinioServer]:
    """A MinIO server shared by the session; each test makes its own bucket."""
    yield from _session_server(MinioServer, "cx-minio-")


@pytest.fixture
def nats_server_factory(short_tmp: Path) -> Iterator[Callable[[], NatsServer]]:
    """Private NATS servers a test may stop, kill and restart."""
    yield from _private_servers(NatsServer, short_tmp)


@pytest.fixture
def minio_server_factory(short_tmp: Path) -> Iterator[Callable[[], MinioServer]]:
    """Private MinIO servers a test may stop and restart."""
    yield from _private_servers(MinioServer, short_tmp)


# ---- a real Kubernetes control plane (tests/kube_cluster.py), one per test session ----------------------


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[ControlPlane]:
    """etcd, kube-apiserver, kube-controller-manager, kube-scheduler and KWOK playing the kubelet of one
    fake node; each test uses its own namespaces. Without the binaries this fails (it never skips) and
    says to run `make kubernetes`."""
    workdir = Path(tempfile.mkdtemp(prefix="cx-kube-", dir="/tmp"))
    cluster = ControlPlane(workdir).start()
    yield cluster
    cluster.stop()
    shutil.rmtree(workdir, ignore_errors=True)
