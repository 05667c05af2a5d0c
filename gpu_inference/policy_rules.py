"""The stack policies as pure functions over a neutral view of registered resources, and their one registry.

``POLICIES`` is the only list of policies. Both consumers build from it, so no rule is written twice:

- the CrossGuard pack (``policies/gpu_inference_policies.py``) turns each registry entry into a
  ``ResourceValidationPolicy`` / ``StackValidationPolicy`` and each engine resource into a :class:`ResourceView`;
- the offline preview (``gpu_inference.preview_runner``) records every registration under mocks and calls
  :func:`evaluate_policies`, which runs the same entries over the same views.

Where the spec comes from: the Pulumi engine sends component resources to analyzers exactly like custom ones
(``Analyze`` with the props the component passed to ``ComponentResource.__init__``, ``AnalyzeStack`` with what
it passed to ``register_outputs``), so the vLLM spec is read from the ``gpu-inference:index:VllmService``
component's props, a :class:`~gpu_inference.service_spec.ServiceSpec`; see ``policies/README.md``.

No Pulumi import: views hold plain JSON-like values.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gpu_inference.catalog import UnknownCatalogEntry, load_catalog
from gpu_inference.clouds import CLOUDS, OpenPort, cloud_for
from gpu_inference.config import NAMESPACE, parse_stack_config
from gpu_inference.constants import (
    AMD_METRICS_EXPORTER_PORT,
    DCGM_EXPORTER_PORT,
    GRAFANA_REGISTRAR_PORT,
    MTAIL_PORT,
    NODE_EXPORTER_PORT,
    PROMETHEUS_PORT,
    VLLM_PORT,
)
from gpu_inference.errors import ConfigError
from gpu_inference.service_spec import ServiceSpec
from gpu_inference.stack import ResolvedStack, resolve_stack

VLLM_SERVICE = "gpu-inference:index:VllmService"

PolicyName = Literal["vram-fit", "kv-headroom", "budget", "security", "gpu-availability", "can-start"]
Level = Literal["mandatory", "advisory", "disabled"]

# Ports that must never face the whole internet: they have no authentication of their own
# (vLLM's API key is enforced by Nginx in front, the exporters and Prometheus have none).
SENSITIVE_PORTS: dict[int, str] = {
    VLLM_PORT: "vLLM API",
    NODE_EXPORTER_PORT: "node_exporter",
    DCGM_EXPORTER_PORT: "DCGM exporter",
    AMD_METRICS_EXPORTER_PORT: "AMD device metrics exporter",
    PROMETHEUS_PORT: "Prometheus",
    MTAIL_PORT: "mtail (Nginx metrics)",
    # Whoever reaches it from a private address repoints the load balancer's /grafana/ (render/grafana_proxy.py).
    GRAFANA_REGISTRAR_PORT: "Grafana registrar",
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
    """Pulumi type token, e.g. ``aws:ec2/instance:Instance``."""
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
    """Enforcement levels, thresholds and the stack-wide facts the checks need.

    The CrossGuard pack fills it from each policy's config and the stack config the engine hands the pack;
    the offline preview from the stack file. Fields left None are then taken from the resources themselves
    (:meth:`with_facts_from`).
    """

    model_config = ConfigDict(extra="forbid")

    levels: dict[PolicyName, Level] = Field(default_factory=dict)
    """Enforcement level per policy (missing: the registry's default)."""
    typical_request_tokens: int | None = Field(None, ge=1)
    """Overrides the service's typicalRequestTokens in the kv-headroom check."""
    monthly_budget_usd: float | None = Field(None, gt=0, allow_inf_nan=False)
    """The stack's budget (policy config, else the stack's monthlyBudgetUsd)."""
    budget_slack_usd: float = Field(0.0, ge=0, allow_inf_nan=False)
    """Overrun tolerated before the budget check fails (USD per month)."""
    allowed_cidrs: list[str] | None = None
    """The only sources SSH may come from (policy config, else the stack's allowedCidrs)."""
    public_endpoint: bool | None = None
    """The stack's publicEndpoint, for a VllmService whose props do not carry it."""
    api_key_set: bool | None = None
    """Whether the stack has an API key (judges a load balancer port open to the world)."""
    https_required: bool = False
    """Refuse an endpoint that takes the API key over plain HTTP (on for prod stacks: ``for_stack``)."""
    tls: bool | None = None
    """Whether the load balancer serves the API over TLS only (then port 80 only redirects and answers ACME)."""

    @classmethod
    def for_stack(cls, stack_name: str | None, **overrides: Any) -> PolicySettings:
        """Defaults for a stack: security is mandatory for ``prod*`` stacks, advisory elsewhere."""
        prod = is_prod_stack(stack_name)
        levels: dict[PolicyName, Level] = {"security": "mandatory"} if prod else {}
        levels.update(overrides.pop("levels", {}) or {})
        overrides.setdefault("https_required", prod)
        return cls(levels=levels, **overrides)

    def level(self, name: PolicyName) -> Level:
        return self.levels.get(name, POLICY_BY_NAME[name].default_level)

    def with_facts_from(self, views: Iterable[ResourceView]) -> PolicySettings:
        """Fill what is still unknown from the resources: the VllmService components carry the stack's
        budget and allowedCidrs."""
        views = list(views)
        update: dict[str, Any] = {}
        if self.monthly_budget_usd is None:
            update["monthly_budget_usd"] = budget_from_views(views)
        if self.allowed_cidrs is None:
            update["allowed_cidrs"] = allowed_cidrs_from_views(views)
        services = [v for v in views if is_vllm_service(v)]
        if self.public_endpoint is None and services and isinstance(services[0].props.get("publicEndpoint"), bool):
            update["public_endpoint"] = services[0].props["publicEndpoint"]
        if self.api_key_set is None and services and isinstance(services[0].props.get("apiKeySet"), bool):
            update["api_key_set"] = services[0].props["apiKeySet"]
        if self.tls is None and services:
            update["tls"] = bool(services[0].props.get("tlsDomain"))
        return self.model_copy(update=update)


def is_prod_stack(stack_name: str | None) -> bool:
    return bool(stack_name) and str(stack_name).lower().startswith("prod")


# ---------------------------------------------------------------------------------------------
# The vLLM spec carried by a VllmService component
# ---------------------------------------------------------------------------------------------


def is_vllm_service(view: ResourceView) -> bool:
    return view.type == VLLM_SERVICE


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
        spec = ServiceSpec.from_props(props)
    except ValidationError as exc:
        return tuple(
            f"{VLLM_SERVICE} {name!r} prop {'.'.join(str(p) for p in err['loc'])!r}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
    try:
        config = parse_stack_config(spec.stack_config(), source=f"VllmService {name!r}")
        return resolve_stack(config, name=name)
    except ConfigError as exc:
        return tuple(exc.messages)


def resolve_service(view: ResourceView) -> ResolvedStack | list[str]:
    """The service's config resolved against the catalog, or the messages saying why it cannot be."""
    result = _resolve_cached(view.name, json.dumps(view.props, sort_keys=True, default=str))
    return list(result) if isinstance(result, tuple) else result


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


Outcome = tuple[list[str], str]
"""(failure messages, the message of a pass): every check returns one."""


def vram_fit(view: ResourceView, settings: PolicySettings) -> Outcome:
    """vram-fit: the service's model, precision, context and TP fit its node's GPUs (sizing core)."""
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
        f" No single change within {rs.offering.cloud}/{rs.config.region} makes it fit: choose a smaller model."
    )
    return [f"{head}does not fit {_gpus_text(rs)}: {need}.{fix_text}"], ""


def kv_headroom(view: ResourceView, settings: PolicySettings) -> Outcome:
    """kv-headroom: the KV cache holds maxNumSeqs requests of typicalRequestTokens."""
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
    typical = settings.typical_request_tokens or rs.config.typical_request_tokens
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


def gpu_availability(view: ResourceView, settings: PolicySettings) -> Outcome:
    """gpu-availability: the service's offering exists, belongs to its provider and is sold in its region."""
    props = view.props
    gpu, provider, region = props.get("gpu"), props.get("provider"), props.get("region")
    if not gpu or not provider or not region:
        return [f"{view.name!r} does not say which offering (gpu), provider and region it uses"], ""
    catalog = load_catalog()
    try:
        offering = catalog.offering(str(gpu))
    except UnknownCatalogEntry as exc:
        return [f"{NAMESPACE}:gpu = {gpu!r} is not a catalog offering ({exc}); see gpu_inference/data/offerings/"], ""
    try:
        wanted = cloud_for(str(provider)).catalog_cloud
    except LookupError as exc:
        return [f"{NAMESPACE}:provider = {provider!r}: {exc}"], ""
    if offering.cloud != wanted:
        choices = ", ".join(o.id for o in catalog.offerings_for(wanted) if str(region) in o.regions)
        return [
            f"{gpu} is a {offering.cloud} offering but the service runs on {provider}; "
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


def can_start(view: ResourceView, settings: PolicySettings) -> Outcome:
    """can-start: vLLM can start on the node as configured: the layout runs the GPU vendor's software, the
    requested quantization is one the checkpoint has (or fp8, applied at load), and a gated repo has a token."""
    rs = resolve_service(view)
    if isinstance(rs, list):
        return [], "not checked: the service cannot be resolved (see vram-fit)"
    from gpu_inference import checkpoint, gpu_vendor  # checkpoint imports the config module this one does

    problems = gpu_vendor.layout_problems(rs)
    problems += checkpoint.start_problems(rs, hf_token_set=view.props.get("hfTokenSet") is True)
    if problems:
        return problems, ""
    vendor = gpu_vendor.vendor_for(rs)
    stored = checkpoint.stored_quantization(rs)
    at_load = checkpoint.quantization_flag(rs)
    weights = f"stored {stored}" if stored != "none" else (f"16-bit, {at_load} at load" if at_load else "16-bit")
    gated, _why = checkpoint.gated(rs)
    return [], (
        f"{checkpoint.repo(rs)} ({weights}{', gated: hfToken set' if gated else ''}) on {vendor.software} "
        f"with {gpu_vendor.vllm_image(rs)}"
    )


def check_can_start(view: ResourceView) -> list[str]:
    return can_start(view, PolicySettings())[0] if is_vllm_service(view) else []


def check_vram_fit(view: ResourceView) -> list[str]:
    return vram_fit(view, PolicySettings())[0] if is_vllm_service(view) else []


def check_kv_headroom(view: ResourceView, typical_request_tokens: int | None = None) -> list[str]:
    settings = PolicySettings(typical_request_tokens=typical_request_tokens)
    return kv_headroom(view, settings)[0] if is_vllm_service(view) else []


def check_gpu_availability(view: ResourceView) -> list[str]:
    return gpu_availability(view, PolicySettings())[0] if is_vllm_service(view) else []


# ---------------------------------------------------------------------------------------------
# budget (whole stack)
# ---------------------------------------------------------------------------------------------


def budget_from_views(views: Iterable[ResourceView]) -> float | None:
    """The monthlyBudgetUsd the VllmService components carry (the smallest, if they differ)."""
    budgets = [float(v.props["monthlyBudgetUsd"]) for v in views
               if is_vllm_service(v) and isinstance(v.props.get("monthlyBudgetUsd"), int | float)]
    # An infinite (or nan) budget is no budget: every bill would pass "of $inf". Config validation refuses
    # one; a component built around it must not pass either.
    budgets = [b for b in budgets if math.isfinite(b) and b > 0]
    return min(budgets) if budgets else None


def budget(views: list[ResourceView], settings: PolicySettings) -> Outcome:
    """budget: the monthly price of every registered resource is within the budget (plus slack); an autoscaling
    node pool counts at maxNodes, the most it can be charged (its line's ``monthly_usd``)."""
    from gpu_inference.pricing import bill_for_resources  # imported late: pricing is heavier than the rules

    budget_usd = settings.monthly_budget_usd or budget_from_views(views)
    if budget_usd is None:
        return [f"no monthly budget is known: set {NAMESPACE}:monthlyBudgetUsd "
                "(or the budget policy's monthlyBudgetUsd config)"], ""
    try:
        bill = bill_for_resources([(v.type, v.name, v.props) for v in views])
    except (LookupError, ValueError) as exc:
        # An unpriceable resource must not count as $0 against a budget.
        return [f"cannot price the stack, so the budget cannot be checked: {exc}"], ""
    total = bill.total_monthly_usd
    lines = sorted(bill.lines, key=lambda line: -line.monthly_usd)
    breakdown = "; ".join(f"{ln.resource_name} ({ln.description}) ${ln.monthly_usd:,.2f}" for ln in lines)
    scaled = total != bill.min_total_monthly_usd
    at_max = f" at maxNodes (${bill.min_total_monthly_usd:,.2f} at minNodes)" if scaled else ""
    if total <= budget_usd + settings.budget_slack_usd:
        return [], f"${total:,.2f}/month{at_max} of the ${budget_usd:,.2f} budget ({breakdown or 'nothing priced'})"
    over = total - budget_usd
    return [
        f"the stack costs ${total:,.2f}/month (730 h){at_max}, ${over:,.2f} over the ${budget_usd:,.2f} budget. "
        f"Breakdown: {breakdown}. Fix: choose a cheaper offering, fewer nodes{', a lower maxNodes' if scaled else ''}, or raise "
        f"{NAMESPACE}:monthlyBudgetUsd to at least {total:,.0f}."
    ], ""


def check_budget(views: list[ResourceView], budget_usd: float, slack_usd: float = 0.0) -> list[str]:
    return budget(views, PolicySettings(monthly_budget_usd=budget_usd, budget_slack_usd=slack_usd))[0]


# ---------------------------------------------------------------------------------------------
# security (per resource)
# ---------------------------------------------------------------------------------------------


# "Open to the world" is judged by how much public address space a port's sources cover together, not by
# `prefixlen == 0`: [0.0.0.0/1, 128.0.0.0/1] (or ::/1 + 8000::/1, or 256 /8s) is the whole internet too.
# Open means more than 1/256 of a family's public space: a /8 of IPv4 (no one organisation holds more; the
# largest legacy assignments are single /8s, so a real office or VPN range never comes close), and the same
# share of IPv6's global unicast space 2000::/3, i.e. a /11 (the RIRs' own allocations from IANA are /12s).
# Public IPv4 is everything outside IANA's special-purpose ranges (RFC 6890: private, loopback, link-local,
# CGN, documentation, multicast, reserved), so allowing 10.0.0.0/8 or a VPC never counts.
_NON_PUBLIC_V4 = tuple(ipaddress.IPv4Network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24",
    "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/3",
))  # fmt: skip
_GLOBAL_V6 = ipaddress.IPv6Network("2000::/3")
WORLD_OPEN_V4_ADDRESSES = 2 ** (32 - 8)
WORLD_OPEN_V6_ADDRESSES = 2 ** (128 - 11)


def _public_addresses(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> int:
    """How many public addresses one network holds (CIDR blocks either nest or are disjoint)."""
    if isinstance(net, ipaddress.IPv6Network):
        if net.subnet_of(_GLOBAL_V6):
            return net.num_addresses
        return _GLOBAL_V6.num_addresses if _GLOBAL_V6.subnet_of(net) else 0
    if any(net.subnet_of(r) for r in _NON_PUBLIC_V4):
        return 0
    return net.num_addresses - sum(r.num_addresses for r in _NON_PUBLIC_V4 if r.subnet_of(net))


def world_sources(sources: Iterable[Any]) -> list[str]:
    """The sources, if together they cover more public address space than WORLD_OPEN_*; else []."""
    nets: dict[int, list[tuple[str, Any]]] = {4: [], 6: []}
    for source in sources:
        try:
            net = ipaddress.ip_network(str(source), strict=False)
        except ValueError:
            continue  # not an address (a tag, a group): never world-open
        nets[net.version].append((str(source), net))
    world: list[str] = []
    for version, limit in ((4, WORLD_OPEN_V4_ADDRESSES), (6, WORLD_OPEN_V6_ADDRESSES)):
        union = ipaddress.collapse_addresses(net for _, net in nets[version])  # disjoint blocks
        if sum(_public_addresses(n) for n in union) > limit:
            world += [text for text, _ in nets[version]]
    return world


def open_ports(view: ResourceView) -> Iterator[OpenPort]:
    """Every inbound rule a resource opens, read by the cloud module that owns its type."""
    for cloud in CLOUDS.values():
        yield from cloud.open_ports(view.type, view.props)


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


def security(view: ResourceView, settings: PolicySettings) -> Outcome:
    """security: no world-open vLLM/exporter/Prometheus port, SSH only from allowedCidrs, an API key when the
    endpoint is public, no credential in a plain (non-secret) input, and (prod) no API key over plain HTTP."""
    allowed = settings.allowed_cidrs
    problems: list[str] = []
    ports = list(open_ports(view))

    @functools.cache
    def world_at(number: int) -> tuple[str, ...]:
        """Sources of every rule of this resource admitting ``number``, when together they are the world."""
        return tuple(world_sources(s for p in ports if p.low <= number <= p.high for s in p.sources))

    reported: set[int] = set()  # a port opened by several rules together is reported once

    def world_once(port: OpenPort, number: int) -> list[str]:
        if number in reported or not port.low <= number <= port.high:
            return []
        world = list(world_at(number))
        if world:
            reported.add(number)
        return world

    # With TLS the API is on 443 alone: a world-open 80 only redirects and answers ACME challenges.
    api_ports = (443,) if settings.tls else PUBLIC_PORTS
    api_reported = False  # several rules opening the API port together: one message
    for port in ports:
        world = sorted({s for p in api_ports if port.low <= p <= port.high for s in world_at(p)})
        if world and not api_reported and settings.public_endpoint is False and settings.api_key_set is False:
            api_reported = True
            # publicEndpoint says private, but the API port faces the world: it is public, so it needs a key.
            problems.append(
                f"{view.name!r} {port.rule} serves a public endpoint without an API key (open to "
                f"{', '.join(world)} although {NAMESPACE}:publicEndpoint is false): set one with "
                f"`pulumi config set --secret {NAMESPACE}:apiKey ...`, or close the port to the world"
            )
        for number, what in SENSITIVE_PORTS.items():
            world = world_once(port, number)
            if world:
                problems.append(
                    f"{view.name!r} {port.rule} opens port {number} ({what}) to {', '.join(world)}: it has no "
                    f"authentication of its own; allow only the load balancer / Prometheus host "
                    f"(sourceDropletIds / securityGroups) or {NAMESPACE}:allowedCidrs"
                )
        if port.low <= SSH_PORT <= port.high and port.sources:
            world = world_once(port, SSH_PORT)
            if world:
                problems.append(
                    f"{view.name!r} {port.rule} opens SSH (22) to {', '.join(world)}: allow only "
                    f"{NAMESPACE}:allowedCidrs ({', '.join(allowed) if allowed else 'empty: SSH closed'})"
                )
            elif allowed is not None and not world_at(SSH_PORT):
                extra = [s for s in port.sources if s not in allowed]
                if extra:
                    problems.append(
                        f"{view.name!r} {port.rule} allows SSH (22) from {', '.join(extra)}, not in "
                        f"{NAMESPACE}:allowedCidrs ({', '.join(allowed) or 'empty'}); remove them"
                    )
    problems.extend(_plain_secrets(view))
    if is_vllm_service(view):
        public = view.props.get("publicEndpoint", settings.public_endpoint)
        if public is not False and view.props.get("apiKeySet") is not True:  # StackConfig's default is public
            problems.append(
                f"{view.name!r} serves a public endpoint without an API key: set one with "
                f"`pulumi config set --secret {NAMESPACE}:apiKey ...`, or set {NAMESPACE}:publicEndpoint false"
            )
        first = view.props.get("nodeIndex") in (None, 0, 0.0)  # one message per stack, not one per node
        if settings.https_required and first and view.props.get("apiKeySet") is True and not view.props.get("tlsDomain"):
            # Every request carries the key in its Authorization header: over plain HTTP anyone on the path
            # reads it, and the key is the only thing between the internet and the GPUs.
            problems.append(
                f"{view.name!r} takes the API key over plain HTTP (http://…/v1): set {NAMESPACE}:loadBalancer.tlsDomain "
                f"to a name pointing at the load balancer (and {NAMESPACE}:loadBalancer.dnsZone to create that record) so "
                "the load balancer serves HTTPS with a Let's Encrypt certificate"
            )
    return problems, "no world-open internal port, SSH restricted, no plain secret"


def check_security(views: list[ResourceView], allowed_cidrs: list[str] | None = None) -> list[tuple[str, str]]:
    """``security`` over a whole stack, the stack-wide facts taken from its resources → (resource name, message)."""
    settings = PolicySettings(allowed_cidrs=allowed_cidrs).with_facts_from(views)
    return [(view.name, message) for view in views for message in security(view, settings)[0]]


# ---------------------------------------------------------------------------------------------
# The registry: what each policy is, for the pack and the offline evaluation alike
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyConfigKey:
    """A key of a policy's CrossGuard config (``--policy-pack-config``) and the setting it fills."""

    setting: str
    """The :class:`PolicySettings` field it sets."""
    schema: dict[str, Any]
    """Its JSON schema (a ``PolicyConfigSchema`` property)."""


@dataclass(frozen=True)
class Policy:
    """One policy: its CrossGuard declaration and the pure check both the pack and the preview run."""

    name: PolicyName
    description: str
    default_level: Level
    kind: Literal["resource", "stack"]
    check: Callable[..., Outcome]
    """Resource policies: ``check(view, settings)``; stack policies: ``check(views, settings)``."""
    applies: Callable[[ResourceView], bool] = lambda view: True
    """Resource policies: which resources it looks at."""
    remediation: str | None = None
    config: dict[str, PolicyConfigKey] = field(default_factory=dict)
    summarize: bool = False
    """Offline: one stack-wide PASS when no resource fails, instead of one verdict per resource."""


# Defaults: refusing money spent on a model that cannot start (vram-fit, can-start), on a GPU the region does not have
# (gpu-availability) or over budget is the product's promise, so those are mandatory. A thin KV cache still
# serves (requests queue), so kv-headroom only advises. Security is advisory for dev stacks (people poke at
# them from laptops) and mandatory for prod (PolicySettings.for_stack).
POLICIES: tuple[Policy, ...] = (
    Policy(
        name="vram-fit",
        description="Every vLLM service fits its node's GPUs (weights, activations, CUDA graphs and KV cache).",
        default_level="mandatory",
        kind="resource",
        check=vram_fit,
        applies=is_vllm_service,
        remediation="Apply the cheapest fix the message names: quantize, lower maxModelLen, a larger GPU, or more GPUs.",
    ),
    Policy(
        name="can-start",
        description=(
            "vLLM can start as configured: the layout runs the GPU vendor's software (CUDA/ROCm), a requested "
            "quantization is one the checkpoint has (or fp8, applied at load), and a gated repo has an hfToken."
        ),
        default_level="mandatory",
        kind="resource",
        check=can_start,
        applies=is_vllm_service,
        remediation="Apply the fix the message names: a pre-quantized modelRepo, quantization fp8, an hfToken.",
    ),
    Policy(
        name="kv-headroom",
        description="The KV cache holds maxNumSeqs requests of typicalRequestTokens.",
        default_level="advisory",
        kind="resource",
        check=kv_headroom,
        applies=is_vllm_service,
        config={"typicalRequestTokens": PolicyConfigKey("typical_request_tokens", {
            "type": "integer", "minimum": 1,
            "description": "Prompt + output tokens of a typical request; default: the service's typicalRequestTokens.",
        })},
    ),
    Policy(
        name="gpu-availability",
        description="The GPU offering exists, belongs to the stack's provider and is sold in the stack's region.",
        default_level="mandatory",
        kind="resource",
        check=gpu_availability,
        applies=is_vllm_service,
    ),
    Policy(
        name="security",
        description=(
            "No vLLM/exporter/Prometheus port open to the world, SSH only from allowedCidrs, an API key on a "
            "public endpoint, no credential in a plain input; in prod stacks, no API key over plain HTTP."
        ),
        default_level="advisory",
        kind="resource",
        check=security,
        summarize=True,
        config={"allowedCidrs": PolicyConfigKey("allowed_cidrs", {
            "type": "array", "items": {"type": "string"},
            "description": "The only networks SSH may come from; default: the stack's gpu-inference:allowedCidrs.",
        })},
    ),
    Policy(
        name="budget",
        description="The stack's monthly cost (730 h, catalog prices) is within its budget.",
        default_level="mandatory",
        kind="stack",
        check=budget,
        config={
            "monthlyBudgetUsd": PolicyConfigKey("monthly_budget_usd", {
                "type": "number", "minimum": 0,
                "description": "Monthly budget in USD; default: the stack's gpu-inference:monthlyBudgetUsd.",
            }),
            "slackUsd": PolicyConfigKey("budget_slack_usd", {
                "type": "number", "minimum": 0,
                "description": "Overrun tolerated before the policy fails, USD per month (default 0).",
            }),
        },
    ),
)
POLICY_BY_NAME: dict[PolicyName, Policy] = {p.name: p for p in POLICIES}
# The order the offline preview reports verdicts in: for each service, whether its GPU is sold there, whether
# the model fits it, whether the KV cache has headroom; then the stack's bill; then its security.
REPORT_ORDER: tuple[PolicyName, ...] = (
    "gpu-availability", "vram-fit", "can-start", "kv-headroom", "budget", "security",
)
POLICY_NAMES: tuple[PolicyName, ...] = tuple(POLICY_BY_NAME)
DEFAULT_LEVELS: dict[PolicyName, Level] = {p.name: p.default_level for p in POLICIES}


def settings_from_policy_config(policy: Policy, config: Mapping[str, Any], base: PolicySettings) -> PolicySettings:
    """``base`` with the values one policy's CrossGuard config sets (absent keys leave ``base`` as it is)."""
    update = {key.setting: config[name] for name, key in policy.config.items() if config.get(name) is not None}
    return base.model_validate({**base.model_dump(), **update}) if update else base


# ---------------------------------------------------------------------------------------------
# Everything at once (the offline preview; the CrossGuard pack runs the same entries one by one)
# ---------------------------------------------------------------------------------------------


def _verdicts(
    name: PolicyName, level: Level, subject: str | None, failures: list[str], pass_message: str
) -> list[PolicyVerdict]:
    if failures:
        return [PolicyVerdict(name=name, passed=False, level=level, message=m, resource=subject) for m in failures]
    return [PolicyVerdict(name=name, passed=True, level=level, message=pass_message or "ok", resource=subject)]


def evaluate_policies(views: list[ResourceView], settings: PolicySettings) -> list[PolicyVerdict]:
    """Every policy of the registry over a stack's registered resources: one verdict per (policy, subject),
    passes included, in ``REPORT_ORDER``: resource by resource (each service's checks together), then the
    stack-wide and summarised ones."""
    settings = settings.with_facts_from(views)
    verdicts: list[PolicyVerdict] = []
    ordered = [POLICY_BY_NAME[name] for name in REPORT_ORDER]
    per_resource = [p for p in ordered if p.kind == "resource" and not p.summarize]
    for view in views:
        for policy in per_resource:
            if policy.applies(view):
                verdicts.extend(_run(policy, view.name, functools.partial(policy.check, view, settings), settings))
    for policy in ordered:
        if policy.kind == "stack":
            verdicts.extend(_run(policy, None, functools.partial(policy.check, views, settings), settings))
        elif policy.summarize:
            verdicts.extend(_run_summarized(policy, views, settings))
    return verdicts


def _run(policy: Policy, subject: str | None, check: Callable[[], Outcome], settings: PolicySettings) -> list[PolicyVerdict]:
    level = settings.level(policy.name)
    if level == "disabled":
        return _verdicts(policy.name, level, subject, [], "disabled by policy config")
    failures, ok = check()
    return _verdicts(policy.name, level, subject, failures, ok)


def _run_summarized(policy: Policy, views: list[ResourceView], settings: PolicySettings) -> list[PolicyVerdict]:
    """A resource policy reported for the whole stack: each failure with its resource, else one PASS."""
    level = settings.level(policy.name)
    if level == "disabled":
        return _verdicts(policy.name, level, None, [], "disabled by policy config")
    outcomes = [(view.name, policy.check(view, settings)) for view in views if policy.applies(view)]
    failures = [(name, message) for name, (failed, _ok) in outcomes for message in failed]
    if failures:
        return [PolicyVerdict(name=policy.name, passed=False, level=level, message=m, resource=r) for r, m in failures]
    ok = outcomes[0][1][1] if outcomes else "ok"
    return _verdicts(policy.name, level, None, [], f"{len(views)} resources checked: {ok}")
