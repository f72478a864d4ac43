"""How a client reaches a runner: the gRPC channel for an address, with TLS where asked for.

Addresses:
- `unix:/path/runner.sock`: the embedded runner (no token, no TLS: the socket is 0600);
- `tls://host:port` or `https://host:port`: TLS, the runner's certificate checked against the CA file
  (`--ca-file` / `CODEX_SYS_CA_FILE`, for a private CA) or else the system's trust store;
- `host:port`: TLS when a CA file is given, plain TCP otherwise.

A bearer token is never sent in clear text to another machine: plain TCP with a token is allowed only
to a loopback address (localhost, 127.0.0.0/8, ::1; e.g. a `kubectl port-forward`), or when the user
says the network is trusted (`--plaintext` / `CODEX_SYS_PLAINTEXT=1`).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc import aio

from runner.auth.tls import CA_FILE_ENV, read_pem
from runner.domain.errors import InvalidArgument

PLAINTEXT_ENV = "CODEX_SYS_PLAINTEXT"
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 8 << 20),
    ("grpc.max_send_message_length", 8 << 20),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
]


def _loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Target:
    address: str  # what grpc dials: unix:/path or host:port
    tls: bool
    ca_file: Path | None = None

    @classmethod
    def parse(cls, address: str, token: str | None, ca_file: Path | None = None,
              plaintext: bool | None = None) -> Target:
        if ca_file is None and os.environ.get(CA_FILE_ENV):
            ca_file = Path(os.environ[CA_FILE_ENV])
        if plaintext is None:
            plaintext = os.environ.get(PLAINTEXT_ENV, "") in ("1", "true", "yes")
        if address.startswith("unix:"):
            return cls(address, tls=False)
        scheme, sep, rest = address.partition("://")
        if sep and scheme not in ("tls", "https"):
            raise InvalidArgument(f"runner address {address!r}: use unix:/path, host:port, tls://host:port or "
                                  "https://host:port")
        target = rest.rstrip("/") if sep else address
        tls = bool(sep) or ca_file is not None
        host = target.rsplit(":", 1)[0] if ":" in target else target
        if token and not tls and not plaintext and not _loopback(host):
            raise InvalidArgument(
                f"refusing to send the token in clear text to {target}: use tls://{target} (a runner started "
                "with --tls-cert; add --ca-file for a private CA), or --plaintext / CODEX_SYS_PLAINTEXT=1 "
                "if the network between you is trusted")
        return cls(target, tls, ca_file if tls else None)

    def channel(self) -> aio.Channel:
        if not self.tls:
            return aio.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        roots = read_pem(self.ca_file, "CA file") if self.ca_file is not None else None
        return aio.secure_channel(self.address, grpc.ssl_channel_credentials(root_certificates=roots),
                                  options=CHANNEL_OPTIONS)
