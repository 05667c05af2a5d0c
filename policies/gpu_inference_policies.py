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


# ---------------------------------------------------------------------------------------------
# The pack: one CrossGuard policy per entry of the rules' registry (the pack itself is built in __main__.py)
# ---------------------------------------------------------------------------------------------


def _settings(policy: rules.Policy, config: Mapping[str, Any] | None, views: list[rules.ResourceView]) -> rules.PolicySettings:
    """What a check needs beyond the resources. Each fact comes from this policy's config first, then from the
    resources themselves (the VllmService components carry the stack's budget and allowedCidrs), then from the
    stack config the engine hands the pack."""
    # https_required follows the stack like the levels (DEFAULTS: prod* stacks refuse an API key over HTTP).
    base = rules.PolicySettings(https_required=DEFAULTS.https_required)
    settings = rules.settings_from_policy_config(policy, config or {}, base).with_facts_from(views)
    stack = stack_config()
    fallback: dict[str, Any] = {}
    if settings.monthly_budget_usd is None:
        fallback["monthly_budget_usd"] = _number(stack.get("monthlyBudgetUsd"))
    if settings.allowed_cidrs is None and isinstance(stack.get("allowedCidrs"), list):
        fallback["allowed_cidrs"] = [str(c) for c in stack["allowedCidrs"]]
    if settings.public_endpoint is None and isinstance(stack.get("publicEndpoint"), bool):
        fallback["public_endpoint"] = stack["publicEndpoint"]
    if settings.api_key_set is None and stack:
        fallback["api_key_set"] = "apiKey" in stack
    if settings.tls is None and stack:
        lb = stack.get("loadBalancer")
        fallback["tls"] = isinstance(lb, Mapping) and bool(lb.get("tlsDomain"))
    return settings.model_copy(update=fallback)


def _number(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _resource_validator(policy: rules.Policy) -> Any:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        view = view_of(args)
        if policy.applies(view):
            for message in policy.check(view, _settings(policy, args.get_config(), [view]))[0]:
                report_violation(message, None)

    validate.__name__ = policy.name.replace("-", "_")
    return validate


def _stack_validator(policy: rules.Policy) -> Any:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        views = [view_of(r) for r in args.resources]
        for message in policy.check(views, _settings(policy, args.get_config(), views))[0]:
            report_violation(message, None)

    validate.__name__ = policy.name.replace("-", "_")
    return validate


def _declare(policy: rules.Policy) -> ResourceValidationPolicy | StackValidationPolicy:
    schema = PolicyConfigSchema(properties={k: v.schema for k, v in policy.config.items()}) if policy.config else None
    if policy.kind == "stack":
        return StackValidationPolicy(
            name=policy.name, description=policy.description, enforcement_level=_level(policy.name),
            validate=_stack_validator(policy), config_schema=schema, remediation_steps=policy.remediation,
        )
    return ResourceValidationPolicy(
        name=policy.name, description=policy.description, enforcement_level=_level(policy.name),
        validate=_resource_validator(policy), config_schema=schema, remediation_steps=policy.remediation,
    )


POLICIES = [_declare(policy) for policy in rules.POLICIES]
_BY_NAME = {p.name: p for p in POLICIES}
vram_fit_policy = _BY_NAME["vram-fit"]
kv_headroom_policy = _BY_NAME["kv-headroom"]
gpu_availability_policy = _BY_NAME["gpu-availability"]
security_policy = _BY_NAME["security"]
budget_policy = _BY_NAME["budget"]
can_start_policy = _BY_NAME["can-start"]
