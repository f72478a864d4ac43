"""A `codex-sys runner serve` process with TLS and a token file: TLS with a private CA (and a clear
refusal without it), tokens added, revoked and expiring while it runs, and a log that never holds a token."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from kube_cluster import make_certificates
from servers import free_port

from runner.client.connection import RunnerClient
from runner.domain.errors import Unauthenticated, Unavailable

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]

STEADY = "shared-steady-0123456789abcdef"
ROTATED_OUT = "shared-rotated-out-0123456789"
ROTATED_IN = "shared-rotated-in-0123456789"
SOON_EXPIRED = "shared-soon-expired-0123456789"
NEVER_VALID = "shared-never-valid-0123456789"
ALL_TOKENS = (STEADY, ROTATED_OUT, ROTATED_IN, SOON_EXPIRED, NEVER_VALID)


@dataclass
class Shared:
    root: Path
    address: str
    tokens: Path
    certs: Path
    log: Path

    def client(self, token: str | None, *, ca: bool = True) -> RunnerClient:
        return RunnerClient(f"tls://{self.address}", token=token, ca_file=self.certs / "ca.crt" if ca else None,
                            timeout_s=5)

    def write_tokens(self, text: str) -> None:
        # Replaced in one step, as an operator's tooling (or a Kubernetes Secret mount) does.
        staged = self.tokens.with_suffix(".new")
        staged.write_text(text)
        os.replace(staged, self.tokens)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared() -> AsyncIterator[Shared]:
    root = Path(tempfile.mkdtemp(prefix="cxtls", dir="/tmp"))
    make_certificates(root / "certs", hosts=["localhost"], ips=["127.0.0.1"])
    tokens = root / "tokens"
    tokens.write_text(f"{STEADY} acme\n{ROTATED_OUT} acme viewer\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEX_SYS_")}
    env.update(CODEX_SYS_HOME=str(root / "home"), CODEX_SYS_LOG_LEVEL="DEBUG")
    log = root / "runner.log"
    proc = None
    try:
        with open(log, "wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "runner.cli.main", "runner", "serve", "--embedded", "--no-worker",
                "--listen", f"127.0.0.1:{port}", "--token-file", str(tokens),
                "--tls-cert", str(root / "certs" / "apiserver.crt"), "--tls-key", str(root / "certs" / "apiserver.key"),
                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        s = Shared(root, f"127.0.0.1:{port}", tokens, root / "certs", log)
        async with s.client(STEADY) as client:
            for _ in range(200):
                if proc.returncode is not None:
                    raise AssertionError(f"the runner exited:\n{log.read_text()[-3000:]}")
                with contextlib.suppress(Unavailable):
                    await client.list_tasks()
                    break
                await asyncio.sleep(0.05)
        yield s
    finally:
        if proc is not None and proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 10)
        shutil.rmtree(root, ignore_errors=True)


async def eventually(check: Callable[[], Awaitable[object]], within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while True:
        try:
            await check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_grpc_over_tls_with_a_private_ca(shared: Shared) -> None:
    async with shared.client(STEADY) as client:
        assert await client.list_tasks() == []
    async with shared.client(STEADY, ca=False) as client:
        with pytest.raises(Unavailable) as caught:
            await client.list_tasks()
    assert "certificate verify failed" in str(caught.value) or "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    async with RunnerClient(shared.address, token=STEADY, timeout_s=5) as plain:
        with pytest.raises(Unavailable):
            await plain.list_tasks()


async def test_tokens_are_added_revoked_and_expire_while_the_runner_runs(shared: Shared) -> None:
    async with shared.client(ROTATED_OUT) as old, shared.client(ROTATED_IN) as new, \
            shared.client(SOON_EXPIRED) as soon, shared.client(STEADY) as steady:
        assert await old.list_tasks() == []
        with pytest.raises(Unauthenticated, match="not valid"):
            await new.list_tasks()
        expires = (datetime.now(UTC) + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        shared.write_tokens(f"{STEADY} acme\n{ROTATED_OUT} acme viewer revoked\n{ROTATED_IN} acme viewer\n"
                            f"{SOON_EXPIRED} acme expires={expires}\n")

        async def rotated() -> None:
            try:
                await new.list_tasks()
            except Unauthenticated as exc:
                raise AssertionError("the new token is not taken yet") from exc
        await eventually(rotated)
        with pytest.raises(Unauthenticated, match=r"^this token \(id [0-9a-f]{8}\) was revoked; ask for a new one$"):
            await old.list_tasks()
        assert await soon.list_tasks() == []

        async def expired() -> None:
            try:
                await soon.list_tasks()
            except Unauthenticated as exc:
                assert f"expired at {expires}" in str(exc)
                return
            raise AssertionError("still valid")
        await eventually(expired, within_s=6)

        # A file that no longer parses leaves the last good book in force.
        shared.write_tokens(f"{STEADY} acme\n{ROTATED_IN} acme nobody\n")
        await asyncio.sleep(1.2)
        assert await steady.list_tasks() == [] and await new.list_tasks() == []
    async with shared.client(NEVER_VALID) as stranger, shared.client(None) as anonymous:
        with pytest.raises(Unauthenticated):
            await stranger.list_tasks()
        with pytest.raises(Unauthenticated, match="missing"):
            await anonymous.list_tasks()


async def test_the_runner_log_holds_no_token(shared: Shared) -> None:
    """Runs last in this module: by now valid, unknown, revoked and expired tokens were all presented."""
    await asyncio.sleep(0.2)
    text = shared.log.read_text()
    assert "call refused" in text and "token file not reloaded" in text and "token file reloaded" in text
    for token in ALL_TOKENS:
        assert token not in text
