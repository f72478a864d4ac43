"""The workspace as the editor sees it: the folder on disk with the open documents laid over it.

One digest cache per workspace folder lives as long as the server (loaded from `CODEX_SYS_HOME/cache`
the first time, saved after each snapshot off the way to the runner), so an unchanged workspace costs a
stat per file and no reads. Open documents are overlays: their text wins over the file on disk, unsaved
or not, and applies even to an ignored file (the user has it open). The walk runs in a thread; the
limits are the `codexSys.snapshot.*` settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from pathlib import Path

from lsp_server.settings import Settings
from runner.client.digest_cache import DigestCache
from runner.client.snapshot import Snapshot, take_snapshot
from runner.config import HomeLayout, codex_home

__all__ = ["EditorSnapshots"]

log = logging.getLogger(__name__)


class EditorSnapshots:
    def __init__(self) -> None:
        self._caches: dict[str, DigestCache] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._saves: set[asyncio.Task[None]] = set()

    async def take(self, root: Path, overlays: Mapping[str, bytes], settings: Settings) -> Snapshot:
        """Snapshot `root` with `overlays` (workspace-relative path -> the open document's bytes)."""
        key = str(root)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one snapshot of a folder at a time: its cache allows one session
            cache = self._caches.get(key)

            def run() -> tuple[Snapshot, DigestCache]:
                nonlocal cache
                if cache is None:
                    layout = HomeLayout(codex_home())
                    layout.ensure()
                    cache = DigestCache.for_workspace(root, layout.cache)
                snap = take_snapshot(root, cache=cache, overlays=overlays, exclude=settings.exclude,
                                     max_files=settings.max_files, max_total_bytes=settings.max_bytes,
                                     max_file_bytes=min(settings.max_bytes, 256 << 20))
                return snap, cache

            snapshot, self._caches[key] = await asyncio.to_thread(run)
        save = asyncio.create_task(asyncio.to_thread(self._caches[key].save))
        self._saves.add(save)
        save.add_done_callback(self._saves.discard)
        return snapshot

    async def close(self) -> None:
        for save in list(self._saves):
            with contextlib.suppress(Exception):
                await save
