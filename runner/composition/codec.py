"""How the task service stores manifests: as serialized `codex.runner.v1.Manifest` messages."""

from __future__ import annotations

from runner.api.codec import manifest_from_bytes, manifest_to_bytes
from runner.domain import models as m


class ProtoManifestCodec:
    def encode(self, manifest: m.Manifest) -> bytes:
        return manifest_to_bytes(manifest)

    def decode(self, data: bytes) -> m.Manifest:
        return manifest_from_bytes(data)
