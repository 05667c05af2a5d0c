"""The components' plain-data args: the stack config's keys as TypedDicts of ``pulumi.Input`` values.

GENERATED from the config models' fields and docstrings by ``scripts/update_component_args.py``; a test fails
when this file and ``gpu_inference/config.py`` drift apart. Keys are the config keys in snake_case (Pulumi's
schema inference camelCases them back: ``node_count`` is ``nodeCount``, as in the stack file); secrets
(``api_key``, ``hf_token``) are plain ``Input[str]`` here and must be passed as ``pulumi.Output.secret``.
Closed choices are string enums (the schema inference accepts no ``Literal``); a plain string of the same value
works as well from Python. No ``from __future__ import annotations``: the schema inference reads these
annotations as objects.
"""

from collections.abc import Sequence
from enum import StrEnum
from typing import Required, TypedDict

import pulumi

from components.placement import ClusterPlacementArgs, NetworkArgs


class Provider(StrEnum):
    """Choices of `Provider`."""

    DIGITALOCEAN = "digitalocean"
    AWS = "aws"
    KUBERNETES = "kubernetes"


class Dtype(StrEnum):
    """Choices of `Dtype`."""

    AUTO = "auto"
    BFLOAT16 = "bfloat16"
    FLOAT16 = "float16"
    FLOAT32 = "float32"


class Quantization(StrEnum):
    """Choices of `Quantization`."""

    NONE = "none"
    FP8 = "fp8"
    INT8 = "int8"
    INT4 = "int4"
    AWQ = "awq"
    GPTQ = "gptq"
    MXFP4 = "mxfp4"


class KvCacheDtype(StrEnum):
    """Choices of `KvCacheDtype`."""

    AUTO = "auto"
    FP8 = "fp8"


class MonitoringArgs(TypedDict, total=False):
    """Prometheus host and alert thresholds; defaults are the seeds' figures."""

    enabled: pulumi.Input[bool]
    """Create the Prometheus host that scrapes every node and evaluates the alert rules."""
    size: pulumi.Input[str]
    """Size of the Prometheus host (provider size slug / instance type); default: the catalog's monitoring size."""
    scrape_interval_seconds: pulumi.Input[int]
    """How often Prometheus scrapes vLLM, node_exporter and DCGM exporter."""
    retention: pulumi.Input[str]
    """How long Prometheus keeps samples (a Prometheus duration, e.g. 15d)."""
    storage_gb: pulumi.Input[int]
    """Size in GB (10 to 16384) of the Prometheus host's data volume (a block volume of the cloud), which keeps the TSDB
    when the host is replaced; Prometheus fills at most 80% of it, dropping its oldest data first. Only grow it (neither
    cloud shrinks a volume: the update is refused); the host is then rebuilt and grows the filesystem at first boot."""
    queue_depth_threshold: pulumi.Input[int]
    """Alert when `vllm:num_requests_waiting` stays above this many requests."""
    queue_depth_for: pulumi.Input[str]
    """How long the queue must stay deep before the alert fires."""
    kv_cache_usage_threshold: pulumi.Input[float]
    """Alert when `vllm:kv_cache_usage_perc` (a 0-1 fraction) stays above this."""
    kv_cache_for: pulumi.Input[str]
    """How long KV-cache pressure must last before the alert fires."""
    ttft_p95_seconds: pulumi.Input[float]
    """Alert when p95 time-to-first-token over 5 minutes exceeds this many seconds."""
    ttft_for: pulumi.Input[str]
    """How long p95 TTFT must stay high before the alert fires."""
    target_down_for: pulumi.Input[str]
    """How long a scrape target may be down before the alert fires."""
    gpu_memory_usage_threshold: pulumi.Input[float]
    """Alert when framebuffer used / total on a GPU exceeds this fraction (vLLM preallocates ~util)."""
    gpu_temperature_celsius: pulumi.Input[float]
    """Alert when a GPU runs hotter than this."""
    disk_free_ratio: pulumi.Input[float]
    """Alert when the model-cache filesystem has less than this fraction free."""
    grafana: pulumi.Input[bool]
    """Install Grafana on the monitoring host (machine clouds) with the stack's dashboards and Prometheus as its data
    source, for allowedCidrs only: at https://<tlsDomain>/grafana/ through the load balancer when the stack has a
    domain, else on port 3000; on Kubernetes the dashboards become ConfigMaps for the cluster's own Grafana instead."""
    grafana_version: pulumi.Input[str]
    """Grafana OSS release installed from Grafana's apt repository (apt.grafana.com), pinned (X.Y.Z)."""


class LoadBalancerArgs(TypedDict, total=False):
    """The Nginx host in front of the GPU nodes."""

    size: pulumi.Input[str]
    """Size of the Nginx host (provider size slug / instance type); default: the catalog's load-balancer size."""
    read_timeout_seconds: pulumi.Input[int]
    """Upstream read timeout; long generations stream for minutes."""
    client_max_body_size_mb: pulumi.Input[int]
    """Largest request body Nginx accepts (long prompts are text: a few MB is plenty)."""
    max_fails: pulumi.Input[int]
    """Failed attempts within fail_timeout that take a node out of rotation (passive health)."""
    fail_timeout_seconds: pulumi.Input[int]
    """Window for max_fails and how long a failed node stays out of rotation."""
    proxy_next_upstream_tries: pulumi.Input[int]
    """At most this many nodes are tried for one request before an error is returned."""
    tls_domain: pulumi.Input[str]
    """Domain name the load balancer serves HTTPS for, with a Let's Encrypt certificate it obtains and renews itself
    (certbot, HTTP-01 on port 80; a self-signed placeholder until then); none: plain HTTP."""
    acme_email: pulumi.Input[str]
    """Email the ACME server (Let's Encrypt) sends expiry and problem notices to; none: certbot registers without one
    (--register-unsafely-without-email)."""
    acme_server: pulumi.Input[str]
    """ACME directory URL certbot gets the certificate from: Let's Encrypt production by default; its staging directory (or
    a test CA) for trials."""
    dns_zone: pulumi.Input[str]
    """Zone of the stack's own cloud's DNS to create the tlsDomain A record in, pointing at the load balancer's static
    address: the domain (example.com) where the cloud's DNS is organised by domain, the hosted zone id (Z0123...) on AWS
    Route 53; none: point the name at lbPublicIp yourself."""


class KubernetesArgs(TypedDict, total=False):
    """Where the GPU pool goes when provider is kubernetes (an existing managed Kubernetes cluster)."""

    cluster_id: Required[pulumi.Input[str]]
    """ID of the existing DOKS cluster that gets the GPU node pool."""
    namespace: pulumi.Input[str]
    """Namespace for the vLLM Deployment, Service and monitoring objects."""
    keda_installed: pulumi.Input[bool]
    """The cluster already runs KEDA (its CRDs and operator): with autoscaling, the program then creates only the
    ScaledObject instead of installing KEDA's Helm chart into the `keda` namespace. KEDA is cluster-wide: of several
    autoscaled stacks on one cluster, all but the one that installs it set this."""


class StackArgs(TypedDict, total=False):
    """Everything a stack needs: the `gpu-inference:*` config keys."""

    provider: Required[pulumi.Input[Provider]]
    """Where the GPUs are rented: a cloud registered in `gpu_inference/clouds`."""
    region: Required[pulumi.Input[str]]
    """The cloud's region slug (e.g. tor1, us-east-1); the catalog lists where each offering is sold."""
    gpu: Required[pulumi.Input[str]]
    """Catalog offering id: the cloud's size slug or instance type (e.g. gpu-l40sx1-48gb, g6e.xlarge)."""
    node_count: pulumi.Input[int]
    """How many GPU nodes serve the model behind the load balancer."""
    model: Required[pulumi.Input[str]]
    """Catalog model id (Qwen/Qwen3-8B) or a path to a Hugging Face config.json of a fine-tune."""
    model_repo: pulumi.Input[str]
    """Hugging Face repo id (or a path on the node) vLLM loads the weights from; default: the model id. Required when
    `model` is a config.json path (a fine-tune)."""
    model_gated: pulumi.Input[bool]
    """Whether the repo vLLM downloads is gated on Hugging Face (a license to accept: `hfToken` required); default: the
    model catalog's record for a catalog model served from its own repo, false for any other repo."""
    served_model_name: pulumi.Input[str]
    """Name clients use in the OpenAI API `model` field; default: the model id."""
    dtype: pulumi.Input[Dtype]
    """Weights/activation dtype passed to vLLM --dtype."""
    quantization: pulumi.Input[Quantization]
    """Weight quantization (vLLM --quantization); omitted: the checkpoint's own; `none`: unquantized."""
    max_model_len: pulumi.Input[int]
    """Longest request (prompt + output) in tokens, vLLM --max-model-len."""
    max_num_seqs: pulumi.Input[int]
    """Most requests one vLLM instance runs at once, vLLM --max-num-seqs."""
    gpu_memory_utilization: pulumi.Input[float]
    """Fraction of each GPU's memory vLLM may use (weights, activations, KV cache), vLLM --gpu-memory-utilization."""
    tensor_parallel_size: pulumi.Input[int]
    """GPUs one model replica is split across, vLLM --tensor-parallel-size; default: every GPU on the node."""
    kv_cache_dtype: pulumi.Input[KvCacheDtype]
    """KV-cache element type, vLLM --kv-cache-dtype; fp8 halves the bytes per token."""
    vllm_image: pulumi.Input[str]
    """The vLLM image, with a pinned release tag (never `latest`); default: vLLM's image for the GPU's vendor at the
    release the sizing is calibrated for (vllm/vllm-openai, or vllm/vllm-openai-rocm on AMD GPUs)."""
    typical_request_tokens: pulumi.Input[int]
    """Prompt + output tokens of a typical request; the kv-headroom policy checks max_num_seqs of these fit."""
    monthly_budget_usd: Required[pulumi.Input[float]]
    """Most the stack may cost per month (730 h) in US dollars; the budget policy refuses more."""
    allowed_cidrs: pulumi.Input[Sequence[pulumi.Input[str]]]
    """Networks allowed to SSH to the machines and to reach the public endpoint; empty: SSH closed."""
    public_endpoint: pulumi.Input[bool]
    """Whether the load balancer's API port is open to the internet (else only to allowed_cidrs)."""
    api_key: pulumi.Input[str]
    """API key clients must send (Bearer); set with `pulumi config set --secret`."""
    hf_token: pulumi.Input[str]
    """Hugging Face token for gated models; set with `pulumi config set --secret`."""
    grafana_admin_password: pulumi.Input[str]
    """Grafana's `admin` password on the monitoring host; set with `pulumi config set --secret`. Unset: the host generates
    one at first boot into a root-only file (/etc/grafana/gpu-inference/admin-password)."""
    ssh_keys: pulumi.Input[Sequence[pulumi.Input[str]]]
    """SSH keys for the machines: the cloud's SSH key IDs/fingerprints, or a key pair name (first entry)."""
    spot: pulumi.Input[bool]
    """Run GPU nodes on spot capacity where the cloud has a spot tier; cheaper, can be reclaimed."""
    on_demand_nodes: pulumi.Input[int]
    """With spot: the first this many GPU nodes run on demand and the rest on spot, so a spot reclaim never takes the whole
    endpoint down (must be below nodeCount: all on demand is `spot: false`)."""
    autoscaling: pulumi.Input[str]
    """Scale GPU nodes between minNodes and maxNodes on queue depth and KV-cache usage (provider kubernetes only; replaces
    nodeCount, which is refused beside it: the autoscaler owns the count)."""
    disk_gb: pulumi.Input[int]
    """Root/model-cache disk per GPU node in GB; default: sized from the weights."""
    tags: pulumi.Input[Sequence[pulumi.Input[str]]]
    """Extra tags on every resource that takes them."""
    monitoring: MonitoringArgs
    """Prometheus host and alert thresholds."""
    load_balancer: LoadBalancerArgs
    """The Nginx load balancer host."""
    kubernetes: KubernetesArgs
    """Cluster settings, required when provider is kubernetes."""
    smoke_test: pulumi.Input[bool]
    """After the load balancer and every node exist, `pulumi up` runs `python -m gpu_inference smoke` on the endpoint and
    fails when it does not serve the model."""
    smoke_timeout_seconds: pulumi.Input[float]
    """How long (seconds, 60 to 21600) that check waits for the endpoint to serve; the default covers a 70B download."""


class GpuInferenceNodeArgs(TypedDict, total=False):
    """The stack's config plus which node this is, its cloud-init and the network it joins."""

    provider: Required[pulumi.Input[Provider]]
    """Where the GPUs are rented: a cloud registered in `gpu_inference/clouds`."""
    region: Required[pulumi.Input[str]]
    """The cloud's region slug (e.g. tor1, us-east-1); the catalog lists where each offering is sold."""
    gpu: Required[pulumi.Input[str]]
    """Catalog offering id: the cloud's size slug or instance type (e.g. gpu-l40sx1-48gb, g6e.xlarge)."""
    node_count: pulumi.Input[int]
    """How many GPU nodes serve the model behind the load balancer."""
    model: Required[pulumi.Input[str]]
    """Catalog model id (Qwen/Qwen3-8B) or a path to a Hugging Face config.json of a fine-tune."""
    model_repo: pulumi.Input[str]
    """Hugging Face repo id (or a path on the node) vLLM loads the weights from; default: the model id. Required when
    `model` is a config.json path (a fine-tune)."""
    model_gated: pulumi.Input[bool]
    """Whether the repo vLLM downloads is gated on Hugging Face (a license to accept: `hfToken` required); default: the
    model catalog's record for a catalog model served from its own repo, false for any other repo."""
    served_model_name: pulumi.Input[str]
    """Name clients use in the OpenAI API `model` field; default: the model id."""
    dtype: pulumi.Input[Dtype]
    """Weights/activation dtype passed to vLLM --dtype."""
    quantization: pulumi.Input[Quantization]
    """Weight quantization (vLLM --quantization); omitted: the checkpoint's own; `none`: unquantized."""
    max_model_len: pulumi.Input[int]
    """Longest request (prompt + output) in tokens, vLLM --max-model-len."""
    max_num_seqs: pulumi.Input[int]
    """Most requests one vLLM instance runs at once, vLLM --max-num-seqs."""
    gpu_memory_utilization: pulumi.Input[float]
    """Fraction of each GPU's memory vLLM may use (weights, activations, KV cache), vLLM --gpu-memory-utilization."""
    tensor_parallel_size: pulumi.Input[int]
    """GPUs one model replica is split across, vLLM --tensor-parallel-size; default: every GPU on the node."""
    kv_cache_dtype: pulumi.Input[KvCacheDtype]
    """KV-cache element type, vLLM --kv-cache-dtype; fp8 halves the bytes per token."""
    vllm_image: pulumi.Input[str]
    """The vLLM image, with a pinned release tag (never `latest`); default: vLLM's image for the GPU's vendor at the
    release the sizing is calibrated for (vllm/vllm-openai, or vllm/vllm-openai-rocm on AMD GPUs)."""
    typical_request_tokens: pulumi.Input[int]
    """Prompt + output tokens of a typical request; the kv-headroom policy checks max_num_seqs of these fit."""
    monthly_budget_usd: Required[pulumi.Input[float]]
    """Most the stack may cost per month (730 h) in US dollars; the budget policy refuses more."""
    allowed_cidrs: pulumi.Input[Sequence[pulumi.Input[str]]]
    """Networks allowed to SSH to the machines and to reach the public endpoint; empty: SSH closed."""
    public_endpoint: pulumi.Input[bool]
    """Whether the load balancer's API port is open to the internet (else only to allowed_cidrs)."""
    api_key: pulumi.Input[str]
    """API key clients must send (Bearer); set with `pulumi config set --secret`."""
    hf_token: pulumi.Input[str]
    """Hugging Face token for gated models; set with `pulumi config set --secret`."""
    grafana_admin_password: pulumi.Input[str]
    """Grafana's `admin` password on the monitoring host; set with `pulumi config set --secret`. Unset: the host generates
    one at first boot into a root-only file (/etc/grafana/gpu-inference/admin-password)."""
    ssh_keys: pulumi.Input[Sequence[pulumi.Input[str]]]
    """SSH keys for the machines: the cloud's SSH key IDs/fingerprints, or a key pair name (first entry)."""
    spot: pulumi.Input[bool]
    """Run GPU nodes on spot capacity where the cloud has a spot tier; cheaper, can be reclaimed."""
    on_demand_nodes: pulumi.Input[int]
    """With spot: the first this many GPU nodes run on demand and the rest on spot, so a spot reclaim never takes the whole
    endpoint down (must be below nodeCount: all on demand is `spot: false`)."""
    autoscaling: pulumi.Input[str]
    """Scale GPU nodes between minNodes and maxNodes on queue depth and KV-cache usage (provider kubernetes only; replaces
    nodeCount, which is refused beside it: the autoscaler owns the count)."""
    disk_gb: pulumi.Input[int]
    """Root/model-cache disk per GPU node in GB; default: sized from the weights."""
    tags: pulumi.Input[Sequence[pulumi.Input[str]]]
    """Extra tags on every resource that takes them."""
    monitoring: MonitoringArgs
    """Prometheus host and alert thresholds."""
    load_balancer: LoadBalancerArgs
    """The Nginx load balancer host."""
    kubernetes: KubernetesArgs
    """Cluster settings, required when provider is kubernetes."""
    smoke_test: pulumi.Input[bool]
    """After the load balancer and every node exist, `pulumi up` runs `python -m gpu_inference smoke` on the endpoint and
    fails when it does not serve the model."""
    smoke_timeout_seconds: pulumi.Input[float]
    """How long (seconds, 60 to 21600) that check waits for the endpoint to serve; the default covers a 70B download."""
    node_index: Required[pulumi.Input[int]]
    """Which node of the pool (0-based): names its hostname and files."""
    user_data: Required[pulumi.Input[str]]
    """The node's cloud-init (a secret: it holds the API key and HF token)."""
    network: Required[NetworkArgs]
    """The private network and role identities to join (from a LoadBalancedPool)."""


class VllmServiceArgs(TypedDict, total=False):
    """The stack's config plus where this service runs: a node of a machine cloud, or a cluster."""

    provider: Required[pulumi.Input[Provider]]
    """Where the GPUs are rented: a cloud registered in `gpu_inference/clouds`."""
    region: Required[pulumi.Input[str]]
    """The cloud's region slug (e.g. tor1, us-east-1); the catalog lists where each offering is sold."""
    gpu: Required[pulumi.Input[str]]
    """Catalog offering id: the cloud's size slug or instance type (e.g. gpu-l40sx1-48gb, g6e.xlarge)."""
    node_count: pulumi.Input[int]
    """How many GPU nodes serve the model behind the load balancer."""
    model: Required[pulumi.Input[str]]
    """Catalog model id (Qwen/Qwen3-8B) or a path to a Hugging Face config.json of a fine-tune."""
    model_repo: pulumi.Input[str]
    """Hugging Face repo id (or a path on the node) vLLM loads the weights from; default: the model id. Required when
    `model` is a config.json path (a fine-tune)."""
    model_gated: pulumi.Input[bool]
    """Whether the repo vLLM downloads is gated on Hugging Face (a license to accept: `hfToken` required); default: the
    model catalog's record for a catalog model served from its own repo, false for any other repo."""
    served_model_name: pulumi.Input[str]
    """Name clients use in the OpenAI API `model` field; default: the model id."""
    dtype: pulumi.Input[Dtype]
    """Weights/activation dtype passed to vLLM --dtype."""
    quantization: pulumi.Input[Quantization]
    """Weight quantization (vLLM --quantization); omitted: the checkpoint's own; `none`: unquantized."""
    max_model_len: pulumi.Input[int]
    """Longest request (prompt + output) in tokens, vLLM --max-model-len."""
    max_num_seqs: pulumi.Input[int]
    """Most requests one vLLM instance runs at once, vLLM --max-num-seqs."""
    gpu_memory_utilization: pulumi.Input[float]
    """Fraction of each GPU's memory vLLM may use (weights, activations, KV cache), vLLM --gpu-memory-utilization."""
    tensor_parallel_size: pulumi.Input[int]
    """GPUs one model replica is split across, vLLM --tensor-parallel-size; default: every GPU on the node."""
    kv_cache_dtype: pulumi.Input[KvCacheDtype]
    """KV-cache element type, vLLM --kv-cache-dtype; fp8 halves the bytes per token."""
    vllm_image: pulumi.Input[str]
    """The vLLM image, with a pinned release tag (never `latest`); default: vLLM's image for the GPU's vendor at the
    release the sizing is calibrated for (vllm/vllm-openai, or vllm/vllm-openai-rocm on AMD GPUs)."""
    typical_request_tokens: pulumi.Input[int]
    """Prompt + output tokens of a typical request; the kv-headroom policy checks max_num_seqs of these fit."""
    monthly_budget_usd: Required[pulumi.Input[float]]
    """Most the stack may cost per month (730 h) in US dollars; the budget policy refuses more."""
    allowed_cidrs: pulumi.Input[Sequence[pulumi.Input[str]]]
    """Networks allowed to SSH to the machines and to reach the public endpoint; empty: SSH closed."""
    public_endpoint: pulumi.Input[bool]
    """Whether the load balancer's API port is open to the internet (else only to allowed_cidrs)."""
    api_key: pulumi.Input[str]
    """API key clients must send (Bearer); set with `pulumi config set --secret`."""
    hf_token: pulumi.Input[str]
    """Hugging Face token for gated models; set with `pulumi config set --secret`."""
    grafana_admin_password: pulumi.Input[str]
    """Grafana's `admin` password on the monitoring host; set with `pulumi config set --secret`. Unset: the host generates
    one at first boot into a root-only file (/etc/grafana/gpu-inference/admin-password)."""
    ssh_keys: pulumi.Input[Sequence[pulumi.Input[str]]]
    """SSH keys for the machines: the cloud's SSH key IDs/fingerprints, or a key pair name (first entry)."""
    spot: pulumi.Input[bool]
    """Run GPU nodes on spot capacity where the cloud has a spot tier; cheaper, can be reclaimed."""
    on_demand_nodes: pulumi.Input[int]
    """With spot: the first this many GPU nodes run on demand and the rest on spot, so a spot reclaim never takes the whole
    endpoint down (must be below nodeCount: all on demand is `spot: false`)."""
    autoscaling: pulumi.Input[str]
    """Scale GPU nodes between minNodes and maxNodes on queue depth and KV-cache usage (provider kubernetes only; replaces
    nodeCount, which is refused beside it: the autoscaler owns the count)."""
    disk_gb: pulumi.Input[int]
    """Root/model-cache disk per GPU node in GB; default: sized from the weights."""
    tags: pulumi.Input[Sequence[pulumi.Input[str]]]
    """Extra tags on every resource that takes them."""
    monitoring: MonitoringArgs
    """Prometheus host and alert thresholds."""
    load_balancer: LoadBalancerArgs
    """The Nginx load balancer host."""
    kubernetes: KubernetesArgs
    """Cluster settings, required when provider is kubernetes."""
    smoke_test: pulumi.Input[bool]
    """After the load balancer and every node exist, `pulumi up` runs `python -m gpu_inference smoke` on the endpoint and
    fails when it does not serve the model."""
    smoke_timeout_seconds: pulumi.Input[float]
    """How long (seconds, 60 to 21600) that check waits for the endpoint to serve; the default covers a 70B download."""
    node_index: pulumi.Input[int]
    """Machine clouds: which node of the pool this service is (0-based)."""
    network: NetworkArgs
    """Machine clouds: the private network and role identities its node joins."""
    cluster: ClusterPlacementArgs
    """Kubernetes: the namespace, node pool and Secret of the pool it belongs to."""


class MonitoringStackArgs(TypedDict, total=False):
    """The stack's config plus what Prometheus scrapes and where it runs."""

    provider: Required[pulumi.Input[Provider]]
    """Where the GPUs are rented: a cloud registered in `gpu_inference/clouds`."""
    region: Required[pulumi.Input[str]]
    """The cloud's region slug (e.g. tor1, us-east-1); the catalog lists where each offering is sold."""
    gpu: Required[pulumi.Input[str]]
    """Catalog offering id: the cloud's size slug or instance type (e.g. gpu-l40sx1-48gb, g6e.xlarge)."""
    node_count: pulumi.Input[int]
    """How many GPU nodes serve the model behind the load balancer."""
    model: Required[pulumi.Input[str]]
    """Catalog model id (Qwen/Qwen3-8B) or a path to a Hugging Face config.json of a fine-tune."""
    model_repo: pulumi.Input[str]
    """Hugging Face repo id (or a path on the node) vLLM loads the weights from; default: the model id. Required when
    `model` is a config.json path (a fine-tune)."""
    model_gated: pulumi.Input[bool]
    """Whether the repo vLLM downloads is gated on Hugging Face (a license to accept: `hfToken` required); default: the
    model catalog's record for a catalog model served from its own repo, false for any other repo."""
    served_model_name: pulumi.Input[str]
    """Name clients use in the OpenAI API `model` field; default: the model id."""
    dtype: pulumi.Input[Dtype]
    """Weights/activation dtype passed to vLLM --dtype."""
    quantization: pulumi.Input[Quantization]
    """Weight quantization (vLLM --quantization); omitted: the checkpoint's own; `none`: unquantized."""
    max_model_len: pulumi.Input[int]
    """Longest request (prompt + output) in tokens, vLLM --max-model-len."""
    max_num_seqs: pulumi.Input[int]
    """Most requests one vLLM instance runs at once, vLLM --max-num-seqs."""
    gpu_memory_utilization: pulumi.Input[float]
    """Fraction of each GPU's memory vLLM may use (weights, activations, KV cache), vLLM --gpu-memory-utilization."""
    tensor_parallel_size: pulumi.Input[int]
    """GPUs one model replica is split across, vLLM --tensor-parallel-size; default: every GPU on the node."""
    kv_cache_dtype: pulumi.Input[KvCacheDtype]
    """KV-cache element type, vLLM --kv-cache-dtype; fp8 halves the bytes per token."""
    vllm_image: pulumi.Input[str]
    """The vLLM image, with a pinned release tag (never `latest`); default: vLLM's image for the GPU's vendor at the
    release the sizing is calibrated for (vllm/vllm-openai, or vllm/vllm-openai-rocm on AMD GPUs)."""
    typical_request_tokens: pulumi.Input[int]
    """Prompt + output tokens of a typical request; the kv-headroom policy checks max_num_seqs of these fit."""
    monthly_budget_usd: Required[pulumi.Input[float]]
    """Most the stack may cost per month (730 h) in US dollars; the budget policy refuses more."""
    allowed_cidrs: pulumi.Input[Sequence[pulumi.Input[str]]]
    """Networks allowed to SSH to the machines and to reach the public endpoint; empty: SSH closed."""
    public_endpoint: pulumi.Input[bool]
    """Whether the load balancer's API port is open to the internet (else only to allowed_cidrs)."""
    api_key: pulumi.Input[str]
    """API key clients must send (Bearer); set with `pulumi config set --secret`."""
    hf_token: pulumi.Input[str]
    """Hugging Face token for gated models; set with `pulumi config set --secret`."""
    grafana_admin_password: pulumi.Input[str]
    """Grafana's `admin` password on the monitoring host; set with `pulumi config set --secret`. Unset: the host generates
    one at first boot into a root-only file (/etc/grafana/gpu-inference/admin-password)."""
    ssh_keys: pulumi.Input[Sequence[pulumi.Input[str]]]
    """SSH keys for the machines: the cloud's SSH key IDs/fingerprints, or a key pair name (first entry)."""
    spot: pulumi.Input[bool]
    """Run GPU nodes on spot capacity where the cloud has a spot tier; cheaper, can be reclaimed."""
    on_demand_nodes: pulumi.Input[int]
    """With spot: the first this many GPU nodes run on demand and the rest on spot, so a spot reclaim never takes the whole
    endpoint down (must be below nodeCount: all on demand is `spot: false`)."""
    autoscaling: pulumi.Input[str]
    """Scale GPU nodes between minNodes and maxNodes on queue depth and KV-cache usage (provider kubernetes only; replaces
    nodeCount, which is refused beside it: the autoscaler owns the count)."""
    disk_gb: pulumi.Input[int]
    """Root/model-cache disk per GPU node in GB; default: sized from the weights."""
    tags: pulumi.Input[Sequence[pulumi.Input[str]]]
    """Extra tags on every resource that takes them."""
    monitoring: MonitoringArgs
    """Prometheus host and alert thresholds."""
    load_balancer: LoadBalancerArgs
    """The Nginx load balancer host."""
    kubernetes: KubernetesArgs
    """Cluster settings, required when provider is kubernetes."""
    smoke_test: pulumi.Input[bool]
    """After the load balancer and every node exist, `pulumi up` runs `python -m gpu_inference smoke` on the endpoint and
    fails when it does not serve the model."""
    smoke_timeout_seconds: pulumi.Input[float]
    """How long (seconds, 60 to 21600) that check waits for the endpoint to serve; the default covers a 70B download."""
    network: NetworkArgs
    """Machine clouds: the private network and role identities the Prometheus host joins."""
    node_private_ips: pulumi.Input[Sequence[pulumi.Input[str]]]
    """Machine clouds: the GPU nodes' private addresses (vLLM, DCGM and node_exporter targets)."""
    lb_private_ip: pulumi.Input[str]
    """Machine clouds: the load balancer's private address (a node_exporter target)."""
    cluster: ClusterPlacementArgs
    """Kubernetes: the namespace of the pool it watches."""
