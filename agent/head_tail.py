"""A log file bounded to its first and last bytes: what both the local sandbox's `agent.log` and an agent
pod's use (the runner imports this module; it imports nothing but the standard library).

The file keeps the first `head` bytes (how the program started: a failed start's traceback lands here)
and the last `tail` bytes (how it ended), with a line between them saying how much was left out. Only
the head is written as output comes; the tail waits in memory (at most twice `tail` bytes) and is
appended by `close`, so the file never holds more than head + tail + that line.
"""

from __future__ import annotations

from typing import BinaryIO


class HeadTailFile:
    """Not thread-safe: callers that write from several threads hold their own lock."""

    def __init__(self, file: BinaryIO, head: int, tail: int) -> None:
        self._file = file
        self._head_left = head
        self._tail_max = tail
        self._tail = bytearray()
        self.total = 0  # bytes written in all
        self.omitted = 0  # bytes left out of the middle so far

    @property
    def closed(self) -> bool:
        return self._file.closed

    def write(self, chunk: bytes) -> None:
        self.total += len(chunk)
        if self._head_left:
            part = chunk[: self._head_left]
            self._file.write(part)
            self._head_left -= len(part)
            chunk = chunk[len(part):]
        if chunk:
            self._tail += chunk
            if len(self._tail) > 2 * self._tail_max:
                self._cut()

    def _cut(self) -> None:
        cut = len(self._tail) - self._tail_max
        del self._tail[:cut]
        self.omitted += cut

    def close(self) -> None:
        """Write the note of what was left out and the tail, then close the file (idempotent)."""
        if self._file.closed:
            return
        if len(self._tail) > self._tail_max:
            self._cut()
        if self.omitted:
            self._file.write(f"\n[... {self.omitted} bytes of output omitted; {self.total} bytes in all ...]\n"
                             .encode())
        self._file.write(self._tail)
        self._tail.clear()
        self._file.close()
