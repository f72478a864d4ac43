"""The public names of the MinIO adapter and of the packed snapshots, pinned: the composition, the
executors and the CLI import these and nothing else from the two packages."""

from __future__ import annotations

import pytest

import runner.adapters.minio
import runner.snapshots

pytestmark = pytest.mark.timeout(10)


def test_public_names() -> None:
    assert sorted(runner.adapters.minio.__all__) == [
        "Lifecycle", "MinioBlobStore", "MinioBlobWriter", "S3Settings", "content_disposition"]
    assert sorted(runner.snapshots.__all__) == [
        "HasPacks", "PackError", "PackRef", "PackStore", "Packs", "Unpacked", "pack_key", "unpack",
        "unpack_file", "write_pack"]
    for module in (runner.adapters.minio, runner.snapshots):
        for name in module.__all__:
            assert getattr(module, name) is not None
