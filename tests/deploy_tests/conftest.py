"""The rendered kustomizations, built once per session with the real kustomize."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy_tests.manifests import KUSTOMIZATIONS, Rendered, ToolMissing, build, kustomize_binary


@pytest.fixture(scope="session")
def kustomize() -> Path:
    try:
        return kustomize_binary()
    except ToolMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def rendered(kustomize: Path) -> dict[str, Rendered]:
    return {name: Rendered(name, build(kustomize, name)) for name in KUSTOMIZATIONS}


@pytest.fixture(scope="session")
def dev(rendered: dict[str, Rendered]) -> Rendered:
    return rendered["overlays/dev"]
