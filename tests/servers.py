"""Real NATS (JetStream) and MinIO servers for tests and benchmarks, started on free ports in temp dirs.

`scripts/install_system_deps.sh` installs `nats-server` (Debian) and `scripts/build_minio.sh` builds
`minio`; `find_minio()` looks where that script puts it. Each server can be stopped (gracefully or with
SIGKILL) and started again on the same port with the same data, which is what the fault tests do.
The benchmarks import this module too (`tests.servers`), so it depends on nothing of pytest.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

START_TIMEOUT_S = 30.0


class ServerError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def find_nats_server() -> str:
    found = shutil.which("nats-server")
    if found is None:
        raise ServerError("nats-server is not installed; run scripts/install_system_deps.sh (Debian: nats-server)")
    return found


def find_minio() -> str:
    explicit = os.environ.get("CODEX_SYS_MINIO_BIN")
    if explicit:
        return explicit
    gopath = os.environ.get("GOPATH") or str(Path.home() / "go")
    candidate = Path(gopath) / "bin" / "minio"
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("minio")
    if found is None:
        raise ServerError("minio is not built; run scripts/build_minio.sh")
    return found


class ServerProcess:
    """A server process with its output in a log file."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          env=env, start_new_session=True)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise ServerError(f"{self.name} is not running")
        return self._proc.pid

    def _wait_ready(self, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise ServerError(f"{self.name} exited with {self._proc.returncode}; see {self.log_path}:\n"
                                  f"{self.log_tail()}")
            if ready():
                return
            time.sleep(0.02)
        raise ServerError(f"{self.name} not ready after {START_TIMEOUT_S:g} s; see {self.log_path}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def start(self) -> ServerProcess:
        raise NotImplementedError

    def restart(self, *, kill: bool = False, down_s: float = 0.0) -> None:
        """Stop (SIGTERM, or SIGKILL with `kill`), stay down `down_s`, start again: same port, same data."""
        self.stop(kill=kill)
        time.sleep(down_s)
        # Readiness is read from the log: keep the earlier runs' lines in another file.
        with self.log_path.with_suffix(".log.1").open("ab") as old:
            old.write(self.log_path.read_bytes())
        self.log_path.write_bytes(b"")
        self.start()

    def stop(self, *, kill: bool = False) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


class NatsServer(ServerProcess):
    """`nats-server -js` on a free loopback port, its JetStream store under `workdir`."""

    def __init__(self, workdir: Path) -> None:
        super().__init__("nats-server", workdir)
        self.port = free_port()
        self.store = workdir / "jetstream"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        self.store.mkdir(parents=True, exist_ok=True)
        self._spawn([find_nats_server(), "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store),
                     "--http_port", "0"])
        self._wait_ready(lambda: _port_open(self.port) and "Server is ready" in self.log_tail(200))
        return self



class MinioServer(ServerProcess):
    """`minio server` on a free loopback port with random root credentials, its data under `workdir`."""

    def __init__(self, workdir: Path) -> None:
        super().__init__("minio", workdir)
        self.port = free_port()
        self.data = workdir / "data"
        self.access_key = "codex" + secrets.token_hex(4)
        self.secret_key = secrets.token_hex(16)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def _live(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/minio/health/ready", timeout=0.5) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def start(self) -> MinioServer:
        self.data.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "MINIO_ROOT_USER": self.access_key, "MINIO_ROOT_PASSWORD": self.secret_key,
               "MINIO_BROWSER": "off", "MINIO_UPDATE": "off", "MINIO_CI_CD": "1"}
        self._spawn([find_minio(), "server", str(self.data), "--address", self.endpoint, "--quiet"], env=env)
        self._wait_ready(self._live)
        return self
