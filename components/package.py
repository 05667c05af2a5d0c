"""The components as a Pulumi component package: which components it hosts, under which name and version.

`PulumiPlugin.yaml` points the Pulumi CLI at ``components/__main__.py``, which hosts these with the SDK's
``component_provider_host``; the schema every consumer's SDK is generated from is inferred from the classes'
annotations (``schema()`` runs the same inference offline; ``schema.json`` is its golden copy).
"""

import json
from typing import Any

import pulumi
from pulumi.provider.experimental.analyzer import Analyzer
from pulumi.provider.experimental.schema import generate_schema

from components.gpu_inference_node import GpuInferenceNode
from components.inference_stack import InferenceStack
from components.kubernetes_gpu_pool import KubernetesGpuPool
from components.load_balanced_pool import LoadBalancedPool
from components.monitoring_stack import MonitoringStack
from components.vllm_service import VllmService
from gpu_inference import __version__
from gpu_inference.constants import PROJECT_NAME

# The package name is the type tokens' prefix (`gpu-inference:index:VllmService`): a consumer's SDK registers
# the same tokens this repository's own program registers, so the policy pack sees them alike.
PACKAGE_NAME = PROJECT_NAME
VERSION = __version__
COMPONENTS: list[type[pulumi.ComponentResource]] = [
    InferenceStack, LoadBalancedPool, KubernetesGpuPool, VllmService, GpuInferenceNode, MonitoringStack,
]


def schema() -> dict[str, Any]:
    """The package schema, inferred offline exactly as the provider host infers it when it starts."""
    result = Analyzer(PACKAGE_NAME).analyze(COMPONENTS)
    spec = generate_schema(PACKAGE_NAME, VERSION, None, result["component_definitions"], result["type_definitions"],
                           sorted(result["dependencies"], key=lambda d: f"{d.name}{d.version}"))
    return json.loads(json.dumps(spec.to_json()))


def schema_text() -> str:
    return json.dumps(schema(), indent=2, sort_keys=True) + "\n"
