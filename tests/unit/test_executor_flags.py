"""`--executor` and the CODEX_SYS_K8S_* settings: flags beat variables, every bad value is named."""

from __future__ import annotations

import argparse

import pytest

from runner.adapters.kubernetes import Peer
from runner.cli import executor_flags
from runner.domain.errors import InvalidArgument

pytestmark = pytest.mark.timeout(10)

BASE = {"CODEX_SYS_EXECUTOR": "kubernetes", "CODEX_SYS_K8S_AGENT_IMAGE": "agent:1",
        "CODEX_SYS_K8S_GATEWAY_URL": "http://10.0.0.1:8081",
        "CODEX_SYS_K8S_STORAGE_PEER": "pod:codex-sys/app.kubernetes.io/name=minio:9000"}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    executor_flags.add_flags(parser)
    return parser.parse_args(argv)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in BASE:
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def test_the_local_executor_is_the_default(env: pytest.MonkeyPatch) -> None:
    assert executor_flags.kubernetes_settings(parse([])) is None
    assert executor_flags.gateway_listen(parse([])) is None


def test_settings_from_variables_and_flags(env: pytest.MonkeyPatch) -> None:
    for key, value in BASE.items():
        env.setenv(key, value)
    env.setenv("CODEX_SYS_K8S_NAMESPACE", "from-env")
    env.setenv("CODEX_SYS_K8S_POD_ANNOTATIONS", "a.example/x=1,b=2")
    s = executor_flags.kubernetes_settings(parse(["--k8s-namespace", "from-flag"]))
    assert s is not None
    assert s.namespace == "from-flag" and s.init_image == "agent:1"
    assert s.storage_peer == Peer(port=9000, namespace="codex-sys", pod_labels=(("app.kubernetes.io/name", "minio"),))
    assert s.pod_annotations == (("a.example/x", "1"), ("b", "2"))
    assert executor_flags.gateway_listen(parse(["--gateway-listen", "0.0.0.0:8081"])) == ("0.0.0.0", 8081)


@pytest.mark.parametrize(("key", "value", "named"), [
    ("CODEX_SYS_EXECUTOR", "docker", "CODEX_SYS_EXECUTOR"),
    ("CODEX_SYS_K8S_AGENT_IMAGE", "", "CODEX_SYS_K8S_AGENT_IMAGE"),
    ("CODEX_SYS_K8S_STORAGE_PEER", "minio:9000", "CODEX_SYS_K8S_STORAGE_PEER"),
    ("CODEX_SYS_K8S_STORAGE_PEER", "cidr:10.0.0.0/8:99999", "port"),
    ("CODEX_SYS_K8S_GATEWAY_URL", "10.0.0.1:8081", "gateway URL"),
    ("CODEX_SYS_K8S_NAMESPACE", "Not_A_Name", "namespace"),
    ("CODEX_SYS_K8S_WORKSPACE_SIZE", "lots", "quantity"),
    ("CODEX_SYS_K8S_IMAGE_PULL_POLICY", "Sometimes", "CODEX_SYS_K8S_IMAGE_PULL_POLICY"),
    ("CODEX_SYS_K8S_GATEWAY_PEER", "pod:codex-sys/bad key=x:8081", "label"),
])
def test_a_bad_value_is_named(env: pytest.MonkeyPatch, key: str, value: str, named: str) -> None:
    for k, v in BASE.items():
        env.setenv(k, v)
    env.setenv(key, value)
    with pytest.raises(InvalidArgument, match=named):
        executor_flags.kubernetes_settings(parse([]))


def test_a_bad_gateway_listener_is_named(env: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidArgument, match="CODEX_SYS_GATEWAY_LISTEN"):
        executor_flags.gateway_listen(parse(["--gateway-listen", "8081"]))
