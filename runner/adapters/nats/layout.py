"""The JetStream objects of one installation, their names, and `ensure_layout`, which creates them.

For a prefix `P` (`NatsSettings.prefix`):

| object | name | holds |
| --- | --- | --- |
| work-queue stream | `P-queue`, subject `P.tasks.queue` | one message per queued task, removed when acked or termed |
| pull consumer | `workers` on `P-queue` | explicit ack, `ack_wait`, `max_deliver`, `max_ack_pending` |
| advisories stream | `P-queue-exhausted` | the server's max-deliveries advisories for `P-queue`/`workers` |
| KV bucket | `P-tasks` (stream `KV_P-tasks`) | task records, keyed by tenant and task, and who owns each task |
| events stream | `P-events`, subjects `P.events.<task>` | every task's events, in order, per-task subject |

Task ids and tenants appear in subjects and keys as `token()`s: as they are when they consist of
letters, digits, `_` and `-` (every id the runner makes), otherwise `=` and the hex of their UTF-8 bytes,
so no id can inject a `.`, a wildcard or whitespace, and no two ids share a token.

`ensure_layout` is idempotent and safe to run from many processes at once: each object is looked up and
created if missing; a creation that loses a race to another process ("name already in use") looks again.
When the wanted configuration differs from the stored one (a limit changed in the settings), the object
is updated; a change the server refuses (the storage type, say) is logged as a warning naming the field
and the existing object is used as it is. See docs/nats.md for the design as a whole.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import nats.js.errors
from nats.js import JetStreamContext, api

from runner.adapters.nats.settings import JetStreamLimits

log = logging.getLogger(__name__)

_SAFE_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
# JetStream API error codes (nats-server `errors.json`).
STREAM_NAME_IN_USE = 10058
WRONG_LAST_SEQUENCE = 10071


def token(text: str) -> str:
    """`text` as one token of a subject or KV key (see the module docstring)."""
    if _SAFE_TOKEN.match(text):
        return text
    return "=" + text.encode().hex()


@dataclass(frozen=True, slots=True)
class Layout:
    """Names of the JetStream objects of one prefix."""

    prefix: str

    @property
    def queue_stream(self) -> str:
        return f"{self.prefix}-queue"

    @property
    def queue_subject(self) -> str:
        return f"{self.prefix}.tasks.queue"

    @property
    def queue_consumer(self) -> str:
        return "workers"

    @property
    def advisories_stream(self) -> str:
        return f"{self.prefix}-queue-exhausted"

    @property
    def advisory_subject(self) -> str:
        return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{self.queue_stream}.{self.queue_consumer}"

    @property
    def tasks_bucket(self) -> str:
        return f"{self.prefix}-tasks"

    @property
    def tasks_stream(self) -> str:
        return f"KV_{self.tasks_bucket}"

    def tasks_key_prefix(self, tenant: str) -> str:
        """Keys of one tenant's records: `<prefix><task token>`."""
        return f"rec.{token(tenant)}."

    def task_key(self, tenant: str, task_id: str) -> str:
        return f"{self.tasks_key_prefix(tenant)}{token(task_id)}"

    def owner_key(self, task_id: str) -> str:
        """The key holding the tenant of a task, so a record can be found by task id alone."""
        return f"own.{token(task_id)}"

    def kv_subject(self, key: str) -> str:
        return f"$KV.{self.tasks_bucket}.{key}"

    @property
    def events_stream(self) -> str:
        return f"{self.prefix}-events"

    @property
    def events_subjects(self) -> str:
        return f"{self.prefix}.events.*"

    def events_subject(self, task_id: str) -> str:
        return f"{self.prefix}.events.{token(task_id)}"

    # ---- configurations --------------------------------------------------------------------------------

    def stream_configs(self, limits: JetStreamLimits) -> list[api.StreamConfig]:
        storage = api.StorageType(limits.storage)
        return [
            api.StreamConfig(
                name=self.queue_stream, description="codex-sys: queued tasks, one message each until acked",
                subjects=[self.queue_subject], retention=api.RetentionPolicy.WORK_QUEUE,
                discard=api.DiscardPolicy.NEW, storage=storage, num_replicas=limits.replicas,
                duplicate_window=limits.duplicate_window_s, max_age=0, max_msgs=-1, max_bytes=-1),
            api.StreamConfig(
                name=self.advisories_stream,
                description="codex-sys: max-deliveries advisories of the task queue, until the task is failed",
                subjects=[self.advisory_subject], retention=api.RetentionPolicy.LIMITS,
                discard=api.DiscardPolicy.OLD, storage=storage, num_replicas=limits.replicas,
                duplicate_window=limits.duplicate_window_s, max_age=limits.advisories_max_age_s, max_msgs=-1,
                max_bytes=-1),
            # The same stream nats-py's `create_key_value` makes, without the fields 2.9 does not know.
            api.StreamConfig(
                name=self.tasks_stream, description="codex-sys: task records (KV bucket)",
                subjects=[f"$KV.{self.tasks_bucket}.>"], retention=api.RetentionPolicy.LIMITS,
                max_msgs_per_subject=limits.tasks_history, discard=api.DiscardPolicy.NEW,
                allow_rollup_hdrs=True, deny_delete=True, allow_direct=True, storage=storage,
                num_replicas=limits.replicas, duplicate_window=min(limits.duplicate_window_s, 120.0),
                max_age=0, max_msgs=-1, max_bytes=-1),
            api.StreamConfig(
                name=self.events_stream, description="codex-sys: task events, one subject per task",
                subjects=[self.events_subjects], retention=api.RetentionPolicy.LIMITS,
                discard=api.DiscardPolicy.OLD, storage=storage, num_replicas=limits.replicas,
                duplicate_window=limits.duplicate_window_s, max_age=limits.events_max_age_s,
                max_bytes=limits.events_max_bytes, max_msgs=-1),
        ]

    def consumer_config(self, limits: JetStreamLimits) -> api.ConsumerConfig:
        return api.ConsumerConfig(
            durable_name=self.queue_consumer, description="codex-sys workers",
            deliver_policy=api.DeliverPolicy.ALL, ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=limits.ack_wait_s, max_deliver=limits.max_deliver, max_ack_pending=limits.max_ack_pending)


async def ensure_layout(js: JetStreamContext, prefix: str, limits: JetStreamLimits) -> Layout:
    """Create or update every object of `prefix` (see the module docstring); returns their names.

    Raises the nats-py error of a request that fails (the caller retries transient ones)."""
    layout = Layout(prefix)
    for config in layout.stream_configs(limits):
        await _ensure_stream(js, config)
    await _ensure_consumer(js, layout.queue_stream, layout.consumer_config(limits))
    return layout


# ---- internals ------------------------------------------------------------------------------------------

# The fields `stream_configs` sets; other fields of a stored configuration are the server's defaults.
_COMPARED = ("subjects", "retention", "discard", "storage", "num_replicas", "duplicate_window", "max_age",
             "max_msgs", "max_bytes", "max_msgs_per_subject", "allow_rollup_hdrs", "deny_delete",
             "allow_direct", "description")


def _differences(wanted: api.StreamConfig, stored: api.StreamConfig) -> dict[str, tuple[Any, Any]]:
    diffs: dict[str, tuple[Any, Any]] = {}
    for name in _COMPARED:
        want, have = getattr(wanted, name), getattr(stored, name)
        if want is None:
            continue
        if isinstance(want, float) or isinstance(have, float):
            if abs(float(want) - float(have or 0)) < 1e-3:
                continue
        elif want == have or (not want and not have):
            continue
        diffs[name] = (have, want)
    return diffs


async def _ensure_stream(js: JetStreamContext, config: api.StreamConfig) -> None:
    name = config.name
    for _ in range(5):
        try:
            info = await js.stream_info(name or "")
        except nats.js.errors.NotFoundError:
            try:
                await js.add_stream(config)
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code == STREAM_NAME_IN_USE:
                    continue  # another process created it just now: compare with what it made
                raise
            log.info("JetStream stream created", extra={"stream": name})
            return
        diffs = _differences(config, info.config)
        if not diffs:
            return
        changes = {field: f"{old!r} -> {new!r}" for field, (old, new) in diffs.items()}
        try:
            await js.update_stream(config)
        except nats.js.errors.APIError as exc:
            if exc.code == 503:
                raise
            log.warning("JetStream stream configuration differs and the server refuses to change it; using it "
                        "as it is", extra={"stream": name, "changes": str(changes), "error": exc.description})
            return
        log.info("JetStream stream configuration updated", extra={"stream": name, "changes": str(changes)})
        return
    raise nats.js.errors.ServiceUnavailableError(description=f"stream {name} kept changing while it was set up")


async def _ensure_consumer(js: JetStreamContext, stream: str, config: api.ConsumerConfig) -> None:
    name = config.durable_name or ""
    try:
        info = await js.consumer_info(stream, name)
    except nats.js.errors.NotFoundError:
        info = None
    if info is not None and all(_same(getattr(config, f), getattr(info.config, f))
                                for f in ("ack_wait", "max_deliver", "max_ack_pending", "ack_policy")):
        return
    try:
        # Creates the durable consumer, or updates ack wait, max deliver and max ack pending of an existing
        # one: the server answers with the consumer as it is when the configuration is the same.
        await js.add_consumer(stream, config)
    except nats.js.errors.APIError as exc:
        if info is None or exc.code == 503:
            raise
        log.warning("JetStream consumer configuration differs and the server refuses to change it; using it as "
                    "it is", extra={"stream": stream, "consumer": name, "error": exc.description})
        return
    log.info("JetStream consumer " + ("created" if info is None else "updated"),
             extra={"stream": stream, "consumer": name, "ack_wait_s": config.ack_wait,
                    "max_deliver": config.max_deliver, "max_ack_pending": config.max_ack_pending})


def _same(want: object, have: object) -> bool:
    if isinstance(want, float) or isinstance(have, float):
        return abs(float(want or 0) - float(have or 0)) < 1e-3  # type: ignore[arg-type]
    return want == have
