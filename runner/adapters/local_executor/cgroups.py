"""Per-sandbox cgroups: hard memory and process limits, OOM/fork-refusal counters, and an atomic kill.

Sandboxes get cgroups nested under the runner's own cgroup in each hierarchy (read from
/proc/self/cgroup and /proc/self/mountinfo), in a parent named `codex-sys.<runner pid>`, so the runner
never moves its sandboxes out of whatever accounting its own supervisor set up, and two runners on one
host never touch each other's sandboxes.

What is used, when available:

* cgroup v1 `memory` and `pids` hierarchies (both needed for "cgroup mode", see `limits.py`);
* cgroup v1 `cpu` for a CPU bandwidth cap (optional);
* a cgroup v2 hierarchy (the unified one of a hybrid host) for `cgroup.kill`, which kills every process
  of the sandbox at once, fork bombs included (optional: killing bubblewrap's pid-namespace init kills
  the sandbox too, see `sandbox.py`; `cgroup.kill` is the second, independent mechanism).

A pure cgroup v2 host with controllers is not used for limits: enabling controllers for a child of the
runner's cgroup needs a delegated subtree (systemd `Delegate=yes`), which this code does not assume.
Such hosts fall back to rlimits (and still use `cgroup.kill`).

Processes enter their cgroups between fork and exec of bubblewrap (`Sandbox.start`), so nothing the
sandbox ever runs is outside them.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_PARENT_PREFIX = "codex-sys."
_PARENT_RE = re.compile(r"^codex-sys\.(\d+)$")


@dataclass(frozen=True, slots=True)
class _Hierarchy:
    mount_point: Path
    mount_root: str
    controllers: frozenset[str]
    version: int  # 1 or 2


def _mounted_hierarchies(mountinfo: str) -> list[_Hierarchy]:
    found: list[_Hierarchy] = []
    for line in mountinfo.splitlines():
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        fields, tail = pre.split(), post.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        fstype, super_opts = tail[0], tail[2]
        root, mount_point = _unescape(fields[3]), Path(_unescape(fields[4]))
        if fstype == "cgroup":
            found.append(_Hierarchy(mount_point, root, frozenset(super_opts.split(",")), 1))
        elif fstype == "cgroup2":
            found.append(_Hierarchy(mount_point, root, frozenset(), 2))
    return found


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _own_paths(proc_cgroup: str) -> tuple[dict[str, str], str | None]:
    """(v1 controller -> own path, own v2 path)."""
    v1: dict[str, str] = {}
    v2: str | None = None
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            v2 = path
        else:
            for c in controllers.split(","):
                v1[c] = path
    return v1, v2


def _on_disk(h: _Hierarchy, own: str) -> Path | None:
    root = h.mount_root.rstrip("/")
    if own != root and not own.startswith(root + "/"):
        return None  # our cgroup is not visible through this mount
    return h.mount_point / own[len(root):].lstrip("/")


def _write(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _rmdir_tree(path: Path) -> None:
    """Remove an (empty of processes) cgroup and its child cgroups, deepest first."""
    with contextlib.suppress(OSError):
        for child in path.iterdir():
            if child.is_dir():
                _rmdir_tree(child)
    with contextlib.suppress(OSError):
        path.rmdir()


@dataclass(frozen=True, slots=True)
class CgroupHost:
    """The parents under which this runner creates its sandboxes' cgroups."""

    memory: Path | None
    pids: Path | None
    cpu: Path | None
    unified: Path | None

    @property
    def limits_enforced(self) -> bool:
        """Memory and process count are hard cgroup limits (else rlimits stand in for them)."""
        return self.memory is not None and self.pids is not None

    def describe(self) -> str:
        if self.limits_enforced:
            parts = ["cgroup v1 memory+pids" + ("+cpu" if self.cpu else "")]
        else:
            parts = ["rlimits only (no writable cgroup v1 memory and pids hierarchies)"]
        parts.append("cgroup v2 kill" if self.unified else "no cgroup.kill")
        return ", ".join(parts)

    @classmethod
    def probe(cls, enabled: bool = True) -> CgroupHost:
        """Find and create this runner's parents; whatever is missing or not writable is left out."""
        if not enabled:
            return cls(None, None, None, None)
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
            own_v1, own_v2 = _own_paths(Path("/proc/self/cgroup").read_text())
        except OSError:
            return cls(None, None, None, None)
        name = f"{_PARENT_PREFIX}{os.getpid()}"
        chosen: dict[str, Path | None] = {"memory": None, "pids": None, "cpu": None, "unified": None}
        for h in _mounted_hierarchies(mountinfo):
            if h.version == 1:
                for controller in ("memory", "pids", "cpu"):
                    if controller in h.controllers and chosen[controller] is None and controller in own_v1:
                        chosen[controller] = cls._make_parent(h, own_v1[controller], name)
            elif chosen["unified"] is None and own_v2 is not None:
                parent = cls._make_parent(h, own_v2, name)
                if parent is not None and not (parent / "cgroup.kill").exists():
                    _rmdir_tree(parent)
                    parent = None
                chosen["unified"] = parent
        host = cls(chosen["memory"], chosen["pids"], chosen["cpu"], chosen["unified"])
        if not host.limits_enforced:
            # Without both, limits fall back to rlimits; a lone memory or pids parent is of no use.
            for p in (host.memory, host.pids, host.cpu):
                if p is not None:
                    _rmdir_tree(p)
            host = cls(None, None, None, host.unified)
        return host

    @staticmethod
    def _make_parent(h: _Hierarchy, own: str, name: str) -> Path | None:
        base = _on_disk(h, own)
        if base is None or not base.is_dir():
            return None
        for stale in _stale_parents(base):
            _rmdir_tree(stale)
        parent = base / name
        try:
            parent.mkdir(exist_ok=True)
        except OSError as exc:
            log.debug("cgroup parent not usable", extra={"cgroup": str(parent), "error": str(exc)})
            return None
        if h.version == 1 and "memory" in h.controllers:
            with contextlib.suppress(OSError):
                _write(parent / "memory.use_hierarchy", "1")
        return parent

    def create(self, sandbox_id: str) -> SandboxCgroup | None:
        """Create the cgroups of one sandbox; None when this host has none worth creating."""
        if not self.limits_enforced and self.unified is None:
            return None
        made: list[Path] = []
        try:
            def mk(parent: Path | None) -> Path | None:
                if parent is None:
                    return None
                path = parent / sandbox_id
                path.mkdir()
                made.append(path)
                return path

            return SandboxCgroup(memory=mk(self.memory), pids=mk(self.pids), cpu=mk(self.cpu),
                                 unified=mk(self.unified))
        except OSError:
            for path in made:
                _rmdir_tree(path)
            raise

    def close(self) -> None:
        """Remove this runner's parents (sandbox cgroups must be gone already)."""
        for p in (self.memory, self.pids, self.cpu, self.unified):
            if p is not None:
                _rmdir_tree(p)


def _stale_parents(base: Path) -> Iterator[Path]:
    """Parents left behind by runners that died without cleaning up."""
    try:
        entries = list(base.iterdir())
    except OSError:
        return
    for entry in entries:
        m = _PARENT_RE.match(entry.name)
        if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            yield entry


@dataclass(frozen=True, slots=True)
class SandboxCgroup:
    memory: Path | None
    pids: Path | None
    cpu: Path | None
    unified: Path | None

    def _dirs(self) -> list[Path]:
        return [p for p in (self.memory, self.pids, self.cpu, self.unified) if p is not None]

    def procs_files(self) -> tuple[str, ...]:
        """Files a process writes "0" into to join every cgroup of the sandbox."""
        return tuple(str(p / "cgroup.procs") for p in self._dirs())

    def set_limits(self, memory_bytes: int, max_processes: int, cpus: float | None) -> None:
        if self.memory is not None:
            self._set_memory(memory_bytes)
        if self.pids is not None:
            _write(self.pids / "pids.max", str(max_processes))
        if self.cpu is not None:
            period = 100_000
            _write(self.cpu / "cpu.cfs_period_us", str(period))
            _write(self.cpu / "cpu.cfs_quota_us", "-1" if cpus is None else str(max(1000, int(cpus * period))))

    def _set_memory(self, limit: int) -> None:
        assert self.memory is not None
        mem, memsw = self.memory / "memory.limit_in_bytes", self.memory / "memory.memsw.limit_in_bytes"
        if not memsw.exists():
            _write(mem, str(limit))
            return
        # memsw (memory + swap) must stay >= memory: lower memory first, raise memsw first.
        try:
            _write(mem, str(limit))
            _write(memsw, str(limit))
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            _write(memsw, str(limit))
            _write(mem, str(limit))

    def pids_inside(self) -> list[int]:
        source = self.unified or self.memory or self.pids or self.cpu
        if source is None:
            return []
        try:
            return [int(x) for x in (source / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    def kill(self) -> None:
        """SIGKILL every process of the sandbox."""
        if self.unified is not None:
            try:
                _write(self.unified / "cgroup.kill", "1")
                return
            except OSError as exc:
                log.warning("cgroup.kill failed", extra={"cgroup": str(self.unified), "error": str(exc)})
        # v1 has no atomic kill: repeat until no new process shows up (the pids limit bounds a fork bomb,
        # and the pid namespace dies with bubblewrap's init anyway).
        for _ in range(50):
            pids = self.pids_inside()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def oom_kills(self) -> int:
        if self.memory is None:
            return 0
        return _counter(self.memory / "memory.oom_control", "oom_kill")

    def fork_refusals(self) -> int:
        if self.pids is None:
            return 0
        return _counter(self.pids / "pids.events", "max")

    def try_remove(self) -> bool:
        """Remove the cgroups; False while the kernel still holds one (retry a moment later)."""
        done = True
        for path in self._dirs():
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    log.warning("could not remove sandbox cgroup", extra={"cgroup": str(path), "error": str(exc)})
                done = False
        return done


def _counter(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0
