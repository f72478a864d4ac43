"""Settings of the NATS adapters: how to reach NATS (`NatsSettings`) and the JetStream limits of the streams,
consumer and bucket they create (`JetStreamLimits`).

Both are plain frozen dataclasses; reading them from flags and the environment is the composition's job.
Every name the adapters create on the server starts with `prefix`, so several installations (or tests)
share one NATS account without meeting: streams `<prefix>-queue`, `<prefix>-queue-exhausted`,
`<prefix>-events`, KV bucket `<prefix>-tasks`, subjects `<prefix>.tasks.queue` and `<prefix>.events.*`
(see `layout` and docs/nats.md).

A change of a limit takes effect at the next start of a process: `ensure_layout` updates the stream and
consumer configurations where the server allows it (age, size, ack wait, max deliver...) and logs a
warning naming the field where it does not (storage type, for one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from runner.domain.errors import InvalidArgument

_PREFIX = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class NatsSettings:
    """How the runner connects to NATS. Credentials are optional and combine as NATS allows."""

    # Server URLs (`nats://host:4222`, `tls://host:4222`); the client picks one and fails over to the others.
    servers: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    # A `.creds` file (user JWT and NKey seed) for decentralised auth.
    creds_file: Path | None = None
    # User and password auth.
    user: str | None = None
    password: str | None = None
    # Token auth.
    token: str | None = None
    # TLS: a CA bundle to verify the server, and a client certificate and key for mutual TLS. Giving
    # any of them turns TLS on.
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # First part of every stream, bucket and subject name: [A-Za-z0-9_-], at most 32 characters.
    prefix: str = "codex"
    # Connection name shown by the server (`nats server report connections`), e.g. "runner" or "worker-3".
    name: str | None = None
    # Time allowed for the first connection; after it, the client reconnects forever on its own.
    connect_timeout_s: float = 10.0
    # Pause between reconnect attempts to one server.
    reconnect_wait_s: float = 0.25
    # Time one JetStream API request or publish may take before it counts as lost.
    request_timeout_s: float = 5.0
    # How long an operation that must not be lost (event append, enqueue, a store write, a watcher's
    # resubscription) keeps retrying through a NATS outage before it raises `Unavailable`.
    retry_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.servers:
            raise InvalidArgument("NATS settings need at least one server URL")
        if not _PREFIX.match(self.prefix):
            raise InvalidArgument(f"NATS prefix {self.prefix[:80]!r} must be 1-32 characters of A-Z, a-z, 0-9, _ and -")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InvalidArgument("a NATS TLS client certificate and its key go together: give both or neither")
        if min(self.connect_timeout_s, self.reconnect_wait_s, self.request_timeout_s) <= 0 or self.retry_s < 0:
            raise InvalidArgument("NATS timeouts must be positive")

    @property
    def tls(self) -> bool:
        return any(p is not None for p in (self.tls_ca, self.tls_cert)) or any(
            s.startswith("tls://") for s in self.servers)


@dataclass(frozen=True, slots=True)
class JetStreamLimits:
    """Limits of the JetStream objects the adapters create (defaults suit one small installation)."""

    # Queue consumer: a delivery not acked (nor extended by `in_progress`) within this time is delivered
    # again. The worker heartbeats well within it, so it bounds how long a dead worker holds a task.
    ack_wait_s: float = 60.0
    # Queue consumer: deliveries of one task before the queue gives up on it (a max-deliveries advisory
    # is recorded and the runner fails the task, see `TaskQueue.exhausted`).
    max_deliver: int = 5
    # Queue consumer: deliveries in flight (received, not yet acked) across all workers at once; further
    # receives wait. -1 for no limit.
    max_ack_pending: int = 10_000
    # Events stream: events older than this are removed (a watcher from seq 0 then starts later).
    events_max_age_s: float = 30 * DAY_S
    # Events stream: total size cap, oldest events removed first; -1 for none (age alone retires events).
    events_max_bytes: int = -1
    # Exhaustion advisories: kept this long if nobody sweeps them (the runner discards each when it has
    # failed the task).
    advisories_max_age_s: float = 30 * DAY_S
    # KV task records: revisions kept per record. 1 keeps only the current record (the runner never
    # reads old ones); more keeps history for inspection with `nats kv history`.
    tasks_history: int = 1
    # Queue and events: a publish with a `Nats-Msg-Id` seen within this window is stored once. Enqueue
    # is idempotent by task id within it; event appends retry within it (so `retry_s` must be shorter).
    duplicate_window_s: float = 120.0
    # Replicas of every stream and the bucket (1 on a single server, 3 on a cluster).
    replicas: int = 1
    # Where JetStream keeps the data: "file" survives a server restart, "memory" does not.
    storage: Literal["file", "memory"] = "file"

    def __post_init__(self) -> None:
        if self.ack_wait_s <= 0 or self.max_deliver < 1:
            raise InvalidArgument("the queue's ack wait must be positive and max deliver at least 1")
        if self.max_ack_pending == 0 or self.max_ack_pending < -1:
            raise InvalidArgument("max_ack_pending must be positive, or -1 for no limit")
        if self.events_max_age_s < 0 or self.advisories_max_age_s < 0 or self.events_max_bytes < -1 \
                or self.events_max_bytes == 0:
            raise InvalidArgument("event and advisory retention must be positive (0 age means forever, -1 bytes "
                                  "no cap)")
        if not 1 <= self.tasks_history <= 64:
            raise InvalidArgument("tasks_history must be between 1 and 64")
        if self.duplicate_window_s <= 0:
            raise InvalidArgument("the duplicate window must be positive")
        if self.replicas not in (1, 3, 5):
            raise InvalidArgument("replicas must be 1, 3 or 5")
        if self.storage not in ("file", "memory"):
            raise InvalidArgument(f"storage must be 'file' or 'memory', not {self.storage!r}")
