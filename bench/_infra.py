"""What the distributed benchmarks share: a real nats-server and MinIO, runner and worker processes on
them (the end-to-end suite's `Distributed`), the embedded runner as a process with a TCP port, and the
CPU time each process spends.

The servers and deployments come from the test support code (`tests/servers.py`,
`tests/e2e/deployments.py`), which imports its modules as top-level ones; `tests/` goes on `sys.path`
here, once, so the benchmarks run the very processes the end-to-end tests run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))

from e2e.deployments import Distributed, Member  # noqa: E402
from servers import MinioServer, NatsServer, free_port  # noqa: E402

from runner.client.connection import is_serving  # noqa: E402

CODEX = str(Path(sys.executable).parent / "codex-sys")
TENANT = "bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def scratch(prefix: str = "cx-bench-") -> Iterator[Path]:
    """A folder under /tmp (short: unix socket paths live in it), removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def infrastructure(root: Path) -> Iterator[tuple[NatsServer, MinioServer]]:
    """nats-server with JetStream and MinIO on free loopback ports, data under `root`."""
    (root / "nats").mkdir(parents=True)
    (root / "minio").mkdir(parents=True)
    nats = NatsServer(root / "nats").start()
    try:
        minio = MinioServer(root / "minio").start()
        try:
            yield nats, minio
        finally:
            minio.stop()
    finally:
        nats.stop()


def base_env(**extra: str) -> dict[str, str]:
    """The environment of a runner or worker process: none of the caller's provider or codex-sys settings
    (each worker then runs the bundled scripted model in process), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CODEX_SYS_"))}
    env.update(CODEX_SYS_LOG_LEVEL="WARNING", GRPC_ENABLE_FORK_SUPPORT="false")
    env.update(extra)
    return env


def distributed(root: Path, nats: NatsServer, minio: MinioServer, env: dict[str, str]) -> Distributed:
    """A deployment with its own NATS prefix and bucket, and the production ack wait and heartbeat."""
    root.mkdir(parents=True)
    return Distributed(CODEX, root, nats, minio, env, tenant=TENANT, ack_wait_s=60.0, heartbeat_s=10.0)


@dataclass
class Embedded:
    """`codex-sys runner serve` with its own worker: SQLite, a local CAS, TCP with a bearer token."""

    member: Member
    token: str

    @property
    def address(self) -> str:
        return self.member.address


@contextlib.asynccontextmanager
async def embedded_runner(root: Path, env: dict[str, str], *, slots: int, pool: int,
                          cpu: CpuAccounting | None = None, cpu_name: str = "runner + worker",
                          ) -> AsyncIterator[Embedded]:
    home = root / "embedded"
    home.mkdir(parents=True, mode=0o700)
    token = secrets.token_hex(16)
    (root / "tokens").write_text(f"{token} {TENANT}\n")
    port = free_port()
    log = (root / "embedded.log").open("ab")
    try:
        proc = await asyncio.create_subprocess_exec(
            CODEX, "runner", "serve", "--listen", f"127.0.0.1:{port}", "--token-file", str(root / "tokens"),
            "--workers", str(slots), "--warm-pool", str(pool), env={**env, "CODEX_SYS_HOME": str(home)},
            stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log)
    finally:
        log.close()
    if cpu is not None:
        cpu.add(cpu_name, proc.pid)
    member = Member("runner", home, proc, port)  # its log is next to its home, as `Distributed` keeps them
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while not await is_serving(member.address, timeout_s=0.5):
            if not member.alive or asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"the embedded runner did not start:\n{member.log()[-3000:]}")
            await asyncio.sleep(0.05)
        yield Embedded(member, token)
    finally:
        await member.stop(timeout_s=30)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (its threads included, its children not)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command name, the state is field 3; utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class CpuAccounting:
    """CPU seconds per named process, counted with everything it starts (a worker's sandboxes, which
    come and go): each process goes into a cgroup v1 `cpuacct` group of its own, which its children
    inherit. The executor places sandboxes in the memory, pids and cpu hierarchies only, so this one is
    free. Where no such group can be made (no cgroup v1 cpuacct, not root), only the processes' own
    time is counted (`exact` is False)."""

    ROOT = Path("/sys/fs/cgroup/cpuacct")

    def __init__(self) -> None:
        self._base: Path | None = self.ROOT / f"cx-bench-{os.getpid()}"
        self._pids: dict[str, int] = {}
        try:
            self._base.mkdir()
        except OSError:
            self._base = None

    @property
    def exact(self) -> bool:
        return self._base is not None

    def add(self, name: str, pid: int) -> None:
        """Count `pid` (and, from now on, what it starts) as `name`. Call it right after the spawn."""
        self._pids[name] = pid
        if self._base is not None:
            group = self._base / name.replace("/", "-").replace(" ", "-")
            group.mkdir(exist_ok=True)
            with contextlib.suppress(OSError):  # the process may have exited already
                (group / "cgroup.procs").write_text(str(pid))

    def own(self, name: str) -> float:
        """The process's own CPU seconds (without its children)."""
        return cpu_seconds(self._pids[name])

    def total(self, name: str) -> float:
        """The CPU seconds of `name` and everything it started."""
        if self._base is None:
            return self.own(name)
        group = self._base / name.replace("/", "-").replace(" ", "-")
        return int((group / "cpuacct.usage").read_text()) / 1e9

    def names(self) -> list[str]:
        return list(self._pids)

    def close(self) -> None:
        """Move whatever is left back to the root group and remove the groups."""
        if self._base is None:
            return
        for group in [p for p in self._base.iterdir() if p.is_dir()]:
            with contextlib.suppress(OSError):
                for pid in (group / "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):
                        (self.ROOT / "cgroup.procs").write_text(pid)
            with contextlib.suppress(OSError):
                group.rmdir()
        with contextlib.suppress(OSError):
            self._base.rmdir()


def system_cpu() -> tuple[float, float]:
    """(busy, total) core-seconds of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / CLOCK_TICKS, sum(values) / CLOCK_TICKS


def load_note(sample_s: float = 2.0) -> str:
    """How busy the machine is (sampled for `sample_s`) and its load average: figures taken while
    something else ran are not worth keeping."""
    busy0, total0 = system_cpu()
    time.sleep(sample_s)
    busy1, total1 = system_cpu()
    one, five, _ = os.getloadavg()
    return (f"{os.cpu_count()} cores, {(busy1 - busy0) / max(1e-9, total1 - total0) * 100:.0f}% busy over "
            f"{sample_s:g} s, load average {one:.2f} (1 min) / {five:.2f} (5 min)")
