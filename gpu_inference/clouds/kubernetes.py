"""Kubernetes: a GPU node pool on an existing DigitalOcean Kubernetes (DOKS) cluster, everything else in-cluster.

Everything pure the project knows about its Kubernetes layout; ``components/kubernetes_gpu_pool.py`` creates
the objects, and ``gpu_inference/render/kubernetes.py`` renders the files its pods mount. The pool buys
DigitalOcean sizes (``catalog_cloud``), so the node pool is priced and named by the DigitalOcean module;
the one Kubernetes object with a bill is a ``Service`` of ``spec.type: LoadBalancer``, for which DOKS's
cloud controller creates a regional DigitalOcean load balancer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from gpu_inference import bill, naming
from gpu_inference.clouds import digitalocean
from gpu_inference.clouds.base import Cloud, CloudMocks, FakeAddress, Layout, OpenPort
from gpu_inference.constants import HOURS_PER_MONTH, PROJECT_NAME

if TYPE_CHECKING:
    from gpu_inference.bill import CostLine
    from gpu_inference.catalog import Catalog
    from gpu_inference.config import StackConfig

NAME = "kubernetes"
SERVICE = "kubernetes:core/v1:Service"
PERSISTENT_VOLUME_CLAIM = "kubernetes:core/v1:PersistentVolumeClaim"

# DOKS labels every node with its pool's name, which the vLLM pods select on; GPU nodes carry this taint
# until the NVIDIA driver and device plugin are ready (DOKS GPU worker nodes docs).
POOL_LABEL = "doks.digitalocean.com/node-pool"
GPU_TAINT = "nvidia.com/gpu"
GPU_RESOURCE = "nvidia.com/gpu"
# DigitalOcean's cloud controller reads a LoadBalancer Service's load balancer name and size (in LB nodes,
# 10,000 connections each) from these annotations (digitalocean-cloud-controller-manager docs/controllers/
# services/annotations.md).
LB_NAME_ANNOTATION = "service.beta.kubernetes.io/do-loadbalancer-name"
LB_SIZE_UNIT_ANNOTATION = "service.beta.kubernetes.io/do-loadbalancer-size-unit"
# Kubernetes label values are at most 63 characters; the GPU pool's name becomes one (POOL_LABEL).
LABEL_VALUE_MAX = 63
# The StorageClass DOKS installs with its CSI driver: a claim of it becomes a DigitalOcean block storage volume,
# billed like one (digitalocean/csi-digitalocean README; docs.digitalocean.com/products/kubernetes "volumes").
BLOCK_STORAGE_CLASS = "do-block-storage"

# What a GPU node keeps for itself before the vLLM pod (Kubernetes "Reserve Compute Resources for System
# Daemons": allocatable = capacity - kube-reserved - system-reserved - eviction threshold). DOKS publishes its
# allocatable memory per size but not as a formula this catalog could follow; GKE publishes its tiers (25 % of
# the first 4 GiB, 20 % of the next 4, 10 % of the next 8, 6 % of the next 112, 2 % above 128 GiB, plus a
# 100 MiB eviction threshold: cloud.google.com/kubernetes-engine/docs/concepts/plan-node-sizes), which this
# uses as the reservation, plus room for the DaemonSets DOKS runs on every node (CNI, CSI, its agent, the NVIDIA
# device plugin). Requests above the node's allocatable would leave the pod Pending, so the estimate errs high.
_MEMORY_RESERVE_TIERS_GIB = ((4, 0.25), (4, 0.20), (8, 0.10), (112, 0.06), (float("inf"), 0.02))
EVICTION_RESERVE_GIB = 0.1
DAEMONSET_RESERVE_GIB = 1.0
# CPU: GKE reserves under 0.1 core up to 8 cores (6 % of the first, 1 % of the next, ...); one whole core covers
# that and the DaemonSets with room to spare, and vLLM's own CPU work (tokenizer, scheduler) needs the rest.
SYSTEM_RESERVE_CPUS = 1


def _memory_reserve_gib(memory_gib: float) -> float:
    reserved, left = 0.0, memory_gib
    for size, share in _MEMORY_RESERVE_TIERS_GIB:
        part = min(left, size)
        reserved += part * share
        left -= part
        if left <= 0:
            break
    return reserved + EVICTION_RESERVE_GIB + DAEMONSET_RESERVE_GIB


def vllm_pod_resources(vcpus: int, memory_gib: float) -> dict[str, str]:
    """CPU and memory the vLLM pod requests and is limited to on a GPU node of ``vcpus`` / ``memory_gib``.

    Requests equal limits (with the GPUs, also equal) so the pod is in the Guaranteed QoS class: the last one the
    kubelet evicts under node pressure. Whole cores and whole GiB, rounded down."""
    cpus = max(1, vcpus - SYSTEM_RESERVE_CPUS)
    memory = math.floor(memory_gib - _memory_reserve_gib(memory_gib))
    if memory < 1:
        raise ValueError(f"a node with {memory_gib:g} GiB leaves no memory for the vLLM pod")
    return {"cpu": str(cpus), "memory": f"{memory}Gi"}


def storage_quantity_gib(quantity: Any, what: str) -> float:
    """A Kubernetes storage quantity this program writes (``20Gi``, ``1Ti``) in GiB; anything else raises, so an
    unreadable claim never prices as $0."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(Gi|Ti)", str(quantity))
    if not match:
        raise ValueError(f"{what} must be a quantity in Gi or Ti (e.g. 20Gi), got {quantity!r}")
    return float(match.group(1)) * (1024 if match.group(2) == "Ti" else 1)

# KEDA, the autoscaler of an autoscaling pool: its Helm chart, pinned (kedacore/charts keda/Chart.yaml
# version 2.20.2, appVersion 2.20.2, the latest release as of 2026-08-20), into its own namespace as its
# docs install it (keda.sh/docs/deploy, "Deploying with Helm").
KEDA_CHART = "keda"
KEDA_CHART_REPO = "https://kedacore.github.io/charts"
KEDA_CHART_VERSION = "2.20.2"
KEDA_NAMESPACE = "keda"
SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"
# The Kubernetes minor version the objects are written for and validated against in the tests
# (kubernetes-validate's bundled schemas, strict): a DOKS minor version offered in 2026; the cluster itself is
# the operator's (kubernetes.clusterId), and objects valid for 1.34 stay valid in the releases after it.
KUBERNETES_VERSION = "1.34.0"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"


def gpu_pool_name(stack: str) -> str:
    """Cloud-side name of the stack's GPU node pool (also the POOL_LABEL value of its nodes)."""
    return naming.cloud_name(naming.gpu_pool(naming.POOL), stack)


class Kubernetes(Cloud):
    name: ClassVar[str] = NAME
    summary: ClassVar[str] = "a GPU node pool on an existing DigitalOcean Kubernetes (DOKS) cluster"
    catalog_cloud: ClassVar[str] = digitalocean.NAME
    layout: ClassVar[Layout] = "kubernetes"
    pulumi_module: ClassVar[str] = "components.kubernetes_gpu_pool"
    packages: ClassVar[frozenset[str]] = frozenset({"kubernetes"})

    def config_problems(self, cfg: StackConfig) -> list[str]:
        problems: list[str] = []
        if cfg.kubernetes is None:
            problems.append(
                f"{PROJECT_NAME}:kubernetes is required when provider is kubernetes: set {{clusterId: <DOKS cluster id>}}"
            )
        if cfg.autoscaling is not None and not cfg.monitoring.enabled:
            # KEDA's triggers query the stack's own in-cluster Prometheus.
            problems.append(
                f"{PROJECT_NAME}:autoscaling needs {PROJECT_NAME}:monitoring.enabled = true (KEDA scales on the "
                "in-cluster Prometheus' vLLM metrics): enable monitoring or remove autoscaling"
            )
        if not cfg.public_endpoint and not cfg.allowed_cidrs:
            # An empty loadBalancerSourceRanges is no restriction at all: "If spec.loadBalancerSourceRanges is not
            # set, Kubernetes allows traffic from 0.0.0.0/0" (kubernetes.io, Service, "Traffic policies" /
            # configure-cloud-provider-firewall). A private endpoint with no admitted range would be world-open.
            problems.append(
                f"{PROJECT_NAME}:publicEndpoint = false needs {PROJECT_NAME}:allowedCidrs with provider kubernetes: an "
                "empty loadBalancerSourceRanges admits every address; list the client ranges or set publicEndpoint: true"
            )
        if cfg.load_balancer.tls_domain:
            # The in-cluster Nginx has no certificate to serve: TLS there belongs in front of the cluster.
            problems.append(
                f"{PROJECT_NAME}:loadBalancer.tlsDomain is not supported with provider kubernetes: remove it "
                "(terminate TLS in front of the cluster's LoadBalancer Service instead)"
            )
        if cfg.load_balancer.dns_zone:
            problems.append(
                f"{PROJECT_NAME}:loadBalancer.dnsZone is not supported with provider kubernetes: remove it "
                "(the LoadBalancer Service's address belongs to the cluster; point a name at it in front of it)"
            )
        return problems

    def stack_name_problems(self, stack_name: str, cfg: StackConfig) -> list[str]:
        problems = digitalocean.stack_name_problems(stack_name)
        pool = gpu_pool_name(stack_name)
        if not problems and len(pool) > LABEL_VALUE_MAX:
            longest = LABEL_VALUE_MAX - (len(pool) - len(stack_name))
            problems.append(
                f"stack name {stack_name!r} is {len(stack_name)} characters: the GPU node pool's name "
                f"({gpu_pool_name('<stack>')}) becomes a Kubernetes label value (at most {LABEL_VALUE_MAX}), "
                f"so use at most {longest} {digitalocean.RENAME_HINT}"
            )
        return problems

    def price(self, resource_type: str, name: str, inputs: Mapping[str, Any], catalog: Catalog) -> list[CostLine] | None:
        if resource_type == SERVICE:
            return _load_balancer(catalog, name, inputs)
        if resource_type == PERSISTENT_VOLUME_CLAIM:
            return _volume_claim(catalog, name, inputs)
        if resource_type.split(":", 1)[0] == "kubernetes":
            return []  # cluster objects: the nodes they run on are billed as the node pool
        return None

    def open_ports(self, resource_type: str, props: Mapping[str, Any]) -> Iterator[OpenPort]:
        spec = props.get("spec") or {}
        if resource_type != SERVICE or spec.get("type") != "LoadBalancer":
            return
        # A cloud load balancer with no loadBalancerSourceRanges accepts the whole internet.
        sources = tuple(str(s) for s in spec.get("loadBalancerSourceRanges") or ["0.0.0.0/0"])
        for port in spec.get("ports") or []:
            for number in {port.get("port"), port.get("targetPort")}:
                if isinstance(number, int | float):
                    yield OpenPort(int(number), int(number), sources, f"LoadBalancer port {port.get('port')}")

    def mocks(self, **options: Any) -> CloudMocks:
        return _Mocks()


def _load_balancer(catalog: Catalog, name: str, inputs: Mapping[str, Any]) -> list[CostLine]:
    """A ``type: LoadBalancer`` Service as the DigitalOcean load balancer DOKS creates for it; other types: free."""
    spec = inputs.get("spec") or {}
    if not isinstance(spec, Mapping) or spec.get("type") != "LoadBalancer":
        return []
    metadata = inputs.get("metadata") or {}
    annotations = (metadata.get("annotations") if isinstance(metadata, Mapping) else None) or {}
    units = bill.positive_number(annotations.get(LB_SIZE_UNIT_ANNOTATION, 1), f"{SERVICE} {name!r} {LB_SIZE_UNIT_ANNOTATION}")
    price = catalog.load_balancer_price(digitalocean.NAME, "regional")
    monthly_each = price.monthly_usd(HOURS_PER_MONTH)
    cap = f"; capped at ${price.monthly_cap_usd:.2f}/month per node" if price.monthly_cap_usd is not None else ""
    plural = "" if units == 1 else f"{units:g} x "
    return [bill.line(
        SERVICE, name,
        f"DigitalOcean load balancer for a LoadBalancer Service, {plural}node at ${price.hourly_usd:g}/h{cap}",
        units, "load-balancer node", price.hourly_usd * units, monthly_each * units, price.price_date, price.price_source,
    )]


def _volume_claim(catalog: Catalog, name: str, inputs: Mapping[str, Any]) -> list[CostLine]:
    """A claim of DOKS's block storage class: the DigitalOcean volume the CSI driver creates for it, GiB-months
    at the volume price (DigitalOcean's "GB" are GiB). Another class is not a DigitalOcean volume: refused."""
    spec = inputs.get("spec") or {}
    storage_class = spec.get("storageClassName") if isinstance(spec, Mapping) else None
    if storage_class != BLOCK_STORAGE_CLASS:
        raise ValueError(f"{PERSISTENT_VOLUME_CLAIM} {name!r}: storageClassName {storage_class!r} has no price "
                         f"here (only {BLOCK_STORAGE_CLASS!r})")
    requests = ((spec.get("resources") or {}).get("requests") or {})
    size = storage_quantity_gib(requests.get("storage"), f"{PERSISTENT_VOLUME_CLAIM} {name!r} resources.requests.storage")
    return [bill.storage(catalog, PERSISTENT_VOLUME_CLAIM, name, digitalocean.NAME, "volume", size,
                         f"DigitalOcean volume ({BLOCK_STORAGE_CLASS} claim)")]


class _Mocks(CloudMocks):
    def new_resource(
        self, typ: str, name: str, inputs: Mapping[str, Any], resource_id: str | None, fake: FakeAddress, region: str
    ) -> tuple[str, dict[str, Any]] | None:
        if not typ.startswith("kubernetes:"):
            return None
        state = dict(inputs)
        if typ == SERVICE and (inputs.get("spec") or {}).get("type") == "LoadBalancer":
            state["status"] = {"loadBalancer": {"ingress": [{"ip": fake.public}]}}
        return f"{name}-id", state


CLOUD = Kubernetes()
