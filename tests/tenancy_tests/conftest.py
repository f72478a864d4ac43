"""Real runners for the tenancy tests: embedded adapters in a private CODEX_SYS_HOME, the gRPC API on a
unix socket and on TCP with a token book, no worker (tasks stay queued unless a test says otherwise)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

from runner.composition import Runner, RunnerConfig
from runner.config import HomeLayout, LLMSettings

TOKEN_A = "tenancy-a-member-0123456789abcdef"
TOKEN_A_VIEWER = "tenancy-a-viewer-0123456789abcdef"
TOKEN_B = "tenancy-b-member-0123456789abcdef"
TOKEN_EXPIRED = "tenancy-a-expired-0123456789abcdef"
TOKEN_REVOKED = "tenancy-a-revoked-0123456789abcdef"
TOKEN_UNKNOWN = "tenancy-nobody-0123456789abcdef"
TOKEN_LINES = (f"# token tenant roles\n{TOKEN_A} tenant-a member\n{TOKEN_A_VIEWER} tenant-a viewer\n"
               f"{TOKEN_B} tenant-b\n{TOKEN_EXPIRED} tenant-a member expires=2020-01-01T00:00:00Z\n"
               f"{TOKEN_REVOKED} tenant-a member revoked\n")


def config(root: Path, tokens: str = TOKEN_LINES, **overrides: object) -> RunnerConfig:
    token_file = root / "tokens"
    if not token_file.exists():
        token_file.write_text(tokens)
    base = RunnerConfig(home=HomeLayout(root / "home"), llm=LLMSettings(None, None, "test-model"), run_worker=False,
                        tcp_listen=("127.0.0.1:0",), token_file=token_file)
    return replace(base, **overrides)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running(cfg: RunnerConfig) -> AsyncIterator[tuple[Runner, str]]:
    async with Runner(cfg) as runner:
        yield runner, f"127.0.0.1:{runner.tcp_port}"
