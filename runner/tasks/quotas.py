"""Per-tenant quotas: tasks at once, tasks per rolling hour, LLM tokens per rolling day.

The limits come from a TOML tenants file (`--tenants-file` / `CODEX_SYS_TENANTS_FILE`), re-read when it
changes like the token file; without a file there are no quotas:

    [defaults]                       # every tenant, unless its own table says otherwise
    concurrent_tasks = 4
    tasks_per_hour = 60
    llm_tokens_per_day = 2_000_000

    [tenants.acme]                   # a key left out falls back to [defaults]; 0 means unlimited
    concurrent_tasks = 10

`Quotas.admit` is called by `TaskService.create` once a create is known not to be an idempotent retry.
It counts from the TaskStore (the records carry created_at, state, limits and usage), so every API
replica sees the same figures:
- concurrent: the tenant's tasks not yet in a final state;
- per hour: tasks created in the last 3600 s; the next slot frees when the oldest of them is an hour old;
- LLM tokens per day: over tasks created in the last 24 h, what finished tasks used plus the budget
  (`max_llm_tokens`) of tasks still queued or running, whose usage is known only when they end. A new
  task's budget is clamped to what is left, so the gateway's per-task budget enforces the quota
  mid-task and the day's total cannot go over it.

Concurrent creates of one tenant in one process are serialized by a per-tenant lock around the check,
and an admitted task counts as reserved until its create call (the asyncio task running it: one per
gRPC call) has ended, by which time its record is in the store or the create failed; so two creates
cannot both take the last slot. Across several API replicas the check and the write are not atomic:
each replica may admit one task against the same last slot, so a tenant can go over a limit by at most
(replicas - 1) tasks (and their budgets) at a time.
"""

from __future__ import annotations

import asyncio
import math
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from runner.auth.tokens import TENANT_PATTERN
from runner.auth.watched_file import WatchedFile, read_text
from runner.domain import models as m
from runner.domain.errors import InvalidArgument, ResourceExhausted
from runner.ports import TaskStore

TENANTS_FILE_ENV = "CODEX_SYS_TENANTS_FILE"
HOUR_S = 3600.0
DAY_S = 24 * HOUR_S
NON_FINAL = tuple(s for s in m.TaskState if not s.final)
# A reservation outlives a create call that never ends (one run outside a gRPC call) no longer than this.
RESERVATION_S = 300.0


@dataclass(frozen=True, slots=True)
class TenantLimits:
    """0 means unlimited."""

    concurrent_tasks: int = 0
    tasks_per_hour: int = 0
    llm_tokens_per_day: int = 0

    @property
    def any(self) -> bool:
        return bool(self.concurrent_tasks or self.tasks_per_hour or self.llm_tokens_per_day)


@dataclass(frozen=True, slots=True)
class QuotaSettings:
    defaults: TenantLimits = TenantLimits()
    tenants: Mapping[str, TenantLimits] = field(default_factory=dict)

    def limits(self, tenant: str) -> TenantLimits:
        return self.tenants.get(tenant, self.defaults)


_KEYS = tuple(f.name for f in fields(TenantLimits))


def _limits(table: object, where: str, base: TenantLimits) -> TenantLimits:
    if not isinstance(table, dict):
        raise InvalidArgument(f"{where} must be a table of {', '.join(_KEYS)}")
    values = {k: getattr(base, k) for k in _KEYS}
    for key, value in table.items():
        if key not in _KEYS:
            raise InvalidArgument(f"{where}: unknown key {key!r}; the keys are {', '.join(_KEYS)}")
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidArgument(f"{where}: {key} must be a whole number >= 0 (0: unlimited), not {value!r}")
        values[key] = value
    return TenantLimits(**values)


def parse_tenants(text: str, origin: str) -> QuotaSettings:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument(f"{origin}: not valid TOML: {exc}") from exc
    unknown = set(doc) - {"defaults", "tenants"}
    if unknown:
        raise InvalidArgument(f"{origin}: unknown table(s) {', '.join(sorted(unknown))}; "
                              "expected [defaults] and [tenants.NAME]")
    defaults = _limits(doc.get("defaults", {}), f"{origin}: [defaults]", TenantLimits())
    tenants_table = doc.get("tenants", {})
    if not isinstance(tenants_table, dict):
        raise InvalidArgument(f"{origin}: 'tenants' must be tables [tenants.NAME]")
    tenants: dict[str, TenantLimits] = {}
    for name, table in tenants_table.items():
        if not TENANT_PATTERN.match(name):
            raise InvalidArgument(f"{origin}: [tenants.{name[:64]}] is not a tenant name (lowercase letters, "
                                  "digits, '-' or '_')")
        tenants[name] = _limits(table, f"{origin}: [tenants.{name}]", defaults)
    return QuotaSettings(defaults, tenants)


def read_tenants_file(path: Path) -> QuotaSettings:
    return parse_tenants(read_text(path, "tenants file"), str(path))


def _wait(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, math.ceil(seconds))} s"
    if seconds < 90 * 60:
        return f"{math.ceil(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def _budget(record: m.TaskRecord) -> int:
    """LLM tokens a task counts for: its usage once it ended, its whole budget until then."""
    if record.state.final:
        return record.usage.total_tokens
    return max(record.usage.total_tokens, record.limits.max_llm_tokens)


class Quotas:
    """Checks a tenant's create against its limits (see the module docstring)."""

    def __init__(self, store: TaskStore, settings: QuotaSettings | WatchedFile[QuotaSettings],
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        # tenant → {task id: (reserved at, LLM token budget)} of creates under way.
        self._pending: dict[str, dict[str, tuple[float, int]]] = {}

    @classmethod
    def from_file(cls, store: TaskStore, path: Path) -> Quotas:
        """Quotas of a tenants file, re-read when it changes; errors in it stop the start."""
        return cls(store, WatchedFile(path, read_tenants_file, "tenants file"))

    def limits(self, tenant: str) -> TenantLimits:
        settings = self._settings.current() if isinstance(self._settings, WatchedFile) else self._settings
        return settings.limits(tenant)

    async def admit(self, tenant: str, task_id: str, llm_budget: int) -> int:
        """Admit one more task of `tenant` (raises `ResourceExhausted`); returns the LLM token budget the
        task may have (`llm_budget`, or less when the day's quota leaves less)."""
        limits = self.limits(tenant)
        if not limits.any:
            return llm_budget
        async with self._locks.setdefault(tenant, asyncio.Lock()):
            budget = await self._check(tenant, limits, llm_budget)
            self._reserve(tenant, task_id, budget)
        return budget

    async def _check(self, tenant: str, limits: TenantLimits, llm_budget: int) -> int:
        now = self._clock()
        pending = self._pending.get(tenant, {})
        for tid, (at, _) in list(pending.items()):
            if at < now - RESERVATION_S:
                del pending[tid]
        if limits.concurrent_tasks:
            active = await self._store.list(tenant, limit=limits.concurrent_tasks + len(pending) + 1,
                                            states=NON_FINAL)
            ids = {r.id for r in active}
            count = len(active) + sum(1 for tid in pending if tid not in ids)
            if count >= limits.concurrent_tasks:
                raise ResourceExhausted(
                    f"tenant {tenant} has {count} tasks queued or running; its limit is {limits.concurrent_tasks}"
                    " — wait for one to end or cancel one")
        if not (limits.tasks_per_hour or limits.llm_tokens_per_day):
            return llm_budget
        window = DAY_S if limits.llm_tokens_per_day else HOUR_S
        recent = await self._store.list_created_since(tenant, now - window)
        stored = {r.id for r in recent}
        unseen = [(at, budget) for tid, (at, budget) in pending.items() if tid not in stored]
        if limits.tasks_per_hour:
            hour = sorted([r.created_at for r in recent if r.created_at >= now - HOUR_S] + [at for at, _ in unseen])
            if len(hour) >= limits.tasks_per_hour:
                frees_in = hour[len(hour) - limits.tasks_per_hour] + HOUR_S - now
                raise ResourceExhausted(
                    f"tenant {tenant} created {len(hour)} tasks in the last hour (limit {limits.tasks_per_hour}); "
                    f"the next one may start in {_wait(frees_in)}")
        if not limits.llm_tokens_per_day:
            return llm_budget
        spent = [(r.created_at, _budget(r)) for r in recent] + unseen
        used = sum(tokens for _, tokens in spent)
        left = limits.llm_tokens_per_day - used
        if left <= 0:
            running = sum(1 for r in recent if not r.state.final) + len(unseen)
            held = f"; {running} task(s) not yet ended hold their whole budget" if running else ""
            frees_in = self._frees_in(spent, used - limits.llm_tokens_per_day, now)
            raise ResourceExhausted(
                f"tenant {tenant} used {used:,} LLM tokens in the last 24 h (limit {limits.llm_tokens_per_day:,}"
                f"{held}); more are available in {_wait(frees_in)}, or as soon as a task ends under budget")
        return min(llm_budget, left)

    @staticmethod
    def _frees_in(spent: list[tuple[float, int]], over: int, now: float) -> float:
        """Seconds until enough of the window's tokens age out to leave at least one token."""
        freed = 0
        for created_at, tokens in sorted(spent):
            freed += tokens
            if freed > over:
                return max(0.0, created_at + DAY_S - now)
        return DAY_S

    def _reserve(self, tenant: str, task_id: str, budget: int) -> None:
        pending = self._pending.setdefault(tenant, {})
        pending[task_id] = (self._clock(), budget)
        current = asyncio.current_task()
        if current is None:
            return

        def release(_: object) -> None:
            # The create has ended: its record is in the store now (counted there), or it failed.
            pending.pop(task_id, None)

        current.add_done_callback(release)
