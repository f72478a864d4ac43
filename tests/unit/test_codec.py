"""The hand-written manifest encoder agrees with protobuf's own, and decoding is strict."""

from __future__ import annotations

import hashlib

import pytest

from runner._proto.codex.runner.v1 import runner_pb2 as pb
from runner.api import codec
from runner.domain import models as m
from runner.domain.errors import InvalidArgument


def _digest(i: int, size: int) -> m.Digest:
    return m.Digest(hashlib.sha256(str(i).encode()).hexdigest(), size)


@pytest.mark.parametrize("size", [0, 1, 127, 128, 16383, 16384, 1 << 31, (1 << 40) + 5])
def test_the_fast_encoder_matches_protobuf(size: int):
    entries = (
        m.ManifestEntry("a.txt", m.FileKind.FILE, _digest(1, size)),
        m.ManifestEntry("bin/run", m.FileKind.EXECUTABLE, _digest(2, size)),
        m.ManifestEntry("docs/ünïcode ✓/link", m.FileKind.SYMLINK, _digest(3, 7)),
        m.ManifestEntry("deep/" + "x" * 200 + "/" + "y" * 200, m.FileKind.FILE, _digest(4, size)),
        m.ManifestEntry("/".join(["d" * 250] * 70), m.FileKind.FILE, _digest(5, size)),  # body > 16 KiB
    )
    manifest = m.Manifest(entries)
    assert codec.manifest_to_bytes(manifest) == codec.manifest_to_pb(manifest).SerializeToString(deterministic=True)
    assert codec.manifest_from_bytes(codec.manifest_to_bytes(manifest)) == manifest


def test_an_empty_manifest_encodes_to_nothing():
    assert codec.manifest_to_bytes(m.Manifest(())) == b""


def test_decoding_refuses_garbage_and_incomplete_entries():
    with pytest.raises(InvalidArgument, match="not a valid Manifest"):
        codec.manifest_from_bytes(b"\xff\xff\xff")
    no_digest = pb.Manifest(entries=[pb.ManifestEntry(path="a", kind=pb.FILE_KIND_FILE)]).SerializeToString()
    with pytest.raises(InvalidArgument, match="has no digest"):
        codec.manifest_from_bytes(no_digest)
    bad_hash = pb.Manifest(entries=[pb.ManifestEntry(path="a", kind=pb.FILE_KIND_FILE,
                                                     digest=pb.Digest(hash="XYZ", size_bytes=1))])
    with pytest.raises(InvalidArgument, match="64 lowercase hex"):
        codec.manifest_from_bytes(bad_hash.SerializeToString())
    no_kind = pb.Manifest(entries=[pb.ManifestEntry(path="a", digest=pb.Digest(hash="0" * 64, size_bytes=1))])
    with pytest.raises(InvalidArgument, match="no valid kind"):
        codec.manifest_from_bytes(no_kind.SerializeToString())


def test_every_event_survives_the_round_trip():
    usage = m.TokenUsage(10, 5, 1)
    payloads: list[m.EventPayload] = [
        m.StateChanged(m.TaskState.RUNNING, "why"), m.LogLine("setup", "line"),
        m.ToolCallStarted("c1", "read_file_content", "a.py"),
        m.ToolCallFinished("c1", "run_shell_command", False, 3, "out", 0.5),
        m.ToolCallFinished("c2", "read_file_content", True, None, "text", 0.0),
        m.AssistantMessage("hi"), m.TokenUsageEvent(usage, usage + usage),
        m.TaskResult(m.TaskState.COMPLETED, "", 2, ("diff.patch",)),
    ]
    for seq, payload in enumerate(payloads, 1):
        event = m.Event("t0123456789abcdef", seq, 1700000000.25, payload)
        assert codec.event_from_pb(codec.event_to_pb(event)) == event
