"""The settings in the manifests are ones the code reads, and the code accepts them: the containers'
command lines parse with the real CLI, and the runner's and worker's start-up configuration is built
from the environment each container gets, exactly as `codex-sys runner serve` / `codex-sys worker` do."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deploy_tests.manifests import AGENT_NS, DEPLOYABLE, KUSTOMIZATIONS, REPO, Rendered
from deploy_tests.processes import POD_IP, POD_NAME, command_line, configure
from runner.adapters.kubernetes import Peer
from runner.auth.tokens import TokenBook

pytestmark = pytest.mark.timeout(60)

_NAME = re.compile(r"\b((?:CODEX_SYS|OPENAI)_[A-Z0-9_]+)\b")


def _names_the_code_reads() -> set[str]:
    names: set[str] = set()
    for path in (REPO / "runner").rglob("*.py"):
        if "_proto" not in path.parts:
            names.update(_NAME.findall(path.read_text()))
    return names


def _configured_names(r: Rendered, workload: str) -> set[str]:
    names: set[str] = set()
    for c in r.template(workload).containers():
        names.update(e["name"] for e in c.get("env", []))
        for source in c.get("envFrom", []):
            if "configMapRef" in source:
                names.update(r.config_data(source["configMapRef"]["name"]))
    return {n for n in names if n.startswith(("CODEX_SYS_", "OPENAI_"))}


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_variable_the_manifests_set_is_one_the_code_reads(
        rendered: dict[str, Rendered], kustomization: str) -> None:
    known = _names_the_code_reads()
    r = rendered[kustomization]
    for workload in ("codex-sys-runner", "codex-sys-worker"):
        unknown = _configured_names(r, workload) - known
        assert not unknown, f"{kustomization} {workload}: no code reads {sorted(unknown)}"


def test_the_command_lines_parse_with_the_real_cli(rendered: dict[str, Rendered]) -> None:
    for name in KUSTOMIZATIONS:
        r = rendered[name]
        api = command_line(r, "codex-sys-runner", "runner")
        assert (api.command, api.runner_command, api.no_worker) == ("runner", "serve", True)
        assert api.listen == ["0.0.0.0:50051"]
        # The token file is the `tokens` key of the mounted `codex-sys-tokens` Secret.
        spec = r.template("codex-sys-runner").spec
        mount = next(m for m in r.container("codex-sys-runner", "runner")["volumeMounts"]
                     if api.token_file.startswith(m["mountPath"] + "/"))
        volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
        assert volume["secret"]["secretName"].startswith("codex-sys-tokens")
        assert Path(api.token_file).name == "tokens" and mount.get("readOnly") is True
        worker = command_line(r, "codex-sys-worker", "worker")
        assert worker.command == "worker"


def test_the_dev_runner_starts_with_its_settings(dev: Rendered, monkeypatch: pytest.MonkeyPatch) -> None:
    config = configure(dev, "codex-sys-runner", "runner", monkeypatch)
    assert config.run_api and not config.run_worker and config.kubernetes is None
    assert config.tcp_listen == ("0.0.0.0:50051",)
    assert config.distributed is not None
    assert config.distributed.nats.servers == ("nats://nats.codex-sys.svc:4222",)
    assert config.distributed.nats.token == dev.secret_data("codex-sys-nats")["token"]
    assert config.distributed.s3.endpoint == "minio.codex-sys.svc:9000" and not config.distributed.s3.secure
    assert config.distributed.s3.access_key == dev.secret_data("codex-sys-s3")["access-key"]


def test_the_dev_worker_starts_with_its_settings(dev: Rendered, monkeypatch: pytest.MonkeyPatch) -> None:
    config = configure(dev, "codex-sys-worker", "worker", monkeypatch)
    assert not config.run_api and config.run_worker
    assert config.distributed is not None and config.distributed.s3.endpoint == "minio.codex-sys.svc:9000"
    k8s = config.kubernetes
    assert k8s is not None, "CODEX_SYS_EXECUTOR=kubernetes"
    assert k8s.namespace == AGENT_NS
    assert k8s.gateway_url == f"http://{POD_IP}:8081" and k8s.worker_id == POD_NAME
    assert config.gateway_listen == ("0.0.0.0", 8081)
    assert (k8s.agent_image, k8s.init_image) == ("codex-sys-agent:dev", "codex-sys-runner:dev")
    assert k8s.storage_peer.describe() == "pod:codex-sys/app.kubernetes.io/name=minio:9000"
    assert config.workers == 4 and k8s.runtime_class == ""


def test_the_external_example_starts_once_its_secrets_exist(
        rendered: dict[str, Rendered], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    r = rendered["overlays/external"]
    creds = tmp_path / "nats.creds"  # in a pod: the mounted codex-sys-nats-creds Secret
    creds.write_text("-----BEGIN NATS USER JWT-----\n")
    secrets = {("codex-sys-s3", "access-key"): "access", ("codex-sys-s3", "secret-key"): "secret"}
    env = r.container_env("codex-sys-worker", "worker")
    assert env["CODEX_SYS_NATS_CREDS"].startswith("/etc/codex-sys/nats/")
    for workload, container in (("codex-sys-runner", "runner"), ("codex-sys-worker", "worker")):
        config = configure(r, workload, container, monkeypatch, secrets=secrets,
                           replace={"CODEX_SYS_NATS_CREDS": str(creds)})
        assert config.distributed is not None
        assert len(config.distributed.nats.servers) == 3 and config.distributed.jetstream.replicas == 3
        assert config.distributed.s3.secure and config.distributed.s3.public_endpoint
    config = configure(r, "codex-sys-worker", "worker", monkeypatch, secrets=secrets,
                       replace={"CODEX_SYS_NATS_CREDS": str(creds)})
    assert config.kubernetes is not None and config.kubernetes.runtime_class == "gvisor"
    assert config.kubernetes.storage_peer.cidr


def test_the_dev_api_tokens_load(dev: Rendered, tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(dev.secret_data("codex-sys-tokens")["tokens"])
    book = TokenBook(path)
    assert len(book) == 1 and book.identify("Bearer codex-dev-token-not-for-production").tenant == "dev"


@pytest.mark.parametrize("kustomization", DEPLOYABLE)
def test_each_port_is_the_same_everywhere_it_is_written(rendered: dict[str, Rendered], kustomization: str) -> None:
    r = rendered[kustomization]
    # The API: --listen, the container port, the Service, the NetworkPolicy.
    listen_port = int(command_line(r, "codex-sys-runner", "runner").listen[0].rsplit(":", 1)[1])
    runner_ports = {p["name"]: p["containerPort"] for p in r.container("codex-sys-runner", "runner")["ports"]}
    service = r.get("Service", "codex-sys-runner")["spec"]["ports"]
    policy = r.get("NetworkPolicy", "codex-sys-runner-api")["spec"]["ingress"][0]["ports"]
    assert runner_ports == {"grpc": listen_port} == {"grpc": 50051}
    assert [(p["targetPort"], p["port"]) for p in service] == [("grpc", listen_port)]
    assert [p["port"] for p in policy] == [listen_port]
    # The gateway: its listener, the URL handed to pods, the container port, the peer, the NetworkPolicy.
    env = r.container_env("codex-sys-worker", "worker", {"status.podIP": POD_IP})
    gateway_port = int(env["CODEX_SYS_GATEWAY_LISTEN"].rsplit(":", 1)[1])
    assert env["CODEX_SYS_K8S_GATEWAY_URL"] == f"http://{POD_IP}:{gateway_port}"
    worker_ports = {p["name"]: p["containerPort"] for p in r.container("codex-sys-worker", "worker")["ports"]}
    assert worker_ports == {"gateway": gateway_port}
    assert Peer.parse(env["CODEX_SYS_K8S_GATEWAY_PEER"], "gateway").port == gateway_port
    policy = r.get("NetworkPolicy", "codex-sys-worker-gateway")["spec"]["ingress"][0]["ports"]
    assert [p["port"] for p in policy] == [gateway_port]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_images_are_tagged_and_go_together(rendered: dict[str, Rendered], kustomization: str) -> None:
    r = rendered[kustomization]
    settings = r.config_data("codex-sys-worker-settings")
    runner_image = r.container("codex-sys-runner", "runner")["image"]
    # The fetch init container unpacks what this worker packed: the same build.
    assert r.container("codex-sys-worker", "worker")["image"] == runner_image == settings["CODEX_SYS_K8S_INIT_IMAGE"]
    agent_image = settings["CODEX_SYS_K8S_AGENT_IMAGE"]
    assert agent_image.rsplit(":", 1)[1] == runner_image.rsplit(":", 1)[1], "agent and runner come from one build"
    for t in r.pod_templates():
        for c in t.containers():
            name, _, tag = c["image"].rpartition(":")
            assert name and tag and "/" not in tag and tag != "latest", f"{t.name}: {c['image']} has no fixed tag"
    if kustomization == "overlays/dev":
        assert runner_image == "codex-sys-runner:dev" and agent_image == "codex-sys-agent:dev"


def test_the_dev_overlay_generates_every_secret_it_references(dev: Rendered) -> None:
    secrets = dev.all_secret_values()
    for t in dev.pod_templates():
        for c in t.containers():
            for item in c.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    assert (ref["name"], ref["key"]) in secrets, f"{t.name}: {ref}"
        for volume in t.spec.get("volumes", []):
            if "secret" in volume:
                assert any(name == volume["secret"]["secretName"] for name, _ in secrets), volume
    # The dev credentials say what they are.
    assert all("not-for-production" in v for (n, k), v in secrets.items() if k != "access-key")


def test_the_external_example_names_every_secret_it_needs(rendered: dict[str, Rendered]) -> None:
    r = rendered["overlays/external"]
    needed = set()
    for t in r.pod_templates():
        for c in t.containers():
            for item in c.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    needed.add(ref["name"])
        needed.update(v["secret"]["secretName"] for v in t.spec.get("volumes", []) if "secret" in v)
    assert needed == {"codex-sys-s3", "codex-sys-tokens", "codex-sys-nats-creds"}
    instructions = (REPO / "deploy/k8s/overlays/external/kustomization.yaml").read_text()
    docs = (REPO / "docs/kubernetes.md").read_text()
    for name in needed:
        assert f"create secret generic {name} " in instructions and f"create secret generic {name} " in docs, name
