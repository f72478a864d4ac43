"""`LocalExecutor`: the embedded `Executor`, one bubblewrap sandbox per task attempt on this machine.

A run, end to end:

1. take a sandbox from the warm pool (started earlier: bubblewrap up, the agent imported and blocked
   reading stdin), or start one now when none is ready;
2. a warm sandbox, started under the executor's ceilings, gets the task's own limits
   (`SandboxLimits.for_task`); one started now had them from the start, and one that cannot take them
   (a memory limit below what it already uses) is replaced by a new one;
3. write the snapshot into its workspace folder (`materialize`): the folder is already bound at
   /workspace, and a bind mount shows files added after it was made;
4. write the task spec line to the agent's stdin: the agent starts working, and the pool starts a
   replacement in the background (not earlier: it would compete with this task's start for the CPU);
5. wait for it to exit, or kill the whole sandbox when the task's wall time (counted from the start of
   `run`, so sandbox start and materialisation included) runs out;
6. collect /output (`collect_outputs`) and the captured stdout+stderr (`agent.log`) into the BlobStore;
7. destroy the sandbox: processes, cgroups, folders. A sandbox never serves a second task.

Cancelling the asyncio task that awaits `run` kills the sandbox at once (no await between the
cancellation and the SIGKILL), waits until it is gone and its folders removed, then lets the
CancelledError propagate. `close` destroys the warm sandboxes and waits for any cleanup in flight.

Isolation (`bwrap_args.py`): no network namespace shared (no interface but the sandbox's own lo), no
host environment (a fixed allow-list), an unprivileged uid with no capabilities, a read-only system,
writable /workspace, /output and /tmp only; the gateway's unix socket is the one way out.
Limits (`limits.py`, `cgroups.py`): memory, processes and CPU bandwidth by cgroup v1 where the host
allows it, rlimits otherwise (plus a process-count watchdog, since RLIMIT_NPROC does not bind a root
runner); CPU seconds, file size and open files by rlimits; wall time here.

A missing gateway socket raises `Unavailable` (temporary: the worker retries later).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import time
from pathlib import Path
from types import TracebackType

from runner.adapters.local_executor.agent_command import AgentCommand, python_installation_binds
from runner.adapters.local_executor.background import Background
from runner.adapters.local_executor.bwrap_args import env_pairs, sandbox_env, write_etc_files
from runner.adapters.local_executor.cgroups import CgroupHost, pid_alive
from runner.adapters.local_executor.limits import OutputLimits, SandboxLimits
from runner.adapters.local_executor.materialize import materialize
from runner.adapters.local_executor.outcome import ExitFacts, describe, exit_code_of
from runner.adapters.local_executor.outputs import collect_outputs, store_file
from runner.adapters.local_executor.pool import WarmPool
from runner.adapters.local_executor.sandbox import SANDBOX_PREFIX, Sandbox, SandboxConfig, force_rmtree
from runner.domain.errors import FailedPrecondition
from runner.ports import BlobStore, SandboxJob, SandboxOutcome
from runner.snapshots.packs import Packs

log = logging.getLogger(__name__)

_LEFTOVER_RE = re.compile(rf"^{re.escape(SANDBOX_PREFIX)}(\d+)-[0-9a-f]+$")
_ETC_DIR = ".etc"


def _find_bwrap() -> str:
    return shutil.which("bwrap") or "/usr/bin/bwrap"


class LocalExecutor:
    """Runs each task attempt in its own bubblewrap sandbox on this machine.

    `blobs` holds the snapshots and receives the outputs; `sandboxes_root` (under CODEX_SYS_HOME) holds
    the per-sandbox folders; `gateway_socket` is the host path of the gateway's unix socket, bound into
    every sandbox at /run/codex/gateway.sock. `agent` is what runs inside (default: `python -S -m agent`
    on the host's base interpreter). `pool_size` sandboxes are kept warm. `limits` are the ceilings a
    task's own limits are clamped to; `output_limits` bound what comes back. `use_cgroups=False` forces
    the rlimit fallback.
    """

    def __init__(
        self,
        blobs: BlobStore,
        sandboxes_root: Path,
        gateway_socket: Path,
        *,
        agent: AgentCommand | None = None,
        pool_size: int = 2,
        bwrap: str | None = None,
        limits: SandboxLimits | None = None,
        output_limits: OutputLimits | None = None,
        use_cgroups: bool = True,
        sandbox_uid: int = 1000,
        sandbox_gid: int = 1000,
        packs: Packs | None = None,
    ) -> None:
        if pool_size < 0:
            raise ValueError(f"pool_size must be >= 0, got {pool_size}")
        self._blobs = blobs
        # Packed snapshots, when the store keeps them (MinIO): one GET per task instead of one per file.
        self._packs = packs
        self._root = Path(sandboxes_root).absolute()
        self._gateway_socket = Path(gateway_socket).absolute()
        self._agent = agent or AgentCommand.default()
        self._pool_size = pool_size
        self._bwrap = os.path.realpath(bwrap or _find_bwrap())  # compared with /proc/<pid>/exe
        self._limits = limits or SandboxLimits()
        self._output_limits = output_limits or OutputLimits()
        self._use_cgroups = use_cgroups
        self._uid, self._gid = sandbox_uid, sandbox_gid
        self._cgroups: CgroupHost | None = None
        self._pool: WarmPool | None = None
        self._config: SandboxConfig | None = None
        self._bg = Background()
        self._started = False
        self._closed = False
        self._start_lock = asyncio.Lock()

    # ---- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> LocalExecutor:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def start(self) -> None:
        """Prepare the sandboxes root and cgroups, and start filling the warm pool. Called by the
        first `run` if not before; call it early so the first task finds warm sandboxes."""
        async with self._start_lock:
            if self._closed:
                raise FailedPrecondition("the local executor is closed")
            if self._started:
                return
            self._root.mkdir(parents=True, exist_ok=True, mode=0o700)
            await asyncio.to_thread(self._remove_leftovers)
            etc_dir = self._root / _ETC_DIR
            await asyncio.to_thread(write_etc_files, etc_dir, self._uid, self._gid)
            self._cgroups = await asyncio.to_thread(CgroupHost.probe, self._use_cgroups)
            self._config = SandboxConfig(
                bwrap=self._bwrap, root=self._root, gateway_socket=self._gateway_socket, etc_dir=etc_dir,
                command=self._agent.argv,
                ro_binds=(*python_installation_binds(), *self._agent.ro_binds),
                env=env_pairs(sandbox_env()), limits=self._limits, output_limits=self._output_limits,
                uid=self._uid, gid=self._gid)
            if not self._cgroups.limits_enforced and os.geteuid() == 0:
                log.warning("no usable cgroups: RLIMIT_NPROC does not apply to a root runner, so the number of "
                            "sandbox processes is only watched (every 100 ms) and a fork bomb can still starve "
                            "the host for seconds before it is killed; give the runner writable cgroup v1 memory "
                            "and pids hierarchies, or run it as a non-root user",
                            extra={"limits_by": self._cgroups.describe()})
            self._pool = WarmPool(self._pool_size, self._start_sandbox)
            self._pool.start()
            self._started = True
            log.info("local executor started", extra={
                "sandboxes_root": str(self._root), "pool_size": self._pool_size,
                "limits_by": self._cgroups.describe(), "bwrap": self._bwrap})

    async def wait_warm(self) -> None:
        """Wait until the warm pool is full (benchmarks and tests; retries until it is, so bound it with a
        timeout). Full means started: the interpreter inside may still be importing for a moment."""
        await self.start()
        assert self._pool is not None
        await self._pool.wait_ready()

    @property
    def warm_sandboxes(self) -> int:
        """Sandboxes started and waiting for a task."""
        return self._pool.ready if self._pool is not None else 0

    @property
    def limits_enforcement(self) -> str:
        """How limits are enforced on this host (known after `start`)."""
        return self._cgroups.describe() if self._cgroups else "not started"

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pool is not None:
            await self._pool.close()
        await self._bg.close(cancel=False)
        if self._cgroups is not None:
            self._cgroups.close()

    def _remove_leftovers(self) -> None:
        """Folders of sandboxes whose runner died (this runner's own pid is never a leftover)."""
        for entry in self._root.iterdir():
            m = _LEFTOVER_RE.match(entry.name)
            if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
                log.info("removing a leftover sandbox folder", extra={"path": str(entry)})
                force_rmtree(entry)

    async def _start_sandbox(self, limits: SandboxLimits | None) -> Sandbox:
        assert self._config is not None and self._cgroups is not None
        return await Sandbox.start(self._config, self._cgroups, limits)

    # ---- a run ----------------------------------------------------------------------------------

    async def run(self, job: SandboxJob) -> SandboxOutcome:
        await self.start()
        assert self._pool is not None
        limits = self._limits.for_task(job.task.limits)
        t0 = time.monotonic()
        sandbox, warm = await self._assign(limits, job.task.id)
        t1 = time.monotonic()
        ctx = {"task_id": job.task.id, "attempt": job.attempt, "sandbox": sandbox.id}
        log.info("sandbox assigned", extra={**ctx, "warm": warm, "assign_ms": _ms(t1 - t0)})
        phase = "materialising the snapshot"
        timed_out = False
        try:
            # The wall time counts from the start of `run`, sandbox start included.
            deadline = asyncio.timeout(max(0.0, limits.wall_time_s - (t1 - t0)))
            try:
                async with deadline:
                    stats = await materialize(self._blobs, job.task.tenant, job.manifest, sandbox.workspace,
                                              packs=self._packs)
                    t2 = time.monotonic()
                    phase = "running"
                    await sandbox.send_spec(job.agent_spec_json)
                    t3 = time.monotonic()
                    self._pool.refill()  # now that the task is under way
                    log.debug("task handed to its sandbox", extra={
                        **ctx, "files": stats.files, "symlinks": stats.symlinks, "bytes": stats.bytes,
                        "assign_ms": _ms(t1 - t0), "materialise_ms": _ms(t2 - t1), "spec_ms": _ms(t3 - t2)})
                    await self._wait(sandbox, limits)
            except TimeoutError:
                if not deadline.expired():
                    raise
                timed_out = True
                sandbox.kill()
            await sandbox.stop()
            return await self._collect(job, sandbox, limits, timed_out, phase, ctx, t0)
        except asyncio.CancelledError:
            sandbox.kill()
            log.info("sandbox run cancelled; sandbox killed", extra=ctx)
            raise
        finally:
            self._pool.refill()
            sandbox.kill()  # a no-op once it has exited; at once if materialising failed
            destroying = self._bg.spawn(sandbox.destroy(), f"destroy {sandbox.id}")
            # Shielded: a second cancellation must not leave the sandbox's folders behind.
            with contextlib.suppress(Exception):
                await asyncio.shield(destroying)

    async def _assign(self, limits: SandboxLimits, task_id: str) -> tuple[Sandbox, bool]:
        """A sandbox under the task's limits: a warm one with its limits lowered, or a new one."""
        assert self._pool is not None
        sandbox, warm = await self._pool.take(limits)
        if not warm:
            return sandbox, False
        try:
            await sandbox.settle()
            sandbox.apply_task_limits(limits)
            return sandbox, True
        except OSError as exc:
            # E.g. a memory limit below what the idle sandbox already uses (EBUSY). A sandbox started
            # under the limit from the beginning does not have that problem.
            log.warning("could not apply the task's limits to a warm sandbox; starting a new one",
                        extra={"task_id": task_id, "sandbox": sandbox.id, "error": str(exc)})
            sandbox.kill()
            self._bg.spawn(sandbox.destroy(), f"destroy {sandbox.id}")
            return await self._start_sandbox(limits), False

    async def _wait(self, sandbox: Sandbox, limits: SandboxLimits) -> None:
        """Wait for the sandbox to exit; without a pids cgroup, watch its process count meanwhile."""
        assert self._cgroups is not None
        if self._cgroups.limits_enforced:
            await sandbox.wait()
            return
        watchdog = asyncio.create_task(sandbox.watch_process_count(limits.max_processes),
                                       name=f"watchdog {sandbox.id}")
        try:
            await sandbox.wait()
        finally:
            watchdog.cancel()
            await asyncio.wait([watchdog])
            if not watchdog.cancelled() and watchdog.exception() is not None:
                log.error("process watchdog failed", extra={"sandbox": sandbox.id}, exc_info=watchdog.exception())

    async def _collect(self, job: SandboxJob, sandbox: Sandbox, limits: SandboxLimits, timed_out: bool,
                       phase: str, ctx: dict[str, object], t0: float) -> SandboxOutcome:
        tenant = job.task.tenant
        outputs = await collect_outputs(self._blobs, tenant, sandbox.output, self._output_limits)
        agent_log = await store_file(self._blobs, tenant, sandbox.log_path, "agent.log")
        returncode = sandbox.returncode
        facts = ExitFacts(
            returncode=returncode, timed_out=timed_out, phase=phase,
            oom_kills=sandbox.oom_kills(), fork_refusals=sandbox.fork_refusals(),
            process_limit_exceeded=sandbox.process_limit_exceeded,
            log_omitted=sandbox.log.omitted if sandbox.log else 0,
            setup_error=_bwrap_error(sandbox.log_path) if returncode else "",
            notes=outputs.notes)
        outcome = SandboxOutcome(
            exit_code=exit_code_of(returncode, timed_out), timed_out=timed_out,
            artifacts=(*outputs.artifacts, agent_log), result_json=outputs.result_json,
            detail=describe(facts, limits))
        log.info("sandbox finished", extra={**ctx, "exit_code": outcome.exit_code, "timed_out": timed_out,
                                            "duration_s": round(time.monotonic() - t0, 3),
                                            "artifacts": ",".join(a.name for a in outcome.artifacts),
                                            "detail": outcome.detail})
        return outcome


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _bwrap_error(log_path: Path) -> str:
    """bubblewrap's own message when it failed before starting the command ("bwrap: ...")."""
    try:
        with log_path.open("rb") as f:
            head = f.read(4096).decode("utf-8", "replace")
    except OSError:
        return ""
    for line in head.splitlines():
        if line.startswith("bwrap: "):
            return line[len("bwrap: "):][:300]
    return ""
