"""The gpu-inference CrossGuard policies: thin wrappers that hand the engine's resources to ``policy_rules``.

Importable on purpose: constructing ``PolicyPack`` starts a gRPC server and blocks, so the pack is
built only in ``policies/__main__.py`` and the tests import this module.

What the engine sends (pulumi/pulumi pkg/resource/deploy/step_generator.go): ``Analyze`` runs for
every registered resource, component resources included, with its inputs (for a component, the props
given to ``ComponentResource.__init__``); ``AnalyzeStack`` runs once with every resource's outputs
(for a component, what it passed to ``register_outputs``). The Python policy SDK strips Pulumi's
secret markers before a validator sees the props, so "is this input secret?" is answered from
``opts.additional_secret_outputs``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import (  # the SDK's own proxy types and sentinels (no public alias exists)
    UNKNOWN_ARCHIVE_VALUE,
    UNKNOWN_ARRAY_VALUE,
    UNKNOWN_ASSET_VALUE,
    UNKNOWN_BOOLEAN_VALUE,
    UNKNOWN_NUMBER_VALUE,
    UNKNOWN_OBJECT_VALUE,
    UNKNOWN_STRING_VALUE,
    _DictProxy,
    _ListProxy,
)

from gpu_inference import policy_rules as rules
from gpu_inference.config import NAMESPACE

PACK_NAME = "gpu-inference-policies"

_UNKNOWNS = frozenset({
    UNKNOWN_ARCHIVE_VALUE, UNKNOWN_ARRAY_VALUE, UNKNOWN_ASSET_VALUE, UNKNOWN_BOOLEAN_VALUE,
    UNKNOWN_NUMBER_VALUE, UNKNOWN_OBJECT_VALUE, UNKNOWN_STRING_VALUE,
})  # fmt: skip

# Defaults follow the stack the engine runs the pack for (it sets PULUMI_STACK in the pack's
# environment): security is mandatory on prod* stacks. `--policy-pack-config` can override any level.
DEFAULTS = rules.PolicySettings.for_stack(os.environ.get("PULUMI_STACK"))


def _level(name: rules.PolicyName) -> EnforcementLevel:
    return EnforcementLevel(DEFAULTS.level(name))


def plain(value: Any) -> Any:
    """The SDK's unknown-checking proxies → plain dicts/lists, with preview unknowns as None.

    The proxies raise on an unknown value; a policy that reads a whole resource (budget, security)
    must not abort because an unrelated output (an IP address) is not known yet during preview.
    """
    if isinstance(value, _DictProxy | _ListProxy):
        return plain(value["__target"])  # the raw container: reading it does not raise on unknowns
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, str) and value in _UNKNOWNS:
        return None
    return value


def view_of(resource: ResourceValidationArgs | PolicyResource) -> rules.ResourceView:
    """One engine resource as the neutral view the rules take."""
    opts = resource.opts
    return rules.ResourceView(
        type=resource.resource_type,
        name=resource.name,
        urn=resource.urn,
        props=plain(resource.props),
        parent=getattr(opts, "parent", None),
        secret_props=list(getattr(opts, "additional_secret_outputs", None) or []),
    )


def stack_config() -> dict[str, Any]:
    """The stack's own ``gpu-inference:*`` config, which the engine hands the pack as PULUMI_CONFIG."""
    try:
        raw = json.loads(os.environ.get("PULUMI_CONFIG") or "{}")
    except json.JSONDecodeError:
        return {}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        namespace, _, name = str(key).partition(":")
        if namespace != NAMESPACE:
            continue
        try:
            out[name] = json.loads(value) if isinstance(value, str) else value
        except json.JSONDecodeError:
            out[name] = value
    return out


def _report_all(report_violation: ReportViolation, messages: list[str], urn: str | None = None) -> None:
    for message in messages:
        report_violation(message, urn)


# ---------------------------------------------------------------------------------------------
# Validators (module-level, typed; each message says how to fix it)
# ---------------------------------------------------------------------------------------------


def vram_fit(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != rules.VLLM_SERVICE:
        return
    _report_all(report_violation, rules.check_vram_fit(view_of(args)))


def kv_headroom(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != rules.VLLM_SERVICE:
        return
    typical = args.get_config().get("typicalRequestTokens")
    _report_all(report_violation, rules.check_kv_headroom(view_of(args), int(typical) if typical else None))


def gpu_availability(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != rules.VLLM_SERVICE:
        return
    _report_all(report_violation, rules.check_gpu_availability(view_of(args)))


def _allowed_cidrs(config: Mapping[str, Any], views: list[rules.ResourceView]) -> list[str] | None:
    if isinstance(config.get("allowedCidrs"), list):
        return [str(c) for c in config["allowedCidrs"]]
    from_props = rules.allowed_cidrs_from_views(views)
    if from_props is not None:
        return from_props
    cidrs = stack_config().get("allowedCidrs")
    return [str(c) for c in cidrs] if isinstance(cidrs, list) else None


def security(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Per resource: its own ports, its own plain inputs; the API-key rule for VllmService components."""
    view = view_of(args)
    if view.type == rules.VLLM_SERVICE and "publicEndpoint" not in view.props:
        public = stack_config().get("publicEndpoint")
        if isinstance(public, bool):
            view.props["publicEndpoint"] = public
    for _name, message in rules.check_security([view], _allowed_cidrs(args.get_config(), [view])):
        report_violation(message, None)


def budget(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    config = args.get_config()
    views = [view_of(r) for r in args.resources]
    amount = config.get("monthlyBudgetUsd") or rules.budget_from_views(views) or stack_config().get("monthlyBudgetUsd")
    if not amount:
        report_violation(
            f"no monthly budget is known: set {NAMESPACE}:monthlyBudgetUsd in the stack config, or "
            '--policy-pack-config with {"budget": {"monthlyBudgetUsd": <USD>}}',
            None,
        )
        return
    slack = float(config.get("slackUsd") or 0.0)
    _report_all(report_violation, rules.check_budget(views, float(amount), slack))


# ---------------------------------------------------------------------------------------------
# Policies (the pack itself is built in __main__.py)
# ---------------------------------------------------------------------------------------------

vram_fit_policy = ResourceValidationPolicy(
    name="vram-fit",
    description="Every vLLM service fits its node's GPUs (weights, activations, CUDA graphs and KV cache).",
    enforcement_level=_level("vram-fit"),
    validate=vram_fit,
    remediation_steps="Apply the cheapest fix the message names: quantize, lower maxModelLen, a larger GPU, or more GPUs.",
)

kv_headroom_policy = ResourceValidationPolicy(
    name="kv-headroom",
    description="The KV cache holds maxNumSeqs requests of typicalRequestTokens.",
    enforcement_level=_level("kv-headroom"),
    validate=kv_headroom,
    config_schema=PolicyConfigSchema(
        properties={
            "typicalRequestTokens": {
                "type": "integer",
                "minimum": 1,
                "description": "Prompt + output tokens of a typical request; default: the service's typicalRequestTokens.",
            },
        },
    ),
)

gpu_availability_policy = ResourceValidationPolicy(
    name="gpu-availability",
    description="The GPU offering exists, belongs to the stack's provider and is sold in the stack's region.",
    enforcement_level=_level("gpu-availability"),
    validate=gpu_availability,
)

security_policy = ResourceValidationPolicy(
    name="security",
    description=(
        "No vLLM/exporter/Prometheus port open to the world, SSH only from allowedCidrs, an API key on a "
        "public endpoint, no credential in a plain input."
    ),
    enforcement_level=_level("security"),
    validate=security,
    config_schema=PolicyConfigSchema(
        properties={
            "allowedCidrs": {
                "type": "array",
                "items": {"type": "string"},
                "description": "The only networks SSH may come from; default: the stack's gpu-inference:allowedCidrs.",
            },
        },
    ),
)

budget_policy = StackValidationPolicy(
    name="budget",
    description="The stack's monthly cost (730 h, catalog prices) is within its budget.",
    enforcement_level=_level("budget"),
    validate=budget,
    config_schema=PolicyConfigSchema(
        properties={
            "monthlyBudgetUsd": {
                "type": "number",
                "minimum": 0,
                "description": "Monthly budget in USD; default: the stack's gpu-inference:monthlyBudgetUsd.",
            },
            "slackUsd": {
                "type": "number",
                "minimum": 0,
                "description": "Overrun tolerated before the policy fails, USD per month (default 0).",
            },
        },
    ),
)

POLICIES = [vram_fit_policy, kv_headroom_policy, gpu_availability_policy, security_policy, budget_policy]
