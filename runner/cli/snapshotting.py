"""The CLI's snapshot of a workspace: the digest cache under CODEX_SYS_HOME, the walk in a thread, and
the cache saved after the snapshot is in hand (its save is not on the way to the runner)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from runner.client.digest_cache import DigestCache
from runner.client.snapshot import Snapshot, take_snapshot
from runner.config import HomeLayout


async def snapshot_workspace(root: Path, layout: HomeLayout, exclude: Sequence[str]) -> tuple[Snapshot, DigestCache]:
    def take() -> tuple[Snapshot, DigestCache]:
        layout.ensure()
        cache = DigestCache.for_workspace(root, layout.cache)
        return take_snapshot(root, cache=cache, exclude=exclude), cache

    return await asyncio.to_thread(take)


async def save_cache(cache: DigestCache) -> None:
    await asyncio.to_thread(cache.save)  # logs and swallows its own failures: a lost cache costs a re-hash
