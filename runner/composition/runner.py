"""`Runner`: one runner process, the API and/or a worker, over the backends `open_backends` chose.

The API serves gRPC on a 0600 unix socket under CODEX_SYS_HOME and on any TCP addresses given (bearer
tokens from the token file). A worker brings its gateway (on another unix socket under the home, the
sandboxes' one channel out), a local bubblewrap executor with a warm pool, and `concurrency` slots. A
process with the API also sweeps the tasks the queue gave up on (see `runner.worker.exhausted`).

When no LLM provider is configured (no OPENAI_BASE_URL and no OPENAI_API_KEY), a worker starts the
scripted OpenAI-compatible model in process and points the gateway at it: the demo works offline.
`CODEX_SYS_SCRIPTED_SCENARIO` names a scenario file or a bundled scenario (default: `demo-fix-calc`).

Shutdown (SIGTERM): the API stops taking calls and drains its streams; the worker takes no new
deliveries; tasks in hand get `shutdown_grace_s` to finish, and the others are stopped and handed back
to the queue at once (another worker starts them again as their next attempt).
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
from typing import TYPE_CHECKING

from runner.adapters.local_executor.executor import LocalExecutor
from runner.api.server import ApiServer
from runner.auth.tls import TLS_CERT_ENV, TLS_KEY_ENV, ServerTls
from runner.auth.tokens import TOKEN_FILE_ENV, TOKENS_ENV, TokenBook
from runner.auth.watched_file import WatchedFile
from runner.composition.backends import Backends, DistributedSettings, open_backends
from runner.composition.codec import ProtoManifestCodec
from runner.config import HomeLayout, LLMSettings, env_number, env_whole
from runner.domain.errors import InvalidArgument
from runner.gateway.server import Gateway
from runner.ports import BlobStore, Executor
from runner.pulls.service import PullRequestService
from runner.pulls.settings import PullSettings
from runner.scripted_llm import Scenario, ScriptedLLMServer
from runner.sources.fetcher import SourceFetcher
from runner.sources.ingest import IngestLimits
from runner.sources.settings import SourceSettings
from runner.tasks.quotas import TENANTS_FILE_ENV, Quotas, read_tenants_file
from runner.tasks.service import ServiceLimits, TaskService
from runner.web.server import WebConfig, WebSide
from runner.worker.agent_events import TaskEventSink
from runner.worker.exhausted import sweep_forever
from runner.worker.worker import Worker, WorkerConfig

if TYPE_CHECKING:
    from runner.adapters.kubernetes import KubernetesSettings

log = logging.getLogger(__name__)

DEFAULT_SCENARIO = "demo-fix-calc"
MAX_BLOB_BYTES = 512 << 20
SHUTDOWN_GRACE_S = 3.0


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    home: HomeLayout
    llm: LLMSettings
    run_api: bool = True
    run_worker: bool = True
    workers: int = 2
    warm_pool: int = 1
    tcp_listen: tuple[str, ...] = ()
    # Bearer tokens for TCP (runner.auth.tokens): a file re-read when it changes, and/or fixed lines.
    token_file: Path | None = None
    inline_tokens: str = ""
    # TLS for the TCP listeners (both or neither), and the per-tenant quotas file (none: no quotas).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tenants_file: Path | None = None
    scripted_scenario: str = DEFAULT_SCENARIO
    max_blob_bytes: int = MAX_BLOB_BYTES
    # The only consumer of an embedded state: at start, deliveries a crashed predecessor held are taken
    # back at once (as their next attempt) instead of after their ack deadline.
    sole_consumer: bool = True
    limits: ServiceLimits = field(default_factory=ServiceLimits)
    # NATS and MinIO; None for the embedded stores under `home`.
    distributed: DistributedSettings | None = None
    # How long tasks in hand may run on after SIGTERM before they are stopped and handed back.
    shutdown_grace_s: float = SHUTDOWN_GRACE_S
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    # Agent pods on Kubernetes instead of local bubblewrap sandboxes (needs `distributed`).
    kubernetes: KubernetesSettings | None = None
    # Also serve the gateway on TCP (host, port): agent pods reach it over the network.
    gateway_listen: tuple[str, int] | None = None
    # The task pages over HTTP (runner.web), served by the API process; None: no HTTP side.
    http: WebConfig | None = None
    # Pull requests from tasks' diffs (runner.pulls): commit identity, GitHub hosts, timeouts.
    pulls: PullSettings = field(default_factory=PullSettings)
    # Git and zip task sources (runner.sources): local URLs, size limits, timeouts.
    sources: SourceSettings = field(default_factory=SourceSettings)

    @classmethod
    def from_env(cls, home: HomeLayout, **overrides: object) -> RunnerConfig:
        worker = WorkerConfig(heartbeat_s=env_number("CODEX_SYS_HEARTBEAT", WorkerConfig().heartbeat_s))
        base = cls(home=home, llm=LLMSettings.from_env(), workers=env_whole("CODEX_SYS_WORKERS", 2),
                   warm_pool=env_whole("CODEX_SYS_WARM_POOL", 1, allow_zero=True),
                   scripted_scenario=os.environ.get("CODEX_SYS_SCRIPTED_SCENARIO") or DEFAULT_SCENARIO,
                   shutdown_grace_s=env_number("CODEX_SYS_SHUTDOWN_GRACE", SHUTDOWN_GRACE_S, allow_zero=True),
                   worker=worker, token_file=_env_path(TOKEN_FILE_ENV), inline_tokens=os.environ.get(TOKENS_ENV, ""),
                   tls_cert=_env_path(TLS_CERT_ENV), tls_key=_env_path(TLS_KEY_ENV),
                   tenants_file=_env_path(TENANTS_FILE_ENV), sources=SourceSettings.from_env())
        return replace(base, **overrides)  # type: ignore[arg-type]


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def _load_scenario(name: str) -> Scenario:
    if os.sep in name or name.endswith(".json"):
        return Scenario.load(name)
    return Scenario.bundled(name)


class Runner:
    def __init__(self, config: RunnerConfig) -> None:
        self.config = config
        self._backends: Backends | None = None
        self._scripted: ScriptedLLMServer | None = None
        self._gateway: Gateway | None = None
        self._executor: Executor | None = None
        self._worker: Worker | None = None
        self._worker_task: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._api: ApiServer | None = None
        self._web: WebSide | None = None
        self.service: TaskService | None = None

    async def __aenter__(self) -> Runner:
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
        # Settings files first: a bad token, certificate or tenants file stops the start at once.
        tokens = (TokenBook(cfg.token_file, cfg.inline_tokens)
                  if cfg.run_api and (cfg.token_file or cfg.inline_tokens.strip()) else None)
        tls = ServerTls.from_settings(cfg.tls_cert, cfg.tls_key) if cfg.run_api else None
        quota_file = WatchedFile(cfg.tenants_file, read_tenants_file, "tenants file") if cfg.tenants_file else None
        backends = self._backends = await open_backends(home, cfg.distributed, max_blob_bytes=cfg.max_blob_bytes)
        llm = cfg.llm
        if cfg.run_worker and not (llm.base_url or llm.api_key):
            self._scripted = ScriptedLLMServer(default=_load_scenario(cfg.scripted_scenario))
            base_url = await self._scripted.start_tcp("127.0.0.1", 0)
            llm = LLMSettings(base_url=base_url, api_key=None, model=llm.model)
            log.info("no LLM provider configured: using the scripted model",
                     extra={"scenario": cfg.scripted_scenario})
        self.service = TaskService(backends.store, backends.events, backends.queue, backends.blobs,
                                   ProtoManifestCodec(), llm.model, cfg.limits,
                                   quotas=Quotas(backends.store, quota_file) if quota_file else None,
                                   sources=cfg.sources)
        if cfg.run_worker:
            self._gateway = Gateway(llm, TaskEventSink(self.service), home.gateway_socket, home.transcripts)
            await self._gateway.start()
            if cfg.gateway_listen is not None:
                port = await self._gateway.listen_tcp(*cfg.gateway_listen)
                log.info("gateway listening on TCP", extra={"host": cfg.gateway_listen[0], "port": port})
            blobs = backends.worker_blobs
            self._executor = await _open_executor(cfg, backends, blobs)
            self._worker = Worker(self.service, backends.queue, self._executor, self._gateway,
                                  replace(cfg.worker, concurrency=cfg.workers), blobs=blobs,
                                  sources=SourceFetcher(cfg.sources, home.root / "sources", IngestLimits(
                                      cfg.limits.max_files, cfg.limits.max_snapshot_bytes, cfg.max_blob_bytes)))
            if cfg.sole_consumer and backends.release_leases is not None:
                released = await backends.release_leases()
                if released:
                    log.info("tasks of a previous run taken back", extra={"tasks": released})
            self._worker_task = asyncio.create_task(self._worker.run(), name="worker")
            self._worker_task.add_done_callback(_log_exit)
        if cfg.run_api or not backends.distributed:
            # Whoever owns the API owns the sweep; an embedded worker-only process sweeps its own state.
            self._sweeper = asyncio.create_task(sweep_forever(self.service, backends.queue), name="exhausted-sweeper")
            self._sweeper.add_done_callback(_log_exit)
        if cfg.run_api:
            if cfg.http is not None:
                # Started before the API, so page URLs and share links are known when it answers.
                self._web = WebSide.open(self.service, home, cfg.http, tokens,
                                         ssl_context=tls.ssl_context() if tls is not None else None)
                await self._web.start()
            pulls = PullRequestService(self.service, cfg.pulls, cfg.sources)
            self._api = ApiServer(self.service, pulls=pulls, pages=self._web.links if self._web else None)
            self._api.add_unix(home.runner_socket)
            for address in cfg.tcp_listen:
                self._api.add_tcp(address, tokens, tls)
            await self._api.start()

    @property
    def tcp_port(self) -> int | None:
        return self._api.tcp_port if self._api else None

    @property
    def public_url(self) -> str | None:
        """The task pages' base URL; None without an HTTP side."""
        return self._web.links.base_url if self._web else None

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
            # Tasks in hand get a moment to finish; the rest are stopped and handed back to the queue.
            done, _ = await asyncio.wait({self._worker_task}, timeout=self.config.shutdown_grace_s)
            if not done:
                self._worker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker_task
        step("worker_ms")
        if self._api is not None:
            await self._api.stop(grace_s=2.0)
        step("api_ms")
        if self._web is not None:
            await self._web.close()
            step("web_ms")
        for closer in (self._executor, self._gateway, self._scripted):
            if closer is not None:
                try:
                    await closer.close()
                except Exception:
                    log.exception("close failed", extra={"component": type(closer).__name__})
                step(f"{type(closer).__name__}_ms")
        if self._backends is not None:
            await self._backends.close()
        if steps:
            log.info("runner stopped", extra=steps)
        self._api = self._worker = self._worker_task = self._executor = self._sweeper = self._web = None
        self._gateway = self._scripted = self._backends = None


async def _open_executor(cfg: RunnerConfig, backends: Backends, blobs: BlobStore) -> Executor:
    home = cfg.home
    if cfg.kubernetes is None:
        local = LocalExecutor(blobs, home.sandboxes, home.gateway_socket, pool_size=cfg.warm_pool,
                              packs=backends.packs)
        await local.start()
        return local
    # Imported here: the Kubernetes client loads only in a worker that uses it.
    from runner.adapters.kubernetes import KubernetesExecutor, Transfers

    if not backends.distributed or backends.packs is None or not isinstance(backends.blobs, Transfers):
        raise InvalidArgument("the Kubernetes executor needs NATS and MinIO (--nats, --s3-endpoint): agent pods "
                              "fetch snapshots and upload outputs through presigned MinIO links")
    if cfg.gateway_listen is None:
        raise InvalidArgument("the Kubernetes executor needs the gateway on TCP for its pods: set "
                              "--gateway-listen / CODEX_SYS_GATEWAY_LISTEN (e.g. 0.0.0.0:8081)")
    executor = KubernetesExecutor(cfg.kubernetes, blobs, backends.blobs, backends.packs)
    await executor.start()
    return executor


def _log_exit(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task stopped", extra={"task": task.get_name()}, exc_info=task.exception())
