"""A real blob store seen only through the `BlobStore` port.

Hides what a store offers beyond the port (the embedded store's `copy_to`, MinIO's `packs`), so code that
uses those when it can, like the local executor's `materialize`, takes the path every store supports.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from runner.domain.models import Digest
from runner.ports import BlobStore, BlobWriter


class PortOnly:
    def __init__(self, inner: BlobStore) -> None:
        self._inner = inner
        self.max_blob_size = inner.max_blob_size

    async def find_missing(self, tenant: str, digests: Sequence[Digest]) -> list[Digest]:
        return await self._inner.find_missing(tenant, digests)

    async def writer(self, tenant: str, digest: Digest) -> BlobWriter:
        return await self._inner.writer(tenant, digest)

    async def put_bytes(self, tenant: str, data: bytes) -> Digest:
        return await self._inner.put_bytes(tenant, data)

    async def put_many(self, tenant: str, items: Sequence[tuple[Digest, bytes]]) -> None:
        await self._inner.put_many(tenant, items)

    def read(self, tenant: str, digest: Digest, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        return self._inner.read(tenant, digest, chunk_size)

    async def get_bytes(self, tenant: str, digest: Digest) -> bytes:
        return await self._inner.get_bytes(tenant, digest)
