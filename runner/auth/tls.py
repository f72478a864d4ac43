"""TLS for the runner's listeners and for its clients.

Server: `ServerTls.load(cert, key)` reads a PEM certificate chain and its private key once, checks they
are readable, parse and belong together (by loading them into an `ssl.SSLContext`, which refuses a key
that does not match the certificate), and then gives both transports what they need:
the PEM bytes for the gRPC TCP listeners (`runner.api.server`) and `ssl_context()` for the HTTP server
(aiohttp's `ssl_context`). One pair of files, one check, one set of errors. Clients verify the runner
against a CA file read with `read_pem` (a private CA) or the system's trust store (`runner.client`).
No gRPC and no HTTP here: only files and the standard library's `ssl`.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from runner.domain.errors import InvalidArgument

TLS_CERT_ENV = "CODEX_SYS_TLS_CERT"
TLS_KEY_ENV = "CODEX_SYS_TLS_KEY"
CA_FILE_ENV = "CODEX_SYS_CA_FILE"
MAX_PEM_BYTES = 1 << 20


def read_pem(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InvalidArgument(f"the TLS {what} {path} does not exist") from None
    except OSError as exc:
        raise InvalidArgument(f"cannot read the TLS {what} {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_PEM_BYTES or b"-----BEGIN " not in data:
        raise InvalidArgument(f"the TLS {what} {path} is not a PEM file (no '-----BEGIN' line)")
    return data


@dataclass(frozen=True, slots=True)
class ServerTls:
    cert_file: Path
    key_file: Path
    cert_chain: bytes
    private_key: bytes

    @classmethod
    def load(cls, cert_file: Path, key_file: Path) -> ServerTls:
        tls = cls(cert_file, key_file, read_pem(cert_file, "certificate"), read_pem(key_file, "key"))
        tls.ssl_context()  # refuses a bad certificate, a bad key, or a key of another certificate
        return tls

    @classmethod
    def from_settings(cls, cert_file: Path | None, key_file: Path | None) -> ServerTls | None:
        if cert_file is None and key_file is None:
            return None
        if cert_file is None or key_file is None:
            raise InvalidArgument("TLS needs both a certificate and its key (--tls-cert and --tls-key, or "
                                  f"{TLS_CERT_ENV} and {TLS_KEY_ENV})")
        return cls.load(cert_file, key_file)

    def ssl_context(self) -> ssl.SSLContext:
        """A server-side context for the HTTP listener (TLS 1.2+)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.cert_file, self.key_file)
        except ssl.SSLError as exc:
            if "KEY_VALUES_MISMATCH" in str(exc):
                raise InvalidArgument(f"the TLS key {self.key_file} does not belong to the certificate "
                                      f"{self.cert_file}") from exc
            raise InvalidArgument(f"cannot use the TLS certificate {self.cert_file} with key {self.key_file}: "
                                  f"{exc.reason or exc}") from exc
        except OSError as exc:
            raise InvalidArgument(f"cannot read the TLS certificate or key ({self.cert_file}, {self.key_file}): "
                                  f"{exc.strerror or exc}") from exc
        return context


def server_ssl_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """The HTTP server's `ssl.SSLContext` for a certificate and key, checked as for gRPC."""
    return ServerTls.load(cert_file, key_file).ssl_context()
