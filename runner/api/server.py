"""The gRPC server: the Runner service, health checking, reflection, auth, keepalive.

Listens on a unix socket (the embedded runner: created 0600 so only its owner can call it) and/or TCP
(`host:port`, bearer tokens required). Health is SERVING while the runner accepts tasks and NOT_SERVING
while it drains.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from runner.api.auth import Authenticator, AuthInterceptor
from runner.api.servicer import SERVICE_NAME, RunnerServicer, add_to_server
from runner.tasks.service import TaskService

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


class ApiServer:
    def __init__(self, service: TaskService, auth: Authenticator) -> None:
        self._server = aio.server(interceptors=[AuthInterceptor(auth)], options=SERVER_OPTIONS)
        add_to_server(RunnerServicer(service, auth), self._server)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME), self._server)
        self._auth = auth
        self.tcp_port: int | None = None

    def add_unix(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            path.unlink()
        # The socket file is created with the process umask: make it private from the start.
        old = os.umask(0o177)
        try:
            self._server.add_insecure_port(f"unix:{path}")
        finally:
            os.umask(old)
        self._unix_path = path

    def add_tcp(self, address: str) -> int:
        if self._auth.open:
            raise ValueError("a TCP listener needs bearer tokens (--token-file); refusing to serve without auth")
        self.tcp_port = self._server.add_insecure_port(address)
        return self.tcp_port

    async def start(self) -> None:
        await self._server.start()
        unix_path = getattr(self, "_unix_path", None)
        if unix_path is not None:
            os.chmod(unix_path, 0o600)
        await self._health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self._health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        log.info("api listening", extra={"unix": str(unix_path) if unix_path else None, "tcp": self.tcp_port})

    async def drain(self) -> None:
        await self._health.enter_graceful_shutdown()

    async def stop(self, grace_s: float = 5.0) -> None:
        await self._server.stop(grace_s)
