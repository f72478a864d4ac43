"""Snapshots as one object: the pack format (`pack`) and the helper that builds, stores and reuses packs
(`packs`). Works with any `BlobStore`; knows nothing of MinIO (the MinIO store implements `PackStore`).
"""

from runner.snapshots.pack import PackError, Unpacked, pack_key, unpack, unpack_file, write_pack
from runner.snapshots.packs import HasPacks, PackRef, Packs, PackStore

__all__ = ["HasPacks", "PackError", "PackRef", "PackStore", "Packs", "Unpacked", "pack_key", "unpack",
           "unpack_file", "write_pack"]
