"""One bubblewrap sandbox on the host: its folders, its cgroups, its processes, its log.

Lifecycle: `start` (folders made, bubblewrap spawned, the agent starts and blocks reading its task spec
from stdin) → `send_spec` (the one task it will ever serve) → `wait` → `destroy` (killed if still
running, cgroups and folders removed). A sandbox started ahead of time by the warm pool is the same
object, only spawned earlier.

Host layout under the sandboxes root (named `sb-<runner pid>-<random>` so a later runner can tell
leftovers of a dead one from a live neighbour's):

    sb-1234-9f2c.../workspace   bound at /workspace      sb-1234-9f2c.../output   bound at /output
    sb-1234-9f2c.../agent.log   the captured stdout+stderr (not visible inside)

Killing: bubblewrap runs in its own process group and with `--unshare-pid`; its init (pid 1 of the
sandbox) carries `--die-with-parent`. SIGKILL to that group kills bubblewrap and its init, and when a
pid namespace's init dies the kernel kills every other process in it: nothing inside can outlive it,
whatever it forks or however it detaches (setsid, double fork). Where a cgroup exists, `cgroup.kill`
(v2) or a SIGKILL to each member (v1) is applied too.

Entering cgroups and setting rlimits happens in the child between fork and exec (`preexec_fn`), so the
first instruction bubblewrap runs is already confined. The function used there only makes system
calls (open/write/setrlimit), which is safe after fork in a threaded program. The fork+exec itself runs
off the event loop (`process.py` says why).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import shutil
import signal
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from runner.adapters.local_executor.bwrap_args import SandboxLayout, bwrap_argv
from runner.adapters.local_executor.capture import BoundedLog
from runner.adapters.local_executor.cgroups import CgroupHost, SandboxCgroup
from runner.adapters.local_executor.limits import (
    OutputLimits,
    Rlimit,
    SandboxLimits,
    apply_to_processes,
    process_tree,
    rlimits,
    set_own_rlimits,
)
from runner.adapters.local_executor.process import ChildProcess
from runner.domain.errors import Unavailable

log = logging.getLogger(__name__)

SANDBOX_PREFIX = "sb-"
_EXIT_WAIT_S = 5.0
_LOG_DRAIN_S = 2.0
_CGROUP_REMOVE_S = 2.0
_LIMIT_WALKS = 20
_SETTLE_POLL_S = 0.002
_SETTLE_TIMEOUT_S = 2.0
_WATCHDOG_INTERVAL_S = 0.1
# A warm sandbox starts (interpreter, imports) at this niceness, so that filling the pool yields the CPU
# to tasks already running; it gets the normal priority back when it is handed its task.
WARM_NICE = 10


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """Everything needed to start a sandbox; the same for every sandbox of an executor."""

    bwrap: str
    root: Path  # the sandboxes root
    gateway_socket: Path
    etc_dir: Path
    command: tuple[str, ...]
    ro_binds: tuple[tuple[Path, str], ...]
    env: tuple[tuple[str, str], ...]
    limits: SandboxLimits  # the ceilings a warm sandbox starts with
    output_limits: OutputLimits
    uid: int
    gid: int


def _enter_sandbox(procs_files: Sequence[str], limits: Sequence[Rlimit], nice: int) -> None:
    """Runs in the child after fork, before exec of bubblewrap."""
    for path in procs_files:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
    set_own_rlimits(limits)
    if nice:
        os.setpriority(os.PRIO_PROCESS, 0, nice)


def _renice(pids: Sequence[int], nice: int) -> None:
    for pid in pids:
        try:
            os.setpriority(os.PRIO_PROCESS, pid, nice)
        except ProcessLookupError:
            pass
        except PermissionError:
            # Raising priority needs CAP_SYS_NICE (or RLIMIT_NICE): a non-root runner's warm sandboxes
            # keep running niced, which only costs the task some CPU share under contention.
            log.debug("could not restore CPU priority", extra={"pid": pid})
            return


def socket_key(path: Path) -> tuple[int, int]:
    """Identity of the gateway socket; a restarted gateway has a new one, and a bind mount of the old
    inode no longer reaches it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise Unavailable(f"the gateway socket {path} does not exist; is the runner's gateway running?",
                          delay_s=2.0) from None
    if not stat.S_ISSOCK(st.st_mode):
        raise Unavailable(f"{path} is not a unix socket; the gateway socket is expected there", delay_s=2.0)
    return st.st_dev, st.st_ino


def force_rmtree(path: Path) -> None:
    """Remove a sandbox's folder even if the sandbox made parts of it unwritable (chmod 000)."""
    try:
        shutil.rmtree(path)
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    for dirpath, dirnames, _ in os.walk(path):
        for name in dirnames:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                with contextlib.suppress(OSError):
                    os.chmod(full, 0o700)
    shutil.rmtree(path, ignore_errors=True)


class Sandbox:
    def __init__(self, sandbox_id: str, folder: Path, config: SandboxConfig, cgroup: SandboxCgroup | None,
                 limits_enforced: bool, gateway_key: tuple[int, int]) -> None:
        self.id = sandbox_id
        self.folder = folder
        self.workspace = folder / "workspace"
        self.output = folder / "output"
        self.log_path = folder / "agent.log"
        self.cgroup = cgroup
        self.gateway_key = gateway_key
        self._config = config
        self._limits_enforced = limits_enforced
        self._proc: ChildProcess | None = None
        self._pump: asyncio.Task[None] | None = None
        self.log: BoundedLog | None = None
        self.started_at = time.monotonic()
        self.destroyed = False
        self.process_limit_exceeded = False

    # ---- start ----------------------------------------------------------------------------------

    @classmethod
    async def start(cls, config: SandboxConfig, cgroups: CgroupHost, limits: SandboxLimits | None = None) -> Sandbox:
        """Start a sandbox under `limits` (default: the executor's ceilings, for a warm sandbox whose
        task is not known yet)."""
        gateway_key = socket_key(config.gateway_socket)
        sandbox_id = f"{SANDBOX_PREFIX}{os.getpid()}-{secrets.token_hex(8)}"
        folder = config.root / sandbox_id
        folder.mkdir(mode=0o700)
        cgroup: SandboxCgroup | None = None
        sandbox: Sandbox | None = None
        try:
            for sub in ("workspace", "output"):
                (folder / sub).mkdir(mode=0o755)
                (folder / sub).chmod(0o755)  # whatever the runner's umask: the sandbox's user must enter
            cgroup = cgroups.create(sandbox_id)
            sandbox = cls(sandbox_id, folder, config, cgroup, cgroups.limits_enforced, gateway_key)
            await sandbox._spawn(limits or config.limits, nice=0 if limits else WARM_NICE)
            return sandbox
        except BaseException:
            if sandbox is not None:
                await sandbox.destroy()
            else:
                if cgroup is not None:
                    cgroup.try_remove()
                await asyncio.to_thread(force_rmtree, folder)
            raise

    async def _spawn(self, limits: SandboxLimits, nice: int) -> None:
        config = self._config
        if self.cgroup is not None and self._limits_enforced:
            self.cgroup.set_limits(limits.memory_bytes, limits.max_processes, limits.cpus)
        layout = SandboxLayout(
            workspace=self.workspace, output=self.output, gateway_socket=config.gateway_socket,
            etc_dir=config.etc_dir, ro_binds=config.ro_binds, command=config.command, env=config.env,
            tmpfs_bytes=limits.tmpfs_bytes, uid=config.uid, gid=config.gid)
        argv = bwrap_argv(config.bwrap, layout)
        procs_files = self.cgroup.procs_files() if self.cgroup is not None else ()
        t0 = time.monotonic()
        # bubblewrap itself gets an empty environment too (ChildProcess); --setenv gives the sandbox its own.
        self._proc = await ChildProcess.start(
            argv, cwd=self.folder,
            preexec_fn=functools.partial(_enter_sandbox, procs_files,
                                         rlimits(limits, cgroup_enforced=self._limits_enforced), nice))
        self.started_at = time.monotonic()
        out = config.output_limits
        self.log = BoundedLog(self.log_path, out.log_head_bytes, out.log_tail_bytes)
        self._pump = asyncio.create_task(self.log.pump(self._proc.stdout), name=f"log {self.id}")
        log.debug("sandbox started", extra={"sandbox": self.id, "pid": self._proc.pid,
                                            "spawn_ms": round((time.monotonic() - t0) * 1000, 2)})

    # ---- state ----------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc is not None else None

    @property
    def exited(self) -> bool:
        return self._proc is None or self._proc.exited.done()

    def usable(self) -> bool:
        """Still running, and its bind of the gateway socket still reaches the gateway."""
        if self.exited or self.destroyed:
            return False
        try:
            return socket_key(self._config.gateway_socket) == self.gateway_key
        except Unavailable:
            return False

    # ---- the task -------------------------------------------------------------------------------

    async def settle(self) -> bool:
        """Wait until bubblewrap has started the sandbox's command (a process in its tree that is no longer
        bubblewrap). Until then the command may be in the middle of being created: it has copied its
        rlimits from bubblewrap but is not yet listed as bubblewrap's child, so limits applied to the tree
        would miss it. A sandbox warm for more than a few milliseconds is settled at the first look."""
        assert self._proc is not None
        bwrap = self._config.bwrap  # a resolved path (LocalExecutor)
        for _ in range(int(_SETTLE_TIMEOUT_S / _SETTLE_POLL_S)):
            if self.exited:
                return False
            for pid in process_tree(self._proc.pid)[1:]:
                try:
                    if os.readlink(f"/proc/{pid}/exe") != bwrap:
                        return True
                except OSError:
                    continue
            await asyncio.sleep(_SETTLE_POLL_S)
        log.warning("sandbox command not started after %s s", _SETTLE_TIMEOUT_S, extra={"sandbox": self.id})
        return False

    def apply_task_limits(self, limits: SandboxLimits) -> None:
        """Lower the ceilings a warm sandbox started with to this task's limits.

        cgroup limits hold for the whole group at once. rlimits are per process and copied at fork, so
        they are applied to every process of the sandbox (call `settle` first), walking its tree again
        until a walk finds no process it has not seen: a process forked after its parent was limited
        inherits the limits, and one forked just before shows up in the next walk. (A warm sandbox is
        idle, blocked on stdin; the walk converges at once.) A child the command is creating at this very
        moment may keep the ceilings; commands that fork while idle should not rely on per-task rlimits.
        The same walk gives the processes the normal CPU priority back.
        """
        if self.cgroup is not None and self._limits_enforced:
            self.cgroup.set_limits(limits.memory_bytes, limits.max_processes, limits.cpus)
        if self._proc is None:
            return
        wanted = rlimits(limits, cgroup_enforced=self._limits_enforced)
        done: set[int] = set()
        for _ in range(_LIMIT_WALKS):
            new = [pid for pid in process_tree(self._proc.pid) if pid not in done]
            if not new:
                return
            apply_to_processes(new, wanted)
            _renice(new, 0)
            done.update(new)
        log.warning("sandbox kept forking while its limits were applied", extra={"sandbox": self.id})

    async def send_spec(self, spec_json: bytes) -> None:
        """Write the task spec line and close stdin. A sandbox that already died is left to `wait`."""
        assert self._proc is not None
        try:
            await self._proc.write_stdin(spec_json.rstrip(b"\n") + b"\n")
        except (BrokenPipeError, ConnectionResetError):
            log.warning("sandbox closed its stdin before reading the task spec", extra={"sandbox": self.id})
        finally:
            self._proc.close_stdin()

    async def wait(self) -> int:
        assert self._proc is not None
        return await asyncio.shield(self._proc.exited)

    async def watch_process_count(self, limit: int) -> None:
        """Without a pids cgroup: kill the sandbox once it holds more than `limit` processes (bubblewrap
        included, as a pids cgroup would count it). Returns when it did, or runs until cancelled."""
        assert self._proc is not None
        while not self.exited:
            if len(process_tree(self._proc.pid, stop_after=limit)) > limit:
                self.process_limit_exceeded = True
                log.info("sandbox exceeded its process limit; killing it", extra={"sandbox": self.id, "limit": limit})
                self.kill()
                return
            await asyncio.sleep(_WATCHDOG_INTERVAL_S)

    def kill(self) -> None:
        """SIGKILL everything in the sandbox, now (no await: safe to call while being cancelled)."""
        if self.cgroup is not None:
            self.cgroup.kill()
        if self._proc is not None:
            self._proc.kill_group(signal.SIGKILL)

    async def drain_log(self) -> None:
        """Wait for the log to reach its end (the last process holding the pipe is gone), or give up
        after a moment: the log is closed either way, and a second call returns at once."""
        pump = self._pump
        if pump is None or pump.done():
            return
        # asyncio.wait never raises the awaited task's outcome, so only our own cancellation can end it.
        await asyncio.wait([pump], timeout=_LOG_DRAIN_S)
        if not pump.done():
            log.warning("sandbox log did not reach its end; closing it", extra={"sandbox": self.id})
            pump.cancel()
            await asyncio.wait([pump])

    async def stop(self) -> None:
        """Kill if running, and wait until no process of the sandbox is left."""
        if not self.exited or (self.cgroup is not None and self.cgroup.pids_inside()):
            self.kill()
        if self._proc is not None:
            if not self._proc.exited.done():
                await asyncio.wait([self._proc.exited], timeout=_EXIT_WAIT_S)
                if not self._proc.exited.done():
                    log.error("sandbox did not exit after SIGKILL", extra={"sandbox": self.id, "pid": self.pid})
            self._proc.close_stdin()
        await self.drain_log()

    async def destroy(self) -> None:
        """Stop, then remove cgroups and folders. Idempotent."""
        if self.destroyed:
            return
        self.destroyed = True
        try:
            await self.stop()
        finally:
            if self.cgroup is not None:
                await self._remove_cgroup(self.cgroup)
            if self.log is not None:
                self.log.close()
            await asyncio.to_thread(force_rmtree, self.folder)
            log.debug("sandbox destroyed", extra={"sandbox": self.id})

    @staticmethod
    async def _remove_cgroup(cgroup: SandboxCgroup) -> None:
        # The kernel releases an emptied cgroup a moment after its last process is reaped; there is no
        # notification for that on cgroup v1, hence the short polling.
        for _ in range(int(_CGROUP_REMOVE_S / 0.01)):
            if cgroup.try_remove():
                return
            await asyncio.sleep(0.01)
        log.warning("sandbox cgroup still busy; removed with the runner's parent cgroup at close",
                    extra={"cgroup": str(cgroup.memory or cgroup.unified)})

    # ---- what happened --------------------------------------------------------------------------

    # The cgroup is the sandbox's own and new, so its counters count this sandbox only.

    def oom_kills(self) -> int:
        return self.cgroup.oom_kills() if self.cgroup else 0

    def fork_refusals(self) -> int:
        return self.cgroup.fork_refusals() if self.cgroup else 0
