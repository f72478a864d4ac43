"""`Packs`: each snapshot packed once per manifest and tenant, stored, and reused.

A store that can hold packs (`PackStore`: the MinIO store keeps them under `packs/`, where a lifecycle
rule expires them) is asked for the pack of a manifest by its key (`pack.pack_key`); the pack's own
digest is kept with it (object metadata on MinIO) and every copy fetched is verified against it. The
pack is an object of its own, not a CAS blob, so the rule can expire it without touching the blobs it
was built from: a pack is only ever a cache, rebuilt from the blobs whenever it is missing.

`Packs.materialize(tenant, manifest, root)` writes a snapshot into a folder:

* pack known (this process built or saw it recently, or the store has it): one GET into a temp file,
  verified against the pack's digest, then unpacked (`pack.unpack`, each entry checked against the
  manifest);
* no pack yet: build it from the blobs into a temp file (as many GETs as blobs, a few at a time), then
  unpack that file here while it is uploaded for the next time; a failed upload costs only the reuse.
  Concurrent materialisations of one manifest in one process build it once; the others wait and fetch.

`Packs.ensure(tenant, manifest)` returns a stored pack's `PackRef` (building and uploading it if
needed), for an executor that hands a presigned URL of it to a sandbox (`MinioBlobStore.pack_url`).

The helper remembers the digest of the last `cache_size` packs it saw for `cache_ttl_s` (10 minutes):
far less than the lifecycle margin (a day), so a remembered pack never expires under it. A pack removed
some other way makes the fetch raise `NotFound`, and the helper then forgets it and builds it again.
"""

from __future__ import annotations

import asyncio
import collections
import collections.abc
import contextlib
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from runner.domain.errors import NotFound
from runner.domain.models import Digest, Manifest
from runner.ports import BlobStore
from runner.snapshots.pack import Unpacked, pack_key, sorted_entries, unpack_in_thread, write_pack

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PackRef:
    """A stored pack: the manifest's pack key, and the digest of the pack's bytes."""

    key: str
    digest: Digest


@runtime_checkable
class PackStore(Protocol):
    """Storage for packs, by tenant and pack key."""

    async def find_pack(self, tenant: str, key: str) -> Digest | None:
        """The digest of the stored pack, or None when there is none (or it expires soon)."""

    async def put_pack(self, tenant: str, key: str, path: Path, digest: Digest) -> None:
        """Store the local pack file `path`, whose bytes have `digest`."""

    async def get_pack(self, tenant: str, key: str, digest: Digest, dest: Path) -> None:
        """Download the pack into the new file `dest`, verified against `digest`: `Unavailable` (and no
        `dest`) for a damaged copy, `NotFound` when the pack is gone."""


@runtime_checkable
class HasPacks(Protocol):
    """A blob store that keeps packs of its snapshots (`materialize` uses them)."""

    @property
    def packs(self) -> Packs: ...


class Packs:
    """See the module docstring. `blobs` is where the snapshots' files are, `store` where packs go
    (usually the same object); temp files go to `spool_dir` (default: the system's temp folder)."""

    def __init__(self, blobs: BlobStore, store: PackStore, *, spool_dir: Path | None = None,
                 cache_size: int = 4096, cache_ttl_s: float = 600.0) -> None:
        self._blobs = blobs
        self._store = store
        self._spool_dir = spool_dir
        self._cache: collections.OrderedDict[tuple[str, str], tuple[Digest, float]] = collections.OrderedDict()
        self._cache_size = cache_size
        self._cache_ttl_s = cache_ttl_s
        # Builds in progress: their waiters get the stored pack's digest, or None if it was not stored.
        self._building: dict[tuple[str, str], asyncio.Future[Digest | None]] = {}

    async def ensure(self, tenant: str, manifest: Manifest) -> PackRef:
        """The stored pack of `manifest`, built and uploaded first if needed."""
        key = pack_key(manifest)
        while True:
            digest = await self._known(tenant, key)
            if digest is not None:
                return PackRef(key, digest)
            pending = self._building.get((tenant, key))
            if pending is not None:
                await asyncio.shield(pending)
                continue
            with self._temp() as path:
                digest = await self._build(tenant, manifest, key, path, upload_errors=True)
            assert digest is not None
            return PackRef(key, digest)

    async def materialize(self, tenant: str, manifest: Manifest, root: Path) -> Unpacked:
        """Write the snapshot into the (empty) folder `root` through its pack (see the module
        docstring)."""
        sorted_entries(manifest)  # every path checked before anything is built or written
        key = pack_key(manifest)
        while True:
            digest = await self._known(tenant, key)
            if digest is not None:
                with self._temp() as path:
                    try:
                        await self._store.get_pack(tenant, key, digest, path)
                    except NotFound:
                        self._forget(tenant, key)
                        log.info("pack vanished; building it again", extra={"tenant": tenant, "pack": key})
                        break
                    return await unpack_in_thread(path, manifest, root, expected=digest)
            pending = self._building.get((tenant, key))
            if pending is not None:
                if await asyncio.shield(pending) is None:
                    break  # that build could not store it: build our own
                continue
            break
        with self._temp() as path:
            unpacking: asyncio.Task[Unpacked] | None = None

            async def unpack_when_built(digest: Digest) -> None:
                nonlocal unpacking
                unpacking = asyncio.create_task(unpack_in_thread(path, manifest, root, expected=digest))

            try:
                await self._build(tenant, manifest, key, path, upload_errors=False, while_uploading=unpack_when_built)
            except BaseException:
                if unpacking is not None:
                    unpacking.cancel()
                    await asyncio.gather(unpacking, return_exceptions=True)
                raise
            assert unpacking is not None
            return await unpacking

    # ---- internals -------------------------------------------------------------------------------------

    async def _known(self, tenant: str, key: str) -> Digest | None:
        cached = self._cache.get((tenant, key))
        if cached is not None and cached[1] > time.monotonic():
            self._cache.move_to_end((tenant, key))
            return cached[0]
        digest = await self._store.find_pack(tenant, key)
        if digest is not None:
            self._remember(tenant, key, digest)
        return digest

    def _remember(self, tenant: str, key: str, digest: Digest) -> None:
        self._cache[(tenant, key)] = (digest, time.monotonic() + self._cache_ttl_s)
        self._cache.move_to_end((tenant, key))
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _forget(self, tenant: str, key: str) -> None:
        self._cache.pop((tenant, key), None)

    async def _build(self, tenant: str, manifest: Manifest, key: str, path: Path, *, upload_errors: bool,
                     while_uploading: _OnBuilt | None = None) -> Digest | None:
        """Build the pack into `path` and store it. Returns its digest, or None when storing failed and
        `upload_errors` is false (the error is logged)."""
        done: asyncio.Future[Digest | None] = asyncio.get_running_loop().create_future()
        self._building[(tenant, key)] = done
        stored: Digest | None = None
        try:
            started = time.monotonic()
            digest = await write_pack(self._blobs, tenant, manifest, path)
            log.info("built a snapshot pack", extra={"tenant": tenant, "pack": key, "bytes": digest.size,
                                                     "files": len(manifest.entries),
                                                     "ms": round((time.monotonic() - started) * 1000)})
            if while_uploading is not None:
                await while_uploading(digest)
            try:
                await self._store.put_pack(tenant, key, path, digest)
            except Exception:
                if upload_errors:
                    raise
                log.warning("could not store a snapshot pack; it will be built again next time",
                            extra={"tenant": tenant, "pack": key}, exc_info=True)
                return None
            self._remember(tenant, key, digest)
            stored = digest
            return digest
        finally:
            del self._building[(tenant, key)]
            done.set_result(stored)

    @contextlib.contextmanager
    def _temp(self) -> collections.abc.Iterator[Path]:
        fd, name = tempfile.mkstemp(prefix="codex-pack-", suffix=".tar", dir=self._spool_dir)
        os.close(fd)
        os.unlink(name)  # the writers create it themselves, exclusively
        try:
            yield Path(name)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)


class _OnBuilt(Protocol):
    async def __call__(self, digest: Digest) -> None: ...
