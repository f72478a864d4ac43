"""Capture of a sandbox's stdout and stderr into `agent.log`, bounded in size.

A sandbox may print gigabytes. The log keeps its first and last bytes with a line in between that says
how much was left out (`agent.head_tail`, shared with an agent pod's log).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from agent.head_tail import HeadTailFile

_CHUNK = 1 << 16


class BoundedLog:
    def __init__(self, path: Path, head: int, tail: int) -> None:
        self.path = path
        self._file = HeadTailFile(path.open("wb"), head, tail)

    @property
    def total(self) -> int:
        return self._file.total

    @property
    def omitted(self) -> int:
        return self._file.omitted

    async def pump(self, stream: asyncio.StreamReader) -> None:
        """Read `stream` to its end (every process holding it has exited), then finish the file."""
        try:
            while chunk := await stream.read(_CHUNK):
                self._file.write(chunk)
        finally:
            self._file.close()

    def close(self) -> None:
        """Finish the file now if `pump` never got to (idempotent)."""
        self._file.close()

    @property
    def truncated(self) -> bool:
        return self.omitted > 0
