"""Which blobs are stored: a cache of shard-folder listings, checked against each folder's mtime.

`find_missing` is on the hot path of a re-submit (10,000 digests, the whole request within 100 ms). A
`stat` per digest costs 2-3 us on a small VM, so 10,000 of them take 20-30 ms. Keeping the names of a
tenant's 256 shard folders answers the same question with 256 folder `stat`s and one set difference
(a few ms), and stays right when another process adds or deletes blobs:

* a folder's listing is reused only while the folder's mtime and inode are unchanged (creating,
  renaming or unlinking an entry updates the folder's mtime);
* a folder modified less than `_RACY_NS` before it was listed is not cached at all, because file-system
  timestamps are coarse (one kernel tick): a change in the same tick as the listing would leave the
  mtime equal. This is git's "racy index" rule.

Right after an upload every folder it touched is too new to cache, so the store calls `refresh` once
uploads to a tenant have paused (`fs_blob_store`): the re-submit that typically follows then finds
the listings warm.

A blob's name is trusted without a `stat` of its own: blobs are published by a hard link only after
their bytes were verified (see `fs_blob_store`), and reads verify again. A small query (a few digests)
is answered with one `access` per blob instead. The cache holds at most `max_names` names; the least
recently used tenants are dropped first.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from runner.domain.models import Digest

_RACY_NS = 100_000_000
# Queries with at most this many distinct hashes check each blob's file directly.
_FEW = 8
_ALL_PREFIXES = tuple(f"{i:02x}" for i in range(256))


@dataclass(slots=True)
class _TenantNames:
    # shard prefix -> (mtime_ns, inode, names) of the listing cached for it
    folders: dict[str, tuple[int, int, frozenset[str]]] = field(default_factory=dict)
    # union of every cached folder's names
    names: set[str] = field(default_factory=set)


class BlobIndex:
    def __init__(self, max_names: int = 200_000) -> None:
        self._max_names = max_names
        self._lock = threading.Lock()
        self._tenants: OrderedDict[str, _TenantNames] = OrderedDict()

    def missing(self, store_dir: str, digests: Sequence[Digest]) -> list[Digest]:
        """Blocking. The digests not stored under `store_dir` (`<root>/<tenant>/sha256`), in the given
        order, without duplicates."""
        hashes = {d.hash for d in digests}
        if len(hashes) <= _FEW:
            absent = {h for h in hashes if not os.access(f"{store_dir}/{h[:2]}/{h}", os.F_OK)}
        else:
            prefixes = _ALL_PREFIXES if len(hashes) > 2 * len(_ALL_PREFIXES) else {h[:2] for h in hashes}
            with self._lock:
                absent = self._absent(store_dir, hashes, prefixes)
        if not absent:
            return []
        if len(hashes) == len(digests):  # no duplicates: keep the order, nothing to drop
            return [d for d in digests if d.hash in absent]
        out: list[Digest] = []
        seen: set[tuple[str, int]] = set()
        for d in digests:
            if d.hash in absent and (d.hash, d.size) not in seen:
                seen.add((d.hash, d.size))
                out.append(d)
        return out

    def refresh(self, store_dir: str) -> None:
        """Blocking. Re-list the folders of `store_dir` that changed, so that the next large query
        finds them cached (called a moment after uploads stop)."""
        with self._lock:
            self._absent(store_dir, set(), _ALL_PREFIXES)

    def _absent(self, store_dir: str, hashes: set[str], prefixes: Iterable[str]) -> set[str]:
        tenant = self._tenants.pop(store_dir, None) or _TenantNames()
        self._tenants[store_dir] = tenant  # most recently used last
        uncached: set[str] = set()
        now_ns = time.time_ns()
        for prefix in prefixes:
            folder = f"{store_dir}/{prefix}"
            cached = tenant.folders.get(prefix)
            try:
                st = os.stat(folder)
            except FileNotFoundError:
                if cached is not None:
                    self._forget(tenant, prefix)
                continue
            if cached is not None and cached[0] == st.st_mtime_ns and cached[1] == st.st_ino:
                continue
            if cached is not None:
                self._forget(tenant, prefix)
            try:
                names = frozenset(os.listdir(folder))
            except FileNotFoundError:
                continue
            if st.st_mtime_ns < now_ns - _RACY_NS:
                tenant.folders[prefix] = (st.st_mtime_ns, st.st_ino, names)
                tenant.names |= names
            else:
                uncached |= names
        absent = hashes - tenant.names
        if uncached:
            absent -= uncached
        self._trim()
        return absent

    @staticmethod
    def _forget(tenant: _TenantNames, prefix: str) -> None:
        _, _, names = tenant.folders.pop(prefix)
        tenant.names -= names

    def _trim(self) -> None:
        total = sum(len(t.names) for t in self._tenants.values())
        while total > self._max_names and self._tenants:
            _, dropped = self._tenants.popitem(last=False)
            total -= len(dropped.names)
