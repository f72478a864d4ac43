"""The bucket and its lifecycle rules: created once, read back from the server, merged with rules of
other owners, and the settings that describe them checked with clear errors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from minio import Minio
from minio.commonconfig import ENABLED, Filter
from minio.credentials import StaticProvider
from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule
from minio.minioadmin import MinioAdmin
from servers import MinioServer

from runner.adapters.minio import Lifecycle, MinioBlobStore, S3Settings
from runner.domain.errors import InvalidArgument, PermanentError

from .conftest import MAX_BLOB_SIZE, settings_of

pytestmark = pytest.mark.timeout(60)


def rules_on_server(raw: Minio, bucket: str) -> dict[str, tuple[str | None, int | None]]:
    config = raw.get_bucket_lifecycle(bucket)
    assert config is not None
    return {str(r.rule_id): (r.rule_filter.prefix if r.rule_filter else None,
                             r.expiration.days if r.expiration else None) for r in config.rules}


async def test_open_creates_the_bucket_and_its_rules_once(settings: S3Settings, raw: Minio, tmp_path: Path) -> None:
    assert not raw.bucket_exists(settings.bucket)
    async with await MinioBlobStore.open(settings, max_blob_size=MAX_BLOB_SIZE) as store:
        assert raw.bucket_exists(settings.bucket)
        assert rules_on_server(raw, settings.bucket) == {
            "codex-sys-packs": ("packs/", 7),
            "codex-sys-staging": ("staging/", 2),
            "codex-sys-quarantine": ("quarantine/", 14),
        }
        assert await store.ensure_bucket() is False  # nothing to change the second time
        digest = await store.put_bytes("tenant", b"kept")
    # Another runner opening the same bucket changes nothing and loses nothing.
    async with await MinioBlobStore.open(settings, max_blob_size=MAX_BLOB_SIZE) as again:
        assert await again.ensure_bucket() is False
        assert await again.get_bytes("tenant", digest) == b"kept"


async def test_changed_settings_replace_our_rules_and_keep_foreign_ones(minio_server: MinioServer,
                                                                      raw: Minio) -> None:
    settings = settings_of(minio_server)
    raw.make_bucket(settings.bucket)
    foreign = Rule(ENABLED, rule_filter=Filter(prefix="backups/"), rule_id="ops-backups",
                   expiration=Expiration(days=90))
    raw.set_bucket_lifecycle(settings.bucket, LifecycleConfig([foreign]))

    changed = settings_of(minio_server, settings.bucket,
                          lifecycle=Lifecycle(packs_days=3, staging_days=1, quarantine_days=30, blobs_days=365))
    async with await MinioBlobStore.open(changed, max_blob_size=MAX_BLOB_SIZE) as store:
        assert rules_on_server(raw, settings.bucket) == {
            "ops-backups": ("backups/", 90),
            "codex-sys-packs": ("packs/", 3),
            "codex-sys-staging": ("staging/", 1),
            "codex-sys-quarantine": ("quarantine/", 30),
            "codex-sys-blobs": ("cas/", 365),
        }
        assert await store.ensure_bucket() is False
    async with await MinioBlobStore.open(settings, max_blob_size=MAX_BLOB_SIZE) as store:  # defaults again
        assert rules_on_server(raw, settings.bucket) == {
            "ops-backups": ("backups/", 90),
            "codex-sys-packs": ("packs/", 7),
            "codex-sys-staging": ("staging/", 2),
            "codex-sys-quarantine": ("quarantine/", 14),
        }


async def test_wrong_keys_are_a_permanent_error_naming_the_settings(minio_server: MinioServer) -> None:
    bad = S3Settings(endpoint=minio_server.endpoint, access_key="nobody", secret_key="not-the-secret",
                     bucket="codex-wrong-keys")
    with pytest.raises(PermanentError) as err:
        await MinioBlobStore.open(bad, max_blob_size=MAX_BLOB_SIZE)
    message = str(err.value)
    assert "access_key" in message and "'nobody'" in message and "codex-wrong-keys" in message
    assert "not-the-secret" not in message
    assert err.value.__cause__ is not None


@pytest.mark.parametrize(("changes", "message"), [
    ({"endpoint": "http://minio:9000"}, "S3 setting endpoint"),
    ({"endpoint": "minio:99999"}, "S3 setting endpoint"),
    ({"bucket": "Has_Upper"}, "S3 setting bucket"),
    ({"bucket": "ab"}, "S3 setting bucket"),
    ({"bucket": "10.0.0.1"}, "S3 setting bucket"),
    ({"access_key": ""}, "S3 setting access_key"),
    ({"secret_key": ""}, "S3 setting secret_key"),
    ({"region": "US East"}, "S3 setting region"),
    ({"public_endpoint": "https://files.example.com/minio"}, "S3 setting public_endpoint"),
    ({"public_endpoint": "ftp://files.example.com"}, "S3 setting public_endpoint"),
    ({"public_endpoint": "files example"}, "S3 setting public_endpoint"),
])
def test_bad_settings_name_the_setting(changes: dict[str, str], message: str) -> None:
    values = {"endpoint": "minio:9000", "access_key": "key", "secret_key": "secret", **changes}
    with pytest.raises(InvalidArgument, match=message):
        S3Settings(**values)


@pytest.mark.parametrize(("changes", "message"), [
    ({"packs_days": 0}, "packs_days"),
    ({"staging_days": 1.5}, "staging_days"),
    ({"blobs_days": 1}, "blobs_days: 1 days leaves nothing"),
    ({"margin_days": 0}, "margin_days"),
    ({"packs_days": 2, "margin_days": 2}, "packs_days"),
])
def test_bad_lifecycle_settings_name_the_setting(changes: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        Lifecycle(**changes)  # type: ignore[arg-type]


def test_the_public_endpoint_may_be_a_url_or_host_port() -> None:
    base = {"endpoint": "minio.internal:9000", "access_key": "key", "secret_key": "secret"}
    assert S3Settings(**base).public_host_and_tls() == ("minio.internal:9000", False)
    assert S3Settings(**base, public_endpoint="https://files.example.com").public_host_and_tls() == \
        ("files.example.com", True)
    assert S3Settings(**base, public_endpoint="files.example.com:8443", secure=True).public_host_and_tls() == \
        ("files.example.com:8443", True)
    assert "secret" not in repr(S3Settings(**base))


async def test_keys_that_may_use_objects_but_not_manage_the_bucket_still_work(
        minio_server: MinioServer, raw: Minio, caplog: pytest.LogCaptureFixture) -> None:
    """A worker's keys often may read and write objects only: the store opens (the rules cannot be
    checked: a warning says so) and works; keys with no right at all are refused at once."""
    settings = settings_of(minio_server)
    raw.make_bucket(settings.bucket)
    admin = MinioAdmin(endpoint=minio_server.endpoint, secure=False,
                       credentials=StaticProvider(minio_server.access_key, minio_server.secret_key))
    bucket = f"arn:aws:s3:::{settings.bucket}"
    admin.policy_add(f"{settings.bucket}-objects", policy={"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"], "Resource": [bucket]},
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
         "Resource": [f"{bucket}/*"]},
    ]})
    worker_key, nobody_key = f"{settings.bucket}-worker", f"{settings.bucket}-nobody"
    admin.user_add(worker_key, "worker-secret-123")
    admin.attach_policy([f"{settings.bucket}-objects"], user=worker_key)
    admin.user_add(nobody_key, "nobody-secret-123")

    worker = S3Settings(endpoint=minio_server.endpoint, access_key=worker_key, secret_key="worker-secret-123",
                        bucket=settings.bucket)
    with caplog.at_level(logging.WARNING, logger="runner.adapters.minio.lifecycle"):
        async with await MinioBlobStore.open(worker, max_blob_size=MAX_BLOB_SIZE) as store:
            digest = await store.put_bytes("tenant", b"written with object rights only")
            assert await store.find_missing("tenant", [digest]) == []
            assert await store.get_bytes("tenant", digest) == b"written with object rights only"
    assert any("lifecycle rules" in r.getMessage() for r in caplog.records)
    assert raw.get_bucket_lifecycle(settings.bucket) is None

    nobody = S3Settings(endpoint=minio_server.endpoint, access_key=nobody_key, secret_key="nobody-secret-123",
                        bucket=settings.bucket)
    with pytest.raises(PermanentError, match=nobody_key):
        await MinioBlobStore.open(nobody, max_blob_size=MAX_BLOB_SIZE)
