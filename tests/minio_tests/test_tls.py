"""MinIO behind TLS with a private CA: trusted through the `ca_file` setting, refused without it with an
error that names the setting."""

from __future__ import annotations

import os
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import MinioServer, find_minio

from runner.adapters.minio import MinioBlobStore, S3Settings
from runner.domain.errors import InvalidArgument, PermanentError

from .conftest import MAX_BLOB_SIZE

pytestmark = pytest.mark.timeout(60)


def make_certificates(folder: Path) -> Path:
    """A CA, and a certificate for 127.0.0.1 signed by it, in MinIO's certs-dir layout. Returns the CA."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *curve, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=test CA")
    openssl("req", *curve, "-keyout", "private.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "public.crt", "-days", "1", "-extfile", "san.ext")
    return folder / "ca.crt"


class TlsMinioServer(MinioServer):
    """`MinioServer` serving https with the certificate in `certs`."""

    def __init__(self, workdir: Path, certs: Path, ca_file: Path) -> None:
        super().__init__(workdir)
        self.certs = certs
        self.ca_file = ca_file

    @property
    def url(self) -> str:
        return f"https://{self.endpoint}"

    def _live(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        try:
            with urllib.request.urlopen(f"{self.url}/minio/health/ready", timeout=0.5, context=context) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def start(self) -> TlsMinioServer:
        self.data.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "MINIO_ROOT_USER": self.access_key, "MINIO_ROOT_PASSWORD": self.secret_key,
               "MINIO_BROWSER": "off", "MINIO_UPDATE": "off", "MINIO_CI_CD": "1"}
        self._spawn([find_minio(), "server", str(self.data), "--address", self.endpoint, "--quiet",
                     "--certs-dir", str(self.certs)], env=env)
        self._wait_ready(self._live)
        return self


@pytest.fixture
def tls_server(short_tmp: Path) -> Iterator[TlsMinioServer]:
    certs = short_tmp / "certs"
    certs.mkdir()
    ca_file = make_certificates(certs)
    server = TlsMinioServer(short_tmp / "minio", certs, ca_file)
    (short_tmp / "minio").mkdir()
    server.start()
    yield server
    server.stop(kill=True)


def tls_settings(server: TlsMinioServer, **changes: object) -> S3Settings:
    return S3Settings(endpoint=server.endpoint, access_key=server.access_key, secret_key=server.secret_key,
                      bucket="tls-bucket", secure=True, **changes)  # type: ignore[arg-type]


async def test_tls_with_a_private_ca(tls_server: TlsMinioServer) -> None:
    async with await MinioBlobStore.open(tls_settings(tls_server, ca_file=tls_server.ca_file),
                                         max_blob_size=MAX_BLOB_SIZE) as store:
        digest = await store.put_bytes("tenant", b"over TLS")
        assert await store.get_bytes("tenant", digest) == b"over TLS"
        assert store.download_url("tenant", digest, "a.txt", expires_s=60).startswith("https://")

    with pytest.raises(PermanentError, match="ca_file") as err:
        await MinioBlobStore.open(tls_settings(tls_server), max_blob_size=MAX_BLOB_SIZE)
    assert "certificate" in str(err.value)


async def test_a_ca_file_that_cannot_be_read_is_a_clear_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("not a certificate\n")
    for bad in (tmp_path / "missing.crt", garbage):
        settings = S3Settings(endpoint="127.0.0.1:9", access_key="k", secret_key="s", secure=True, ca_file=bad)
        with pytest.raises(InvalidArgument, match="S3 setting ca_file"):
            await MinioBlobStore.open(settings, max_blob_size=1, create_bucket=False)
