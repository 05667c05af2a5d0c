"""Every Kubernetes object the program registers, validated against the schema its API server checks.

Built-in kinds: the Kubernetes OpenAPI schemas that `kubernetes-validate` bundles per version, in strict
mode (an unknown or misspelt field is an error, not silently pruned), at the DOKS version the stack targets
(`gpu_inference/clouds/kubernetes.py` KUBERNETES_VERSION). The KEDA ScaledObject: the openAPIV3Schema of
KEDA's own CRD from the pinned release (tests/fixtures/keda/, with its source), made strict the same way.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from gpu_inference.clouds.kubernetes import HELM_RELEASE, KEDA_CHART_VERSION, KUBERNETES_VERSION, SCALED_OBJECT
from gpu_inference.config import load_stack_config, read_stack_file
from gpu_inference.constants import PROJECT_DIR
from gpu_inference.preview_runner import ProgramRun, RecordedResource, engine_config, run_program
from gpu_inference.secrets import REDACTED

STACKS = Path(__file__).parent / "stacks"
KEDA_CRD = Path(__file__).parent / "fixtures" / "keda" / f"v{KEDA_CHART_VERSION}" / "keda.sh_scaledobjects.yaml"
# Not Kubernetes objects: Pulumi's provider and its Helm release resource (the chart's own objects are KEDA's).
NOT_OBJECTS = {HELM_RELEASE}


def program_for(stack_file: Path, **overrides: Any) -> ProgramRun:
    raw = dict(read_stack_file(stack_file))
    raw.update({f"gpu-inference:{k}": v for k, v in overrides.items()})
    cfg = load_stack_config(stack_file)
    config, secret_keys = engine_config(raw)
    return run_program(PROJECT_DIR, stack_file.stem, config, secret_keys, cfg.provider, cfg.region)


def manifest(resource: RecordedResource) -> dict[str, Any]:
    """The object as the API server receives it; a redacted secret map becomes a map (its keys are secret too)."""
    doc = copy.deepcopy(resource.inputs)
    for key in ("stringData", "data"):
        if doc.get(key) == REDACTED:
            doc[key] = {"redacted": "x"}
    return doc


def objects(program: ProgramRun) -> list[RecordedResource]:
    return [r for r in program.recorded
            if r.custom and r.type.startswith("kubernetes:") and r.type not in NOT_OBJECTS]


@pytest.fixture(scope="module", params=["kubernetes.yaml", "kubernetes-autoscale.yaml"])
def program(request: pytest.FixtureRequest) -> ProgramRun:
    return program_for(STACKS / request.param)


def test_every_builtin_object_is_valid_for_the_targeted_kubernetes_version_in_strict_mode(program: ProgramRun) -> None:
    builtin = [r for r in objects(program) if r.type != SCALED_OBJECT]
    assert {r.type.rsplit(":", 1)[1] for r in builtin} >= {"Namespace", "Secret", "StatefulSet", "Service",
                                                           "Deployment", "ConfigMap"}
    for resource in builtin:
        doc = manifest(resource)
        assert doc["apiVersion"] and doc["kind"], resource.name
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_strict_mode_catches_a_misspelt_field() -> None:
    # The check can fail: the same StatefulSet with one misspelt field is refused.
    resource = next(r for r in objects(program_for(STACKS / "kubernetes-autoscale.yaml"))
                    if r.type == "kubernetes:apps/v1:StatefulSet")
    doc = manifest(resource)
    doc["spec"]["podManagmentPolicy"] = doc["spec"].pop("podManagementPolicy")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def strict(schema: Any) -> Any:
    """A CRD structural schema where an object with declared properties admits no other field (the API
    server prunes unknown fields silently; here they are errors)."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def scaled_object_schema() -> dict[str, Any]:
    crd = yaml.safe_load(KEDA_CRD.read_text(encoding="utf-8"))
    assert crd["spec"]["group"] == "keda.sh" and crd["spec"]["names"]["kind"] == "ScaledObject"
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema: dict[str, Any] = strict(version["schema"]["openAPIV3Schema"])
    return schema


def test_the_scaled_object_is_valid_against_kedas_own_crd_schema() -> None:
    program = program_for(STACKS / "kubernetes-autoscale.yaml")
    [scaled] = [r for r in objects(program) if r.type == SCALED_OBJECT]
    doc = manifest(scaled)
    schema = scaled_object_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(doc, schema, cls=jsonschema.Draft7Validator)
    # The CRD's own CEL rule (x-kubernetes-validations), which jsonschema does not evaluate.
    assert doc["spec"]["minReplicaCount"] <= doc["spec"]["maxReplicaCount"]


@pytest.mark.parametrize(("path", "value"), [
    (("spec", "triggers", 0, "metdata"), {"query": "x"}),                      # misspelt key: refused in strict mode
    (("spec", "minReplicaCount"), -1),                                       # minimum 0
    (("spec", "advanced", "horizontalPodAutoscalerConfig", "behavior", "scaleDown", "selectPolicy"), 7),
])
def test_the_crd_schema_check_can_fail(path: tuple[Any, ...], value: Any) -> None:
    program = program_for(STACKS / "kubernetes-autoscale.yaml")
    [scaled] = [r for r in objects(program) if r.type == SCALED_OBJECT]
    doc = manifest(scaled)
    node: Any = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, scaled_object_schema(), cls=jsonschema.Draft7Validator)
