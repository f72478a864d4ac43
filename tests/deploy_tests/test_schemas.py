"""Every object kustomize renders is valid against the Kubernetes 1.36 OpenAPI schemas, strictly (an
unknown or misspelt field is an error, not ignored as `kubectl apply` would)."""

from __future__ import annotations

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from deploy_tests.manifests import KUBERNETES_VERSION, KUSTOMIZATIONS, Rendered

pytestmark = pytest.mark.timeout(120)

SCHEMA_VERSION = KUBERNETES_VERSION.lstrip("v").rsplit(".", 1)[0]  # "1.36"


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_object_validates_strictly_against_the_kubernetes_schemas(
        rendered: dict[str, Rendered], kustomization: str) -> None:
    objects = rendered[kustomization].objects
    assert objects, f"{kustomization} renders nothing"
    errors = []
    for obj in objects:
        what = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            # Returns the schema version it used: the nearest one not newer than asked for.
            used = kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{what}: {'.'.join(map(str, exc.path))}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{what}: {exc.message}")
        else:
            assert used == SCHEMA_VERSION, f"{what} was checked against {used}, not {SCHEMA_VERSION}"
    assert not errors, "\n".join(errors)


def test_the_validator_rejects_what_it_should(rendered: dict[str, Rendered]) -> None:
    """The check above is only worth something if a typo fails it: a misspelt field in a pod template
    and a wrong type are both caught."""
    runner = rendered["overlays/dev"].get("Deployment", "codex-sys-runner")
    typo = {**runner, "spec": {**runner["spec"], "replica": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, SCHEMA_VERSION, strict=True)
    wrong_type = {**runner, "spec": {**runner["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, SCHEMA_VERSION, strict=True)
