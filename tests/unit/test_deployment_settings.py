"""`runner serve` / `worker` settings for NATS and MinIO, from flags and CODEX_SYS_* variables."""

from __future__ import annotations

import argparse
import os

import pytest

from runner.cli import deployment
from runner.domain.errors import InvalidArgument

pytestmark = pytest.mark.timeout(10)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--embedded", action="store_true")
    deployment.add_flags(parser)
    return parser.parse_args(list(argv))


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:


    for name in list(os.environ):
        if name.startswith("CODEX_SYS_"):
            monkeypatch.delenv(name)


def _minimal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEX_SYS_NATS_URL", "nats://n1:4222, nats://n2:4222")
    monkeypatch.setenv("CODEX_SYS_S3_ENDPOINT", "https://minio.example:9000")
    monkeypatch.setenv("CODEX_SYS_S3_ACCESS_KEY", "access")
    monkeypatch.setenv("CODEX_SYS_S3_SECRET_KEY", "secret-key")


def test_without_a_nats_url_the_process_is_embedded() -> None:
    assert deployment.distributed_settings(_args(), name="x") is None


def test_variables_give_a_distributed_setup_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    _minimal(monkeypatch)
    monkeypatch.setenv("CODEX_SYS_S3_BUCKET", "from-env")
    monkeypatch.setenv("CODEX_SYS_QUEUE_ACK_WAIT", "7.5")
    monkeypatch.setenv("CODEX_SYS_EVENTS_MAX_AGE", "3600")
    monkeypatch.setenv("CODEX_SYS_S3_PACKS_DAYS", "3")
    settings = deployment.distributed_settings(_args("--s3-bucket", "from-flag", "--nats-prefix", "team1"),
                                               name="codex-sys-worker")
    assert settings is not None
    assert settings.nats.servers == ("nats://n1:4222", "nats://n2:4222")
    assert settings.nats.prefix == "team1" and settings.nats.name == "codex-sys-worker"
    assert settings.s3.endpoint == "minio.example:9000" and settings.s3.secure
    assert settings.s3.bucket == "from-flag"
    assert settings.s3.lifecycle.packs_days == 3 and settings.s3.lifecycle.blobs_days is None
    assert settings.jetstream.ack_wait_s == 7.5 and settings.jetstream.events_max_age_s == 3600
    assert "secret-key" not in repr(settings), "a secret would reach the logs"


def test_secrets_can_come_from_files(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    _minimal(monkeypatch)
    monkeypatch.delenv("CODEX_SYS_S3_SECRET_KEY")
    (tmp_path / "secret").write_text("from-a-file\n")
    monkeypatch.setenv("CODEX_SYS_S3_SECRET_KEY_FILE", str(tmp_path / "secret"))
    settings = deployment.distributed_settings(_args(), name="x")
    assert settings is not None and settings.s3.secret_key == "from-a-file"


@pytest.mark.parametrize(("env", "value", "named"), [
    ("CODEX_SYS_S3_ENDPOINT", "", "CODEX_SYS_S3_ENDPOINT"),
    ("CODEX_SYS_S3_ENDPOINT", "ftp://minio:21", "CODEX_SYS_S3_ENDPOINT"),
    ("CODEX_SYS_S3_ENDPOINT", "http://minio:9000/bucket", "CODEX_SYS_S3_ENDPOINT"),
    ("CODEX_SYS_S3_ACCESS_KEY", "", "CODEX_SYS_S3_ACCESS_KEY"),
    ("CODEX_SYS_NATS_URL", "http://nats:4222", "CODEX_SYS_NATS_URL"),
    ("CODEX_SYS_QUEUE_ACK_WAIT", "soon", "CODEX_SYS_QUEUE_ACK_WAIT"),
    ("CODEX_SYS_QUEUE_MAX_DELIVER", "2.5", "CODEX_SYS_QUEUE_MAX_DELIVER"),
    ("CODEX_SYS_NATS_CREDS", "/nonexistent/creds", "CODEX_SYS_NATS_CREDS"),
    ("CODEX_SYS_S3_SECRET_KEY_FILE", "/nonexistent/secret", "CODEX_SYS_S3_SECRET_KEY_FILE"),
])
def test_a_bad_or_missing_value_is_named(monkeypatch: pytest.MonkeyPatch, env: str, value: str, named: str) -> None:
    _minimal(monkeypatch)
    monkeypatch.setenv(env, value)
    with pytest.raises(InvalidArgument, match=named):
        deployment.distributed_settings(_args(), name="x")


def test_embedded_and_a_nats_url_exclude_each_other(monkeypatch: pytest.MonkeyPatch) -> None:
    _minimal(monkeypatch)
    with pytest.raises(InvalidArgument, match="--embedded"):
        deployment.distributed_settings(_args("--embedded"), name="x")
