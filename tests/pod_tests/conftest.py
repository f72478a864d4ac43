"""Fixtures of the agent pod's tests: a MinIO bucket per test on the session's server, the pod's two
programs run as real subprocesses, and a small real HTTP server for what MinIO will not serve (hostile
packs, bodies cut short, 5xx answers). The folder is not named `pod`: `tests/` is on `sys.path`."""

from __future__ import annotations

import asyncio
import http.server
import os
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from servers import MinioServer

from runner.adapters.minio import MinioBlobStore, S3Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
MAX_BLOB_SIZE = 64 << 20


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def program_env(tmp: Path, **extra: str) -> dict[str, str]:
    """What a container gives its programs: no proxy, a private TMPDIR, the repository importable."""
    tmp.mkdir(parents=True, exist_ok=True)
    return {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO_ROOT), "HOME": str(tmp), "TMPDIR": str(tmp),
            "LC_ALL": "C.UTF-8", **extra}


async def run_module(module: str, *args: str, env: dict[str, str], timeout_s: float = 60.0) -> Ran:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", module, *args, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                env=env, cwd=REPO_ROOT)
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Ran(proc.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace"))


@pytest.fixture
async def store(minio_server: MinioServer, tmp_path: Path) -> AsyncIterator[MinioBlobStore]:
    settings = S3Settings(endpoint=minio_server.endpoint, access_key=minio_server.access_key,
                          secret_key=minio_server.secret_key, bucket=f"p{uuid.uuid4().hex[:12]}")
    async with await MinioBlobStore.open(settings, max_blob_size=MAX_BLOB_SIZE, spool_dir=tmp_path) as opened:
        yield opened


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    # "exact": Content-Length and the body; "cut": Content-Length of the body, then half of it and the
    # connection closed; "unsized": no Content-Length, the body, then the connection closed.
    mode: str = "exact"
    failures: int = 0  # answer 503 this many times first


@dataclass
class FakeStorage:
    """An HTTP server on loopback answering GETs from `routes` and recording PUT bodies in `puts`."""

    base: str
    routes: dict[str, Route] = field(default_factory=dict)
    puts: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def url(self, path: str, query: str = "X-Amz-Signature=feedface0123") -> str:
        return f"{self.base}{path}?{query}"


def _handler(storage: FakeStorage) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _route(self) -> Route | None:
            path = self.path.split("?", 1)[0]
            storage.requests.append(f"{self.command} {path}")
            route = storage.routes.get(path)
            if route is None:
                self.send_error(404)
                return None
            if route.failures:
                route.failures -= 1
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            return route

        def do_GET(self) -> None:
            route = self._route()
            if route is None:
                return
            self.send_response(route.status)
            if route.mode == "unsized":
                self.send_header("Connection", "close")
            else:
                self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            if route.mode == "cut":
                self.wfile.write(route.body[: len(route.body) // 2])
                self.close_connection = True
                return
            self.wfile.write(route.body)
            if route.mode == "unsized":
                self.close_connection = True

        def do_PUT(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            data = self.rfile.read(length)
            route = self._route()
            if route is None:
                return
            storage.puts[self.path.split("?", 1)[0]] = data
            self.send_response(route.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


@pytest.fixture
def storage() -> Iterator[FakeStorage]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    fake = FakeStorage(f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = _handler(fake)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="fake-storage", daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
    thread.join(5)
