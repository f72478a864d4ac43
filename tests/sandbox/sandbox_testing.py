"""Helpers for the sandbox tests: a real gateway responder, jobs, and finding sandbox processes."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.wire import AgentTaskSpec
from runner.adapters.local_executor import AgentCommand, LocalExecutor, base_interpreter
from runner.domain.models import EMPTY_DIGEST, Manifest, TaskLimits, TaskRecord
from runner.ports import SandboxJob, SandboxOutcome

# The `make_executor` fixture (conftest.py): keyword arguments of LocalExecutor, started, closed after the test.
MakeExecutor = Callable[..., Awaitable[LocalExecutor]]

AGENTS_DIR = Path(__file__).parent / "agents"
AGENTS_IN_SANDBOX = "/opt/test-agents"
TENANT = "tenant-a"


def probe_command(marker: str) -> AgentCommand:
    """The probe agent (agents/probe_agent.py) on the host's base interpreter, tagged with `marker`."""
    return AgentCommand(
        argv=(str(base_interpreter()), "-S", f"{AGENTS_IN_SANDBOX}/probe_agent.py", marker),
        ro_binds=((AGENTS_DIR, AGENTS_IN_SANDBOX),))


def make_job(instruction: str, manifest: Manifest | None = None, limits: TaskLimits | None = None,
             tenant: str = TENANT) -> SandboxJob:
    task_id = f"task-{uuid.uuid4().hex[:12]}"
    spec = AgentTaskSpec(task_id=task_id, token="per-task-token", instruction=instruction, model="test-model")
    record = TaskRecord(id=task_id, tenant=tenant, instruction=instruction, model="test-model",
                        manifest_digest=EMPTY_DIGEST, limits=limits or TaskLimits())
    return SandboxJob(task=record, attempt=1, manifest=manifest or Manifest(()), agent_spec_json=spec.to_json())


def results_of(outcome: SandboxOutcome, allow_error: bool = False) -> dict[str, Any]:
    """What the probe agent reported; its own failure fails the test, with its traceback."""
    assert outcome.result_json is not None, f"no result.json; detail: {outcome.detail}"
    decoded = json.loads(outcome.result_json)
    assert isinstance(decoded, dict)
    if not allow_error:
        assert "error" not in decoded, decoded["error"]
    return decoded


# ---- the gateway ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GatewayRequest:
    first_byte_at: float  # time.monotonic() when the first byte arrived
    head: bytes
    body: bytes


class Gateway:
    """A real HTTP/1.1 responder on a host unix socket, standing in for the runner's gateway.

    It runs in its own threads so that arrival times do not depend on the test's event loop.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.requests: list[GatewayRequest] = []
        self._changed = threading.Condition()
        self._server: socketserver.ThreadingUnixStreamServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        gateway = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                conn: socket.socket = self.request
                first = conn.recv(65536)
                if not first:
                    return
                at = time.monotonic()
                data = first
                while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(body) < length and (chunk := conn.recv(65536)):
                    body += chunk
                reply = json.dumps({"ok": True, "seen": len(gateway.requests) + 1}).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(reply)).encode() + b"\r\nConnection: close\r\n\r\n" + reply)
                with gateway._changed:
                    gateway.requests.append(GatewayRequest(at, head, body))
                    gateway._changed.notify_all()

        self.path.unlink(missing_ok=True)
        server = socketserver.ThreadingUnixStreamServer(str(self.path), Handler)
        server.daemon_threads = True
        os.chmod(self.path, 0o600)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="test-gateway", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.path.unlink(missing_ok=True)

    def restart(self) -> None:
        """A new socket at the same path (a new inode), as when the runner's gateway restarts."""
        self.stop()
        self.start()

    def wait_requests(self, count: int, timeout: float) -> list[GatewayRequest]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.requests) >= count, timeout=timeout)
            return list(self.requests)


class TcpListener:
    """A TCP server on the host's loopback that records every connection it accepts."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="test-tcp", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


# ---- processes on the host -----------------------------------------------------------------------


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _pid_ns(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return ""


def sandbox_processes(marker: str) -> set[int]:
    """Host pids of every process of the sandboxes tagged `marker`: the ones whose command line carries
    it (bubblewrap, its init, the agent) and everything else in their pid namespaces."""
    own_ns = _pid_ns(os.getpid())
    tagged: set[int] = set()
    all_pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    for pid in all_pids:
        if marker.encode() in _read(f"/proc/{pid}/cmdline"):
            tagged.add(pid)
    namespaces = {ns for ns in (_pid_ns(p) for p in tagged) if ns and ns != own_ns}
    return tagged | {p for p in all_pids if _pid_ns(p) in namespaces}


def alive(pids: set[int]) -> set[int]:
    """The pids that still exist and are not zombies."""
    left = set()
    for pid in pids:
        stat = _read(f"/proc/{pid}/stat")
        if stat and stat.rsplit(b")", 1)[-1].split()[0] != b"Z":
            left.add(pid)
    return left


def sandbox_cgroups() -> list[str]:
    """Cgroups of this process's sandboxes still present, in any hierarchy."""
    found = []
    for line in _read("/proc/self/cgroup").decode().splitlines():
        _, controllers, path = line.split(":", 2)
        name = controllers.split(",")[0] if controllers else "unified"
        parent = Path("/sys/fs/cgroup") / name.removeprefix("name=") / path.lstrip("/") / f"codex-sys.{os.getpid()}"
        if parent.is_dir():
            found += [str(p) for p in parent.iterdir() if p.is_dir() and p.name.startswith("sb-")]
    return found


def outer_bwrap(pids: set[int]) -> int:
    """The one process of the set started by this process: bubblewrap outside the sandbox."""
    (pid,) = [p for p in pids if _read(f"/proc/{p}/stat").rsplit(b")", 1)[-1].split()[1] == str(os.getpid()).encode()]
    return pid


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until `check()` holds (polling: what is awaited here has no event to wait on)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def process_group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
