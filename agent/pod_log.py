"""The agent's output in a pod: passed on to the container's stdout as it comes (Kubernetes keeps that as
the container log), and kept in `agent.log`, bounded, for the runner.

The file keeps the first and last bytes with a line between saying how much was left out
(`agent.head_tail`, shared with the local sandbox's log).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import BinaryIO

from agent.head_tail import HeadTailFile

HEAD_BYTES = 4 << 20
TAIL_BYTES = 4 << 20
_CHUNK = 1 << 16


class TeeLog:
    """Thread-safe: one thread pumps, another may `finish` when the pump cannot reach its end (a
    process the agent left behind still holds the pipe)."""

    def __init__(self, path: Path, console: BinaryIO | None, *, head: int = HEAD_BYTES, tail: int = TAIL_BYTES) -> None:
        self.path = path
        self._console = console
        self._lock = threading.Lock()
        self._file = HeadTailFile(open(path, "wb"), head, tail)  # noqa: SIM115 (closed by finish)

    @property
    def total(self) -> int:
        return self._file.total

    @property
    def omitted(self) -> int:
        return self._file.omitted

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
            if not self._file.closed:
                self._file.write(chunk)

    def finish(self) -> None:
        """Write the tail and close the file (idempotent); later output goes to the console only."""
        with self._lock:
            self._file.close()
