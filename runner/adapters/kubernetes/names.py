"""Names and labels of the objects the executor makes, all derived from the task and the attempt.

The Job of an attempt is `task-<task id>-<attempt>`: the same attempt always names the same Job, so
creating it twice (a retried call, a worker restarted on the same delivery) finds the first one and
adopts it instead of starting a second pod. The Secret and the NetworkPolicy take the same name.
"""

from __future__ import annotations

import hashlib
import re

MANAGED_BY = "app.kubernetes.io/managed-by"
COMPONENT = "app.kubernetes.io/component"
TASK = "codex-sys.dev/task"
ATTEMPT = "codex-sys.dev/attempt"
TENANT = "codex-sys.dev/tenant"
WORKER = "codex-sys.dev/worker"
MANAGER = "codex-sys"
AGENT_SELECTOR = f"{MANAGED_BY}={MANAGER},{COMPONENT}=agent"

_UNSAFE = re.compile(r"[^a-z0-9-]+")
_VALUE_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def dns_safe(text: str, limit: int) -> str:
    """`text` as a DNS label part: lowercase, [a-z0-9-]; a hash suffix when anything had to change."""
    safe = _UNSAFE.sub("-", text.lower()).strip("-")
    if safe == text and len(safe) <= limit:
        return safe
    suffix = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{safe[: max(0, limit - 9)].rstrip('-')}-{suffix}".lstrip("-")


def label_value(text: str) -> str:
    """`text` as a label value (63 characters of [A-Za-z0-9_.-], alphanumeric at both ends)."""
    safe = _VALUE_UNSAFE.sub("_", text).strip("_.-")
    if safe == text and len(safe) <= 63:
        return safe
    suffix = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{safe[:54].strip('_.-')}-{suffix}".lstrip("-")


def job_name(task_id: str, attempt: int) -> str:
    """`task-<id>-<attempt>`, within the 63 characters a Job's pods can carry in their labels."""
    return f"task-{dns_safe(task_id, 63 - 6 - len(str(attempt)))}-{attempt}"


def worker_lease(worker_id: str) -> str:
    return f"worker-{dns_safe(worker_id, 56)}"


def labels(task_id: str, attempt: int, tenant: str, worker_id: str) -> dict[str, str]:
    return {MANAGED_BY: MANAGER, COMPONENT: "agent", TASK: label_value(task_id), ATTEMPT: str(attempt),
            TENANT: label_value(tenant), WORKER: label_value(worker_id)}


def staging_prefix(tenant: str, task_id: str, attempt: int) -> str:
    """Where an attempt's pod uploads its outputs (under the store's staging area)."""
    return f"pods/{dns_safe(tenant, 63)}/{dns_safe(task_id, 63)}/{attempt}"
