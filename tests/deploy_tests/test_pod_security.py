"""Every pod the manifests can start meets the restricted Pod Security Standard and then some: non-root,
read-only root filesystem, no privilege escalation, every capability dropped, the runtime's seccomp
profile; no host namespaces or host paths; requests and limits; health probes. Namespaces enforce it."""

from __future__ import annotations

import pytest

from deploy_tests.manifests import AGENT_NS, KUSTOMIZATIONS, RUNNER_NS, PodTemplate, Rendered

pytestmark = pytest.mark.timeout(60)

RESTRICTED_LABELS = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/audit": "restricted",
    "pod-security.kubernetes.io/audit-version": "latest",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/warn-version": "latest",
}
# The only pod that talks to the Kubernetes API (it creates the agents' Jobs).
TOKEN_MOUNTERS = {"Deployment/codex-sys-worker"}


def _templates(rendered: dict[str, Rendered]) -> list[tuple[str, PodTemplate]]:
    return [(name, t) for name in KUSTOMIZATIONS for t in rendered[name].pod_templates()]


def test_every_kustomization_has_the_workloads_it_should(rendered: dict[str, Rendered]) -> None:
    """The checks below loop over pod templates: make sure they are not looping over nothing."""
    expected = {
        "base": {"Deployment/codex-sys-runner", "Deployment/codex-sys-worker"},
        "overlays/dev": {"Deployment/codex-sys-runner", "Deployment/codex-sys-worker", "StatefulSet/nats",
                         "Deployment/minio"},
        "overlays/external": {"Deployment/codex-sys-runner", "Deployment/codex-sys-worker"},
    }
    for name, workloads in expected.items():
        assert {t.name for t in rendered[name].pod_templates()} == workloads, name


def test_both_namespaces_enforce_the_restricted_standard(rendered: dict[str, Rendered]) -> None:
    for name in KUSTOMIZATIONS:
        for namespace in (RUNNER_NS, AGENT_NS):
            labels = rendered[name].get("Namespace", namespace)["metadata"]["labels"]
            assert {k: labels.get(k) for k in RESTRICTED_LABELS} == RESTRICTED_LABELS, (name, namespace)


def test_every_pod_runs_as_a_non_root_user_with_the_runtime_seccomp_profile(rendered: dict[str, Rendered]) -> None:
    for name, t in _templates(rendered):
        ctx = t.spec.get("securityContext", {})
        where = f"{name} {t.name}"
        assert ctx.get("runAsNonRoot") is True, where
        assert isinstance(ctx.get("runAsUser"), int) and ctx["runAsUser"] > 0, where
        assert isinstance(ctx.get("runAsGroup"), int) and ctx["runAsGroup"] > 0, where
        assert ctx.get("seccompProfile") == {"type": "RuntimeDefault"}, where
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            assert not t.spec.get(host), (where, host)
        assert not any("hostPath" in v for v in t.spec.get("volumes", [])), where
        assert t.spec.get("enableServiceLinks") is False, f"{where}: service links put other services in its env"


def test_every_container_is_locked_down(rendered: dict[str, Rendered]) -> None:
    for name, t in _templates(rendered):
        for c in t.containers():
            where = f"{name} {t.name} container {c['name']}"
            ctx = c.get("securityContext", {})
            assert ctx.get("allowPrivilegeEscalation") is False, where
            assert ctx.get("readOnlyRootFilesystem") is True, where
            assert ctx.get("runAsNonRoot") is True, where
            assert ctx.get("capabilities") == {"drop": ["ALL"]}, f"{where}: drop ALL and add nothing"
            assert ctx.get("seccompProfile") == {"type": "RuntimeDefault"}, where
            assert not ctx.get("privileged"), where
            assert ctx.get("runAsUser", 1) != 0, where
            assert not c.get("ports") or all("hostPort" not in p for p in c["ports"]), where


def test_only_the_worker_mounts_a_service_account_token(rendered: dict[str, Rendered]) -> None:
    for name, t in _templates(rendered):
        mounts = t.spec.get("automountServiceAccountToken")
        if t.name in TOKEN_MOUNTERS:
            assert mounts is True, f"{name} {t.name}: the worker needs its token for the Kubernetes API"
            assert t.spec["serviceAccountName"] == "codex-sys-worker"
        else:
            assert mounts is False, f"{name} {t.name} must not mount a ServiceAccount token"
    for name in KUSTOMIZATIONS:
        for account in rendered[name].of_kind("ServiceAccount"):
            assert account.get("automountServiceAccountToken") is False, (name, account["metadata"]["name"])


def test_every_container_has_requests_limits_and_probes(rendered: dict[str, Rendered]) -> None:
    for name, t in _templates(rendered):
        for c in t.containers():
            where = f"{name} {t.name} container {c['name']}"
            resources = c.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), f"{where}: {kind}"
            for probe in ("readinessProbe", "livenessProbe"):
                assert probe in c, f"{where}: {probe}"
        for volume in t.spec.get("volumes", []):
            if "emptyDir" in volume:
                assert volume["emptyDir"].get("sizeLimit"), f"{name} {t.name}: emptyDir {volume['name']} unbounded"


def test_a_read_only_root_leaves_writable_only_the_mounted_folders(rendered: dict[str, Rendered]) -> None:
    """With a read-only root, the home (CODEX_SYS_HOME) and /tmp must be volumes, or the processes fail
    at start. Checked for the runner and the worker, whose writes we know."""
    dev = rendered["overlays/dev"]
    for deployment in ("codex-sys-runner", "codex-sys-worker"):
        container = dev.template(deployment).spec["containers"][0]
        mounted = {m["mountPath"] for m in container["volumeMounts"]}
        env = dev.container_env(deployment, container["name"])
        assert {env["CODEX_SYS_HOME"], "/tmp"} <= mounted, deployment
