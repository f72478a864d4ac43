"""The runner's domain: tasks, their states, events and content addresses.

Everything outside the gRPC adapter speaks these dataclasses; the generated protobuf types never leave
`runner.api`. Records are immutable: a change is a new record written with compare-and-set against the
revision it was read at (see `TaskStore.update`).
"""

from __future__ import annotations

import enum
import hashlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from runner.domain.errors import InvalidArgument

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True, order=True)
class Digest:
    """A content address: SHA-256 of the bytes and their length, as in Bazel's remote-execution CAS."""

    hash: str
    size: int

    def __post_init__(self) -> None:
        if not _HEX64.match(self.hash):
            raise InvalidArgument(f"digest hash {self.hash[:80]!r} is not 64 lowercase hex characters")
        if self.size < 0:
            raise InvalidArgument(f"digest size {self.size} is negative")

    @classmethod
    def of(cls, data: bytes) -> Digest:
        return cls(hashlib.sha256(data).hexdigest(), len(data))

    def __str__(self) -> str:
        return f"sha256:{self.hash}/{self.size}"


EMPTY_DIGEST = Digest.of(b"")


class TaskState(enum.Enum):
    QUEUED = "QUEUED"
    PREPARING = "PREPARING"
    SETTING_UP = "SETTING_UP"
    RUNNING = "RUNNING"
    UPLOADING = "UPLOADING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"

    @property
    def final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED, TaskState.TIMED_OUT})

# Forward moves only; any non-final state may end in FAILED, CANCELLED or TIMED_OUT. A redelivered task
# (worker died) goes back to PREPARING for its next attempt.
_ALLOWED: Mapping[TaskState, frozenset[TaskState]] = {
    TaskState.QUEUED: frozenset({TaskState.PREPARING}),
    TaskState.PREPARING: frozenset({TaskState.SETTING_UP, TaskState.RUNNING, TaskState.UPLOADING,
                                    TaskState.PREPARING}),
    TaskState.SETTING_UP: frozenset({TaskState.RUNNING, TaskState.UPLOADING, TaskState.PREPARING}),
    TaskState.RUNNING: frozenset({TaskState.UPLOADING, TaskState.PREPARING}),
    TaskState.UPLOADING: frozenset({TaskState.COMPLETED, TaskState.PREPARING}),
}


def can_transition(old: TaskState, new: TaskState) -> bool:
    if old.final:
        return False
    if new in (TaskState.FAILED, TaskState.CANCELLED, TaskState.TIMED_OUT):
        return True
    return new in _ALLOWED.get(old, frozenset())


class FileKind(enum.Enum):
    FILE = "file"
    EXECUTABLE = "executable"
    SYMLINK = "symlink"


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One file of a snapshot. A symlink's target is stored as the blob's bytes (as git does)."""

    path: str
    kind: FileKind
    digest: Digest


@dataclass(frozen=True, slots=True)
class Manifest:
    entries: tuple[ManifestEntry, ...]

    @property
    def total_size(self) -> int:
        return sum(e.digest.size for e in self.entries)


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    name: str
    digest: Digest


# The artifacts every task keeps (DESIGN.md, "Artifacts of a task").
ARTIFACT_NAMES = (
    "diff.patch",
    "prompt.txt",
    "llm_response.txt",
    "setup.log",
    "agent.log",
    "summary.md",
)


class SourceKind(enum.Enum):
    SNAPSHOT = "snapshot"
    GIT = "git"
    ZIP = "zip"


@dataclass(frozen=True, slots=True)
class TaskSource:
    """Where a task's workspace comes from. A snapshot's manifest is known at creation; a Git or zip
    source is fetched by the worker, which then records the manifest (and, for Git, the commit)."""

    kind: SourceKind = SourceKind.SNAPSHOT
    # Git: the URL as given, credentials included (the worker clones with them). Never shown: the API,
    # events, logs and errors use the redacted form.
    git_url: str = ""
    git_ref: str = ""
    # Git: the commit checked out; snapshot: the commit the client said the workspace is based on.
    base_commit: str = ""
    zip_digest: Digest | None = None


@dataclass(frozen=True, slots=True)
class TaskLimits:
    """Per-task limits; the runner clamps what a client asks for to its configured maxima."""

    wall_time_s: float = 1800.0
    max_steps: int = 50
    max_llm_requests: int = 100
    max_llm_tokens: int = 2_000_000
    command_timeout_s: float = 120.0
    setup_timeout_s: float = 600.0
    memory_bytes: int = 4 << 30
    max_processes: int = 512
    max_file_bytes: int = 1 << 30


@dataclass(frozen=True, slots=True)
class TokenUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(self.prompt_tokens + other.prompt_tokens,
                          self.completion_tokens + other.completion_tokens,
                          self.requests + other.requests)


@dataclass(frozen=True, slots=True)
class TaskRecord:
    id: str
    tenant: str
    instruction: str
    model: str
    # None for a Git or zip task until the worker has fetched its source.
    manifest_digest: Digest | None
    state: TaskState = TaskState.QUEUED
    reason: str = ""
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    attempt: int = 0
    cancel_requested: bool = False
    limits: TaskLimits = field(default_factory=TaskLimits)
    artifacts: tuple[ArtifactRef, ...] = ()
    usage: TokenUsage = field(default_factory=TokenUsage)
    files_changed: int = 0
    # Optional focus from the editor: workspace-relative paths and a "path:start-end" line range.
    focus_paths: tuple[str, ...] = ()
    focus_range: str = ""
    source: TaskSource = field(default_factory=TaskSource)
    # Set by the store: the revision this record was read at (0 before it is first stored).
    revision: int = 0

    def artifact(self, name: str) -> ArtifactRef | None:
        for a in self.artifacts:
            if a.name == name:
                return a
        return None

    def with_state(self, state: TaskState, reason: str = "") -> TaskRecord:
        return replace(self, state=state, reason=reason or self.reason, updated_at=time.time())


# ---- events -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateChanged:
    state: TaskState
    reason: str = ""


@dataclass(frozen=True, slots=True)
class LogLine:
    stream: str  # "runner", "setup", "agent"
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    call_id: str
    name: str
    arguments: str  # short, human-readable summary of the arguments


@dataclass(frozen=True, slots=True)
class ToolCallFinished:
    call_id: str
    name: str
    ok: bool
    exit_code: int | None
    output: str  # truncated
    duration_s: float


@dataclass(frozen=True, slots=True)
class AssistantMessage:
    text: str


@dataclass(frozen=True, slots=True)
class TokenUsageEvent:
    usage: TokenUsage  # this request's usage
    total: TokenUsage  # the task's running total


@dataclass(frozen=True, slots=True)
class TaskResult:
    state: TaskState
    reason: str
    files_changed: int
    artifacts: tuple[str, ...]


EventPayload = (StateChanged | LogLine | ToolCallStarted | ToolCallFinished | AssistantMessage
                | TokenUsageEvent | TaskResult)


@dataclass(frozen=True, slots=True)
class Event:
    task_id: str
    seq: int  # 1-based, per task, gap-free
    time: float
    payload: EventPayload

    @property
    def is_result(self) -> bool:
        return isinstance(self.payload, TaskResult)
