"""The dev overlay's NATS and MinIO containers, started here from the real binaries with the command
line, configuration file and environment their manifests give them (only ports and folders are moved
to free loopback ports and temp folders; the pinned MinIO is the commit the image builds, nats-server
is Debian's 2.9 where the image has 2.10). Their probes' paths must answer, and clients must get in
with the generated dev credentials and only with them."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
import urllib3
from minio import Minio
from minio.error import S3Error, ServerError
from servers import ServerProcess, find_minio, find_nats_server, free_port

from deploy_tests.manifests import Obj, Rendered

pytestmark = pytest.mark.timeout(90)


class ManifestServer(ServerProcess):
    def __init__(self, name: str, workdir: Path, argv: list[str], env: dict[str, str], health: str) -> None:
        super().__init__(name, workdir)
        self.argv, self.env, self.health = argv, env, health

    def start(self) -> ManifestServer:
        self._spawn(self.argv, env={"PATH": os.environ.get("PATH", ""), **self.env})
        self._wait_ready(lambda: _get(self.health) == 200)
        return self


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code
    except (urllib.error.URLError, OSError):
        return 0


def _probe_paths(container: Obj) -> set[str]:
    return {container[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe", "livenessProbe")}


def _env(dev: Rendered, workload: str, container: str) -> dict[str, str]:
    return dev.container_env(workload, container, secrets=dev.all_secret_values())


@pytest.fixture
def nats_from_manifest(dev: Rendered, tmp_path: Path) -> Iterator[tuple[ManifestServer, int]]:
    container = dev.container("nats", "nats")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    # The store folder is where the claim is mounted: here, a temp folder.
    config = dev.config_data("nats-config")["nats.conf"]
    assert f"store_dir: {mounts['data']}\n" in config
    config = config.replace(f"store_dir: {mounts['data']}", f"store_dir: {tmp_path / 'data'}")
    (tmp_path / "nats.conf").write_text(config)
    args = [a.replace(mounts["config"], str(tmp_path)) for a in container["args"]]
    client_port, monitor_port = free_port(), free_port()
    # Flags after the configuration file override its ports.
    argv = [find_nats_server(), *args, "-a", "127.0.0.1", "-p", str(client_port), "-m", str(monitor_port)]
    assert container["command"] == ["nats-server"]
    health = f"http://127.0.0.1:{monitor_port}/healthz?js-enabled-only=true"
    server = ManifestServer("nats-server", tmp_path, argv, _env(dev, "nats", "nats"), health).start()
    yield server, client_port
    server.stop()


def test_the_dev_nats_serves_jetstream_to_token_holders_only(
        dev: Rendered, nats_from_manifest: tuple[ManifestServer, int]) -> None:
    server, port = nats_from_manifest
    monitor = server.health.split("/healthz")[0]
    for path in _probe_paths(dev.container("nats", "nats")):
        assert _get(monitor + path) == 200, path
    token = dev.secret_data("codex-sys-nats")["token"]

    async def with_token() -> None:
        nc = await nats.connect(f"nats://127.0.0.1:{port}", token=token, allow_reconnect=False)
        try:
            info = await nc.jetstream().account_info()
            assert info.limits.max_storage != 0
        finally:
            await nc.close()

    asyncio.run(with_token())
    assert "Authorization Violation" in _connect_raw(port, "wrong-token")
    assert "PONG" in _connect_raw(port, token)


def _connect_raw(port: int, token: str) -> str:
    """The NATS handshake by hand (INFO, CONNECT, PING): the server's answer to this token."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"INFO ")
        connect = {"verbose": False, "pedantic": False, "auth_token": token, "protocol": 1}
        sock.sendall(f"CONNECT {json.dumps(connect)}\r\nPING\r\n".encode())
        return reader.readline().decode()


@pytest.fixture
def minio_from_manifest(dev: Rendered, tmp_path: Path) -> Iterator[tuple[ManifestServer, int]]:
    container = dev.container("minio", "minio")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    port = free_port()
    args = []
    for given in container["args"]:
        arg = f"127.0.0.1:{port}" if given == ":9000" else given
        for name, path in mounts.items():
            if arg == path or arg.startswith(path + "/"):
                arg = str(tmp_path / name) + arg[len(path):]
        args.append(arg)
    env = _env(dev, "minio", "minio")
    env["HOME"] = str(tmp_path / "tmp")  # the pod's HOME is its /tmp volume
    (tmp_path / "data").mkdir()
    server = ManifestServer("minio", tmp_path, [find_minio(), *args], env,
                            f"http://127.0.0.1:{port}/minio/health/ready").start()
    yield server, port
    server.stop()


def test_the_dev_minio_starts_from_its_command_line_and_takes_the_generated_keys(
        dev: Rendered, minio_from_manifest: tuple[ManifestServer, int]) -> None:
    _, port = minio_from_manifest
    for path in _probe_paths(dev.container("minio", "minio")):
        assert _get(f"http://127.0.0.1:{port}{path}") == 200, path
    keys = dev.secret_data("codex-sys-s3")
    good = _client(port, keys["access-key"], keys["secret-key"])
    # /minio/health/ready answers before the object layer does: for some milliseconds more, S3 calls get
    # 503 XMinioServerNotInitialized with Retry-After: 60 (which a retrying client would sleep through).
    deadline = time.monotonic() + 30
    while True:
        try:
            good.make_bucket("codex-sys")
            break
        except (S3Error, ServerError) as exc:
            starting = exc.code == "XMinioServerNotInitialized" if isinstance(exc, S3Error) else exc.status_code == 503
            assert starting and time.monotonic() < deadline, exc
            time.sleep(0.05)
    assert [b.name for b in good.list_buckets()] == ["codex-sys"]
    with pytest.raises(S3Error):
        _client(port, keys["access-key"], "not-the-key").list_buckets()


def _client(port: int, access_key: str, secret_key: str) -> Minio:
    """A client that answers at once instead of retrying (and sleeping through a Retry-After)."""
    http = urllib3.PoolManager(retries=urllib3.Retry(total=0, respect_retry_after_header=False))
    return Minio(f"127.0.0.1:{port}", access_key=access_key, secret_key=secret_key, secure=False, http_client=http)
