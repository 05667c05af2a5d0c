"""The five stack policies as pure functions over a neutral view of registered resources.

Both consumers call these functions, so no rule is written twice:

- the CrossGuard pack (``policies/gpu_inference_policies.py``) turns each ``ResourceValidationArgs`` /
  ``PolicyResource`` the engine sends into a :class:`ResourceView`;
- the offline preview (``gpu_inference.preview_runner``) records every registration under mocks and
  calls :func:`evaluate_policies`.

Where the spec comes from: the Pulumi engine sends component resources to analyzers exactly like
custom ones (``Analyze`` with the props the component passed to ``ComponentResource.__init__``,
``AnalyzeStack`` with what it passed to ``register_outputs``), so the vLLM spec is read from the
``gpu-inference:index:VllmService`` component's props; see ``SPEC_PROPS`` and ``policies/README.md``.

No Pulumi import: views hold plain JSON-like values.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gpu_inference.catalog import Catalog, UnknownCatalogEntry, load_catalog
from gpu_inference.config import NAMESPACE, parse_stack_config
from gpu_inference.constants import (
    DCGM_EXPORTER_PORT,
    NODE_EXPORTER_PORT,
    PROMETHEUS_PORT,
    VLLM_PORT,
)
from gpu_inference.errors import ConfigError
from gpu_inference.stack import OFFERING_PROVIDER, ResolvedStack, resolve_stack

VLLM_SERVICE = "gpu-inference:index:VllmService"
DO_FIREWALL = "digitalocean:index/firewall:Firewall"
AWS_SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
AWS_SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
AWS_INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
K8S_SERVICE = "kubernetes:core/v1:Service"

PolicyName = Literal["vram-fit", "kv-headroom", "budget", "security", "gpu-availability"]
Level = Literal["mandatory", "advisory", "disabled"]
POLICY_NAMES: tuple[PolicyName, ...] = ("vram-fit", "kv-headroom", "budget", "security", "gpu-availability")

# Defaults: refusing money spent on a model that cannot start (vram-fit), on a GPU the region does
# not have (gpu-availability) or over budget is the product's promise, so those are mandatory. A
# thin KV cache still serves (requests queue), so kv-headroom only advises. Security is advisory
# for dev stacks (people poke at them from laptops) and mandatory for prod (see for_stack).
DEFAULT_LEVELS: dict[PolicyName, Level] = {
    "vram-fit": "mandatory",
    "kv-headroom": "advisory",
    "budget": "mandatory",
    "security": "advisory",
    "gpu-availability": "mandatory",
}

# The VllmService props the policies read (camelCase, as Pulumi sends them). Everything else on the
# component is ignored. ``vllmVersion`` becomes the pinned image the sizing calibration follows.
SPEC_PROPS = (
    "model", "gpu", "provider", "region", "nodeCount", "tensorParallelSize", "maxModelLen", "maxNumSeqs",
    "dtype", "quantization", "kvCacheDtype", "gpuMemoryUtilization", "vllmVersion", "typicalRequestTokens",
    "monthlyBudgetUsd", "allowedCidrs", "publicEndpoint", "vllmImage",
)  # fmt: skip

# Ports that must never face the whole internet: they have no authentication of their own
# (vLLM's API key is enforced by Nginx in front, the exporters and Prometheus have none).
SENSITIVE_PORTS: dict[int, str] = {
    VLLM_PORT: "vLLM API",
    NODE_EXPORTER_PORT: "node_exporter",
    DCGM_EXPORTER_PORT: "DCGM exporter",
    PROMETHEUS_PORT: "Prometheus",
}
SSH_PORT = 22
PUBLIC_PORTS = (80, 443)

# Credentials as they appear in cloud-init, systemd units, nginx.conf or env lists. Only the
# variable/flag name is ever echoed in a message, never the value. A value that starts with `$` is a
# reference (shell variable, systemd specifier), not the secret itself.
_CREDENTIAL_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "an API/HF token variable",
        re.compile(
            r"\b(?P<name>VLLM_API_KEY|HF_TOKEN|HUGGING_FACE_HUB_TOKEN|HUGGINGFACEHUB_API_TOKEN|OPENAI_API_KEY|API_KEY)"
            r"\s*[=:]\s*['\"]?(?P<value>[^\s'\"$][^\s'\"]{7,})"
        ),
    ),
    ("the vLLM --api-key flag", re.compile(r"(?P<name>--api-key)(?:=|\s+)['\"]?(?P<value>[^\s'\"$-][^\s'\"]{7,})")),
    ("a bearer token", re.compile(r"(?P<name>Bearer)\s+(?P<value>[A-Za-z0-9._~+/=-]{16,})")),
    ("a Hugging Face token", re.compile(r"(?P<value>\bhf_[A-Za-z0-9]{30,})")),
    ("an AWS access key id", re.compile(r"(?P<value>\bAKIA[0-9A-Z]{16}\b)")),
)
# Resource types whose whole job is to hold secrets (Pulumi and the cluster encrypt them).
_SECRET_HOLDER_SUFFIXES = (":Secret", ":SecretVersion")


class ResourceView(BaseModel):
    """One registered resource as both the CrossGuard pack and the offline preview see it."""

    model_config = ConfigDict(extra="forbid")

    type: str
    """Pulumi type token, e.g. ``digitalocean:index/droplet:Droplet``."""
    name: str
    """Logical resource name."""
    urn: str | None = None
    props: dict[str, Any] = Field(default_factory=dict)
    """Inputs (resource validation) or outputs (stack validation), camelCase; unknowns are None."""
    parent: str | None = None
    """URN of the parent resource (component), when known."""
    secret_props: list[str] = Field(default_factory=list)
    """Top-level props known to be secret (Pulumi secret marker or ``additionalSecretOutputs``)."""


class PolicyVerdict(BaseModel):
    """The outcome of one policy for one subject (a resource, or the whole stack when ``resource`` is None)."""

    name: PolicyName
    passed: bool
    level: Level
    message: str
    resource: str | None = None

    def line(self) -> str:
        mark = "PASS" if self.passed else ("FAIL" if self.level == "mandatory" else "WARN")
        if self.level == "disabled":
            mark = "OFF "
        where = f" [{self.resource}]" if self.resource else ""
        return f"{mark} {self.name}{where}: {self.message}"

    @property
    def blocks(self) -> bool:
        """True when this verdict refuses the deployment."""
        return not self.passed and self.level == "mandatory"


class PolicySettings(BaseModel):
    """Enforcement levels and thresholds; the CrossGuard policy config and the offline preview share them."""

    model_config = ConfigDict(extra="forbid")

    levels: dict[PolicyName, Level] = Field(default_factory=lambda: dict(DEFAULT_LEVELS))
    """Enforcement level per policy."""
    typical_request_tokens: int | None = Field(None, ge=1)
    """Overrides the service's typicalRequestTokens in the kv-headroom check."""
    monthly_budget_usd: float | None = Field(None, gt=0)
    """Overrides the stack's monthlyBudgetUsd in the budget check."""
    budget_slack_usd: float = Field(0.0, ge=0)
    """Overrun tolerated before the budget check fails (USD per month)."""
    allowed_cidrs: list[str] | None = None
    """Overrides the stack's allowedCidrs as the only sources SSH may come from."""

    @classmethod
    def for_stack(cls, stack_name: str | None, **overrides: Any) -> PolicySettings:
        """Defaults for a stack: security is mandatory for ``prod*`` stacks, advisory elsewhere."""
        levels = dict(DEFAULT_LEVELS)
        if is_prod_stack(stack_name):
            levels["security"] = "mandatory"
        levels.update(overrides.pop("levels", {}) or {})
        return cls(levels=levels, **overrides)

    def level(self, name: PolicyName) -> Level:
        return self.levels.get(name, DEFAULT_LEVELS[name])


def is_prod_stack(stack_name: str | None) -> bool:
    return bool(stack_name) and str(stack_name).lower().startswith("prod")


# ---------------------------------------------------------------------------------------------
# The vLLM spec carried by a VllmService component
# ---------------------------------------------------------------------------------------------


def is_vllm_service(view: ResourceView) -> bool:
    return view.type == VLLM_SERVICE


def spec_config(props: Mapping[str, Any]) -> dict[str, Any]:
    """VllmService props → the raw ``gpu-inference:*`` config they came from (present keys only)."""
    raw: dict[str, Any] = {k: props[k] for k in SPEC_PROPS if props.get(k) is not None and k != "vllmVersion"}
    version = props.get("vllmVersion")
    if props.get("vllmImage"):
        raw["vllmImage"] = props["vllmImage"]
    elif version:
        raw["vllmImage"] = f"vllm/vllm-openai:v{str(version).removeprefix('v')}"
    if raw.get("quantization") == "checkpoint":  # the component's word for "whatever the checkpoint has"
        del raw["quantization"]
    # Sizing does not read these two, but StackConfig requires them; placeholders keep one parser
    # (and its messages) for both the stack file and the component props.
    raw.setdefault("monthlyBudgetUsd", 1.0)
    if raw.get("provider") == "kubernetes":
        raw.setdefault("kubernetes", {"clusterId": "from-component"})
    for key in ("nodeCount", "tensorParallelSize", "maxModelLen", "maxNumSeqs", "typicalRequestTokens"):
        # Protobuf Structs carry every number as a double.
        if isinstance(raw.get(key), float) and raw[key].is_integer():
            raw[key] = int(raw[key])
    return raw


@functools.lru_cache(maxsize=256)
def _resolve_cached(name: str, props_json: str) -> ResolvedStack | tuple[str, ...]:
    props = json.loads(props_json)
    missing = [k for k in ("model", "gpu", "provider", "region") if not props.get(k)]
    if missing:
        return tuple(
            f"{VLLM_SERVICE} {name!r} has no {k!r} prop (unknown during preview, or the component does not pass it)"
            for k in missing
        )
    try:
        config = parse_stack_config(spec_config(props), source=f"VllmService {name!r}")
        return resolve_stack(config, name=name)
    except ConfigError as exc:
        return tuple(exc.messages)


def resolve_service(view: ResourceView) -> ResolvedStack | list[str]:
    """The service's config resolved against the catalog, or the messages saying why it cannot be."""
    result = _resolve_cached(view.name, json.dumps(view.props, sort_keys=True, default=str))
    return list(result) if isinstance(result, tuple) else result


def _catalog() -> Catalog:
    return load_catalog()


def precision_label(rs: ResolvedStack) -> str:
    """What the weights are stored as: the requested quantization, the checkpoint's, or the dtype."""
    quant = rs.config.quantization
    if quant in (None, "none"):
        method = rs.model.quantization.method
        if quant is None and method != "none":
            return method
        return {"auto": "bf16", "bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}[rs.config.dtype]
    return quant


def _gib(value: Any) -> str:
    return f"{float(value):.1f} GiB" if isinstance(value, int | float) else "? GiB"


def _fit_summary(rs: ResolvedStack) -> str:
    s = rs.sizing
    return (
        f"{_gib(getattr(s, 'kv_cache_gib', None))} KV cache, {int(getattr(s, 'kv_cache_tokens', 0) or 0):,} tokens, "
        f"{float(getattr(s, 'max_concurrency', 0) or 0):.1f}× at {rs.config.max_model_len}"
    )


def _gpus_text(rs: ResolvedStack) -> str:
    tp = rs.tensor_parallel_size
    usable = rs.gpu.usable_memory_gib
    util = rs.config.gpu_memory_utilization
    per = f"{usable:.2f} GiB, {usable * util:.2f} GiB usable at {util:.2f}"
    return f"{tp} × {rs.gpu.id} ({per}{' each' if tp > 1 else ''})"


def _vram_fit(view: ResourceView) -> tuple[list[str], str]:
    rs = resolve_service(view)
    if isinstance(rs, list):
        return [f"cannot size {view.name!r}: {m}" for m in rs], ""
    try:
        result = rs.sizing
    except (ValueError, LookupError) as exc:  # the sizing core refuses a combination it cannot size
        return [f"cannot size {rs.config.model} on {rs.offering.id}: {exc}"], ""
    head = f"{rs.config.model} ({precision_label(rs)}) "
    if result.fits:
        return [], f"{head}fits {_gpus_text(rs)}: {_fit_summary(rs)}"
    problems = "; ".join(p.rstrip(".") for p in result.problems) or "the sizing core reports it does not fit"
    per_gpu = " per GPU" if rs.tensor_parallel_size > 1 else ""
    need = f"weights alone need {_gib(result.weights_gib)}{per_gpu} ({problems})"
    from gpu_inference.fit_advice import advise_fit, format_fixes  # fit_advice imports this module

    fixes = advise_fit(rs)
    fix_text = f" Cheapest fix: {format_fixes(fixes)}" if fixes else (
        f" No single change within {rs.offering.provider}/{rs.config.region} makes it fit: choose a smaller model."
    )
    return [f"{head}does not fit {_gpus_text(rs)}: {need}.{fix_text}"], ""


def check_vram_fit(view: ResourceView) -> list[str]:
    """vram-fit: the service's model, precision, context and TP fit its node's GPUs (sizing core)."""
    if not is_vllm_service(view):
        return []
    return _vram_fit(view)[0]


def _kv_headroom(view: ResourceView, typical_request_tokens: int | None = None) -> tuple[list[str], str]:
    # When the service cannot be sized or does not fit, vram-fit already says so: say it once.
    skipped = "not checked: the service does not fit its GPUs (see vram-fit)"
    rs = resolve_service(view)
    if isinstance(rs, list):
        return [], skipped
    try:
        result = rs.sizing
    except (ValueError, LookupError):
        return [], skipped
    if not result.fits:
        return [], skipped
    typical = typical_request_tokens or rs.config.typical_request_tokens
    seqs = rs.config.max_num_seqs
    capacity = int(getattr(result, "kv_cache_tokens", 0) or 0)
    holds = capacity // typical
    need = seqs * typical
    if capacity >= need:
        return [], (
            f"KV cache holds {capacity:,} tokens = {holds:,} requests of {typical:,} tokens "
            f"≥ maxNumSeqs {seqs}"
        )
    fixes = [f"set {NAMESPACE}:maxNumSeqs to {max(holds, 1)}"]
    if rs.config.kv_cache_dtype != "fp8" and rs.gpu.fp8:
        fixes.append(f"set {NAMESPACE}:kvCacheDtype = fp8 (about twice the tokens)")
    fixes.append("choose a GPU with more memory")
    return [
        f"{rs.config.model} on {rs.tensor_parallel_size} × {rs.gpu.id}: the KV cache holds {capacity:,} tokens, "
        f"only {holds:,} requests of {typical:,} tokens, but maxNumSeqs is {seqs} (needs {need:,} tokens); "
        f"requests beyond {holds:,} will queue or be preempted. Fix: {', or '.join(fixes)}."
    ], ""


def check_kv_headroom(view: ResourceView, typical_request_tokens: int | None = None) -> list[str]:
    """kv-headroom: the KV cache holds maxNumSeqs requests of typicalRequestTokens."""
    if not is_vllm_service(view):
        return []
    return _kv_headroom(view, typical_request_tokens)[0]


def _gpu_availability(view: ResourceView) -> tuple[list[str], str]:
    props = view.props
    gpu, provider, region = props.get("gpu"), props.get("provider"), props.get("region")
    if not gpu or not provider or not region:
        return [f"{view.name!r} does not say which offering (gpu), provider and region it uses"], ""
    catalog = _catalog()
    try:
        offering = catalog.offering(str(gpu))
    except UnknownCatalogEntry as exc:
        return [f"{NAMESPACE}:gpu = {gpu!r} is not a catalog offering ({exc}); see gpu_inference/data/offerings/"], ""
    wanted = OFFERING_PROVIDER.get(str(provider), str(provider))
    if offering.provider != wanted:
        choices = ", ".join(o.id for o in catalog.offerings_for(wanted) if str(region) in o.regions)
        return [
            f"{gpu} is a {offering.provider} offering but the service runs on {provider}; "
            f"offerings in {region}: {choices or 'none'}"
        ], ""
    if str(region) not in offering.regions:
        here = [o.id for o in catalog.offerings_for(wanted) if str(region) in o.regions]
        alt = f"; offerings available in {region}: {', '.join(here)}" if here else f"; {region} has no GPU offerings"
        return [
            f"{gpu} is not offered in {provider}/{region} (offered in: {', '.join(offering.regions)}): "
            f"set {NAMESPACE}:region to one of those{alt}"
        ], ""
    return [], f"{gpu} ({offering.gpu_count} × {offering.gpu}) is offered in {provider}/{region}"


def check_gpu_availability(view: ResourceView) -> list[str]:
    """gpu-availability: the service's offering exists, belongs to its provider and is sold in its region."""
    if not is_vllm_service(view):
        return []
    return _gpu_availability(view)[0]


# ---------------------------------------------------------------------------------------------
# budget (whole stack)
# ---------------------------------------------------------------------------------------------


def budget_from_views(views: Iterable[ResourceView]) -> float | None:
    """The monthlyBudgetUsd the VllmService components carry (the smallest, if they differ)."""
    budgets = [float(v.props["monthlyBudgetUsd"]) for v in views
               if is_vllm_service(v) and isinstance(v.props.get("monthlyBudgetUsd"), int | float)]
    return min(budgets) if budgets else None


def _budget(views: list[ResourceView], budget_usd: float, slack_usd: float = 0.0) -> tuple[list[str], str]:
    from gpu_inference.pricing import bill_for_resources  # imported late: pricing is heavier than the rules

    try:
        bill = bill_for_resources([(v.type, v.name, v.props) for v in views])
    except (LookupError, ValueError) as exc:
        # An unpriceable resource must not count as $0 against a budget.
        return [f"cannot price the stack, so the budget cannot be checked: {exc}"], ""
    total = bill.total_monthly_usd
    lines = sorted(bill.lines, key=lambda line: -line.monthly_usd)
    breakdown = "; ".join(f"{ln.resource_name} ({ln.description}) ${ln.monthly_usd:,.2f}" for ln in lines)
    if total <= budget_usd + slack_usd:
        return [], f"${total:,.2f}/month of the ${budget_usd:,.2f} budget ({breakdown or 'nothing priced'})"
    over = total - budget_usd
    return [
        f"the stack costs ${total:,.2f}/month (730 h), ${over:,.2f} over the ${budget_usd:,.2f} budget. "
        f"Breakdown: {breakdown}. Fix: choose a cheaper offering, fewer nodes, or raise "
        f"{NAMESPACE}:monthlyBudgetUsd to at least {total:,.0f}."
    ], ""


def check_budget(views: list[ResourceView], budget_usd: float, slack_usd: float = 0.0) -> list[str]:
    """budget: the monthly price of every registered resource is within the budget (plus slack)."""
    return _budget(views, budget_usd, slack_usd)[0]


# ---------------------------------------------------------------------------------------------
# security
# ---------------------------------------------------------------------------------------------


def _is_world(cidr: Any) -> bool:
    try:
        return ipaddress.ip_network(str(cidr), strict=False).prefixlen == 0
    except ValueError:
        return False


def _port_range(protocol: Any, port_range: Any) -> tuple[int, int] | None:
    """DigitalOcean portRange ("22", "8000-8001", "all", "1-65535") → inclusive range; None for ICMP."""
    if str(protocol).lower() == "icmp":
        return None
    text = str(port_range or "all").strip().lower()
    if text in ("all", "0", ""):
        return (1, 65535)
    low, _, high = text.partition("-")
    try:
        return (int(low), int(high or low))
    except ValueError:
        return (1, 65535)  # an unparsable range is treated as everything: fail closed


def _aws_range(protocol: Any, from_port: Any, to_port: Any) -> tuple[int, int] | None:
    proto = str(protocol).lower()
    if proto in ("icmp", "icmpv6", "58", "1"):
        return None
    if proto in ("-1", "all"):
        return (1, 65535)
    try:
        low, high = int(float(from_port)), int(float(to_port))
    except (TypeError, ValueError):
        return (1, 65535)
    return (1, 65535) if (low, high) == (0, 0) else (low, high)


def _ingress_rules(view: ResourceView) -> Iterator[tuple[tuple[int, int], list[str], str]]:
    """(port range, source CIDRs, how to name the rule) for every inbound rule a view opens."""
    p = view.props
    if view.type == DO_FIREWALL:
        for rule in p.get("inboundRules") or []:
            ports = _port_range(rule.get("protocol"), rule.get("portRange"))
            if ports:
                yield ports, list(rule.get("sourceAddresses") or []), f"inboundRules {rule.get('portRange') or 'all'}"
    elif view.type == AWS_SECURITY_GROUP:
        for rule in p.get("ingress") or []:
            ports = _aws_range(rule.get("protocol"), rule.get("fromPort"), rule.get("toPort"))
            if ports:
                sources = list(rule.get("cidrBlocks") or []) + list(rule.get("ipv6CidrBlocks") or [])
                yield ports, sources, f"ingress {rule.get('fromPort')}-{rule.get('toPort')}"
    elif view.type == AWS_SECURITY_GROUP_RULE and p.get("type") == "ingress":
        ports = _aws_range(p.get("protocol"), p.get("fromPort"), p.get("toPort"))
        if ports:
            sources = list(p.get("cidrBlocks") or []) + list(p.get("ipv6CidrBlocks") or [])
            yield ports, sources, f"ingress {p.get('fromPort')}-{p.get('toPort')}"
    elif view.type == K8S_SERVICE and (p.get("spec") or {}).get("type") == "LoadBalancer":
        spec = p.get("spec") or {}
        # A cloud load balancer with no loadBalancerSourceRanges accepts the whole internet.
        sources = list(spec.get("loadBalancerSourceRanges") or ["0.0.0.0/0"])
        for port in spec.get("ports") or []:
            for number in {port.get("port"), port.get("targetPort")}:
                if isinstance(number, int | float):
                    yield (int(number), int(number)), sources, f"LoadBalancer port {port.get('port')}"
    elif view.type == AWS_INGRESS_RULE:
        ports = _aws_range(p.get("ipProtocol"), p.get("fromPort"), p.get("toPort"))
        if ports:
            sources = [c for c in (p.get("cidrIpv4"), p.get("cidrIpv6")) if c]
            yield ports, sources, f"ingress {p.get('fromPort')}-{p.get('toPort')}"


def _walk_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _walk_strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _walk_strings(item)


def find_credentials(text: str) -> list[str]:
    """What credentials a text holds, described by kind and variable/flag name (never the value)."""
    found: list[str] = []
    for kind, pattern in _CREDENTIAL_PATTERNS:
        for match in pattern.finditer(text):
            name = match.groupdict().get("name")
            label = f"{kind} ({name})" if name else kind
            if label not in found:
                found.append(label)
    return found


def _plain_secrets(view: ResourceView) -> list[str]:
    if is_vllm_service(view) or view.type.endswith(_SECRET_HOLDER_SUFFIXES):
        return []
    problems = []
    secret = set(view.secret_props)
    for key, value in view.props.items():
        if key in secret:
            continue
        kinds = sorted({k for text in _walk_strings(value) for k in find_credentials(text)})
        if kinds:
            problems.append(
                f"{view.type.rsplit(':', 1)[-1]} {view.name!r}: {key} holds {', '.join(kinds)} in a plain input; "
                f"wrap the value in pulumi.Output.secret(...) and add {key!r} to "
                f"ResourceOptions(additional_secret_outputs=[...]) so it is encrypted in state and marked secret"
            )
    return problems


def allowed_cidrs_from_views(views: Iterable[ResourceView]) -> list[str] | None:
    """The allowedCidrs a VllmService carries, if any does."""
    for v in views:
        if is_vllm_service(v) and isinstance(v.props.get("allowedCidrs"), list):
            return [str(c) for c in v.props["allowedCidrs"]]
    return None


def check_security(views: list[ResourceView], allowed_cidrs: list[str] | None = None) -> list[tuple[str, str]]:
    """security: no world-open vLLM/exporter/Prometheus port, SSH only from allowedCidrs, an API key
    when the endpoint is public, no credential in a plain (non-secret) input. → (resource name, message)."""
    allowed = allowed_cidrs if allowed_cidrs is not None else allowed_cidrs_from_views(views)
    problems: list[tuple[str, str]] = []
    world_open_public = False
    for view in views:
        for (low, high), sources, rule in _ingress_rules(view):
            world = [s for s in sources if _is_world(s)]
            if world and any(low <= p <= high for p in PUBLIC_PORTS):
                world_open_public = True
            for port, what in SENSITIVE_PORTS.items():
                if world and low <= port <= high:
                    problems.append((view.name, (
                        f"{view.name!r} {rule} opens port {port} ({what}) to {', '.join(world)}: it has no "
                        f"authentication of its own; allow only the load balancer / Prometheus host "
                        f"(sourceDropletIds / securityGroups) or {NAMESPACE}:allowedCidrs"
                    )))
            if low <= SSH_PORT <= high and sources:
                if world:
                    problems.append((view.name, (
                        f"{view.name!r} {rule} opens SSH (22) to {', '.join(world)}: allow only "
                        f"{NAMESPACE}:allowedCidrs ({', '.join(allowed) if allowed else 'empty: SSH closed'})"
                    )))
                elif allowed is not None:
                    extra = [s for s in sources if s not in allowed]
                    if extra:
                        problems.append((view.name, (
                            f"{view.name!r} {rule} allows SSH (22) from {', '.join(extra)}, not in "
                            f"{NAMESPACE}:allowedCidrs ({', '.join(allowed) or 'empty'}); remove them"
                        )))
        problems.extend((view.name, m) for m in _plain_secrets(view))
    for view in views:
        if not is_vllm_service(view):
            continue
        public = view.props.get("publicEndpoint")
        is_public = public is not False or world_open_public  # StackConfig's default is public
        if is_public and view.props.get("apiKeySet") is not True:
            problems.append((view.name, (
                f"{view.name!r} serves a public endpoint without an API key: set one with "
                f"`pulumi config set --secret {NAMESPACE}:apiKey ...`, or set {NAMESPACE}:publicEndpoint false"
            )))
    return problems


# ---------------------------------------------------------------------------------------------
# Everything at once (the offline preview; the CrossGuard pack calls the same helpers one by one)
# ---------------------------------------------------------------------------------------------


def _verdicts(
    name: PolicyName, level: Level, subject: str | None, failures: list[str], pass_message: str
) -> list[PolicyVerdict]:
    if failures:
        return [PolicyVerdict(name=name, passed=False, level=level, message=m, resource=subject) for m in failures]
    return [PolicyVerdict(name=name, passed=True, level=level, message=pass_message or "ok", resource=subject)]


def evaluate_policies(
    views: list[ResourceView], budget_usd: float | None, settings: PolicySettings
) -> list[PolicyVerdict]:
    """Every policy over a stack's registered resources: one verdict per (policy, subject), passes included."""
    verdicts: list[PolicyVerdict] = []

    def run(name: PolicyName, subject: str | None, check: Any) -> None:
        level = settings.level(name)
        if level == "disabled":
            verdicts.append(PolicyVerdict(name=name, passed=True, level=level, message="disabled by policy config",
                                          resource=subject))
            return
        failures, ok = check()
        verdicts.extend(_verdicts(name, level, subject, failures, ok))

    services = [v for v in views if is_vllm_service(v)]
    for svc in services:
        run("gpu-availability", svc.name, lambda svc=svc: _gpu_availability(svc))
        run("vram-fit", svc.name, lambda svc=svc: _vram_fit(svc))
        run("kv-headroom", svc.name, lambda svc=svc: _kv_headroom(svc, settings.typical_request_tokens))

    budget = settings.monthly_budget_usd or budget_usd or budget_from_views(views)

    def budget_check() -> tuple[list[str], str]:
        if budget is None:
            return [f"no monthly budget is known: set {NAMESPACE}:monthlyBudgetUsd "
                    "(or the budget policy's monthlyBudgetUsd config)"], ""
        return _budget(views, budget, settings.budget_slack_usd)

    run("budget", None, budget_check)

    def security_check() -> tuple[list[str], str]:
        return [], f"{len(views)} resources checked: no world-open internal port, SSH restricted, no plain secret"

    level = settings.level("security")
    found = check_security(views, settings.allowed_cidrs) if level != "disabled" else []
    if found:
        verdicts.extend(PolicyVerdict(name="security", passed=False, level=level, message=m, resource=r)
                        for r, m in found)
    else:
        run("security", None, security_check)
    return verdicts
