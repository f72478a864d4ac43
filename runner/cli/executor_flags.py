"""Flags and `CODEX_SYS_*` variables that choose where a worker runs its sandboxes.

`--executor local` (the default) runs bubblewrap sandboxes on the worker's machine. `--executor kubernetes`
(or `CODEX_SYS_EXECUTOR=kubernetes`) runs each task attempt as a Job in the agent namespace; it needs the
distributed backends (the pods fetch and upload through presigned MinIO URLs) and the agent pods' way back
to this worker's gateway (`CODEX_SYS_GATEWAY_LISTEN`, `CODEX_SYS_K8S_GATEWAY_URL`). Each setting is
described in docs/kubernetes.md. A flag wins over its variable; a wrong value names both.
"""

from __future__ import annotations

import argparse
import os
import socket
from typing import TYPE_CHECKING

from runner.config import env_whole
from runner.domain.errors import InvalidArgument

if TYPE_CHECKING:
    from runner.adapters.kubernetes import KubernetesSettings

EXECUTORS = ("local", "kubernetes")


def add_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("executor (see docs/kubernetes.md; each flag has a CODEX_SYS_* variable)")
    group.add_argument("--executor", choices=EXECUTORS, help="where sandboxes run (env CODEX_SYS_EXECUTOR; "
                                                             "default local)")
    group.add_argument("--gateway-listen", metavar="HOST:PORT",
                       help="also serve the gateway on TCP, for agent pods (env CODEX_SYS_GATEWAY_LISTEN)")
    group.add_argument("--k8s-namespace", metavar="NAME", help="agent namespace (env CODEX_SYS_K8S_NAMESPACE)")
    group.add_argument("--k8s-agent-image", metavar="IMAGE", help="env CODEX_SYS_K8S_AGENT_IMAGE")
    group.add_argument("--k8s-init-image", metavar="IMAGE", help="env CODEX_SYS_K8S_INIT_IMAGE")
    group.add_argument("--k8s-gateway-url", metavar="URL",
                       help="how agent pods reach this worker's gateway (env CODEX_SYS_K8S_GATEWAY_URL)")
    group.add_argument("--k8s-kubeconfig", metavar="FILE",
                       help="default: the in-cluster ServiceAccount (env CODEX_SYS_K8S_KUBECONFIG)")


def _pick(args: argparse.Namespace, flag: str, env: str) -> str:
    value = getattr(args, flag, None)
    return str(value) if value else os.environ.get(env, "").strip()


def executor_kind(args: argparse.Namespace) -> str:
    kind = _pick(args, "executor", "CODEX_SYS_EXECUTOR") or "local"
    if kind not in EXECUTORS:
        raise InvalidArgument(f"--executor / CODEX_SYS_EXECUTOR: {kind!r} is not one of {', '.join(EXECUTORS)}")
    return kind


def gateway_listen(args: argparse.Namespace) -> tuple[str, int] | None:
    raw = _pick(args, "gateway_listen", "CODEX_SYS_GATEWAY_LISTEN")
    if not raw:
        return None
    host, sep, port_text = raw.rpartition(":")
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not sep or not host or not 0 <= port <= 65535:
        raise InvalidArgument(f"--gateway-listen / CODEX_SYS_GATEWAY_LISTEN: {raw!r} is not HOST:PORT")
    return host.strip("[]"), port


def _pairs(raw: str, what: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in filter(None, (p.strip() for p in raw.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise InvalidArgument(f"{what}: {item!r} is not key=value")
        pairs.append((key, value))
    return tuple(pairs)


def kubernetes_settings(args: argparse.Namespace) -> KubernetesSettings | None:
    """The Kubernetes executor's settings, or None for the local executor."""
    if executor_kind(args) != "kubernetes":
        return None
    # The adapter (and the Kubernetes client) only when it is used.
    from runner.adapters.kubernetes import KubernetesSettings, Peer
    from runner.adapters.kubernetes.settings import DEFAULT_JOB_TTL_S, DEFAULT_NAMESPACE, DEFAULT_WORKSPACE_SIZE

    def need(flag: str, env: str) -> str:
        value = _pick(args, flag, env)
        if not value:
            raise InvalidArgument(f"the Kubernetes executor needs --{flag.replace('_', '-')} or {env}")
        return value

    def peer(env: str, what: str, default: str) -> Peer:
        return Peer.parse(os.environ.get(env, "").strip() or default, f"{env} ({what})")

    storage = os.environ.get("CODEX_SYS_K8S_STORAGE_PEER", "").strip()
    if not storage:
        raise InvalidArgument("the Kubernetes executor needs CODEX_SYS_K8S_STORAGE_PEER: where agent pods reach "
                              "MinIO, e.g. pod:codex-sys/app.kubernetes.io/name=minio:9000")
    agent_image = need("k8s_agent_image", "CODEX_SYS_K8S_AGENT_IMAGE")
    policy = os.environ.get("CODEX_SYS_K8S_IMAGE_PULL_POLICY", "").strip() or "IfNotPresent"
    if policy not in ("Always", "IfNotPresent", "Never"):
        raise InvalidArgument(f"CODEX_SYS_K8S_IMAGE_PULL_POLICY: {policy!r} is not Always, IfNotPresent or Never")
    return KubernetesSettings(
        agent_image=agent_image,
        init_image=_pick(args, "k8s_init_image", "CODEX_SYS_K8S_INIT_IMAGE") or agent_image,
        gateway_url=need("k8s_gateway_url", "CODEX_SYS_K8S_GATEWAY_URL"),
        storage_peer=Peer.parse(storage, "CODEX_SYS_K8S_STORAGE_PEER"),
        namespace=_pick(args, "k8s_namespace", "CODEX_SYS_K8S_NAMESPACE") or DEFAULT_NAMESPACE,
        worker_id=os.environ.get("CODEX_SYS_K8S_WORKER_ID", "").strip() or socket.gethostname(),
        gateway_peer=peer("CODEX_SYS_K8S_GATEWAY_PEER", "the gateway",
                          "pod:codex-sys/app.kubernetes.io/component=worker:8081"),
        dns_peer=peer("CODEX_SYS_K8S_DNS_PEER", "DNS", "pod:kube-system/k8s-app=kube-dns:53"),
        image_pull_policy=policy,  # type: ignore[arg-type]  # checked above
        runtime_class=os.environ.get("CODEX_SYS_K8S_RUNTIME_CLASS", "").strip(),
        kubeconfig=_pick(args, "k8s_kubeconfig", "CODEX_SYS_K8S_KUBECONFIG"),
        job_ttl_s=env_whole("CODEX_SYS_K8S_JOB_TTL", DEFAULT_JOB_TTL_S),
        workspace_size=os.environ.get("CODEX_SYS_K8S_WORKSPACE_SIZE", "").strip()
        or DEFAULT_WORKSPACE_SIZE,
        pod_labels=_pairs(os.environ.get("CODEX_SYS_K8S_POD_LABELS", ""), "CODEX_SYS_K8S_POD_LABELS"),
        pod_annotations=_pairs(os.environ.get("CODEX_SYS_K8S_POD_ANNOTATIONS", ""),
                               "CODEX_SYS_K8S_POD_ANNOTATIONS"),
    )
