"""`codex-sys runner serve`, `codex-sys worker`, `codex-sys scripted-llm`: the long-running processes.

They log JSON lines to stderr, write a pid file (the embedded runner), and stop cleanly on SIGTERM or
SIGINT: the API drains, tasks in hand get a moment to finish, the rest are handed back to the queue.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import os
import signal
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from runner import logs
from runner.cli import deployment, executor_flags, source_flags
from runner.composition import Runner, RunnerConfig
from runner.config import HomeLayout, codex_home
from runner.domain.errors import InvalidArgument
from runner.pulls.settings import PullSettings
from runner.web.server import WebConfig, check_public_url, parse_listen


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def _config(args: argparse.Namespace, home: HomeLayout, *, run_api: bool, run_worker: bool) -> RunnerConfig:
    role = "runner" if run_api else "worker"
    overrides: dict[str, object] = {"run_api": run_api, "run_worker": run_worker,
                                    "distributed": deployment.distributed_settings(args, name=f"codex-sys-{role}"),
                                    "kubernetes": executor_flags.kubernetes_settings(args),
                                    "gateway_listen": executor_flags.gateway_listen(args),
                                    "sources": source_flags.source_settings(args)}
    if getattr(args, "workers", 0):
        overrides["workers"] = args.workers
    if getattr(args, "warm_pool", -1) >= 0:
        overrides["warm_pool"] = args.warm_pool
    if getattr(args, "listen", None):
        overrides["tcp_listen"] = tuple(args.listen)
    for flag in ("token_file", "tls_cert", "tls_key", "tenants_file"):
        if getattr(args, flag, None):
            overrides[flag] = Path(getattr(args, flag))
    if run_api and getattr(args, "http_listen", None):
        overrides["http"] = WebConfig(
            listen=parse_listen(args.http_listen),
            public_url=check_public_url(args.public_url) if args.public_url else "",
            share_key_file=Path(args.share_key_file) if args.share_key_file else None)
    if run_api:
        overrides["pulls"] = PullSettings.from_env(author=getattr(args, "git_author", None),
                                                   github_hosts=getattr(args, "github_host", None) or ())
    return RunnerConfig.from_env(home, **overrides)


@contextlib.contextmanager
def _worker_lock(home: HomeLayout) -> Iterator[None]:
    """One worker per home: its gateway socket and sandboxes folder are its own."""
    home.ensure()
    with open(home.root / "worker.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InvalidArgument(
                f"another worker already runs with CODEX_SYS_HOME={home.root}; give each worker process a "
                "home of its own (its gateway socket and sandboxes live there)") from None
        yield


async def _serve(config: RunnerConfig, pid_file: Path | None) -> int:
    logs.configure(os.environ.get("CODEX_SYS_LOG_LEVEL", "INFO"))
    with _worker_lock(config.home) if config.run_worker else contextlib.nullcontext():
        return await _serve_locked(config, pid_file)


async def _serve_locked(config: RunnerConfig, pid_file: Path | None) -> int:
    async with Runner(config):
        if pid_file is not None:
            pid_file.write_text(f"{os.getpid()}\n")
        try:
            await _until_signalled()
        finally:
            if pid_file is not None:
                with contextlib.suppress(FileNotFoundError):
                    pid_file.unlink()
    return 0


async def serve(args: argparse.Namespace) -> int:
    home = HomeLayout(codex_home())
    config = _config(args, home, run_api=True, run_worker=not args.no_worker)
    return await _serve(config, home.pid_file)


async def worker(args: argparse.Namespace) -> int:
    home = HomeLayout(codex_home())
    config = replace(_config(args, home, run_api=False, run_worker=True), sole_consumer=False)
    return await _serve(config, None)


async def scripted_llm(args: argparse.Namespace) -> int:
    from runner.scripted_llm.main import serve as serve_scripted

    logs.configure(os.environ.get("CODEX_SYS_LOG_LEVEL", "INFO"))
    await serve_scripted(args.scenario, args.host, args.port)
    return 0
