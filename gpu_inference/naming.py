"""Every resource, host and tag name the program gives, in one place.

Two kinds of name: *logical* (Pulumi) names, unique within a stack, and *cloud-side* names, unique within an
account, which therefore carry the stack name. The components name their children with these functions and
the offline preview finds them again by the same functions, so no module spells a name (or the project
name) by hand.
"""

from gpu_inference.constants import PROJECT_NAME

# Logical names of the stack's top-level components (the pool is named after the project: its children's
# names, `gpu-inference-lb`, `gpu-inference-vllm-0`, are what existing stacks hold in state).
POOL = PROJECT_NAME


def monitoring(pool: str) -> str:
    """The MonitoringStack beside a machine pool (``gpu-inference-monitoring``)."""
    return f"{pool}-monitoring"


MONITORING = monitoring(POOL)

# What the Prometheus host's data volume is for: part of its cloud-side name (``volume_cloud_name``).
PROMETHEUS_VOLUME_PURPOSE = "prometheus-data"

# Tag / label keys and values every resource of a stack carries.
PROJECT_TAG = PROJECT_NAME


def vllm_service(pool: str, index: int) -> str:
    """The VllmService of node ``index`` of a pool (``gpu-inference-vllm-0``)."""
    return f"{pool}-vllm-{index}"


def gpu_node(service: str) -> str:
    """The GpuInferenceNode (and its machine) of a VllmService (``gpu-inference-vllm-0-node``)."""
    return f"{service}-node"


def lb_host(pool: str) -> str:
    """The Nginx load-balancer machine of a pool (``gpu-inference-lb``)."""
    return f"{pool}-lb"


def smoke(pool: str) -> str:
    """The post-deploy smoke Command of a pool (``gpu-inference-smoke``)."""
    return f"{pool}-smoke"


def gpu_pool(pool: str) -> str:
    """The Kubernetes layout's GPU node pool (``gpu-inference-gpu``)."""
    return f"{pool}-gpu"


def prometheus_host(monitoring: str) -> str:
    """The Prometheus machine of a MonitoringStack (``gpu-inference-monitoring-prometheus``)."""
    return f"{monitoring}-prometheus"


def data_volume(host: str) -> str:
    """The block volume that keeps a host's data across its replacement (``...-prometheus-data``)."""
    return f"{host}-data"


def firewall(machine: str) -> str:
    """A machine's own firewall / security group (``gpu-inference-lb-fw``)."""
    return f"{machine}-fw"


def attachment(volume: str) -> str:
    """The attachment of a volume to its machine."""
    return f"{volume}-attachment"


def static_ip(machine: str) -> str:
    """The address that outlives a machine (a reserved / elastic IP)."""
    return f"{machine}-ip"


def dns_record(machine: str, kind: str = "a") -> str:
    """The DNS record (A / AAAA) that points the TLS domain at a machine's static address."""
    return f"{machine}-dns-{kind}"


def node_name(index: int) -> str:
    """A GPU node's short name in files, hostnames and scrape labels (``node-0``)."""
    return f"node-{index}"


# ---------------------------------------------------------------------------------------------
# Cloud-side names (per account: they carry the stack)
# ---------------------------------------------------------------------------------------------


def resource_prefix(stack: str) -> str:
    """Prefix of shared cloud-side names (VPC, tags): project and stack, so two stacks never collide."""
    return f"{PROJECT_NAME}-{stack}"


def cloud_name(name: str, stack: str) -> str:
    """Cloud-side name of a resource whose logical name is ``name`` (``gpu-inference-node-0-dev``)."""
    return f"{name}-{stack}"


def volume_cloud_name(stack: str, purpose: str) -> str:
    """Cloud-side name of a stack's block volume (``gpu-inference-dev-prometheus-data``), lowercase: the
    strictest cloud's volume names allow nothing else (and name the volume's device after it)."""
    return f"{resource_prefix(stack)}-{purpose}".lower()


def stack_tag(stack: str) -> str:
    """The tag that finds (and bills) every resource of one stack."""
    return f"stack-{stack}"


def role_tag(role: str) -> str:
    return f"role-{role}"


def label_key(key: str) -> str:
    """A key in the project's tag / label namespace (``gpu-inference:stack``, AWS tag keys)."""
    return f"{PROJECT_NAME}:{key}"


def kubernetes_label_key(key: str) -> str:
    """A Kubernetes label or annotation key in the project's prefix (``gpu-inference/stack``)."""
    return f"{PROJECT_NAME}/{key}"
