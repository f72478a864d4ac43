"""The MinIO adapter: the `BlobStore` of a distributed installation, on any S3-compatible server.

    store = await MinioBlobStore.open(S3Settings(endpoint="minio:9000", access_key=..., secret_key=...,
                                                 bucket="codex-sys"), max_blob_size=...)
    async with store:
        missing = await store.find_missing(tenant, digests)
        url = store.download_url(tenant, digest, "diff.patch", expires_s=3600)
        pack = await store.packs.ensure(tenant, manifest)     # a snapshot as one object
        url = store.pack_url(tenant, pack, expires_s=600)     # for a sandbox pod's init container

`minio` is imported only inside this package. See docs/minio.md for the object layout, integrity,
lifecycle rules, links and failure behaviour.
"""

from runner.adapters.minio.blob_store import MinioBlobStore, content_disposition
from runner.adapters.minio.blob_writer import MinioBlobWriter
from runner.adapters.minio.settings import Lifecycle, S3Settings

__all__ = ["Lifecycle", "MinioBlobStore", "MinioBlobWriter", "S3Settings", "content_disposition"]
