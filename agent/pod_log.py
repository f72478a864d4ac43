"""The agent's output in a pod: passed on to the container's stdout as it comes (Kubernetes keeps that as
the container log), and kept in `agent.log`, bounded, for the runner.

The file keeps the first `head` bytes (how the agent started: a failed start's traceback) and the last
`tail` bytes (how it ended), with a line between them saying how much was left out; it never holds more
than head + tail + that line. The tail waits in memory (at most twice `tail` bytes) until `finish`.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import BinaryIO

HEAD_BYTES = 4 << 20
TAIL_BYTES = 4 << 20
_CHUNK = 1 << 16


class TeeLog:
    """Thread-safe: one thread pumps, another may `finish` when the pump cannot reach its end (a
    process the agent left behind still holds the pipe)."""

    def __init__(self, path: Path, console: BinaryIO | None, *, head: int = HEAD_BYTES, tail: int = TAIL_BYTES) -> None:
        self.path = path
        self._console = console
        self._head_left = head
        self._tail_max = tail
        self._tail = bytearray()
        self._lock = threading.Lock()
        self._file: BinaryIO | None = open(path, "wb")  # noqa: SIM115 (closed by finish)
        self.total = 0
        self.omitted = 0

    def pump(self, fd: int) -> None:
        """Copy the pipe `fd` to its end (every process holding it has exited)."""
        while chunk := os.read(fd, _CHUNK):
            self.take(chunk)

    def take(self, chunk: bytes) -> None:
        if self._console is not None:
            try:
                self._console.write(chunk)
                self._console.flush()
            except (OSError, ValueError):
                self._console = None  # nobody reads the container's stdout: the file still gets it
        with self._lock:
            if self._file is None:
                return
            self.total += len(chunk)
            if self._head_left:
                part = chunk[: self._head_left]
                self._file.write(part)
                self._head_left -= len(part)
                chunk = chunk[len(part):]
            if chunk:
                self._tail += chunk
                if len(self._tail) > 2 * self._tail_max:
                    cut = len(self._tail) - self._tail_max
                    del self._tail[:cut]
                    self.omitted += cut

    def finish(self) -> None:
        """Write the tail and close the file (idempotent); later output goes to the console only."""
        with self._lock:
            if self._file is None:
                return
            file, self._file = self._file, None
            if len(self._tail) > self._tail_max:
                cut = len(self._tail) - self._tail_max
                del self._tail[:cut]
                self.omitted += cut
            if self.omitted:
                file.write(f"\n[... {self.omitted} bytes of output omitted; {self.total} bytes in all ...]\n"
                           .encode())
            file.write(self._tail)
            self._tail.clear()
            file.close()
