"""What a task's Job and Pod say, in words a person can act on.

`read_status(job, pod)` looks at the Job's conditions and the Pod's phase and container states and
answers one of: still on its way (with a note of where: waiting for a node, pulling images, fetching the
snapshot, agent running), finished (with the agent's exit code and what ended it), or hopeless now
(`fatal`: an image that cannot be pulled, a container that cannot be created). Kubernetes never fails
a Job for an image pull error by itself (the kubelet keeps retrying), so the executor ends such a task
at once instead of letting it sit until its deadline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runner.adapters.kubernetes.manifests import AGENT_CONTAINER, FETCH_CONTAINER

Obj = dict[str, Any]

PULL_ERRORS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
                         "RegistryUnavailable", "SignatureValidationFailed"})
CREATE_ERRORS = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError"})
_WHO = {FETCH_CONTAINER: "snapshot fetcher (init container)", AGENT_CONTAINER: "agent"}


@dataclass(frozen=True, slots=True)
class Status:
    stage: str  # "pending" | "fetching" | "running" | "finished"
    note: str  # where it is, for the task's log
    fatal: str = ""  # set: end the task now, FAILED with this reason
    exit_code: int | None = None  # the agent container's, once finished
    timed_out: bool = False
    detail: str = ""  # how it ended


def _condition(obj: Obj | None, kind: str) -> Obj | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def _statuses(pod: Obj, key: str) -> list[Obj]:
    return list((pod.get("status") or {}).get(key) or [])


def _fatal_waiting(pod: Obj) -> str:
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in _statuses(pod, key):
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason, message = str(waiting.get("reason") or ""), str(waiting.get("message") or "")[:400]
            who = _WHO.get(str(cs.get("name")), str(cs.get("name")))
            if reason in PULL_ERRORS:
                return (f"the {who} image {cs.get('image')!r} could not be pulled ({reason}"
                        + (f": {message}" if message else "") + "); check the image name and the registry's "
                        "credentials (imagePullSecrets)")
            if reason in CREATE_ERRORS:
                return f"the {who} container could not be started ({reason}" + (f": {message}" if message else "") + ")"
    return ""


def _terminated(pod: Obj, key: str, name: str) -> Obj | None:
    for cs in _statuses(pod, key):
        if cs.get("name") == name:
            state = cs.get("state") or {}
            if "terminated" in state:
                return dict(state["terminated"])
            last = cs.get("lastState") or {}
            if "terminated" in last and not state.get("running"):
                return dict(last["terminated"])
    return None


def _running(pod: Obj, name: str) -> bool:
    return any(cs.get("name") == name and "running" in (cs.get("state") or {})
               for cs in _statuses(pod, "containerStatuses"))


def _memory_limit(pod: Obj) -> str:
    for c in (pod.get("spec") or {}).get("containers") or []:
        if c.get("name") == AGENT_CONTAINER:
            return str(((c.get("resources") or {}).get("limits") or {}).get("memory") or "")
    return ""


def _size(quantity: str) -> str:
    try:
        n = int(quantity)
    except ValueError:
        return quantity
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):g} {unit}"
    return f"{n} bytes"


def _ended(pod: Obj) -> Status | None:
    """How the pod ended, if it did."""
    status = pod.get("status") or {}
    phase = status.get("phase")
    fetch = _terminated(pod, "initContainerStatuses", FETCH_CONTAINER)
    if fetch is not None and fetch.get("exitCode", 0) != 0:
        why = str(fetch.get("message") or fetch.get("reason") or "").strip()[:500]
        return Status("finished", "the snapshot fetch failed", fatal="the snapshot could not be fetched into the "
                      f"pod (exit code {fetch.get('exitCode')})" + (f": {why}" if why else ""))
    if status.get("reason") == "Evicted":
        return Status("finished", "the pod was evicted",
                      detail=f"the pod was evicted by its node: {status.get('message') or 'no reason given'}")
    agent = _terminated(pod, "containerStatuses", AGENT_CONTAINER)
    if agent is not None:
        code = agent.get("exitCode")
        reason = str(agent.get("reason") or "")
        if reason == "OOMKilled":
            limit = _memory_limit(pod)
            detail = ("the agent ran out of memory" + (f" (limit {_size(limit)})" if limit else "")
                      + " and was killed")
        elif code == 0:
            detail = ""
        else:
            detail = f"the agent container exited with code {code}" + (f" ({reason})" if reason else "")
        return Status("finished", f"the agent container ended ({reason or 'exit code ' + str(code)})",
                      exit_code=int(code) if isinstance(code, int) else None, detail=detail)
    if phase in ("Succeeded", "Failed"):
        return Status("finished", f"the pod ended {phase}",
                      detail=f"the pod ended {phase}: {status.get('reason') or ''} {status.get('message') or ''}"
                      .strip())
    return None


def read_status(job: Obj | None, pod: Obj | None) -> Status:
    # The Job controller marks `FailureTarget` (DeadlineExceeded) first, then stops the pod (exit 143),
    # then marks `Failed`: either condition says the deadline, not the pod's exit code, ended it.
    deadline = _condition(job, "FailureTarget") or _condition(job, "Failed")
    if deadline is not None and deadline.get("reason") == "DeadlineExceeded":
        return Status("finished", "the Job's deadline passed", timed_out=True,
                      detail="the pod ran past its deadline and was stopped by Kubernetes")
    if pod is not None:
        ended = _ended(pod)
        if ended is not None:
            return ended
        fatal = _fatal_waiting(pod)
        if fatal:
            return Status("pending", "an image cannot be pulled", fatal=fatal)
        if _running(pod, AGENT_CONTAINER):
            node = (pod.get("spec") or {}).get("nodeName") or "a node"
            return Status("running", f"the agent container started on {node}")
        scheduled = _condition(pod, "PodScheduled")
        if scheduled is None:
            for cond in (pod.get("status") or {}).get("conditions") or []:
                if cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable":
                    return Status("pending", f"waiting for a node: {str(cond.get('message') or '')[:300]}")
            return Status("pending", "waiting for a node")
        if any("running" in (cs.get("state") or {}) for cs in _statuses(pod, "initContainerStatuses")):
            return Status("fetching", "fetching the snapshot")
        return Status("pending", f"pulling images and starting containers on {pod['spec'].get('nodeName')}")
    failed = _condition(job, "Failed")
    if failed is not None:
        return Status("finished", "the Job failed",
                      detail=f"the Job failed: {failed.get('reason')}: {failed.get('message') or ''}".strip())
    if _condition(job, "Complete") is not None:
        return Status("finished", "the Job completed", detail="the Job completed but its pod is gone")
    return Status("pending", "waiting for the Job's pod")
