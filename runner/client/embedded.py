"""Starting the embedded runner on demand (for the CLI and the language server).

With no `--runner` and no `CODEX_SYS_RUNNER`, the CLI talks to the embedded runner on
`$CODEX_SYS_HOME/runner.sock`. If nothing answers there, it starts one (`codex-sys runner serve
--embedded`) as a detached process that outlives the command, logging to `runner.log`, and waits until
its health check says SERVING. A lock file keeps two commands started at once from starting two runners.
The runner keeps its state in the same folder, so later commands find the same tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

from runner.client.connection import is_serving
from runner.config import HomeLayout
from runner.domain.errors import Unavailable

START_TIMEOUT_S = 30.0


async def _serving(socket_path: Path, timeout_s: float = 1.0) -> bool:
    return await is_serving(f"unix:{socket_path}", timeout_s)


def _spawn(layout: HomeLayout) -> subprocess.Popen[bytes]:
    log = open(layout.log_file, "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "runner.cli.main", "runner", "serve", "--embedded"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            env={**os.environ, "CODEX_SYS_HOME": str(layout.root)}, close_fds=True)
    finally:
        log.close()


async def ensure_embedded_runner(layout: HomeLayout) -> str:
    """Return the embedded runner's address, starting it if needed."""
    address = f"unix:{layout.runner_socket}"
    if await _serving(layout.runner_socket):
        return address
    layout.ensure()
    lock_path = layout.root / "spawn.lock"
    lock = await asyncio.to_thread(open, lock_path, "w")
    with lock:
        await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)
        try:
            if await _serving(layout.runner_socket):
                return address
            proc = _spawn(layout)
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline:
                if await _serving(layout.runner_socket, timeout_s=0.5):
                    return address
                if proc.poll() is not None:
                    raise Unavailable(f"the embedded runner exited with status {proc.returncode} while starting; "
                                      f"see {layout.log_file}")
                await asyncio.sleep(0.05)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise Unavailable(f"the embedded runner did not start within {START_TIMEOUT_S:g} s; see {layout.log_file}")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


async def stop_embedded_runner(layout: HomeLayout, timeout_s: float = 15.0) -> bool:
    """Stop the embedded runner if it runs; True when one was stopped."""
    try:
        pid = int(layout.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return False
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        layout.pid_file.unlink(missing_ok=True)
        return False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _running(pid):
            return True
        await asyncio.sleep(0.02)
    os.kill(pid, 9)
    return True


def _running(pid: int) -> bool:
    """Alive and not a zombie: the runner outlives the command that started it, so its parent is init,
    which may take a while to reap it."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(b")") + 2:][:1] not in (b"Z", b"X")
