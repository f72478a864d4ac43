"""A distributed deployment made of real processes: `codex-sys runner serve` and `codex-sys worker`
processes on one NATS and one MinIO, each process with a home of its own, as on separate machines.

Each deployment has its own NATS prefix (streams, bucket, subjects) and MinIO bucket, so deployments of
different tests share the session's servers without seeing each other. Processes are started, killed
(SIGKILL) or stopped (SIGTERM) one by one, which is what the fault tests need.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from servers import MinioServer, NatsServer, free_port

from runner.client.connection import is_serving


@dataclass
class Member:
    """One process of the deployment."""

    role: str  # "runner" or "worker"
    home: Path
    proc: asyncio.subprocess.Process
    port: int | None = None

    @property
    def log_path(self) -> Path:
        return self.home.parent / f"{self.home.name}.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def address(self) -> str:
        assert self.port is not None, "a worker has no address"
        return f"127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    async def kill(self) -> None:
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self, timeout_s: float = 30) -> int:
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout_s)
        except TimeoutError:
            await self.kill()
            raise AssertionError(f"{self.role} at {self.home} did not stop within {timeout_s} s:\n"
                                 f"{self.log()[-3000:]}") from None


@dataclass
class Distributed:
    codex: str  # the codex-sys console script
    root: Path
    nats: NatsServer
    minio: MinioServer
    base_env: dict[str, str]  # provider, model, log level... (no CODEX_SYS_HOME)
    prefix: str = field(default_factory=lambda: f"cx{secrets.token_hex(4)}")
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    tenant: str = "team-a"
    ack_wait_s: float = 4.0
    heartbeat_s: float = 1.0
    members: list[Member] = field(default_factory=list)

    @property
    def bucket(self) -> str:
        return f"codex-{self.prefix}"

    def env(self, home: Path, **extra: str) -> dict[str, str]:
        return {**self.base_env, "CODEX_SYS_HOME": str(home), "CODEX_SYS_NATS_URL": self.nats.url,
                "CODEX_SYS_NATS_PREFIX": self.prefix, "CODEX_SYS_S3_ENDPOINT": self.minio.url,
                "CODEX_SYS_S3_BUCKET": self.bucket, "CODEX_SYS_S3_ACCESS_KEY": self.minio.access_key,
                "CODEX_SYS_S3_SECRET_KEY": self.minio.secret_key,
                "CODEX_SYS_QUEUE_ACK_WAIT": str(self.ack_wait_s), "CODEX_SYS_HEARTBEAT": str(self.heartbeat_s),
                **extra}

    def client_env(self, home: Path, runner: Member | None = None, token: str | None = None) -> dict[str, str]:
        """The environment of a CLI or language server that talks to `runner` (default: the first) with
        `token` (default: the deployment's own)."""
        target = runner or self.runners[0]
        return {**self.base_env, "CODEX_SYS_HOME": str(home), "CODEX_SYS_RUNNER": target.address,
                "CODEX_SYS_TOKEN": token or self.token}

    @property
    def runners(self) -> list[Member]:
        return [m for m in self.members if m.role == "runner"]

    @property
    def workers(self) -> list[Member]:
        return [m for m in self.members if m.role == "worker"]

    def _home(self, role: str) -> Path:
        home = self.root / f"{role}{sum(m.role == role for m in self.members)}"
        home.mkdir(mode=0o700)
        return home

    async def _spawn(self, role: str, home: Path, args: list[str], env: dict[str, str], port: int | None) -> Member:
        log = (home.parent / f"{home.name}.log").open("ab")
        try:
            proc = await asyncio.create_subprocess_exec(self.codex, *args, env=env, stdin=subprocess.DEVNULL,
                                                        stdout=log, stderr=log)
        finally:
            log.close()
        member = Member(role, home, proc, port)
        self.members.append(member)
        return member

    async def start_runner(self, *, worker: bool = False, tokens: str | None = None, extra_args: Sequence[str] = (),
                           **extra_env: str) -> Member:
        """A `runner serve` process. `tokens`: the token file's text (default: the deployment's one token);
        `extra_args`: more flags of `runner serve` (e.g. `--http-listen`)."""
        home = self._home("runner")
        token_file = home / "tokens"
        token_file.write_text(f"{self.token} {self.tenant}\n" if tokens is None else tokens)
        port = free_port()
        args = ["runner", "serve", "--listen", f"127.0.0.1:{port}", "--token-file", str(token_file), *extra_args]
        if not worker:
            args.append("--no-worker")
        member = await self._spawn("runner", home, args, self.env(home, **extra_env), port)
        await self._wait_serving(member)
        return member

    async def start_worker(self, *, slots: int = 2, **extra_env: str) -> Member:
        home = self._home("worker")
        return await self._spawn("worker", home, ["worker", "--workers", str(slots)],
                                 self.env(home, **extra_env), None)

    async def _wait_serving(self, member: Member, timeout_s: float = 30) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            if not member.alive:
                raise AssertionError(f"the runner exited with {member.proc.returncode}:\n{member.log()[-3000:]}")
            if await is_serving(member.address, timeout_s=0.5):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"the runner did not serve within {timeout_s} s:\n{member.log()[-3000:]}")

    def logs(self) -> str:
        return "\n".join(f"==== {m.role} {m.home.name} ====\n{m.log()[-4000:]}" for m in self.members)

    async def close(self) -> None:
        for member in reversed(self.members):
            with contextlib.suppress(AssertionError):
                await member.stop(timeout_s=20)
