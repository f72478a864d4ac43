"""A child process started off the event loop, with its pipes and its exit on the event loop.

Why not `asyncio.create_subprocess_exec`: starting a process blocks until the child has exec'd, and the
child first joins its cgroups. On cgroup v1 joining the memory hierarchy sometimes takes 15-25 ms in
the kernel (measured here), and for that long the whole event loop (gateway, event streams) would
stand still. So the fork+exec runs in a worker thread (`subprocess.Popen`), and then:

* stdout is attached to the loop with `connect_read_pipe` (an `asyncio.StreamReader`);
* stdin is written non-blocking, waiting for writability on the loop when the pipe is full;
* the exit is watched with a pidfd (`os.pidfd_open`, readable when the process exits) and reaped in
  a loop callback, so no thread waits per process (asyncio's default watcher would keep one thread
  per child, that is per warm sandbox). Kernels without pidfd fall back to a waiting thread.

Reaping happens only in the loop thread, so `returncode is None` reliably means the pid still belongs
to our child: signalling it (or its process group) can never hit a reused pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class ChildProcess:
    def __init__(self, popen: subprocess.Popen[bytes], stdout: asyncio.StreamReader,
                 exited: asyncio.Future[int]) -> None:
        self._popen = popen
        self.stdout = stdout
        self.exited = exited
        self._stdin_fd: int | None = popen.stdin.fileno() if popen.stdin is not None else None

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    @classmethod
    async def start(cls, argv: Sequence[str], *, cwd: Path, preexec_fn: Callable[[], None]) -> ChildProcess:
        """Start `argv` in a new session with an empty environment; stdout+stderr on one pipe."""
        loop = asyncio.get_running_loop()

        def spawn() -> subprocess.Popen[bytes]:
            # preexec_fn after fork in a threaded program is safe only if it takes no lock another thread
            # may hold; the callers' functions make plain system calls (open, write, setrlimit) only.
            return subprocess.Popen(
                list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                env={}, cwd=cwd, start_new_session=True, close_fds=True,
                preexec_fn=preexec_fn)  # noqa: PLW1509

        spawning = loop.run_in_executor(None, spawn)
        try:
            popen = await asyncio.shield(spawning)
        except asyncio.CancelledError:
            # The thread goes on and the child will exist: it must not outlive this cancellation.
            spawning.add_done_callback(_kill_abandoned)
            with contextlib.suppress(BaseException):
                await spawning  # a few ms; the callback has killed the child when this returns
            raise
        try:
            return await cls._attach(loop, popen)
        except BaseException:
            _kill_and_reap(popen)
            raise

    @classmethod
    async def _attach(cls, loop: asyncio.AbstractEventLoop, popen: subprocess.Popen[bytes]) -> ChildProcess:
        assert popen.stdout is not None and popen.stdin is not None
        reader = asyncio.StreamReader(limit=1 << 16)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), popen.stdout)
        os.set_blocking(popen.stdin.fileno(), False)
        exited: asyncio.Future[int] = loop.create_future()
        try:
            pidfd = os.pidfd_open(popen.pid)
        except OSError:
            waiting = loop.run_in_executor(None, popen.wait)
            waiting.add_done_callback(lambda f: _resolve(exited, f.result()))
        else:
            def on_exit() -> None:
                loop.remove_reader(pidfd)
                os.close(pidfd)
                _resolve(exited, popen.wait())  # already a zombie: returns at once

            loop.add_reader(pidfd, on_exit)
        return cls(popen, reader, exited)

    async def write_stdin(self, data: bytes) -> None:
        """Write all of `data` (raises BrokenPipeError if the child closed its end)."""
        fd = self._stdin_fd
        if fd is None:
            raise BrokenPipeError("stdin is closed")
        loop = asyncio.get_running_loop()
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                writable: asyncio.Future[None] = loop.create_future()
                loop.add_writer(fd, _resolve, writable, None)
                try:
                    await writable
                finally:
                    loop.remove_writer(fd)

    def close_stdin(self) -> None:
        if self._stdin_fd is not None and self._popen.stdin is not None:
            self._stdin_fd = None
            with contextlib.suppress(OSError):
                self._popen.stdin.close()

    def kill_group(self, sig: int) -> None:
        """Signal the child's process group (it leads a new session), unless it is already reaped."""
        if self._popen.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._popen.pid, sig)


def _resolve(future: asyncio.Future[T], value: T) -> None:
    if not future.done():
        future.set_result(value)


def _kill_and_reap(popen: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        popen.wait(timeout=5)
    for stream in (popen.stdin, popen.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def _kill_abandoned(spawning: asyncio.Future[subprocess.Popen[bytes]]) -> None:
    if spawning.cancelled() or spawning.exception() is not None:
        return
    popen = spawning.result()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, signal.SIGKILL)
    asyncio.get_running_loop().run_in_executor(None, _kill_and_reap, popen)  # reaping may take a moment
