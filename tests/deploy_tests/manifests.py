"""The Kubernetes manifests under deploy/k8s as kustomize renders them, and the rules the tests read them by.

`build()` runs the real `kustomize` binary (the one `make kubernetes` puts beside the Kubernetes
binaries, or `$KUSTOMIZE`) and parses its output. `Rendered` looks objects up by kind and name.
`selects()` is Kubernetes' label-selector rule (matchLabels and matchExpressions) and `ingress_allowed()`
its NetworkPolicy rule for ingress, small enough to check by eye against the API reference, so the tests
can ask "may an agent pod reach the gateway?" instead of comparing YAML.
"""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
KUBERNETES_VERSION = "v1.36.3"
# Every kustomization a user may apply (the base is checked too: overlays inherit everything from it).
KUSTOMIZATIONS = ("base", "overlays/dev", "overlays/external")
DEPLOYABLE = ("overlays/dev", "overlays/external")
RUNNER_NS, AGENT_NS = "codex-sys", "codex-sys-agents"
POD_TEMPLATE_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")

Obj = dict[str, Any]


class ToolMissing(RuntimeError):
    pass


def kustomize_binary() -> Path:
    """`$KUSTOMIZE`, else the kustomize `make kubernetes` builds into the Kubernetes binaries' folder."""
    explicit = os.environ.get("KUSTOMIZE")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ToolMissing(f"KUSTOMIZE={explicit} is not a file")
        return path
    try:
        gopath = subprocess.run(["go", "env", "GOPATH"], capture_output=True, text=True, check=True,
                                timeout=30).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ToolMissing(f"cannot find kustomize: set KUSTOMIZE, or install Go and run `make kubernetes` ({exc})"
                          ) from exc
    path = Path(gopath) / "bin" / f"kubernetes-{KUBERNETES_VERSION}" / "kustomize"
    if not path.is_file():
        raise ToolMissing(f"kustomize is not built ({path} is missing): run `make kubernetes`, or set KUSTOMIZE")
    return path


def build(kustomize: Path, kustomization: str) -> list[Obj]:
    proc = subprocess.run([str(kustomize), "build", str(K8S / kustomization)], capture_output=True, text=True,
                          timeout=60, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"kustomize build {kustomization} failed:\n{proc.stderr}")
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


@dataclass(frozen=True)
class PodTemplate:
    owner: Obj
    namespace: str
    labels: Mapping[str, str]
    spec: Obj

    @property
    def name(self) -> str:
        return f"{self.owner['kind']}/{self.owner['metadata']['name']}"

    def containers(self) -> list[Obj]:
        return [*self.spec.get("initContainers", []), *self.spec["containers"]]


@dataclass(frozen=True)
class Rendered:
    kustomization: str
    objects: list[Obj]

    def of_kind(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> Obj:
        """The object of this kind named `name`; for a generated ConfigMap or Secret, named `name-<hash>`."""
        generated = kind in ("ConfigMap", "Secret")
        found = [o for o in self.of_kind(kind)
                 if o["metadata"]["name"] == name
                 or (generated and o["metadata"]["name"].rsplit("-", 1)[0] == name)]
        assert len(found) == 1, f"{self.kustomization}: expected one {kind} {name}, found {len(found)}"
        return found[0]

    def pod_templates(self) -> list[PodTemplate]:
        templates = []
        for o in self.objects:
            if o["kind"] in POD_TEMPLATE_KINDS:
                template = o["spec"]["template"]
                templates.append(PodTemplate(o, o["metadata"]["namespace"], template["metadata"].get("labels", {}),
                                             template["spec"]))
        return templates

    def template(self, deployment: str) -> PodTemplate:
        found = [t for t in self.pod_templates() if t.owner["metadata"]["name"] == deployment]
        assert len(found) == 1, f"{self.kustomization}: no single workload {deployment}"
        return found[0]

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        """A namespace's labels as the API server keeps them: with `kubernetes.io/metadata.name` added."""
        labels = dict(self.get("Namespace", namespace)["metadata"].get("labels", {}))
        labels["kubernetes.io/metadata.name"] = namespace
        return labels

    def config_data(self, name: str) -> dict[str, str]:
        return dict(self.get("ConfigMap", name).get("data", {}))

    def container(self, workload: str, name: str) -> Obj:
        return next(c for c in self.template(workload).containers() if c["name"] == name)

    def secret_data(self, name: str) -> dict[str, str]:
        return {k: base64.b64decode(v).decode() for k, v in self.get("Secret", name).get("data", {}).items()}

    def container_env(self, workload: str, container: str, fields: Mapping[str, str] | None = None,
                      secrets: Mapping[tuple[str, str], str] | None = None) -> dict[str, str]:
        """The environment the kubelet would give a container: its ConfigMaps (envFrom), then its `env`
        in order with `$(VAR)` expanded. Downward-API values come from `fields` (by fieldPath) and Secret
        values from `secrets` (by Secret name and key); a reference to either that is not given is left
        out, as an optional one that does not exist would be."""
        spec = self.container(workload, container)
        env: dict[str, str] = {}
        for source in spec.get("envFrom", []):
            if "configMapRef" in source:
                env.update(self.config_data(source["configMapRef"]["name"]))
        for item in spec.get("env", []):
            ref = item.get("valueFrom", {})
            if "value" in item:
                env[item["name"]] = expand(item["value"], env)
            elif "fieldRef" in ref and fields and ref["fieldRef"]["fieldPath"] in fields:
                env[item["name"]] = fields[ref["fieldRef"]["fieldPath"]]
            elif "secretKeyRef" in ref and secrets:
                key = (ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"])
                if key in secrets:
                    env[item["name"]] = secrets[key]
        return env

    def all_secret_values(self) -> dict[tuple[str, str], str]:
        """Every (Secret name, key) -> value the kustomization generates."""
        return {(o["metadata"]["name"], key): value for o in self.of_kind("Secret")
                for key, value in self.secret_data(o["metadata"]["name"]).items()}


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion of a literal env value (unknown references stay as written)."""
    out, i = [], 0
    while i < len(value):
        if value.startswith("$(", i) and (end := value.find(")", i)) != -1:
            name = value[i + 2:end]
            out.append(env.get(name, value[i:end + 1]))
            i = end + 1
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


# ---- label selectors and NetworkPolicy -------------------------------------------------------------------


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector semantics: requirements ANDed; an empty selector selects everything."""
    if selector is None:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


@dataclass(frozen=True)
class Pod:
    namespace: str
    labels: Mapping[str, str]


def _peer_matches(peer: Mapping[str, Any], policy_ns: str, other: Pod, rendered: Rendered) -> bool:
    """Whether a `from`/`to` peer of a policy in `policy_ns` covers the pod at the other end."""
    if "ipBlock" in peer:
        return False  # the tests ask about pods, which these manifests never admit by address
    if "namespaceSelector" in peer:
        ns_ok = selects(peer["namespaceSelector"], _namespace_labels(rendered, other.namespace))
    else:
        ns_ok = other.namespace == policy_ns
    return ns_ok and selects(peer.get("podSelector"), other.labels)


def _namespace_labels(rendered: Rendered, namespace: str) -> dict[str, str]:
    known = {o["metadata"]["name"] for o in rendered.of_kind("Namespace")}
    if namespace in known:
        return rendered.namespace_labels(namespace)
    return {"kubernetes.io/metadata.name": namespace}


def _port_matches(rule: Mapping[str, Any], port: int, protocol: str) -> bool:
    ports = rule.get("ports")
    if not ports:
        return True
    return any(p.get("protocol", "TCP") == protocol and p.get("port") == port for p in ports)


def _policy_types(spec: Mapping[str, Any]) -> list[str]:
    """As the API server defaults them: Ingress always, Egress when the policy has egress rules."""
    return list(spec.get("policyTypes") or ["Ingress", *(["Egress"] if spec.get("egress") else [])])


def _policies(rendered: Rendered, extra: Sequence[Obj], pod: Pod, direction: str) -> list[Obj]:
    return [p for p in [*rendered.of_kind("NetworkPolicy"), *extra]
            if p["metadata"]["namespace"] == pod.namespace
            and selects(p["spec"].get("podSelector"), pod.labels)
            and direction in _policy_types(p["spec"])]


def _admitted(rendered: Rendered, pod: Pod, other: Pod, direction: str, port: int, protocol: str,
              extra: Sequence[Obj]) -> bool:
    """Whether the policies selecting `pod` in `direction` let its traffic with `other` on `port` through.
    A pod no policy of that direction selects is not isolated; an isolated pod gets what any selecting
    policy allows."""
    rules, peers = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    policies = _policies(rendered, extra, pod, direction)
    return not policies or any(
        (not rule.get(peers) or any(_peer_matches(peer, pod.namespace, other, rendered) for peer in rule[peers]))
        and _port_matches(rule, port, protocol)
        for policy in policies for rule in policy["spec"].get(rules) or [])


def ingress_allowed(rendered: Rendered, source: Pod, target: Pod, port: int, *, protocol: str = "TCP",
                    extra: Sequence[Obj] = ()) -> bool:
    """Whether the NetworkPolicies (the rendered ones and `extra`) admit `source` to `port` of `target`."""
    return _admitted(rendered, target, source, "Ingress", port, protocol, extra)


def egress_allowed(rendered: Rendered, source: Pod, target: Pod, port: int, *, protocol: str = "TCP",
                   extra: Sequence[Obj] = ()) -> bool:
    """The egress side: whether `source` may open `port` on `target`."""
    return _admitted(rendered, source, target, "Egress", port, protocol, extra)


def connects(rendered: Rendered, source: Pod, target: Pod, port: int, *, protocol: str = "TCP",
             extra: Sequence[Obj] = ()) -> bool:
    """A connection needs both: the source's egress and the target's ingress."""
    return (egress_allowed(rendered, source, target, port, protocol=protocol, extra=extra)
            and ingress_allowed(rendered, source, target, port, protocol=protocol, extra=extra))
