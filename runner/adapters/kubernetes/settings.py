"""Settings of the Kubernetes executor: where agent pods run, which images, and whom they may reach.

Network peers are written `pod:<namespace>/<key>=<value>[,<key>=<value>]:<port>` (pods selected by labels
in a namespace) or `cidr:<address>/<bits>:<port>` (an address range, for services outside the cluster).
Every task's NetworkPolicy lets its pod reach exactly three peers: the gateway, DNS and the object store
(for the presigned snapshot download and output uploads); nothing else.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Literal

from runner.domain.errors import InvalidArgument

_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
DEFAULT_NAMESPACE = "codex-sys-agents"
DEFAULT_JOB_TTL_S = 600
DEFAULT_WORKSPACE_SIZE = "4Gi"


@dataclass(frozen=True, slots=True)
class Peer:
    """One network peer agent pods may reach, on one port (TCP, plus UDP when `udp`)."""

    port: int
    namespace: str = ""
    pod_labels: tuple[tuple[str, str], ...] = ()
    cidr: str = ""

    @classmethod
    def parse(cls, text: str, what: str) -> Peer:
        kind, sep, rest = text.strip().partition(":")
        where, sep2, port_text = rest.rpartition(":")
        if not sep or not sep2 or kind not in ("pod", "cidr"):
            raise InvalidArgument(f"{what} {text!r} is not `pod:<namespace>/<key>=<value>[,...]:<port>` "
                                  "or `cidr:<address>/<bits>:<port>`")
        try:
            port = int(port_text)
        except ValueError:
            port = 0
        if not 1 <= port <= 65535:
            raise InvalidArgument(f"{what} {text!r}: the port {port_text!r} is not a number from 1 to 65535")
        if kind == "cidr":
            try:
                network = ipaddress.ip_network(where, strict=False)
            except ValueError as exc:
                raise InvalidArgument(f"{what} {text!r}: {where!r} is not an address range ({exc})") from None
            return cls(port=port, cidr=str(network))
        namespace, slash, selector = where.partition("/")
        if not slash or not _DNS_LABEL.match(namespace):
            raise InvalidArgument(f"{what} {text!r}: {namespace!r} is not a namespace name")
        labels: list[tuple[str, str]] = []
        for pair in selector.split(","):
            key, eq, value = pair.partition("=")
            if not eq or not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value):
                raise InvalidArgument(f"{what} {text!r}: {pair!r} is not a label `key=value`")
            labels.append((key, value))
        return cls(port=port, namespace=namespace, pod_labels=tuple(labels))

    def describe(self) -> str:
        if self.cidr:
            return f"cidr:{self.cidr}:{self.port}"
        return f"pod:{self.namespace}/{','.join(f'{k}={v}' for k, v in self.pod_labels)}:{self.port}"


@dataclass(frozen=True, slots=True)
class KubernetesSettings:
    """See docs/kubernetes.md for each setting's variable and default."""

    agent_image: str
    init_image: str  # runs `python -m runner.snapshots.fetch`: the runner's image
    gateway_url: str  # how an agent pod reaches this worker's gateway, e.g. http://10.0.3.7:8081
    storage_peer: Peer
    namespace: str = DEFAULT_NAMESPACE
    worker_id: str = "worker"
    gateway_peer: Peer = field(default_factory=lambda: Peer.parse(
        "pod:codex-sys/app.kubernetes.io/component=worker:8081", "gateway peer"))
    dns_peer: Peer = field(default_factory=lambda: Peer.parse("pod:kube-system/k8s-app=kube-dns:53", "DNS peer"))
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    runtime_class: str = ""  # e.g. gvisor or kata; empty: the cluster's default runtime
    kubeconfig: str = ""  # empty: the in-cluster configuration of the worker's ServiceAccount
    job_ttl_s: int = DEFAULT_JOB_TTL_S  # finished Jobs (and their pods, Secrets, policies) are removed after this
    workspace_size: str = DEFAULT_WORKSPACE_SIZE  # the emptyDir the snapshot is unpacked into
    output_size: str = "256Mi"
    cpu_request: str = "250m"
    cpu_limit: str = "2"
    # Extra pod labels/annotations (monitoring, meshes). Labels never override the executor's own.
    pod_labels: tuple[tuple[str, str], ...] = ()
    pod_annotations: tuple[tuple[str, str], ...] = ()
    lease_duration_s: int = 30  # a worker whose Lease is this old is gone: its Jobs are orphans
    sweep_interval_s: float = 30.0
    deadline_slack_s: int = 120  # the Job's deadline: the task's wall time plus this (pull, fetch)
    watch_timeout_s: int = 240  # the API server ends each watch after this; it resumes from the last version

    def __post_init__(self) -> None:
        if not _DNS_LABEL.match(self.namespace):
            raise InvalidArgument(f"Kubernetes namespace {self.namespace!r} is not a valid name")
        for name in ("agent_image", "init_image"):
            if not getattr(self, name).strip():
                raise InvalidArgument(f"the {name.replace('_', ' ')} of the Kubernetes executor is not set")
        if not self.gateway_url.startswith(("http://", "https://")):
            raise InvalidArgument(f"gateway URL {self.gateway_url!r} for agent pods must start with http:// or "
                                  "https://")
        if self.image_pull_policy not in PULL_POLICIES:
            raise InvalidArgument(f"image pull policy {self.image_pull_policy!r} is not one of {PULL_POLICIES}")
        if self.runtime_class and not _DNS_LABEL.match(self.runtime_class):
            raise InvalidArgument(f"runtime class {self.runtime_class!r} is not a valid name")
        for name in ("workspace_size", "output_size", "cpu_request", "cpu_limit"):
            if not _QUANTITY.match(getattr(self, name)):
                raise InvalidArgument(f"{name.replace('_', ' ')} {getattr(self, name)!r} is not a Kubernetes "
                                      "quantity (e.g. 4Gi, 500m)")
        if not 0 < self.job_ttl_s <= 7 * 86400:
            raise InvalidArgument(f"Job TTL {self.job_ttl_s} s must be from 1 s to 7 days")
        if self.lease_duration_s < 5:
            raise InvalidArgument(f"worker lease duration {self.lease_duration_s} s must be at least 5 s")
        for key, _value in (*self.pod_labels, *self.pod_annotations):
            if not _LABEL_KEY.match(key):
                raise InvalidArgument(f"pod label or annotation key {key!r} is not valid")
        for key, value in self.pod_labels:
            if not _LABEL_VALUE.match(value):
                raise InvalidArgument(f"pod label value {value!r} of {key!r} is not valid")
