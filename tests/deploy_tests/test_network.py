"""Who may reach whom, read from the NetworkPolicies with Kubernetes' own rules: agent pods take no
traffic and send none, until their task's policy (made by the executor's own code here) opens the
gateway, DNS and storage; the gateway takes only agent pods; NATS takes only the runner and the workers;
MinIO takes them and agent pods."""

from __future__ import annotations

from typing import Any

import pytest

from deploy_tests.manifests import (
    AGENT_NS,
    DEPLOYABLE,
    KUSTOMIZATIONS,
    RUNNER_NS,
    Pod,
    Rendered,
    connects,
    egress_allowed,
    ingress_allowed,
    selects,
)
from deploy_tests.processes import configure
from runner.adapters.kubernetes import Peer, names
from runner.adapters.kubernetes import manifests as executor_objects

pytestmark = pytest.mark.timeout(60)

AGENT = Pod(AGENT_NS, names.labels("0f3a9c", 1, "dev", "codex-sys-worker-7c9d8f6b5-x2x5q"))
# Another pod in the agent namespace that is not an agent (someone's debug pod, say).
STRANGER_IN_AGENTS = Pod(AGENT_NS, {"app": "debug"})
OUTSIDER = Pod("default", {"app": "client"})
KUBE_DNS = Pod("kube-system", {"k8s-app": "kube-dns"})


def _pod(r: Rendered, workload: str) -> Pod:
    template = r.template(workload)
    return Pod(template.namespace, template.labels)


def _container_ports(r: Rendered, workload: str) -> set[int]:
    return {p["containerPort"] for c in r.template(workload).containers() for p in c.get("ports", [])}


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_the_agent_namespace_denies_everything_by_default(rendered: dict[str, Rendered], kustomization: str) -> None:
    r = rendered[kustomization]
    agents_policies = [p for p in r.of_kind("NetworkPolicy") if p["metadata"]["namespace"] == AGENT_NS]
    assert len(agents_policies) == 1, "per-task policies come from the executor, not the manifests"
    spec = agents_policies[0]["spec"]
    assert spec["podSelector"] == {} and sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
    assert not spec.get("ingress") and not spec.get("egress")
    worker = _pod(r, "codex-sys-worker")
    for target, port in ((worker, 8081), (_pod(r, "codex-sys-runner"), 50051), (KUBE_DNS, 53), (OUTSIDER, 443)):
        assert not egress_allowed(r, AGENT, target, port), target
    assert not ingress_allowed(r, OUTSIDER, AGENT, 8080)
    assert not ingress_allowed(r, worker, AGENT, 8080)


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_the_gateway_takes_agent_pods_and_nobody_else(rendered: dict[str, Rendered], kustomization: str) -> None:
    r = rendered[kustomization]
    worker = _pod(r, "codex-sys-worker")
    assert ingress_allowed(r, AGENT, worker, 8081)
    assert ingress_allowed(r, Pod(AGENT_NS, names.labels("ab12", 3, "team-b", "w2")), worker, 8081)
    for source in (STRANGER_IN_AGENTS, OUTSIDER, _pod(r, "codex-sys-runner")):
        assert not ingress_allowed(r, source, worker, 8081), source
    # A pod that copies the agent labels in another namespace is not an agent.
    assert not ingress_allowed(r, Pod("default", dict(AGENT.labels)), worker, 8081)
    for port in (22, 8080, 50051):
        assert not ingress_allowed(r, AGENT, worker, port)


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_the_api_is_open_to_clients_on_its_port_only(rendered: dict[str, Rendered], kustomization: str) -> None:
    r = rendered[kustomization]
    runner = _pod(r, "codex-sys-runner")
    assert ingress_allowed(r, OUTSIDER, runner, 50051)
    for port in (8081, 8080):
        assert not ingress_allowed(r, OUTSIDER, runner, port)


def test_the_bundled_nats_and_minio_take_only_their_clients(dev: Rendered) -> None:
    nats, minio = _pod(dev, "nats"), _pod(dev, "minio")
    runner, worker = _pod(dev, "codex-sys-runner"), _pod(dev, "codex-sys-worker")
    for client in (runner, worker):
        assert ingress_allowed(dev, client, nats, 4222)
        assert ingress_allowed(dev, client, minio, 9000)
    for stranger in (AGENT, STRANGER_IN_AGENTS, OUTSIDER, minio):
        assert not ingress_allowed(dev, stranger, nats, 4222), stranger
    # Agent pods fetch and upload with presigned URLs: MinIO must let them in.
    assert ingress_allowed(dev, AGENT, minio, 9000)
    for stranger in (STRANGER_IN_AGENTS, OUTSIDER, nats):
        assert not ingress_allowed(dev, stranger, minio, 9000), stranger
    assert not ingress_allowed(dev, runner, nats, 8222), "the monitoring port is for the kubelet's probes"


def _task_policy(dev: Rendered, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The NetworkPolicy the dev worker would create for a task: the executor's own code, fed the
    settings the worker reads from its manifests."""
    settings = configure(dev, "codex-sys-worker", "worker", monkeypatch).kubernetes
    assert settings is not None
    job = executor_objects.job(settings, task_id="0f3a9c", attempt=1, tenant="dev", memory_bytes=1 << 30,
                               wall_time_s=600)
    job["metadata"]["uid"] = "5c3e7f8a-0000-4000-8000-000000000001"
    assert job["spec"]["template"]["metadata"]["labels"] == dict(AGENT.labels) | dict(settings.pod_labels)
    return executor_objects.network_policy(settings, job)


def test_with_its_task_policy_an_agent_reaches_its_gateway_dns_and_storage_only(
        dev: Rendered, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = [_task_policy(dev, monkeypatch)]
    worker, minio = _pod(dev, "codex-sys-worker"), _pod(dev, "minio")
    assert connects(dev, AGENT, worker, 8081, extra=policy)
    assert connects(dev, AGENT, minio, 9000, extra=policy)
    assert connects(dev, AGENT, KUBE_DNS, 53, protocol="UDP", extra=policy)
    assert connects(dev, AGENT, KUBE_DNS, 53, extra=policy)
    another_agent = Pod(AGENT_NS, names.labels("b", 1, "x", "w"))
    for target, port in ((_pod(dev, "nats"), 4222), (_pod(dev, "codex-sys-runner"), 50051), (worker, 22),
                         (OUTSIDER, 443), (STRANGER_IN_AGENTS, 80), (another_agent, 80)):
        assert not connects(dev, AGENT, target, port, extra=policy), target
    # Another task's pods are not opened by this task's policy.
    other = Pod(AGENT_NS, names.labels("77aa", 2, "dev", "w"))
    assert not egress_allowed(dev, other, worker, 8081, extra=policy)
    assert not ingress_allowed(dev, other, AGENT, 8080, extra=policy)


@pytest.mark.parametrize("kustomization", DEPLOYABLE)
def test_the_peers_given_to_the_executor_select_the_right_pods(
        rendered: dict[str, Rendered], kustomization: str) -> None:
    """Each peer of the worker's settings must select exactly the pods it names, on a port they listen
    on, or agent pods could not reach their gateway or storage."""
    r = rendered[kustomization]
    settings = r.config_data("codex-sys-worker-settings")

    def selected(peer_setting: str) -> tuple[set[str], int]:
        peer = Peer.parse(settings[peer_setting], peer_setting)  # as the worker reads it
        assert not peer.cidr and peer.namespace == RUNNER_NS
        names = {t.name for t in r.pod_templates()
                 if t.namespace == peer.namespace and selects({"matchLabels": dict(peer.pod_labels)}, t.labels)}
        return names, peer.port

    found, port = selected("CODEX_SYS_K8S_GATEWAY_PEER")
    assert found == {"Deployment/codex-sys-worker"}
    assert port in _container_ports(r, "codex-sys-worker")
    if kustomization == "overlays/dev":
        found, port = selected("CODEX_SYS_K8S_STORAGE_PEER")
        assert found == {"Deployment/minio"}
        assert port in _container_ports(r, "minio")
    else:
        assert Peer.parse(settings["CODEX_SYS_K8S_STORAGE_PEER"], "storage").cidr
    dns = Peer.parse(settings["CODEX_SYS_K8S_DNS_PEER"], "DNS")
    assert (dns.namespace, dns.pod_labels, dns.port) == ("kube-system", (("k8s-app", "kube-dns"),), 53)
