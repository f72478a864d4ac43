"""Running a process with a deadline, its output pumped without ever holding it all.

Both the model's shell commands and `setup.sh` run through `run_process`:

- the process starts in its own session (so its own process group) with stdin at EOF, so a timeout can
  kill it *and everything it started* with one `killpg`, and nothing waits for keyboard input;
- the calling thread pumps stdout and stderr with `selectors` and hands each chunk to a sink as it
  arrives, so a command printing gigabytes streams through a fixed amount of memory (`HeadTail` keeps
  the first and last bytes and counts the rest);
- when the command exits but something it left in the background still holds the pipes open (say
  `server &`), reading stops after a short grace period instead of waiting forever; the background
  process keeps running, as it would in a terminal;
- SIGTERM to the agent (see `agent.signals`) is held back from the moment the child is started and
  raised inside the pump loop, so the child's group is always killed on the way out.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from agent import signals

# Linux lets an unprivileged process grow a pipe to 1 MiB; fewer, larger reads of chatty commands.
_F_SETPIPE_SZ = 1031
_PIPE_SIZE = 1 << 20
_READ_SIZE = 1 << 20
# How long to keep reading after the command exited, for output its background children still write.
_DETACH_GRACE_S = 0.5
_POLL_S = 0.1

Sink = Callable[[bytes], None]


@dataclass(frozen=True, slots=True)
class Finished:
    """How a process ended."""

    exit_code: int | None  # None when it was killed on timeout
    signal: int | None  # the signal that ended it, if one did
    timed_out: bool
    duration_s: float
    detached: bool  # the command exited but left background processes holding its output


class HeadTail:
    """A sink that keeps the first `head` and the last `tail` bytes of a stream and counts the rest."""

    def __init__(self, head: int, tail: int) -> None:
        self._head_limit = head
        self.tail_limit = tail
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0

    def __call__(self, data: bytes) -> None:
        self.total += len(data)
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if data and self.tail_limit:
            self._tail += data
            # Trim in amortised fashion: only once the tail has doubled.
            if len(self._tail) > 2 * self.tail_limit:
                del self._tail[: len(self._tail) - self.tail_limit]

    @property
    def dropped(self) -> int:
        return self.total - len(self._head) - min(len(self._tail), self.tail_limit)

    def text(self) -> str:
        """The kept bytes as text, with a marker where the middle was dropped."""
        tail = bytes(self._tail[-self.tail_limit:]) if self.tail_limit else b""
        head = bytes(self._head)
        if not self.dropped:
            return (head + tail).decode("utf-8", errors="replace")
        return (
            head.decode("utf-8", errors="replace")
            + f"\n[... {self.dropped} bytes of output dropped ...]\n"
            + tail.decode("utf-8", errors="replace")
        )


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group `proc` leads (it was started with `start_new_session`)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


class _Pump:
    """Moves bytes from the child's pipes to the sinks."""

    def __init__(self, streams: Mapping[int, Sink]) -> None:
        self._sinks = dict(streams)
        self._selector = selectors.DefaultSelector()
        for fd in self._sinks:
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_SIZE)
            os.set_blocking(fd, False)
            self._selector.register(fd, selectors.EVENT_READ)

    @property
    def open(self) -> bool:
        return bool(self._selector.get_map())

    def pump(self, timeout: float) -> None:
        for key, _ in self._selector.select(timeout):
            self._read(key.fd)

    def _read(self, fd: int) -> None:
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._sinks[fd](data)
        else:
            self._selector.unregister(fd)

    def close(self) -> None:
        for fd in list(self._selector.get_map()):
            self._selector.unregister(fd)
        self._selector.close()


def run_process(
    argv: Sequence[str],
    *,
    cwd: str | os.PathLike[str],
    timeout_s: float,
    stdout: Sink,
    stderr: Sink | None = None,
    env: Mapping[str, str] | None = None,
) -> Finished:
    """Run `argv` to completion or until `timeout_s`, feeding its output to the sinks as it comes.

    With `stderr=None` the two streams are merged into `stdout` (in the order the process wrote them).
    On timeout, or if the caller is interrupted (an exception, SIGTERM), the whole process group is
    killed before this returns or raises.
    """
    with signals.deferred():
        return _run(argv, cwd, timeout_s, stdout, stderr, env)


def _run(argv: Sequence[str], cwd: str | os.PathLike[str], timeout_s: float, stdout: Sink, stderr: Sink | None,
         env: Mapping[str, str] | None) -> Finished:
    start = time.monotonic()
    deadline = start + timeout_s
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if stderr is not None else subprocess.STDOUT,
        start_new_session=True,
        close_fds=True,
    )
    assert proc.stdout is not None  # for mypy: both were asked for as pipes
    streams: dict[int, Sink] = {proc.stdout.fileno(): stdout}
    if stderr is not None:
        assert proc.stderr is not None
        streams[proc.stderr.fileno()] = stderr
    pump: _Pump | None = None
    timed_out = detached = False
    exited_at: float | None = None
    polled_at = start
    try:
        pump = _Pump(streams)
        while pump.open:
            signals.check()  # SIGTERM is deferred while we run a child: this is where it lands
            now = time.monotonic()
            if now >= deadline:
                timed_out = True
                kill_group(proc)
                break
            # Polling on every chunk would double the system calls of a chatty command.
            if exited_at is None and now - polled_at >= _POLL_S:
                polled_at = now
                if proc.poll() is not None:
                    exited_at = now
            if exited_at is not None and now - exited_at >= _DETACH_GRACE_S:
                detached = True
                break
            pump.pump(min(_POLL_S, deadline - now))
        if timed_out:
            # The group is dead; collect what it wrote before dying, without waiting on stragglers
            # that escaped the group (they cannot, short of their own setsid).
            end = time.monotonic() + _DETACH_GRACE_S
            while pump.open and time.monotonic() < end:
                pump.pump(_POLL_S)
        proc.wait()
    except BaseException:
        kill_group(proc)
        proc.wait()
        raise
    finally:
        if pump is not None:
            pump.close()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    code = proc.returncode
    return Finished(
        exit_code=None if timed_out else code,
        signal=-code if code is not None and code < 0 else None,
        timed_out=timed_out,
        duration_s=time.monotonic() - start,
        detached=detached,
    )
