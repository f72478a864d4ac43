"""The runner and worker processes as the manifests start them: their command lines parsed by the real
CLI and their settings read by the real code, from the environment the kubelet would give them."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from deploy_tests.manifests import Rendered
from runner.cli import main, serve
from runner.composition import RunnerConfig
from runner.config import HomeLayout

# What the downward API would give a worker pod.
POD_IP = "10.244.3.7"
POD_NAME = "codex-sys-worker-7c9d8f6b5-x2x5q"
POD_FIELDS = {"status.podIP": POD_IP, "metadata.name": POD_NAME}


def command_line(r: Rendered, workload: str, container: str) -> argparse.Namespace:
    spec = r.container(workload, container)
    assert spec["command"] == ["codex-sys"], f"{workload}: the image's console script runs it"
    return main._parser().parse_args(spec["args"])


def configure(r: Rendered, workload: str, container: str, monkeypatch: pytest.MonkeyPatch, *,
              secrets: Mapping[tuple[str, str], str] | None = None,
              replace: Mapping[str, str] | None = None) -> RunnerConfig:
    """The `RunnerConfig` the container's process would build at start (`runner.cli.serve`), which is
    where every setting is checked. `replace` swaps values that name files only a pod has."""
    for name in list(os.environ):
        if name.startswith(("CODEX_SYS_", "OPENAI_")):
            monkeypatch.delenv(name)
    env = r.container_env(workload, container, POD_FIELDS, r.all_secret_values() if secrets is None else secrets)
    env.update(replace or {})
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = command_line(r, workload, container)
    home = HomeLayout(Path(env["CODEX_SYS_HOME"]))
    if args.command == "runner":
        return serve._config(args, home, run_api=True, run_worker=not args.no_worker)
    return serve._config(args, home, run_api=False, run_worker=True)
