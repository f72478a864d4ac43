"""Flags and `CODEX_SYS_*` variables that point `runner serve` and `worker` at NATS and MinIO.

Given a NATS URL (`--nats` or `CODEX_SYS_NATS_URL`), the process is distributed: it also needs an S3
endpoint and keys. A flag wins over its variable. Secrets (NATS password or token, S3 keys) are read from
the environment or from files, never from flags, which other users of the machine can read in `ps`.
A wrong or missing value is an `InvalidArgument` naming the flag and the variable. Secrets may also be
given as files: `CODEX_SYS_S3_SECRET_KEY_FILE=/run/secrets/s3` (Kubernetes Secrets mounted as files).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from runner.config import env_number, env_whole
from runner.domain.errors import InvalidArgument

if TYPE_CHECKING:
    from runner.composition import DistributedSettings

DEFAULT_BUCKET = "codex-sys"


def add_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "distributed mode (NATS JetStream + MinIO; secrets only from the environment, see docs/scale-out.md)")
    group.add_argument("--nats", metavar="URL", help="NATS server URL(s), comma-separated (env CODEX_SYS_NATS_URL)")
    group.add_argument("--nats-creds", metavar="FILE", help="NATS credentials file (env CODEX_SYS_NATS_CREDS)")
    group.add_argument("--nats-tls-ca", metavar="FILE", help="CA for NATS TLS (env CODEX_SYS_NATS_TLS_CA)")
    group.add_argument("--nats-tls-cert", metavar="FILE", help="client certificate (env CODEX_SYS_NATS_TLS_CERT)")
    group.add_argument("--nats-tls-key", metavar="FILE", help="client key (env CODEX_SYS_NATS_TLS_KEY)")
    group.add_argument("--nats-prefix", metavar="NAME",
                       help="prefix of the streams, bucket and subjects (env CODEX_SYS_NATS_PREFIX; default codex)")
    group.add_argument("--s3-endpoint", metavar="URL",
                       help="MinIO/S3 endpoint, http(s)://host:port (env CODEX_SYS_S3_ENDPOINT)")
    group.add_argument("--s3-bucket", metavar="NAME",
                       help=f"bucket (env CODEX_SYS_S3_BUCKET; default {DEFAULT_BUCKET})")
    group.add_argument("--s3-region", metavar="NAME", help="region (env CODEX_SYS_S3_REGION; default us-east-1)")
    group.add_argument("--s3-public-endpoint", metavar="URL",
                       help="endpoint that links are signed for (env CODEX_SYS_S3_PUBLIC_ENDPOINT)")
    group.add_argument("--s3-ca-file", metavar="FILE", help="CA for S3 TLS (env CODEX_SYS_S3_CA_FILE)")


def _pick(args: argparse.Namespace, flag: str, env: str) -> str:
    value = getattr(args, flag, None)
    return str(value) if value else os.environ.get(env, "").strip()


def _file(args: argparse.Namespace, flag: str, env: str) -> Path | None:
    value = _pick(args, flag, env)
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise InvalidArgument(f"--{flag.replace('_', '-')} / {env}: {value!r} is not a readable file")
    return path


def _secret(env: str) -> str | None:
    value = os.environ.get(env, "")
    file_value = os.environ.get(f"{env}_FILE", "")
    if file_value:
        try:
            value = Path(file_value).expanduser().read_text().strip()
        except OSError as exc:
            raise InvalidArgument(f"{env}_FILE={file_value!r} cannot be read: {exc.strerror}") from None
    return value or None


def _s3_endpoint(raw: str, what: str) -> tuple[str, bool]:
    """`host:port` and whether TLS is on, from `http(s)://host:port` or a bare `host:port` (TLS off)."""
    if "://" not in raw:
        raw = f"http://{raw}"
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise InvalidArgument(f"{what}: {raw!r} is not an endpoint like http://host:9000 or https://host")
    return parts.netloc, parts.scheme == "https"


def distributed_settings(args: argparse.Namespace, *, name: str) -> DistributedSettings | None:
    """The settings of a distributed process, or None when no NATS URL is given (embedded)."""
    nats_url = _pick(args, "nats", "CODEX_SYS_NATS_URL")
    if not nats_url:
        return None
    # Imported here: every other command of the CLI starts without the NATS and MinIO clients.
    from runner.adapters.minio import Lifecycle, S3Settings
    from runner.adapters.nats import JetStreamLimits, NatsSettings
    from runner.composition import DistributedSettings

    if getattr(args, "embedded", False):
        raise InvalidArgument("--embedded and a NATS URL (--nats / CODEX_SYS_NATS_URL) exclude each other")
    servers = tuple(url.strip() for url in nats_url.split(",") if url.strip())
    for url in servers:
        if urlsplit(url if "://" in url else f"nats://{url}").scheme not in ("nats", "tls", "ws", "wss"):
            raise InvalidArgument(f"--nats / CODEX_SYS_NATS_URL: {url!r} is not a NATS URL (nats://host:4222)")
    nats = NatsSettings(
        servers=servers, creds_file=_file(args, "nats_creds", "CODEX_SYS_NATS_CREDS"),
        user=os.environ.get("CODEX_SYS_NATS_USER") or None, password=_secret("CODEX_SYS_NATS_PASSWORD"),
        token=_secret("CODEX_SYS_NATS_TOKEN"),
        tls_ca=_file(args, "nats_tls_ca", "CODEX_SYS_NATS_TLS_CA"),
        tls_cert=_file(args, "nats_tls_cert", "CODEX_SYS_NATS_TLS_CERT"),
        tls_key=_file(args, "nats_tls_key", "CODEX_SYS_NATS_TLS_KEY"),
        prefix=_pick(args, "nats_prefix", "CODEX_SYS_NATS_PREFIX") or "codex", name=name)

    raw_endpoint = _pick(args, "s3_endpoint", "CODEX_SYS_S3_ENDPOINT")
    if not raw_endpoint:
        raise InvalidArgument("a distributed runner needs MinIO/S3 too: give --s3-endpoint or CODEX_SYS_S3_ENDPOINT")
    endpoint, secure = _s3_endpoint(raw_endpoint, "--s3-endpoint / CODEX_SYS_S3_ENDPOINT")
    access_key, secret_key = _secret("CODEX_SYS_S3_ACCESS_KEY"), _secret("CODEX_SYS_S3_SECRET_KEY")
    if not access_key or not secret_key:
        raise InvalidArgument("set CODEX_SYS_S3_ACCESS_KEY and CODEX_SYS_S3_SECRET_KEY (or their *_FILE variants)")
    public = _pick(args, "s3_public_endpoint", "CODEX_SYS_S3_PUBLIC_ENDPOINT")
    lifecycle = Lifecycle()
    blobs_days = env_whole("CODEX_SYS_S3_BLOBS_DAYS", 0, allow_zero=True)
    lifecycle = Lifecycle(packs_days=env_whole("CODEX_SYS_S3_PACKS_DAYS", lifecycle.packs_days),
                          staging_days=lifecycle.staging_days, quarantine_days=lifecycle.quarantine_days,
                          blobs_days=blobs_days or None, margin_days=lifecycle.margin_days)
    s3 = S3Settings(endpoint=endpoint, access_key=access_key, secret_key=secret_key,
                    bucket=_pick(args, "s3_bucket", "CODEX_SYS_S3_BUCKET") or DEFAULT_BUCKET, secure=secure,
                    region=_pick(args, "s3_region", "CODEX_SYS_S3_REGION") or "us-east-1",
                    public_endpoint=public or None, ca_file=_file(args, "s3_ca_file", "CODEX_SYS_S3_CA_FILE"),
                    lifecycle=lifecycle)
    limits = JetStreamLimits()
    limits = replace(limits, ack_wait_s=env_number("CODEX_SYS_QUEUE_ACK_WAIT", limits.ack_wait_s),
                     max_deliver=env_whole("CODEX_SYS_QUEUE_MAX_DELIVER", limits.max_deliver),
                     events_max_age_s=env_number("CODEX_SYS_EVENTS_MAX_AGE", limits.events_max_age_s),
                     events_max_bytes=env_whole("CODEX_SYS_EVENTS_MAX_BYTES", limits.events_max_bytes),
                     replicas=env_whole("CODEX_SYS_NATS_REPLICAS", limits.replicas))
    return DistributedSettings(nats=nats, s3=s3, jetstream=limits)
