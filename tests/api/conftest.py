"""A real gRPC runner (embedded adapters, API only, no worker) on a unix socket and on TCP with tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from runner.client.connection import RunnerClient
from runner.composition import Runner, RunnerConfig
from runner.config import HomeLayout, LLMSettings
from runner.tasks.service import ServiceLimits

TOKEN_A = "token-of-tenant-a-0123456789"
TOKEN_B = "token-of-tenant-b-9876543210"
MAX_BLOB = 64 * 1024


@dataclass
class Api:
    runner: Runner
    home: HomeLayout
    tcp: str

    def unix(self) -> RunnerClient:
        return RunnerClient(f"unix:{self.home.runner_socket}")

    def tenant(self, token: str | None) -> RunnerClient:
        return RunnerClient(self.tcp, token=token)


@pytest.fixture
async def api(short_tmp: Path) -> AsyncIterator[Api]:
    tokens = short_tmp / "tokens"
    tokens.write_text(f"# token tenant\n{TOKEN_A} tenant-a\n{TOKEN_B} tenant-b\n")
    home = HomeLayout(short_tmp / "home")
    config = RunnerConfig(home=home, llm=LLMSettings(None, None, "test-model"), run_worker=False,
                            tcp_listen=("127.0.0.1:0",), token_file=tokens, max_blob_bytes=MAX_BLOB,
                            limits=ServiceLimits(max_files=50, max_snapshot_bytes=200_000))
    async with Runner(config) as runner:
        yield Api(runner, home, f"127.0.0.1:{runner.tcp_port}")
