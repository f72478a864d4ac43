"""The workers' permissions: one Role in the agent namespace with exactly the executor's rules, bound to
the worker's ServiceAccount; nothing cluster-wide and nothing for the runner."""

from __future__ import annotations

import pytest

from deploy_tests.manifests import AGENT_NS, KUSTOMIZATIONS, RUNNER_NS, Rendered
from runner.adapters.kubernetes import rbac

pytestmark = pytest.mark.timeout(60)

# The shared plan, written out: a change to the executor's rules must be a change to this list too.
PLAN = {
    ("batch", "jobs"): {"create", "get", "list", "watch", "delete"},
    ("", "pods"): {"get", "list", "watch"},
    ("", "secrets"): {"create", "get", "delete"},
    ("networking.k8s.io", "networkpolicies"): {"create", "get", "delete"},
    ("coordination.k8s.io", "leases"): {"create", "get", "list", "update"},
}


def _grants(rules: list[dict[str, list[str]]]) -> dict[tuple[str, str], set[str]]:
    grants: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        assert not rule.get("resourceNames") and not rule.get("nonResourceURLs"), rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                assert "*" not in (group, resource) and "*" not in rule["verbs"], f"wildcard in {rule}"
                grants.setdefault((group, resource), set()).update(rule["verbs"])
    return grants


def test_the_executor_asks_for_what_the_plan_grants() -> None:
    assert _grants([dict(r) for r in rbac.RULES]) == PLAN


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_the_worker_role_grants_exactly_the_plan_in_the_agent_namespace(
        rendered: dict[str, Rendered], kustomization: str) -> None:
    r = rendered[kustomization]
    roles = r.of_kind("Role")
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in roles] == [(AGENT_NS, "codex-sys-worker")]
    assert _grants(roles[0]["rules"]) == PLAN
    bindings = r.of_kind("RoleBinding")
    assert len(bindings) == 1
    binding = bindings[0]
    assert binding["metadata"]["namespace"] == AGENT_NS
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "codex-sys-worker"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "codex-sys-worker", "namespace": RUNNER_NS}]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_nothing_is_cluster_wide(rendered: dict[str, Rendered], kustomization: str) -> None:
    kinds = {o["kind"] for o in rendered[kustomization].objects}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    # Cluster-scoped objects are the two namespaces and nothing else.
    cluster_scoped = [o for o in rendered[kustomization].objects if "namespace" not in o["metadata"]]
    assert sorted(o["metadata"]["name"] for o in cluster_scoped) == [RUNNER_NS, AGENT_NS]
    assert {o["kind"] for o in cluster_scoped} == {"Namespace"}


def test_the_workloads_use_their_own_accounts(rendered: dict[str, Rendered]) -> None:
    dev = rendered["overlays/dev"]
    assert dev.template("codex-sys-runner").spec["serviceAccountName"] == "codex-sys-runner"
    assert dev.template("codex-sys-worker").spec["serviceAccountName"] == "codex-sys-worker"
    # NATS and MinIO run as the namespace's default account, with no token mounted.
    for name in ("nats", "minio"):
        spec = dev.template(name).spec
        assert "serviceAccountName" not in spec and spec["automountServiceAccountToken"] is False
