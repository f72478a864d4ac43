"""TLS to NATS: mutual TLS with a private CA works end to end, a client without a certificate is refused,
and a server that comes back without TLS is not talked to in plain text."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import NatsServer, find_nats_server

from runner.adapters.nats import NatsConnection, NatsSettings, open_nats_adapters
from runner.domain.errors import Unavailable
from runner.domain.models import LogLine

pytestmark = pytest.mark.timeout(60)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    root = tmp_path_factory.mktemp("certs")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=codex test CA",
             "-keyout", "ca.key", "-out", "ca.pem", cwd=root)
    (root / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, extra in (("server", ["-extfile", "server.ext"]), ("client", [])):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", cwd=root)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-out", f"{name}.pem", *extra, cwd=root)
    return root


class TlsNatsServer(NatsServer):
    """nats-server requiring mutual TLS (`--tlsverify`), or plain when `tls` is turned off."""

    def __init__(self, workdir: Path, certs: Path) -> None:
        super().__init__(workdir)
        self.certs = certs
        self.tls = True

    def start(self) -> TlsNatsServer:
        self.store.mkdir(parents=True, exist_ok=True)
        argv = [find_nats_server(), "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store)]
        if self.tls:
            argv += ["--tlsverify", "--tlscert", str(self.certs / "server.pem"),
                     "--tlskey", str(self.certs / "server.key"), "--tlscacert", str(self.certs / "ca.pem")]
        self._spawn(argv)
        self._wait_ready(lambda: "Server is ready" in self.log_tail(200))
        return self


@pytest.fixture
def tls_server(short_tmp: Path, certs: Path) -> Iterator[TlsNatsServer]:
    server = TlsNatsServer(short_tmp, certs).start()
    yield server
    server.stop(kill=True)


def tls_settings(server: NatsServer, certs: Path, *, client_cert: bool = True) -> NatsSettings:
    return NatsSettings(servers=(f"tls://127.0.0.1:{server.port}",), prefix="tls", tls_ca=certs / "ca.pem",
                        tls_cert=certs / "client.pem" if client_cert else None,
                        tls_key=certs / "client.key" if client_cert else None, connect_timeout_s=2.0)


async def test_mutual_tls_with_a_private_ca_carries_the_adapters(tls_server: TlsNatsServer, certs: Path) -> None:
    async with await open_nats_adapters(tls_settings(tls_server, certs)) as adapters:
        event = await adapters.events.append("t1", LogLine("runner", "over TLS"))
        assert await adapters.events.read("t1") == [event]


async def test_a_client_without_a_certificate_is_refused(tls_server: TlsNatsServer, certs: Path) -> None:
    with pytest.raises(Unavailable, match="within 2 s"):
        await NatsConnection.connect(tls_settings(tls_server, certs, client_cert=False))


async def test_a_server_back_without_tls_is_not_talked_to(tls_server: TlsNatsServer, certs: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    async with await open_nats_adapters(tls_settings(tls_server, certs)) as adapters:
        await adapters.events.append("t1", LogLine("runner", "before"))
        tls_server.tls = False
        with caplog.at_level(logging.ERROR, "runner.adapters.nats.connection"):
            await asyncio.to_thread(tls_server.restart, kill=True)
            async with asyncio.timeout(15):
                while not adapters.connection.closed:
                    await asyncio.sleep(0.05)
        assert any("does not offer TLS" in r.getMessage() for r in caplog.records)
        with pytest.raises(Unavailable, match="closed"):
            await adapters.events.append("t1", LogLine("runner", "after"))
