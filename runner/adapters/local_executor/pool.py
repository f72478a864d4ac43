"""The warm pool: sandboxes started before their task exists.

Starting a sandbox costs bubblewrap's setup plus an interpreter plus importing the agent; a task should
not wait for that. The pool keeps `size` sandboxes already running, each blocked reading its task spec
from stdin, each with its own empty workspace and output folders already bound in (a bind mount of a
folder shows files added to it later, so the snapshot can be written after the start).

`take` hands out a warm sandbox (or starts one when none is ready: size 0 means always on demand);
the caller calls `refill` once its task is under way, so that starting the replacement does not compete
with the task's own start for the CPU. Warm sandboxes also start at a lower CPU priority (see
`Sandbox.start`) and get the normal one back when taken.

A sandbox serves exactly one task. A warm sandbox that is no longer usable (it exited while idle, or
the gateway was restarted so its bind of the socket is stale) is destroyed instead of being handed out;
if warm sandboxes keep dying while idle (a broken agent command), refilling backs off exponentially up
to 30 s instead of spinning.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable

from runner.adapters.local_executor.background import Background
from runner.adapters.local_executor.limits import SandboxLimits
from runner.adapters.local_executor.sandbox import Sandbox

log = logging.getLogger(__name__)

_MAX_BACKOFF_S = 30.0
_LOG_EXCERPT = 2000


class WarmPool:
    def __init__(self, size: int, start_one: Callable[[SandboxLimits | None], Awaitable[Sandbox]]) -> None:
        if size < 0:
            raise ValueError(f"warm pool size must be >= 0, got {size}")
        self.size = size
        self._start_one = start_one
        self._ready: collections.deque[Sandbox] = collections.deque()
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._bg = Background()
        self._refill: asyncio.Task[None] | None = None
        self._backoff = 0.0
        self._closed = False

    @property
    def ready(self) -> int:
        return len(self._ready)

    def start(self) -> None:
        self._kick()

    async def wait_ready(self) -> None:
        """Wait until the refill in progress, if any, has filled the pool (it retries, with backoff, until
        it has: with a gateway that never comes up this waits for ever). For warm-up and tests."""
        while self._refill is not None and not self._refill.done():
            await asyncio.shield(self._refill)

    async def take(self, limits: SandboxLimits) -> tuple[Sandbox, bool]:
        """A sandbox for one task, and whether it was warm. One started now gets the task's `limits`
        from its start; a warm one has them applied by the caller."""
        if self._closed:
            raise RuntimeError("the warm pool is closed")
        while self._ready:
            sandbox = self._ready.popleft()
            self._unwatch(sandbox)
            if sandbox.usable():
                self._backoff = 0.0
                return sandbox, True
            log.info("discarding a warm sandbox that is no longer usable",
                     extra={"sandbox": sandbox.id, "exit_code": sandbox.returncode})
            self._bg.spawn(sandbox.destroy(), f"destroy {sandbox.id}")
        return await self._start_one(limits), False

    def refill(self) -> None:
        """Start warm sandboxes in the background until the pool is full again."""
        self._kick()

    def _kick(self) -> None:
        if self._closed or self.size == 0:
            return
        if self._refill is None or self._refill.done():
            self._refill = self._bg.spawn(self._fill(), "warm pool refill")

    async def _fill(self) -> None:
        while not self._closed and len(self._ready) < self.size:
            if self._backoff:
                await asyncio.sleep(self._backoff)
            try:
                sandbox = await self._start_one(None)
            except Exception:
                self._backoff = min(max(0.5, self._backoff * 2), _MAX_BACKOFF_S)
                log.warning("could not start a warm sandbox; retrying",
                            extra={"retry_in_s": self._backoff}, exc_info=True)
                continue
            if self._closed:
                await sandbox.destroy()
                return
            self._ready.append(sandbox)
            self._watchers[sandbox.id] = self._bg.spawn(self._watch(sandbox), f"watch {sandbox.id}")

    async def _watch(self, sandbox: Sandbox) -> None:
        """A warm sandbox must not exit before its task; if it does, say why and replace it."""
        code = await sandbox.wait()
        if sandbox not in self._ready:
            return
        self._ready.remove(sandbox)
        self._watchers.pop(sandbox.id, None)
        await sandbox.stop()
        excerpt = ""
        with contextlib.suppress(OSError):
            excerpt = sandbox.log_path.read_bytes()[:_LOG_EXCERPT].decode("utf-8", "replace")
        self._backoff = min(max(0.5, self._backoff * 2), _MAX_BACKOFF_S)
        log.warning("warm sandbox exited before it was given a task",
                    extra={"sandbox": sandbox.id, "exit_code": code, "output": excerpt,
                           "retry_in_s": self._backoff})
        await sandbox.destroy()
        self._kick()

    def _unwatch(self, sandbox: Sandbox) -> None:
        watcher = self._watchers.pop(sandbox.id, None)
        if watcher is not None:
            watcher.cancel()

    async def close(self) -> None:
        """Destroy every warm sandbox and stop refilling."""
        self._closed = True
        # Watchers are not cancelled: once their sandbox is out of the pool and dead they return, and one
        # busy destroying a sandbox that died idle must finish doing so (awaited below).
        self._watchers.clear()
        if self._refill is not None:
            self._refill.cancel()
        ready, self._ready = list(self._ready), collections.deque()
        for sandbox in ready:
            sandbox.kill()
        await asyncio.gather(*(s.destroy() for s in ready), return_exceptions=True)
        await self._bg.close(cancel=False)
