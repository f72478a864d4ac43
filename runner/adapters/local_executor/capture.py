"""Capture of a sandbox's stdout and stderr into `agent.log`, bounded in size.

A sandbox may print gigabytes. The log keeps the first `head` bytes (how it started: tracebacks of a
failed start land here) and the last `tail` bytes (how it ended), with a line in between that says how
much was left out. Only the head is written while the sandbox runs; the tail lives in memory (at most
twice `tail` bytes) and is appended at the end, so the file never holds more than head + tail + a line.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

_CHUNK = 1 << 16


class BoundedLog:
    def __init__(self, path: Path, head: int, tail: int) -> None:
        self.path = path
        self._head_left = head
        self._tail_max = tail
        self._tail = bytearray()
        self.total = 0
        self.omitted = 0
        self._file = path.open("wb")

    async def pump(self, stream: asyncio.StreamReader) -> None:
        """Read `stream` to its end (every process holding it has exited), then finish the file."""
        try:
            while chunk := await stream.read(_CHUNK):
                self._take(chunk)
        finally:
            self._finish()

    def _take(self, chunk: bytes) -> None:
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

    def close(self) -> None:
        """Finish the file now if `pump` never got to (idempotent)."""
        self._finish()

    def _finish(self) -> None:
        if self._file.closed:
            return
        if len(self._tail) > self._tail_max:
            cut = len(self._tail) - self._tail_max
            del self._tail[:cut]
            self.omitted += cut
        if self.omitted:
            self._file.write(f"\n[... {self.omitted} bytes of output omitted; {self.total} bytes in all ...]\n"
                             .encode())
        self._file.write(self._tail)
        self._tail.clear()
        self._file.close()

    @property
    def truncated(self) -> bool:
        return self.omitted > 0
