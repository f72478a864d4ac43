"""`AsyncClosing`: `async with` for anything that has an async `close()`.

Components own resources (threads, sockets, files, processes) that must be released by an explicit
`close()`, never by `__del__`; this base lets each be used as an async context manager as well.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self


class AsyncClosing:
    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()
