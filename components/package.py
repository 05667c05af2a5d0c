"""The components as a Pulumi component package: which components it hosts, under which name and version.

`PulumiPlugin.yaml` points the Pulumi CLI at ``components/__main__.py``, which hosts these with the SDK's
``component_provider_host``; the schema every consumer's SDK is generated from is inferred from the classes'
annotations (``schema()`` runs the same inference offline; ``schema.json`` is its golden copy).
"""

import json
import sys
from typing import Any

import pulumi
from pulumi.provider import main as provider_main
from pulumi.provider.experimental.analyzer import Analyzer
from pulumi.provider.experimental.component import ComponentProvider
from pulumi.provider.experimental.schema import generate_schema
from pulumi.provider.experimental.server import ComponentInitError
from pulumi.provider.provider import ConstructResult

from components.gpu_inference_node import GpuInferenceNode
from components.inference_stack import InferenceStack
from components.kubernetes_gpu_pool import KubernetesGpuPool
from components.load_balanced_pool import LoadBalancedPool
from components.monitoring_stack import MonitoringStack
from components.stack_args import SECRET_KEYS, resolve
from components.vllm_service import VllmService
from gpu_inference import __version__
from gpu_inference.constants import PROJECT_NAME
from gpu_inference.errors import ConfigError
from gpu_inference.policy_rules import (
    VLLM_SERVICE,
    PolicySettings,
    ResourceView,
    can_start,
    gpu_availability,
    vram_fit,
)
from gpu_inference.service_spec import ServiceSpec

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


class GpuInferenceProvider(ComponentProvider):
    """The SDK's component provider, refusing before anything is registered what a stack file would be refused:

    - a bad config value, with the stack file's one-line message (key, value, allowed), not the SDK's
      generic input error;
    - a model that does not fit its GPUs, an offering not sold in the region, or a service vLLM cannot start
      (a quantization the checkpoint lacks, a gated repo without hfToken, AMD on the Kubernetes layout): a
      consumer's program may run without the policy pack, so the component applies the pack's mandatory
      resource rules itself.
    """

    def construct(
        self, name: str, resource_type: str, inputs: pulumi.Inputs, options: pulumi.ResourceOptions | None = None,
    ) -> ConstructResult:
        try:
            stack, _secrets = resolve(_snake(inputs), own_keys=_OWN_KEYS)
        except ConfigError as exc:
            raise ComponentInitError(ValueError(exc.render())) from exc
        view = ResourceView(type=VLLM_SERVICE, name=name, props=ServiceSpec.from_stack(stack).props())
        for check in (gpu_availability, vram_fit, can_start):
            failures, _ok = check(view, PolicySettings())
            if failures:
                raise ComponentInitError(ValueError(failures[0]))
        return super().construct(name, resource_type, inputs, options)


# Keys that are a component's own (placement), not stack config: the config validator does not see them.
_OWN_KEYS = ("node_index", "user_data", "network", "node_private_ips", "lb_private_ip", "cluster")


def _snake(inputs: pulumi.Inputs) -> dict[str, Any]:
    """Schema (camelCase) input names as the args' snake_case keys, nested config blocks included."""
    from pydantic.alias_generators import to_snake

    def convert(value: Any, depth: int) -> Any:
        if isinstance(value, dict) and depth < 2:
            return {to_snake(str(k)): convert(v, depth + 1) for k, v in value.items()}
        if isinstance(value, float) and value.is_integer():
            return int(value)  # protobuf carries every number as a double: nodeCount 2 arrives as 2.0
        return value

    out = {to_snake(str(k)): convert(v, 1) for k, v in dict(inputs).items()}
    return {k: v for k, v in out.items() if k not in SECRET_KEYS or v is not None}


def host(argv: list[str] | None = None) -> None:
    """Serve the package to the Pulumi engine (what `component_provider_host` does, with this provider)."""
    provider_main(GpuInferenceProvider(COMPONENTS, PACKAGE_NAME, None, VERSION), argv if argv is not None else sys.argv[1:])
