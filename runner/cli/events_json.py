"""Events and tasks as plain JSON objects: the `--json` output of the CLI (one object per line)."""

from __future__ import annotations

from typing import Any

from runner.domain import models as m

_KIND = {
    m.StateChanged: "state_changed",
    m.LogLine: "log_line",
    m.ToolCallStarted: "tool_call_started",
    m.ToolCallFinished: "tool_call_finished",
    m.AssistantMessage: "assistant_message",
    m.TokenUsageEvent: "token_usage",
    m.TaskResult: "task_result",
}


def _usage(u: m.TokenUsage) -> dict[str, int]:
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": u.total_tokens, "requests": u.requests}


def event_json(event: m.Event) -> dict[str, Any]:
    p = event.payload
    out: dict[str, Any] = {"type": "event", "task_id": event.task_id, "seq": event.seq,
                           "time": round(event.time, 6), "kind": _KIND[type(p)]}
    if isinstance(p, m.StateChanged):
        out.update(state=p.state.value, reason=p.reason)
    elif isinstance(p, m.LogLine):
        out.update(stream=p.stream, text=p.text)
    elif isinstance(p, m.ToolCallStarted):
        out.update(call_id=p.call_id, name=p.name, arguments=p.arguments)
    elif isinstance(p, m.ToolCallFinished):
        out.update(call_id=p.call_id, name=p.name, ok=p.ok, exit_code=p.exit_code, output=p.output,
                   duration_s=round(p.duration_s, 3))
    elif isinstance(p, m.AssistantMessage):
        out.update(text=p.text)
    elif isinstance(p, m.TokenUsageEvent):
        out.update(usage=_usage(p.usage), total=_usage(p.total))
    else:
        out.update(state=p.state.value, reason=p.reason, files_changed=p.files_changed, artifacts=list(p.artifacts))
    return out


def task_json(t: m.TaskRecord) -> dict[str, Any]:
    return {
        "task_id": t.id, "state": t.state.value, "reason": t.reason, "instruction": t.instruction,
        "model": t.model, "created_at": t.created_at, "updated_at": t.updated_at, "attempt": t.attempt,
        "files_changed": t.files_changed, "usage": _usage(t.usage),
        "artifacts": {a.name: {"sha256": a.digest.hash, "size": a.digest.size} for a in t.artifacts},
        "source": source_json(t.source),
    }


def source_json(s: m.TaskSource) -> dict[str, Any]:
    """Where the task's workspace came from (a Git URL as the runner shows it: without credentials)."""
    out: dict[str, Any] = {"kind": s.kind.value}
    if s.kind is m.SourceKind.GIT:
        out.update(git_url=s.git_url, git_ref=s.git_ref)
    if s.kind is m.SourceKind.ZIP and s.zip_digest is not None:
        out.update(zip_sha256=s.zip_digest.hash, zip_size=s.zip_digest.size)
    if s.base_commit:
        out["base_commit"] = s.base_commit
    return out


def source_line(s: m.TaskSource) -> str:
    if s.kind is m.SourceKind.GIT:
        text = f"{s.git_url}" + (f"#{s.git_ref}" if s.git_ref else "")
    elif s.kind is m.SourceKind.ZIP:
        text = f"zip archive {s.zip_digest.hash[:12]}" if s.zip_digest else "zip archive"
    else:
        text = "workspace snapshot"
    return text + (f" at {s.base_commit[:12]}" if s.base_commit else "")


def result_json(t: m.TaskRecord, out_dir: str | None = None) -> dict[str, Any]:
    out = {"type": "result", "task_id": t.id, "status": t.state.value, "reason": t.reason,
           "files_changed": t.files_changed, "artifacts": [a.name for a in t.artifacts], "usage": _usage(t.usage)}
    if out_dir:
        out["out_dir"] = out_dir
    return out
