"""The gRPC servers: the Runner service, health checking, reflection, auth, keepalive.

One server per kind of listener, each with its own idea of who is calling:
- a unix socket (the embedded runner): created 0600, so only its owner can connect; callers are the
  local tenant, no token needed;
- TCP (`host:port`): every call needs `authorization: Bearer <token>`; the `TokenBook` names the tenant
  and roles. With a certificate and key the TCP listeners speak TLS only (`runner.auth.tls`).
Health is SERVING while the runner accepts tasks and NOT_SERVING while it drains.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from runner.api.auth import Authenticator, AuthInterceptor
from runner.api.servicer import SERVICE_NAME, RunnerServicer, add_to_server
from runner.auth.tls import ServerTls
from runner.auth.tokens import TokenBook
from runner.pulls.service import PullRequestService
from runner.tasks.service import TaskService
from runner.web.links import PageLinks

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 8 << 20
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Long watch streams: ping idle connections, tolerate clients that ping every 20 s.
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
]
_HEALTH_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


def _credentials(tls: ServerTls) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials([(tls.private_key, tls.cert_chain)])


class ApiServer:
    def __init__(self, service: TaskService, pulls: PullRequestService | None = None,
                 pages: PageLinks | None = None) -> None:
        self._service = service
        self._pulls = pulls
        self._pages = pages
        self._health = health.aio.HealthServicer()
        self._servers: list[aio.Server] = []
        self._unix_paths: list[Path] = []
        self.tcp_port: int | None = None

    def _server(self, auth: Authenticator) -> aio.Server:
        server = aio.server(interceptors=[AuthInterceptor(auth)], options=SERVER_OPTIONS)
        add_to_server(RunnerServicer(self._service, self._pulls, pages=self._pages), server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection((SERVICE_NAME, _HEALTH_NAME, reflection.SERVICE_NAME), server)
        self._servers.append(server)
        return server

    def add_unix(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            path.unlink()
        server = self._server(Authenticator())
        # The socket is made 0600 once bound. Until then the folder keeps others out: it must be private
        # (CODEX_SYS_HOME is 0700). The process umask is left alone: it is shared with every thread,
        # and sandboxes started meanwhile would inherit it.
        if path.parent.stat().st_mode & 0o077:
            raise PermissionError(f"{path.parent} must be accessible to its owner only (chmod 700) to hold the "
                                  "runner's socket")
        server.add_insecure_port(f"unix:{path}")
        self._unix_paths.append(path)

    def add_tcp(self, address: str, tokens: TokenBook | None, tls: ServerTls | None = None) -> int:
        if tokens is None or not len(tokens):
            raise ValueError("a TCP listener needs bearer tokens (--token-file or CODEX_SYS_TOKENS); "
                             "refusing to serve without auth")
        server = self._server(Authenticator(tokens))
        port: int = (server.add_secure_port(address, _credentials(tls)) if tls is not None
                     else server.add_insecure_port(address))
        if port == 0:
            raise OSError(f"cannot listen on {address}")
        self.tcp_port = port
        return port

    async def start(self) -> None:
        for server in self._servers:
            await server.start()
        for path in self._unix_paths:
            os.chmod(path, 0o600)
        await self._health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self._health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        log.info("api listening", extra={"unix": ",".join(map(str, self._unix_paths)) or None, "tcp": self.tcp_port})

    async def drain(self) -> None:
        await self._health.enter_graceful_shutdown()

    async def stop(self, grace_s: float = 5.0) -> None:
        await asyncio.gather(*(server.stop(grace_s) for server in self._servers))
