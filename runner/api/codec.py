"""Translation between the generated protobuf types and the domain dataclasses.

The one place that knows both worlds; everything else speaks `runner.domain.models`. Decoding is
strict: a message that does not fit the domain raises `InvalidArgument` naming the field.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from runner._proto.codex.runner.v1 import runner_pb2 as pb
from runner.domain import models as m
from runner.domain.errors import InvalidArgument
from runner.sources.urls import redact_url

_STATE_TO_PB: dict[m.TaskState, pb.TaskState.ValueType] = {
    s: pb.TaskState.Value(f"TASK_STATE_{s.value}") for s in m.TaskState
}
_STATE_FROM_PB: dict[int, m.TaskState] = {int(v): k for k, v in _STATE_TO_PB.items()}
_KIND_TO_PB = {
    m.FileKind.FILE: pb.FILE_KIND_FILE,
    m.FileKind.EXECUTABLE: pb.FILE_KIND_EXECUTABLE,
    m.FileKind.SYMLINK: pb.FILE_KIND_SYMLINK,
}
_KIND_FROM_PB = {v: k for k, v in _KIND_TO_PB.items()}


def digest_to_pb(d: m.Digest) -> pb.Digest:
    return pb.Digest(hash=d.hash, size_bytes=d.size)


def digest_from_pb(d: pb.Digest, field: str = "digest") -> m.Digest:
    try:
        return m.Digest(d.hash, d.size_bytes)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{field}: {exc}") from exc


def state_to_pb(s: m.TaskState) -> pb.TaskState.ValueType:
    return _STATE_TO_PB[s]


def state_from_pb(s: int) -> m.TaskState:
    try:
        return _STATE_FROM_PB[s]
    except KeyError:
        raise InvalidArgument(f"unknown task state {s}") from None


def manifest_to_pb(man: m.Manifest) -> pb.Manifest:
    return pb.Manifest(entries=[
        pb.ManifestEntry(path=e.path, kind=_KIND_TO_PB[e.kind], digest=digest_to_pb(e.digest))
        for e in man.entries
    ])


def manifest_from_pb(msg: pb.Manifest) -> m.Manifest:
    entries = []
    for i, e in enumerate(msg.entries):
        kind = _KIND_FROM_PB.get(e.kind)
        if kind is None:
            raise InvalidArgument(f"manifest entry {i} ({e.path!r}) has no valid kind")
        if not e.HasField("digest"):
            raise InvalidArgument(f"manifest entry {i} ({e.path!r}) has no digest")
        entries.append(m.ManifestEntry(e.path, kind, digest_from_pb(e.digest, f"manifest entry {e.path!r}")))
    return m.Manifest(tuple(entries))


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL_VARINTS = tuple(_varint(i) for i in range(1 << 14))
_KIND_FIELD = {kind: b"\x10" + _varint(int(value)) for kind, value in _KIND_TO_PB.items()}


def manifest_to_bytes(man: m.Manifest) -> bytes:
    """The serialized `Manifest`, byte for byte what `SerializeToString(deterministic=True)` gives (a test
    holds the two together), written directly: this is on the path of every submit, and building ten
    thousand message objects first costs several times more."""
    small = _SMALL_VARINTS
    parts: list[bytes] = []
    append = parts.append
    for e in man.entries:
        path = e.path.encode()
        size = e.digest.size
        digest = b"\x0a\x40" + e.digest.hash.encode() + (
            b"\x10" + (small[size] if size < 16384 else _varint(size)) if size else b"")
        body = b"\x0a" + (small[len(path)] if len(path) < 16384 else _varint(len(path))) + path \
            + _KIND_FIELD[e.kind] + b"\x1a" + small[len(digest)] + digest
        append(b"\x0a" + (small[len(body)] if len(body) < 16384 else _varint(len(body))) + body)
    return b"".join(parts)


def manifest_from_bytes(data: bytes) -> m.Manifest:
    msg = pb.Manifest()
    try:
        msg.ParseFromString(data)
    except DecodeError as exc:
        raise InvalidArgument(f"manifest blob is not a valid Manifest message: {exc}") from exc
    return manifest_from_pb(msg)


def usage_to_pb(u: m.TokenUsage) -> pb.TokenUsage:
    return pb.TokenUsage(prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens, requests=u.requests)


def usage_from_pb(u: pb.TokenUsage) -> m.TokenUsage:
    return m.TokenUsage(u.prompt_tokens, u.completion_tokens, u.requests)


_SOURCE_KIND_TO_PB = {k: pb.SourceKind.Value(f"SOURCE_KIND_{k.name}") for k in m.SourceKind}
_SOURCE_KIND_FROM_PB = {int(v): k for k, v in _SOURCE_KIND_TO_PB.items()}


def source_to_pb(s: m.TaskSource) -> pb.TaskSource:
    """The task's source as shown to clients: a Git URL without its credentials."""
    return pb.TaskSource(
        kind=_SOURCE_KIND_TO_PB[s.kind], git_url=redact_url(s.git_url) if s.git_url else "", git_ref=s.git_ref,
        base_commit=s.base_commit, zip_digest=digest_to_pb(s.zip_digest) if s.zip_digest is not None else None)


def source_from_pb(s: pb.TaskSource) -> m.TaskSource:
    return m.TaskSource(
        kind=_SOURCE_KIND_FROM_PB.get(s.kind, m.SourceKind.SNAPSHOT), git_url=s.git_url, git_ref=s.git_ref,
        base_commit=s.base_commit, zip_digest=digest_from_pb(s.zip_digest, "source.zip_digest")
        if s.HasField("zip_digest") else None)


def task_to_pb(t: m.TaskRecord, page_base: str = "") -> pb.Task:
    """`page_base`: the runner's public URL for task pages; "" when it serves none (no `page_url`)."""
    return pb.Task(
        id=t.id, instruction=t.instruction, model=t.model, state=state_to_pb(t.state), reason=t.reason,
        created_at=t.created_at, updated_at=t.updated_at, attempt=t.attempt,
        artifacts=[pb.Artifact(name=a.name, digest=digest_to_pb(a.digest)) for a in t.artifacts],
        usage=usage_to_pb(t.usage), files_changed=t.files_changed,
        manifest_digest=digest_to_pb(t.manifest_digest) if t.manifest_digest is not None else None,
        source=source_to_pb(t.source),
        page_url=f"{page_base}/tasks/{t.id}" if page_base else "",
    )


def event_to_pb(e: m.Event) -> pb.TaskEvent:
    out = pb.TaskEvent(task_id=e.task_id, seq=e.seq, time=e.time)
    p = e.payload
    if isinstance(p, m.StateChanged):
        out.state_changed.CopyFrom(pb.StateChanged(state=state_to_pb(p.state), reason=p.reason))
    elif isinstance(p, m.LogLine):
        out.log_line.CopyFrom(pb.LogLine(stream=p.stream, text=p.text))
    elif isinstance(p, m.ToolCallStarted):
        out.tool_call_started.CopyFrom(pb.ToolCallStarted(call_id=p.call_id, name=p.name, arguments=p.arguments))
    elif isinstance(p, m.ToolCallFinished):
        fin = pb.ToolCallFinished(call_id=p.call_id, name=p.name, ok=p.ok, output=p.output,
                                  duration_seconds=p.duration_s)
        if p.exit_code is not None:
            fin.exit_code = p.exit_code
        out.tool_call_finished.CopyFrom(fin)
    elif isinstance(p, m.AssistantMessage):
        out.assistant_message.CopyFrom(pb.AssistantMessage(text=p.text))
    elif isinstance(p, m.TokenUsageEvent):
        out.token_usage.CopyFrom(pb.TokenUsageUpdate(usage=usage_to_pb(p.usage), total=usage_to_pb(p.total)))
    else:
        out.result.CopyFrom(pb.TaskResult(state=state_to_pb(p.state), reason=p.reason,
                                          files_changed=p.files_changed, artifacts=list(p.artifacts)))
    return out


def event_from_pb(e: pb.TaskEvent) -> m.Event:
    which = e.WhichOneof("payload")
    payload: m.EventPayload
    if which == "state_changed":
        payload = m.StateChanged(state_from_pb(e.state_changed.state), e.state_changed.reason)
    elif which == "log_line":
        payload = m.LogLine(e.log_line.stream, e.log_line.text)
    elif which == "tool_call_started":
        s = e.tool_call_started
        payload = m.ToolCallStarted(s.call_id, s.name, s.arguments)
    elif which == "tool_call_finished":
        f = e.tool_call_finished
        payload = m.ToolCallFinished(f.call_id, f.name, f.ok, f.exit_code if f.HasField("exit_code") else None,
                                     f.output, f.duration_seconds)
    elif which == "assistant_message":
        payload = m.AssistantMessage(e.assistant_message.text)
    elif which == "token_usage":
        payload = m.TokenUsageEvent(usage_from_pb(e.token_usage.usage), usage_from_pb(e.token_usage.total))
    elif which == "result":
        r = e.result
        payload = m.TaskResult(state_from_pb(r.state), r.reason, r.files_changed, tuple(r.artifacts))
    else:
        raise InvalidArgument(f"event {e.seq} of task {e.task_id} has no payload")
    return m.Event(e.task_id, e.seq, e.time, payload)
