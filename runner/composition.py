"""Composition: the one place that chooses adapters and wires the runner together.

`EmbeddedRunner` is the zero-infrastructure runner of one machine: SQLite task store, event log and
queue plus a filesystem CAS under CODEX_SYS_HOME, the gRPC API on a 0600 unix socket, the gateway on
another, and (unless `run_worker` is off) a worker with bubblewrap sandboxes and a warm pool.

When no LLM provider is configured (no OPENAI_BASE_URL and no OPENAI_API_KEY), the runner starts the
scripted OpenAI-compatible model in process and points the gateway at it: the demo works offline.
`CODEX_SYS_SCRIPTED_SCENARIO` names a scenario file or a bundled scenario (default: `demo-fix-calc`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType

from runner.adapters.embedded.db import StateDB, open_state_db
from runner.adapters.embedded.fs_blob_store import FsBlobStore
from runner.adapters.embedded.sqlite_event_log import SqliteEventLog
from runner.adapters.embedded.sqlite_task_queue import SqliteTaskQueue
from runner.adapters.embedded.sqlite_task_store import SqliteTaskStore
from runner.adapters.local_executor.executor import LocalExecutor
from runner.api.auth import load_token_file
from runner.api.codec import manifest_from_bytes, manifest_to_bytes
from runner.api.server import ApiServer
from runner.config import HomeLayout, LLMSettings
from runner.domain import models as m
from runner.gateway.server import Gateway
from runner.scripted_llm import Scenario, ScriptedLLMServer
from runner.tasks.service import ServiceLimits, TaskService
from runner.worker.agent_events import TaskEventSink
from runner.worker.exhausted import sweep_forever
from runner.worker.worker import Worker, WorkerConfig

log = logging.getLogger(__name__)

DEFAULT_SCENARIO = "demo-fix-calc"
MAX_BLOB_BYTES = 512 << 20
SHUTDOWN_GRACE_S = 3.0


class ProtoManifestCodec:
    """Manifests are stored as serialized `codex.runner.v1.Manifest` messages."""

    def encode(self, manifest: m.Manifest) -> bytes:
        return manifest_to_bytes(manifest)

    def decode(self, data: bytes) -> m.Manifest:
        return manifest_from_bytes(data)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a whole number") from None


@dataclass(frozen=True, slots=True)
class EmbeddedConfig:
    home: HomeLayout
    llm: LLMSettings
    run_api: bool = True
    run_worker: bool = True
    workers: int = 2
    warm_pool: int = 1
    tcp_listen: tuple[str, ...] = ()
    token_file: Path | None = None
    scripted_scenario: str = DEFAULT_SCENARIO
    max_blob_bytes: int = MAX_BLOB_BYTES
    # The only consumer of this state: at start, deliveries a crashed predecessor held are taken back
    # at once (as their next attempt) instead of after their ack deadline.
    sole_consumer: bool = True
    limits: ServiceLimits = field(default_factory=ServiceLimits)

    @classmethod
    def from_env(cls, home: HomeLayout, **overrides: object) -> EmbeddedConfig:
        base = cls(home=home, llm=LLMSettings.from_env(),
                   workers=_env_int("CODEX_SYS_WORKERS", 2), warm_pool=_env_int("CODEX_SYS_WARM_POOL", 1),
                   scripted_scenario=os.environ.get("CODEX_SYS_SCRIPTED_SCENARIO") or DEFAULT_SCENARIO)
        return replace(base, **overrides)  # type: ignore[arg-type]


def _load_scenario(name: str) -> Scenario:
    if os.sep in name or name.endswith(".json"):
        return Scenario.load(name)
    return Scenario.bundled(name)


class EmbeddedRunner:
    def __init__(self, config: EmbeddedConfig) -> None:
        self.config = config
        self._db: StateDB | None = None
        self._blobs: FsBlobStore | None = None
        self._scripted: ScriptedLLMServer | None = None
        self._gateway: Gateway | None = None
        self._executor: LocalExecutor | None = None
        self._worker: Worker | None = None
        self._worker_task: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._api: ApiServer | None = None
        self.service: TaskService | None = None

    async def __aenter__(self) -> EmbeddedRunner:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def start(self) -> None:
        cfg = self.config
        home = cfg.home
        home.ensure()
        self._db = await open_state_db(home.state_db)
        store, events = SqliteTaskStore(self._db), SqliteEventLog(self._db)
        queue = SqliteTaskQueue(self._db)
        self._blobs = FsBlobStore(home.blobs, cfg.max_blob_bytes)
        llm = cfg.llm
        if cfg.run_worker and not (llm.base_url or llm.api_key):
            self._scripted = ScriptedLLMServer(default=_load_scenario(cfg.scripted_scenario))
            base_url = await self._scripted.start_tcp("127.0.0.1", 0)
            llm = LLMSettings(base_url=base_url, api_key=None, model=llm.model)
            log.info("no LLM provider configured: using the scripted model",
                     extra={"scenario": cfg.scripted_scenario})
        self.service = TaskService(store, events, queue, self._blobs, ProtoManifestCodec(), llm.model, cfg.limits)
        if cfg.run_worker:
            self._gateway = Gateway(llm, TaskEventSink(self.service), home.gateway_socket, home.transcripts)
            await self._gateway.start()
            self._executor = LocalExecutor(self._blobs, home.sandboxes, home.gateway_socket, pool_size=cfg.warm_pool)
            await self._executor.start()
            self._worker = Worker(self.service, queue, self._executor, self._gateway,
                                  WorkerConfig(concurrency=cfg.workers))
            if cfg.sole_consumer:
                released = await queue.release_leases()
                if released:
                    log.info("tasks of a previous run taken back", extra={"tasks": released})
            self._worker_task = asyncio.create_task(self._worker.run(), name="worker")
            self._worker_task.add_done_callback(_log_exit)
            self._sweeper = asyncio.create_task(sweep_forever(self.service, queue), name="exhausted-sweeper")
            self._sweeper.add_done_callback(_log_exit)
        if cfg.run_api:
            tokens = load_token_file(cfg.token_file) if cfg.token_file else {}
            self._api = ApiServer(self.service)
            self._api.add_unix(home.runner_socket)
            for address in cfg.tcp_listen:
                self._api.add_tcp(address, tokens)
            await self._api.start()

    @property
    def tcp_port(self) -> int | None:
        return self._api.tcp_port if self._api else None

    async def close(self) -> None:
        started = time.monotonic()
        steps: dict[str, float] = {}

        def step(name: str) -> None:
            steps[name] = round((time.monotonic() - started) * 1000, 1)

        if self._api is not None:
            await self._api.drain()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._worker is not None:
            self._worker.stop()
        if self._worker_task is not None:
            # Tasks in hand get a moment to finish; the rest are stopped and, never acked, are
            # delivered again when a runner starts on this state.
            done, _ = await asyncio.wait({self._worker_task}, timeout=SHUTDOWN_GRACE_S)
            if not done:
                self._worker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker_task
        step("worker_ms")
        if self._api is not None:
            await self._api.stop(grace_s=2.0)
        step("api_ms")
        for closer in (self._executor, self._gateway, self._scripted):
            if closer is not None:
                try:
                    await closer.close()
                except Exception:
                    log.exception("close failed", extra={"component": type(closer).__name__})
                step(f"{type(closer).__name__}_ms")
        if self._blobs is not None:
            await self._blobs.close()
        if self._db is not None:
            await self._db.close()
        if steps:
            log.info("runner stopped", extra=steps)
        self._api = self._worker = self._worker_task = self._executor = self._sweeper = None
        self._gateway = self._scripted = self._db = self._blobs = None


def _log_exit(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("worker stopped", exc_info=task.exception())
