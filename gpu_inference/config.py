"""The stack config: ``gpu-inference:<camelCaseKey>`` values of ``Pulumi.<stack>.yaml`` as pydantic models.

Parsed before any resource exists. A bad value yields one message naming the key, the value and what
is allowed; an unknown key is an error with a did-you-mean. The same parser serves the real Pulumi
program (values from the engine, where scalars arrive as strings and secrets as plaintext plus a
list of secret keys) and the offline tools (values read from the YAML file, secrets as ciphertext).
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from gpu_inference import clouds
from gpu_inference.constants import (
    GRAFANA_VERSION,
    PROJECT_DIR,
    PROJECT_NAME,
    SMOKE_TIMEOUT_SECONDS,
    VLLM_IMAGE,
    VLLM_VERSION,
)
from gpu_inference.errors import ConfigError
from gpu_inference.secrets import SecretValue
from gpu_inference.vocabulary import (
    DEFAULT_DTYPE,
    DEFAULT_GPU_MEMORY_UTILIZATION,
    DEFAULT_KV_CACHE_DTYPE,
    Dtype,
    KvCacheDtype,
    Quantization,
)

NAMESPACE = PROJECT_NAME

# Prometheus durations as promtool accepts them in `for:` (e.g. 30s, 2m, 1h). pydantic runs `pattern` with
# Rust's regex crate, whose `$` is the end of the text only (a trailing newline does not match).
_DURATION = r"^[0-9]+(ms|s|m|h|d|w|y)$"

# ---------------------------------------------------------------------------------------------
# Free text that reaches a rendered file (shell, systemd, nginx, YAML) or a cloud API: each kind is checked
# against what its consumer accepts, with re.fullmatch (Python's `$` would also match before a final "\n").
# The renderers quote for their target as well (gpu_inference/render/_common.py): a second line of defence.
# ---------------------------------------------------------------------------------------------

# An image reference per the distribution/reference grammar (github.com/distribution/reference, reference.go):
# [domain[:port]/]path-component(/path-component)*:tag[@digest], whose tag here must be a release (X.Y.Z...),
# never a moving tag; the whole name at most 255 characters (NameTotalLengthMax).
_IMAGE_DOMAIN = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]+)?/)"
_IMAGE_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PINNED_IMAGE = re.compile(
    rf"(?P<name>{_IMAGE_DOMAIN}?{_IMAGE_PATH}(?:/{_IMAGE_PATH})*)"
    r":(?P<tag>v?(?P<version>[0-9]+\.[0-9]+\.[0-9]+[0-9A-Za-z._-]{0,100}))"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)
_IMAGE_NAME_MAX = 255

# RFC 1123 host name labels (letters, digits, inner hyphens, 1-63 characters), at most 253 characters in all.
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_DNS_NAME_MAX = 253
# Hugging Face repo ids as huggingface_hub.utils.validate_repo_id checks them (and the Hub itself): an optional
# namespace and a name of ASCII letters, digits, '-', '_', '.', each starting and ending with a letter, digit or
# '_', the name at most 96 characters, no '--' or '..', not ending in '.git'.
_HF_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?"
_HF_REPO_ID = re.compile(rf"(?:{_HF_PART}/)?(?P<name>{_HF_PART})")
_HF_NAME_MAX = 96
# An absolute path on the node: '/'-separated segments of letters, digits, '.', '_', '-' ('.' and '..' refused).
_NODE_PATH = re.compile(r"(?:/[A-Za-z0-9._-]+)+/?")
_NODE_PATH_MAX = 1024
# What clients put in the API's `model` field: the characters of a repo id plus ':' (e.g. qwen2.5:32b).
_SERVED_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.:/-]{0,126}[A-Za-z0-9_])?")
# Region slugs as the clouds spell them (tor1, nyc3, us-east-1, ap-southeast-2).
_REGION = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?")
# Size slugs and instance types as the clouds spell them (s-1vcpu-2gb, gpu-h100x1-80gb, g6e.xlarge).
_SIZE = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,62}[a-z0-9])?")
# A DOKS cluster id (a UUID from `doctl kubernetes cluster list`) or a name-like id: letters, digits, '-'.
_CLUSTER_ID = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?")
# An SSH key entry, before the cloud's own rule (clouds/*.py config_problems): printable ASCII, no space.
_SSH_KEY = re.compile(r"[\x21-\x7e]{1,255}")


def _dns_name(value: str) -> str:
    """A fully qualified host name for a certificate. Wildcards (`*.example.com`) are refused: the certificate
    comes from Let's Encrypt over HTTP-01, which cannot issue one (wildcards need DNS-01). Upper case is taken
    and lowered (DNS is case-insensitive); Unicode names must be given in their ASCII (xn--) form."""
    name = value.lower()
    allowed = ("a DNS name like api.example.com: at least two RFC 1123 labels of letters, digits and inner '-' "
               f"(1-63 characters each, {_DNS_NAME_MAX} in all), no wildcard, no trailing dot, no IP address")
    labels = name.split(".")
    if (
        len(name) > _DNS_NAME_MAX
        or len(labels) < 2
        or not all(_DNS_LABEL.fullmatch(label) for label in labels)
        or labels[-1].isdigit()  # a top-level domain is never all-numeric (RFC 3696 2): 192.0.2.1 is no name
    ):
        raise ValueError(f"must be {allowed}")
    return name


def _hf_repo_or_path(value: str) -> str:
    if value.startswith("/"):
        segments = value.strip("/").split("/")
        if len(value) <= _NODE_PATH_MAX and _NODE_PATH.fullmatch(value) and not {".", ".."} & set(segments):
            return value
        raise ValueError(
            f"an absolute path on the node must be '/'-separated names of letters, digits, '.', '_' and '-' "
            f"(no '.' or '..' segment, at most {_NODE_PATH_MAX} characters)"
        )
    match = _HF_REPO_ID.fullmatch(value)
    if match and len(match["name"]) <= _HF_NAME_MAX and "--" not in value and ".." not in value \
            and not value.endswith(".git"):
        return value
    raise ValueError(
        "must be a Hugging Face repo id like Qwen/Qwen3-8B (org/name of ASCII letters, digits, '-', '_', '.'; "
        f"no leading or trailing '-' or '.', no '--' or '..', name at most {_HF_NAME_MAX} characters) "
        "or an absolute path on the node"
    )


def _served_name(value: str) -> str:
    if not _SERVED_NAME.fullmatch(value):
        raise ValueError("must be 1-128 ASCII letters, digits, '_', '.', ':', '/', '-' (starting and ending with a "
                         "letter, digit or '_')")
    return value


def _model_ref(value: str) -> str:
    """A catalog model id or a local path to a config.json: any printable single line (the catalog or the file
    system decides the rest; what reaches a machine is the resolved catalog id or modelRepo)."""
    if not value.isprintable() or len(value) > _NODE_PATH_MAX:
        raise ValueError(f"must be one printable line (no newline or control character), at most {_NODE_PATH_MAX} "
                         "characters")
    return value


def _slug(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"must be {what}")
        return value

    return AfterValidator(check)


def _image(value: str) -> str:
    match = _PINNED_IMAGE.fullmatch(value)
    if not match or len(match["name"]) > _IMAGE_NAME_MAX:
        raise ValueError(
            f"must be an image with a pinned release tag like {VLLM_IMAGE} (registry/name:X.Y.Z[@sha256:...]: "
            "lowercase name, no `latest`, no digest-less moving tag)"
        )
    return value


DnsName = Annotated[str, AfterValidator(_dns_name)]
HfRepoOrPath = Annotated[str, AfterValidator(_hf_repo_or_path)]
ServedModelName = Annotated[str, AfterValidator(_served_name)]
ModelRef = Annotated[str, AfterValidator(_model_ref)]
ImageRef = Annotated[str, AfterValidator(_image)]
RegionSlug = Annotated[str, _slug(_REGION, "a region slug like tor1 or us-east-1: lowercase letters, digits and "
                                           "inner '-', at most 32 characters")]
SizeSlug = Annotated[str, _slug(_SIZE, "a size slug or instance type like s-1vcpu-2gb or g6e.xlarge: lowercase "
                                       "letters, digits, '.' and inner '-', at most 64 characters")]
ClusterId = Annotated[str, _slug(_CLUSTER_ID, "a DOKS cluster id (a UUID): letters, digits and inner '-', at most "
                                              "64 characters")]
SshKeyRef = Annotated[str, _slug(_SSH_KEY, "an SSH key id, fingerprint or key pair name: printable ASCII without "
                                           "spaces, at most 255 characters")]


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
        # inf/nan (YAML .inf, "inf", "1e400") would pass every `gt`/`le` bound, e.g. a budget "of $inf".
        allow_inf_nan=False,
    )


class MonitoringConfig(_Model):
    """Prometheus host and alert thresholds; defaults are the seeds' figures."""

    enabled: bool = True
    """Create the Prometheus host that scrapes every node and evaluates the alert rules."""
    size: SizeSlug | None = None
    """Size of the Prometheus host (provider size slug / instance type); default: the catalog's monitoring size."""
    scrape_interval_seconds: int = Field(10, ge=1, le=300)
    """How often Prometheus scrapes vLLM, node_exporter and DCGM exporter."""
    retention: str = Field("15d", pattern=_DURATION)
    """How long Prometheus keeps samples (a Prometheus duration, e.g. 15d)."""
    storage_gb: int = Field(20, ge=10, le=16384)
    """Size in GB (10 to 16384) of the Prometheus host's data volume (a block volume of the cloud), which keeps
    the TSDB when the host is replaced; Prometheus fills at most 80% of it, dropping its oldest data first.
    Only grow it (neither cloud shrinks a volume: the update is refused); the host is then rebuilt and grows
    the filesystem at first boot."""
    queue_depth_threshold: int = Field(20, ge=1)
    """Alert when `vllm:num_requests_waiting` stays above this many requests."""
    queue_depth_for: str = Field("2m", pattern=_DURATION)
    """How long the queue must stay deep before the alert fires."""
    kv_cache_usage_threshold: float = Field(0.9, gt=0, le=1)
    """Alert when `vllm:kv_cache_usage_perc` (a 0-1 fraction) stays above this."""
    kv_cache_for: str = Field("5m", pattern=_DURATION)
    """How long KV-cache pressure must last before the alert fires."""
    ttft_p95_seconds: float = Field(2.0, gt=0)
    """Alert when p95 time-to-first-token over 5 minutes exceeds this many seconds."""
    ttft_for: str = Field("3m", pattern=_DURATION)
    """How long p95 TTFT must stay high before the alert fires."""
    target_down_for: str = Field("1m", pattern=_DURATION)
    """How long a scrape target may be down before the alert fires."""
    gpu_memory_usage_threshold: float = Field(0.98, gt=0, le=1)
    """Alert when framebuffer used / total on a GPU exceeds this fraction (vLLM preallocates ~util)."""
    gpu_temperature_celsius: float = Field(85.0, gt=0, le=120)
    """Alert when a GPU runs hotter than this."""
    disk_free_ratio: float = Field(0.10, gt=0, lt=1)
    """Alert when the model-cache filesystem has less than this fraction free."""
    grafana: bool = True
    """Install Grafana on the monitoring host (machine clouds) with the stack's dashboards and Prometheus as its
    data source, for allowedCidrs only: at https://<tlsDomain>/grafana/ through the load balancer when the stack has a
    domain, else on port 3000; on Kubernetes the dashboards become ConfigMaps for
    the cluster's own Grafana instead."""
    grafana_version: str = Field(GRAFANA_VERSION, pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$")
    """Grafana OSS release installed from Grafana's apt repository (apt.grafana.com), pinned (X.Y.Z)."""


# loadBalancer.acme* / dnsZone (pydantic's Rust regex: `$` is the end of the text, never before a newline).
# certbot's default directory (`certbot --help all`, --server).
LETS_ENCRYPT_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory"
# The email's first character is no '-': certbot would read `-m -x@...` as a flag.
_ACME_EMAIL = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+$"
_ACME_SERVER = r"^https://[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?(/[A-Za-z0-9._~-]+)*/?$"
# A domain (DNS name) or a hosted zone id, whichever the cloud's DNS uses: each cloud checks (config_problems).
_DNS_ZONE = r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$"


class LoadBalancerConfig(_Model):
    """The Nginx host in front of the GPU nodes."""

    size: SizeSlug | None = None
    """Size of the Nginx host (provider size slug / instance type); default: the catalog's load-balancer size."""
    read_timeout_seconds: int = Field(600, ge=30, le=3600)
    """Upstream read timeout; long generations stream for minutes."""
    client_max_body_size_mb: int = Field(8, ge=1, le=1024)
    """Largest request body Nginx accepts (long prompts are text: a few MB is plenty)."""
    max_fails: int = Field(2, ge=1, le=100)
    """Failed attempts within fail_timeout that take a node out of rotation (passive health)."""
    fail_timeout_seconds: int = Field(10, ge=1, le=600)
    """Window for max_fails and how long a failed node stays out of rotation."""
    proxy_next_upstream_tries: int = Field(2, ge=1, le=10)
    """At most this many nodes are tried for one request before an error is returned."""
    tls_domain: DnsName | None = None
    """Domain name the load balancer serves HTTPS for, with a Let's Encrypt certificate it obtains and renews
    itself (certbot, HTTP-01 on port 80; a self-signed placeholder until then); none: plain HTTP."""
    # --- TLS certificate and DNS record (issue 11); one block, every value reaches a shell script or a
    # provider argument, so each has a pattern of what its consumer accepts.
    acme_email: str | None = Field(None, pattern=_ACME_EMAIL)
    """Email the ACME server (Let's Encrypt) sends expiry and problem notices to; none: certbot registers
    without one (--register-unsafely-without-email)."""
    acme_server: str = Field(LETS_ENCRYPT_DIRECTORY, pattern=_ACME_SERVER)
    """ACME directory URL certbot gets the certificate from: Let's Encrypt production by default; its staging
    directory (or a test CA) for trials."""
    dns_zone: str | None = Field(None, pattern=_DNS_ZONE)
    """Zone of the stack's own cloud's DNS to create the tlsDomain A record in, pointing at the load balancer's
    static address: the domain (example.com) where the cloud's DNS is organised by domain, the hosted zone id
    (Z0123...) on AWS Route 53; none: point the name at lbPublicIp yourself."""


class KubernetesConfig(_Model):
    """Where the GPU pool goes when provider is kubernetes (an existing managed Kubernetes cluster)."""

    cluster_id: ClusterId = Field(min_length=1)
    """ID of the existing DOKS cluster that gets the GPU node pool."""
    namespace: str = Field(PROJECT_NAME, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    """Namespace for the vLLM Deployment, Service and monitoring objects."""
    keda_installed: bool = False
    """The cluster already runs KEDA (its CRDs and operator): with autoscaling, the program then creates only
    the ScaledObject instead of installing KEDA's Helm chart into the `keda` namespace. KEDA is cluster-wide:
    of several autoscaled stacks on one cluster, all but the one that installs it set this."""


class AutoscalingConfig(_Model):
    """Replicas and GPU nodes that follow the load (provider kubernetes only): KEDA scales the vLLM StatefulSet
    on vLLM's own metrics, the DOKS node-pool autoscaler adds a GPU node for a pending pod and removes an idle one."""

    min_nodes: int = Field(ge=1, le=64)
    """Fewest GPU nodes (vLLM replicas) ever running; at least 1, so the endpoint never waits for a cold start."""
    max_nodes: int = Field(ge=1, le=64)
    """Most GPU nodes (vLLM replicas); the budget policy prices the stack at this many."""
    target_queue_depth: int = Field(8, ge=1, le=4096)
    """Requests waiting (`vllm:num_requests_waiting`) per replica above which KEDA adds replicas."""
    target_kv_cache_usage: float = Field(0.75, gt=0, le=1, allow_inf_nan=False)
    """KV-cache usage (`vllm:kv_cache_usage_perc`, a 0-1 fraction) per replica above which KEDA adds replicas."""
    scale_down_delay_seconds: int = Field(900, ge=300, le=3600)
    """How long the load must stay low before a replica is removed (the HPA's scale-down stabilization window):
    at least 300 s, longer than a model load, so a replica that just came up is not removed while it warms up;
    at most 3600 s, the Kubernetes limit."""


class StackConfig(_Model):
    """Everything a stack needs, validated before any resource exists."""

    provider: str
    """Where the GPUs are rented: a cloud registered in `gpu_inference/clouds`."""
    region: RegionSlug = Field(min_length=2)
    """The cloud's region slug (e.g. tor1, us-east-1); the catalog lists where each offering is sold."""
    gpu: SizeSlug = Field(min_length=1)
    """Catalog offering id: the cloud's size slug or instance type (e.g. gpu-l40sx1-48gb, g6e.xlarge)."""
    node_count: int = Field(1, ge=1, le=64)
    """How many GPU nodes serve the model behind the load balancer."""
    model: ModelRef = Field(min_length=1)
    """Catalog model id (Qwen/Qwen3-8B) or a path to a Hugging Face config.json of a fine-tune."""
    model_repo: HfRepoOrPath | None = Field(None, min_length=1)
    """Hugging Face repo id (or a path on the node) vLLM loads the weights from; default: the model id.
    Required when `model` is a config.json path (a fine-tune)."""
    model_gated: bool | None = None
    """Whether the repo vLLM downloads is gated on Hugging Face (a license to accept: `hfToken` required);
    default: the model catalog's record for a catalog model served from its own repo, false for any other repo."""
    served_model_name: ServedModelName | None = None
    """Name clients use in the OpenAI API `model` field; default: the model id."""
    dtype: Dtype = DEFAULT_DTYPE
    """Weights/activation dtype passed to vLLM --dtype."""
    quantization: Quantization | None = None
    """Weight quantization (vLLM --quantization); omitted: the checkpoint's own; `none`: unquantized."""
    max_model_len: int = Field(8192, ge=16, le=10_485_760)
    """Longest request (prompt + output) in tokens, vLLM --max-model-len."""
    max_num_seqs: int = Field(256, ge=1, le=4096)
    """Most requests one vLLM instance runs at once, vLLM --max-num-seqs."""
    gpu_memory_utilization: float = Field(DEFAULT_GPU_MEMORY_UTILIZATION, gt=0, le=1)
    """Fraction of each GPU's memory vLLM may use (weights, activations, KV cache), vLLM --gpu-memory-utilization."""
    tensor_parallel_size: int | None = Field(None, ge=1, le=16)
    """GPUs one model replica is split across, vLLM --tensor-parallel-size; default: every GPU on the node."""
    kv_cache_dtype: KvCacheDtype = DEFAULT_KV_CACHE_DTYPE
    """KV-cache element type, vLLM --kv-cache-dtype; fp8 halves the bytes per token."""
    vllm_image: ImageRef | None = None
    """The vLLM image, with a pinned release tag (never `latest`); default: vLLM's image for the GPU's vendor at
    the release the sizing is calibrated for (vllm/vllm-openai, or vllm/vllm-openai-rocm on AMD GPUs)."""
    typical_request_tokens: int = Field(2048, ge=1)
    """Prompt + output tokens of a typical request; the kv-headroom policy checks max_num_seqs of these fit."""
    monthly_budget_usd: float = Field(gt=0)
    """Most the stack may cost per month (730 h) in US dollars; the budget policy refuses more."""
    allowed_cidrs: list[str] = Field(default_factory=list)
    """Networks allowed to SSH to the machines and to reach the public endpoint; empty: SSH closed."""
    public_endpoint: bool = True
    """Whether the load balancer's API port is open to the internet (else only to allowed_cidrs)."""
    api_key: SecretValue | None = None
    """API key clients must send (Bearer); set with `pulumi config set --secret`."""
    hf_token: SecretValue | None = None
    """Hugging Face token for gated models; set with `pulumi config set --secret`."""
    grafana_admin_password: SecretValue | None = None
    """Grafana's `admin` password on the monitoring host; set with `pulumi config set --secret`. Unset: the host
    generates one at first boot into a root-only file (/etc/grafana/gpu-inference/admin-password)."""
    ssh_keys: list[SshKeyRef] = Field(default_factory=list)
    """SSH keys for the machines: the cloud's SSH key IDs/fingerprints, or a key pair name (first entry)."""
    spot: bool = False
    """Run GPU nodes on spot capacity where the cloud has a spot tier; cheaper, can be reclaimed."""
    on_demand_nodes: int = Field(0, ge=0, le=63)
    """With spot: the first this many GPU nodes run on demand and the rest on spot, so a spot reclaim never
    takes the whole endpoint down (must be below nodeCount: all on demand is `spot: false`)."""
    autoscaling: AutoscalingConfig | None = None
    """Scale GPU nodes between minNodes and maxNodes on queue depth and KV-cache usage (provider kubernetes only;
    replaces nodeCount, which is refused beside it: the autoscaler owns the count)."""
    disk_gb: int | None = Field(None, ge=20, le=16384)
    """Root/model-cache disk per GPU node in GB; default: sized from the weights."""
    tags: list[str] = Field(default_factory=list)
    """Extra tags on every resource that takes them."""
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    """Prometheus host and alert thresholds."""
    load_balancer: LoadBalancerConfig = Field(default_factory=LoadBalancerConfig)
    """The Nginx load balancer host."""
    kubernetes: KubernetesConfig | None = None
    """Cluster settings, required when provider is kubernetes."""
    # Post-deploy verification (issue 14): the program's pulumi-command step runs `python -m gpu_inference smoke`.
    smoke_test: bool = True
    """After the load balancer and every node exist, `pulumi up` runs `python -m gpu_inference smoke` on the endpoint
    and fails when it does not serve the model."""
    smoke_timeout_seconds: float = Field(SMOKE_TIMEOUT_SECONDS, ge=60, le=21600, allow_inf_nan=False)
    """How long (seconds, 60 to 21600) that check waits for the endpoint to serve; the default covers a 70B download."""

    @field_validator("allowed_cidrs")
    @classmethod
    def _cidrs_are_networks(cls, cidrs: list[str]) -> list[str]:
        for cidr in cidrs:
            try:
                ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                raise ValueError(f"{cidr!r} is not a network in CIDR form like 203.0.113.0/24 ({exc})") from None
        return cidrs

    @field_validator("tags")
    @classmethod
    def _tags_are_simple(cls, tags: list[str]) -> list[str]:
        for tag in tags:
            if not re.fullmatch(r"[A-Za-z0-9_:-]{1,255}", tag):
                raise ValueError(f"tag {tag!r} may hold only letters, digits, '_', ':' and '-' (the strictest cloud's rule)")
        return tags

    @field_validator("provider")
    @classmethod
    def _provider_is_a_cloud(cls, provider: str) -> str:
        if provider not in clouds.CLOUDS:
            # The same error (and message) a Literal field gives: the registry is the list of choices.
            raise PydanticCustomError(
                "literal_error", "Input should be {expected}",
                {"expected": " or ".join(repr(name) for name in clouds.names())},
            )
        return provider

    @model_validator(mode="before")
    @classmethod
    def _autoscaling_owns_the_count(cls, data: Any) -> Any:
        # One key, one meaning: with autoscaling the autoscaler owns the count (KEDA sets the StatefulSet's
        # replicas, DOKS the pool's nodes), so a nodeCount beside it would either fight them on every
        # `pulumi up` or be silently ignored after the first. It is refused; nodeCount becomes minNodes.
        if not isinstance(data, Mapping) or not isinstance(data.get("autoscaling"), Mapping):
            return data
        given = [k for k in ("nodeCount", "node_count") if k in data]
        if given:
            raise ValueError(
                f"{NAMESPACE}:nodeCount = {_fmt_value(data[given[0]])} is not allowed beside {NAMESPACE}:autoscaling: "
                "remove nodeCount (autoscaling.minNodes and maxNodes set the count)"
            )
        floor = data["autoscaling"].get("minNodes", data["autoscaling"].get("min_nodes"))
        # Numbers from another language's SDK arrive as floats (2.0); a bad floor is reported on minNodes alone.
        if isinstance(floor, int | float) and not isinstance(floor, bool) and float(floor).is_integer() and 1 <= floor <= 64:
            data = {**data, "nodeCount": int(floor)}
        return data

    @model_validator(mode="after")
    def _fields_agree(self) -> StackConfig:
        cloud = clouds.cloud_for(self.provider)
        if self.autoscaling is not None and cloud.layout != "kubernetes":
            scalers = ", ".join(name for name, c in clouds.CLOUDS.items() if c.layout == "kubernetes")
            raise ValueError(
                f"{NAMESPACE}:autoscaling is not supported with provider {self.provider} (fixed machines): "
                f"use provider {scalers}, or remove autoscaling and set nodeCount"
            )
        scaling = self.autoscaling
        if scaling is not None and scaling.min_nodes > scaling.max_nodes:
            raise ValueError(
                f"{NAMESPACE}:autoscaling.minNodes = {scaling.min_nodes} is above {NAMESPACE}:autoscaling.maxNodes = "
                f"{scaling.max_nodes}: minNodes must be at most maxNodes"
            )
        if self.on_demand_nodes and not self.spot:
            raise ValueError(
                f"{NAMESPACE}:onDemandNodes = {self.on_demand_nodes} needs {NAMESPACE}:spot = true "
                "(without spot every node is on demand already): set spot: true or remove onDemandNodes"
            )
        if self.on_demand_nodes and self.on_demand_nodes >= self.node_count:
            raise ValueError(
                f"{NAMESPACE}:onDemandNodes = {self.on_demand_nodes} is not below {NAMESPACE}:nodeCount = "
                f"{self.node_count}: allowed 0 to {self.node_count - 1} (all nodes on demand is spot: false)"
            )
        for problem in cloud.config_problems(self):
            raise ValueError(problem)
        if self.kubernetes is not None and cloud.layout != "kubernetes":
            raise ValueError(
                f"{NAMESPACE}:kubernetes is set but provider is {self.provider}: it only applies with provider "
                "kubernetes (remove the block, or set provider: kubernetes)"
            )
        if self.model.endswith(".json") and not self.model_repo:
            raise ValueError(
                f"{NAMESPACE}:modelRepo is required when {NAMESPACE}:model is a config.json path "
                f"({self.model!r}): set it to the Hugging Face repo id of the fine-tune's weights"
            )
        if self.spot and not cloud.supports_spot:
            spot_clouds = ", ".join(name for name, c in clouds.CLOUDS.items() if c.supports_spot)
            raise ValueError(
                f"{NAMESPACE}:spot = true is not allowed with provider {self.provider}: "
                f"only {spot_clouds} has a spot tier for GPUs (set spot: false)"
            )
        return self

    def node_is_spot(self, index: int) -> bool:
        """GPU node ``index`` runs on spot: spot is on and the node is past the on-demand floor."""
        return self.spot and index >= self.on_demand_nodes

    @property
    def max_node_count(self) -> int:
        """Most GPU nodes the stack can run: autoscaling.maxNodes, else nodeCount."""
        return self.autoscaling.max_nodes if self.autoscaling is not None else self.node_count

    @property
    def vllm_version(self) -> str:
        if self.vllm_image is None:
            return VLLM_VERSION
        match = _PINNED_IMAGE.fullmatch(self.vllm_image)
        assert match is not None  # validated above
        return match.group("version")

    @property
    def name_for_clients(self) -> str:
        return self.served_model_name or self.model_repo or self.model

    def describe(self) -> str:
        """One readable line, for logs and previews."""
        quant = self.quantization or "checkpoint"
        count = (f"{self.autoscaling.min_nodes}-{self.autoscaling.max_nodes} (autoscaling)"
                 if self.autoscaling is not None else str(self.node_count))
        if self.spot and self.on_demand_nodes:
            count += f" ({self.on_demand_nodes} on demand, {self.node_count - self.on_demand_nodes} spot)"
        return (
            f"{count} × {self.gpu} on {self.provider}/{self.region} serving {self.model} "
            f"({self.dtype}, quant={quant}, kv={self.kv_cache_dtype}, max_model_len={self.max_model_len}, "
            f"util={self.gpu_memory_utilization}), budget ${self.monthly_budget_usd:,.0f}/month"
        )


# ---------------------------------------------------------------------------------------------
# Parsing raw config (from a stack file or the Pulumi engine) into StackConfig with good messages
# ---------------------------------------------------------------------------------------------

SECRET_FIELDS = ("apiKey", "hfToken")


def field_docs(model: type[BaseModel] = StackConfig) -> dict[str, str]:
    """camelCase key → its docstring; drives CLI help and the README table, and a test checks none is missing."""
    return {to_camel(name): (info.description or "") for name, info in model.model_fields.items()}


def _allowed_text(model: type[BaseModel], field_name: str) -> str:
    info = model.model_fields.get(field_name)
    if info is None:
        return ""
    parts: list[str] = []
    for meta in info.metadata:
        for attr, sym in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤")):
            val = getattr(meta, attr, None)
            if val is not None:
                parts.append(f"{sym} {val}")
        pattern = getattr(meta, "pattern", None)
        if pattern:
            parts.append(f"matching {pattern}")
    return ", ".join(parts)


def _nested_model(model: type[BaseModel], name: str) -> type[BaseModel] | None:
    info = model.model_fields.get(name)
    if info is None:
        return None
    ann = info.annotation
    for candidate in (ann, *getattr(ann, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _key_for(loc: tuple[Any, ...]) -> tuple[str, type[BaseModel] | None, str | None]:
    """Dotted camelCase key for an error location, plus the model and field that own it."""
    model: type[BaseModel] | None = StackConfig
    names: list[str] = []
    owner: type[BaseModel] | None = None
    field: str | None = None
    for part in loc:
        if isinstance(part, int):
            names[-1] = f"{names[-1]}[{part}]"
            continue
        snake = _snake(str(part))
        names.append(to_camel(snake))
        owner, field = model, snake
        model = _nested_model(model, snake) if model is not None else None
    return ".".join(names), owner, field


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _fmt_value(value: Any) -> str:
    if isinstance(value, SecretValue) or (isinstance(value, dict) and "secure" in value):
        return "[secret]"
    # default=repr: YAML also yields bytes (!!binary) and dates (2026-01-01), which JSON cannot show.
    text = json.dumps(value, default=repr) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _message_for(err: Mapping[str, Any], raw: Mapping[str, Any]) -> str:
    loc = tuple(err.get("loc", ()))
    etype = err.get("type", "")
    if not loc:  # model-level (cross-field) error
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        return msg
    key, owner, field = _key_for(loc)
    full_key = f"{NAMESPACE}:{key}"
    if etype == "extra_forbidden":
        known = [to_camel(n) for n in (owner or StackConfig).model_fields] if owner else list(field_docs())
        parent = _key_for(loc[:-1])[0] if len(loc) > 1 else ""
        if len(loc) > 1 and owner is not None:
            nested = _nested_model(owner, field or "")
            known = [to_camel(n) for n in nested.model_fields] if nested else known
        last = str(loc[-1])
        close = difflib.get_close_matches(last, known, n=3, cutoff=0.6)
        prefix = f"{NAMESPACE}:{parent}." if parent else f"{NAMESPACE}:"
        hint = f"; did you mean {', '.join(prefix + c for c in close)}?" if close else ""
        return f"{full_key} is not a known key{hint} (known keys: {', '.join(sorted(known))})"
    if etype == "missing":
        doc = (owner.model_fields[field].description if owner and field in owner.model_fields else "") or ""
        return f"{full_key} is required: {doc}".rstrip(": ")
    value = err.get("input")
    if key in SECRET_FIELDS:  # never echo a secret, not even a malformed one
        value = SecretValue(ciphertext="")
    msg = str(err.get("msg", "")).removeprefix("Value error, ")
    allowed = _allowed_text(owner, field) if owner and field else ""
    expected = (err.get("ctx") or {}).get("expected")
    if etype == "literal_error" and expected:
        choices = re.findall(r"'([^']*)'", str(expected))
        close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
        hint = f" — did you mean {close[0]!r}?" if close else ""
        return f"{full_key} = {_fmt_value(value)} is not allowed: choose one of {', '.join(choices)}{hint}"
    if allowed and etype in {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "string_pattern_mismatch"}:
        return f"{full_key} = {_fmt_value(value)} is out of range: allowed {allowed}"
    if etype == "string_too_short":
        return f"{full_key} must not be empty"
    return f"{full_key} = {_fmt_value(value)} is invalid: {msg}" + (f" (allowed {allowed})" if allowed else "")


def _decode_engine_value(value: Any) -> Any:
    """The engine passes structured config as JSON text; the YAML file passes native values."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def parse_stack_config(
    raw: Mapping[str, Any],
    secret_keys: set[str] | None = None,
    source: str | None = None,
) -> StackConfig:
    """Validate ``{camelKey: value}`` (namespace already stripped) into a StackConfig or raise ConfigError.

    ``secret_keys`` lists the camelCase keys Pulumi marked secret; a secret field given as plain
    text outside that set is refused, so an API key never sits readable in a stack file.
    """
    data = {k: _decode_engine_value(v) for k, v in raw.items()}
    problems: list[str] = []
    for key in SECRET_FIELDS:
        value = data.get(key)
        if isinstance(value, str) and secret_keys is not None and key not in secret_keys:
            problems.append(
                f"{NAMESPACE}:{key} is stored in plain text: set it with "
                f"`pulumi config set --secret {NAMESPACE}:{key} ...` so it is encrypted"
            )
    try:
        cfg = StackConfig.model_validate(data)
    except ValidationError as exc:
        problems.extend(_message_for(err, data) for err in exc.errors(include_url=False))
    if problems:
        raise ConfigError(problems, source=source)
    return cfg


def split_namespaced(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``{"gpu-inference:nodeCount": 1, "other:key": ...}`` → (ours without prefix, everyone else's)."""
    ours: dict[str, Any] = {}
    others: dict[str, Any] = {}
    for key, value in config.items():
        namespace, sep, name = str(key).partition(":")
        if sep and namespace == NAMESPACE:
            ours[name] = value
        else:
            others[key] = value
    return ours, others


def stack_file_path(stack: str | Path, project_dir: Path = PROJECT_DIR) -> Path:
    """A stack name (`dev`) → `Pulumi.dev.yaml` in the project; a path is taken as it is."""
    text = str(stack)
    if text.endswith((".yaml", ".yml")) or "/" in text:
        return Path(text)
    return project_dir / f"Pulumi.{text}.yaml"


class _StackFileLoader(yaml.SafeLoader):
    """safe_load that refuses what a stack file never needs and a careless or hostile one might hold: a key
    given twice in one mapping (PyYAML keeps the last silently) and aliases (``*ref``: a "billion laughs"
    document expands a few lines into gigabytes). Refused while composing, before anything is expanded."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.constructor.ConstructorError(
                None, None, f"aliases (*{event.anchor}) are not allowed in a stack file: write the value out",
                event.start_mark,
            )
        event = self.peek_event()
        tag = getattr(event, "tag", None)
        if tag not in (None, "!"):
            # Explicit tags (!!binary, !!set, !!timestamp on a bad scalar...) are never needed in a stack file, and
            # PyYAML's constructors crash on some misplaced ones instead of reporting them.
            raise yaml.constructor.ConstructorError(
                None, None, f"explicit YAML tags ({tag}) are not allowed in a stack file", event.start_mark,
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            if isinstance(key, list | dict):
                raise yaml.constructor.ConstructorError(None, None, "a key must be a scalar", key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice in one mapping (the first value would be lost)",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error as one line: what is wrong and where (PyYAML's own text spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    context = getattr(exc, "context", None)
    return f"{problem}{where}" + (f" ({context})" if context else "")


# Namespaces a stack file may hold besides ours: Pulumi's own and the providers the program uses (their config,
# e.g. a provider token or aws:region, is legitimate Pulumi config). Anything else is most likely a typo of
# ours, and a misspelt `gpu-inferenc:nodeCount` would otherwise be ignored silently.
OTHER_NAMESPACES = frozenset({"pulumi", "command", *(pkg for cloud in clouds.CLOUDS.values() for pkg in cloud.packages)})


def namespace_problems(keys: list[str]) -> list[str]:
    """A message per config key whose namespace is neither ours nor one of OTHER_NAMESPACES."""
    known = sorted({NAMESPACE, *OTHER_NAMESPACES})
    problems = []
    for key in keys:
        namespace, sep, name = str(key).partition(":")
        if not sep:
            problems.append(f"key {key!r} has no namespace; write it as {NAMESPACE}:{key}")
        elif namespace not in known:
            close = difflib.get_close_matches(namespace, known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}:{name}?" if close else ""
            problems.append(f"{key} has an unknown namespace {namespace!r}{hint} (allowed: {', '.join(known)})")
    return problems


def read_stack_file(path: Path) -> dict[str, Any]:
    """The raw ``config:`` mapping of a Pulumi stack file (keys still namespaced)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"stack file {path} does not exist"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{path} is a directory, not a stack file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"cannot read stack file {path}: {exc}"]) from None
    try:
        doc = yaml.load(text, Loader=_StackFileLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path} is not valid YAML: {_yaml_problem(exc)}"]) from None
    except (TypeError, ValueError, AttributeError) as exc:  # a PyYAML constructor tripping over odd input
        raise ConfigError([f"{path} is not valid YAML: {' '.join(str(exc).split())}"]) from None
    if doc is None:  # nothing, or only comments
        raise ConfigError([f"{path} is empty: a stack file needs a `config:` mapping of {NAMESPACE}:<key> values"])
    if not isinstance(doc, dict):
        raise ConfigError([f"{path} must be a mapping with a `config:` section"])
    config = doc.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigError([f"{path}: `config:` must be a mapping of namespaced keys"])
    problems = namespace_problems(list(config))
    if problems:
        raise ConfigError(problems, source=str(path))
    return config


def load_stack_config(stack: str | Path, project_dir: Path = PROJECT_DIR) -> StackConfig:
    """Read and validate a stack file offline (secure values stay opaque ciphertext)."""
    path = stack_file_path(stack, project_dir)
    ours, _ = split_namespaced(read_stack_file(path))
    # In a stack file, secure values are {secure: ...}; anything else is plain text.
    secret_keys = {k for k, v in ours.items() if isinstance(v, dict) and set(v) == {"secure"}}
    return parse_stack_config(ours, secret_keys=secret_keys, source=str(path))
