"""`transfer.json`: what a Kubernetes agent pod is handed besides its task spec.

The executor writes it, with `spec.json`, into the task's Secret, mounted read-only at /run/codex/task:

    {"pack": {"url": "<presigned GET>", "digest": "sha256:<64 hex>", "size": <bytes>},
     "outputs": {"diff.patch": "<presigned PUT>", ..., "agent.log": "<presigned PUT>"}}

The init container (`python -m runner.snapshots.fetch`) downloads the pack into /workspace; the agent
container (`python -m agent.pod`) uploads the outputs. Every URL is a bearer credential for one object:
no message, log line or exception text here ever contains one (`pod_http.redact`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.wire import OUTPUT_FILES

AGENT_LOG = "agent.log"
# The names an agent pod may upload: the agent's outputs, and the log the pod keeps of it.
UPLOAD_NAMES = (*OUTPUT_FILES, AGENT_LOG)
MAX_TASK_FILE_BYTES = 1 << 20
_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")


class TaskFileError(ValueError):
    """A file of the task folder (transfer.json, spec.json) cannot be used; the message says why (and
    quotes no URL and no token)."""


def read_task_file(path: Path) -> bytes:
    """The bytes of a file of the task folder, at most `MAX_TASK_FILE_BYTES`."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TASK_FILE_BYTES + 1)
    except OSError as exc:
        raise TaskFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_TASK_FILE_BYTES:
        raise TaskFileError(f"{path} is over {MAX_TASK_FILE_BYTES} bytes")
    return data


@dataclass(frozen=True, slots=True)
class PackLink:
    """A presigned GET of the snapshot's pack, and what its bytes must be."""

    url: str
    sha256: str  # 64 lowercase hex digits
    size: int

    @property
    def digest(self) -> str:
        return f"sha256:{self.sha256}"


@dataclass(frozen=True, slots=True)
class Transfer:
    pack: PackLink | None = None
    outputs: dict[str, str] = field(default_factory=dict)  # output name -> presigned PUT

    def to_json(self) -> bytes:
        obj: dict[str, Any] = {"outputs": dict(self.outputs)}
        if self.pack is not None:
            obj["pack"] = {"url": self.pack.url, "digest": self.pack.digest, "size": self.pack.size}
        return json.dumps(obj, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Transfer:
        try:
            obj = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise TaskFileError(f"transfer.json is not JSON ({_where(exc)})") from None
        if not isinstance(obj, dict):
            raise TaskFileError("transfer.json must be a JSON object")
        unknown = set(obj) - {"pack", "outputs"}
        if unknown:
            raise TaskFileError(f"transfer.json: unknown field(s) {sorted(unknown)}")
        outputs = obj.get("outputs", {})
        if not isinstance(outputs, dict) or not all(isinstance(k, str) and _is_url(v) for k, v in outputs.items()):
            raise TaskFileError("transfer.json: outputs must map names to http(s) URLs")
        return cls(_pack(obj["pack"]) if obj.get("pack") is not None else None, dict(outputs))

    @classmethod
    def read(cls, path: Path) -> Transfer:
        return cls.from_json(read_task_file(path))


def _pack(obj: Any) -> PackLink:
    if not isinstance(obj, dict) or set(obj) != {"url", "digest", "size"}:
        raise TaskFileError("transfer.json: pack must be an object with exactly url, digest and size")
    if not _is_url(obj["url"]):
        raise TaskFileError("transfer.json: pack.url must be an http(s) URL")
    digest = obj["digest"]
    match = _DIGEST.match(digest) if isinstance(digest, str) else None
    if match is None:
        raise TaskFileError("transfer.json: pack.digest must be 'sha256:' and 64 lowercase hex digits")
    size = obj["size"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise TaskFileError(f"transfer.json: pack.size must be a whole number of bytes, not {size!r}")
    return PackLink(obj["url"], match.group(1), size)


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://"))


def _where(exc: ValueError) -> str:
    # Only the decoder's own words and the position: never an excerpt of the document (it holds URLs).
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return "it is not UTF-8"
