"""What the GPU vendor changes on a node, in one place: vLLM's image, the container's GPU flags, the driver check
and container-runtime setup of the first boot, and the metrics exporter with the metric names the alerts read.

The vendor is a catalog fact (``gpus.yaml`` ``vendor``); renderers, sizing and the alert rules ask
:func:`vendor_for` instead of branching on it. The cloud's GPU machine image per vendor stays with the cloud
(``gpu_inference/clouds/<cloud>.py``).

Sources (checked 2026-12-02 through the code index):
- vLLM's ROCm image: vllm-project/vllm docs/getting_started/installation/gpu.rocm.inc.md ("pre-built-images"):
  official images on Docker Hub as ``vllm/vllm-openai-rocm`` since 20 Jan 2026 (AMD's ``rocm/vllm`` is
  deprecated in their favour), run with ``--group-add=video --cap-add=SYS_PTRACE --security-opt
  seccomp=unconfined --device /dev/kfd --device /dev/dri --ipc=host``. Release tags are ``v<version>`` like the
  CUDA image (``vllm/vllm-openai-rocm:v0.19.0`` is pulled by AMD's own InferenceX recipes and other public repos).
- AMD Device Metrics Exporter: ROCm/device-metrics-exporter docs/installation/docker.md (``docker run --device=/dev/dri
  --device=/dev/kfd -p 5000:5000 rocm/device-metrics-exporter:<tag>``, metrics on :5000/metrics, config at
  /etc/metrics/config.json), docs/configuration/metricslist.md (field names), docs/releasenotes.md (v1.5.0, ROCm 7.0,
  MI2xx/MI3xx). Exported names are the field names in lower case behind ``CommonConfig.MetricsFieldPrefix``; the
  exporter's own ConfigMap example sets ``amd_``, and we write the config so the names never depend on a default.
  Labels: ``gpu_id``, ``serial_number``, ``card_model``, ``hostname``, ``gpu_partition_id`` (the exporter's default
  label set).
  Dashboards (render/dashboards.py) read GPU_GFX_ACTIVITY (percent), GPU_USED_VRAM (MB, i.e. MiB as amd-smi
  counts: an MI300X reports 196592 of its 192 GiB) and GPU_POWER_USAGE (W, MI2xx and MI3xx) from the same list.
- amd-smi: ``amd-smi static --asic --vram`` prints each GPU's ASIC and VRAM (ROCm amdsmi CLI; the static
  subcommand with --asic / --vram filters).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gpu_inference.constants import AMD_METRICS_EXPORTER_PORT, DCGM_EXPORTER_PORT, VLLM_VERSION

if TYPE_CHECKING:
    from gpu_inference.catalog import Vendor
    from gpu_inference.stack import ResolvedStack


@dataclass(frozen=True)
class GpuMetrics:
    """The exporter's metrics the GPU alerts read, and a label set the promtool tests use."""

    job: str
    """Prometheus scrape job of the exporter."""
    gpu_label: str
    """The label that names a GPU on a node (its index)."""
    sample_labels: dict[str, str]
    """Every label one series of the exporter carries (promtool tests), job/instance/node included."""
    memory_ratio: str
    """PromQL: memory used / total per GPU."""
    memory_series: Callable[[int, int], dict[str, int]]
    """(used, total) in the exporter's unit -> the series values that express it."""
    memory_total: int
    """A real card's total in the exporter's unit (promtool tests)."""
    temperature: str
    """Metric: the GPU's temperature in °C."""
    temperature_what: str
    """What that temperature measures, for the alert's text."""
    error_alert: str
    """Name of the alert on the vendor's hardware-error signal."""
    error_expr: str
    error_summary: str
    error_description: str
    error_metric: str
    error_series: Callable[[int], str]
    """Minutes of the test -> the promtool values of a series that turns bad at the onset."""
    error_test_name: str
    """The promtool case's name."""
    error_test_description: str
    """The description the test expects once the error alert fires."""
    # The Grafana GPU nodes dashboard (render/dashboards.py) reads these beside the alerts' names above.
    utilisation_percent: str
    """Metric: the GPU's busy share in percent (0-100)."""
    memory_used: str
    """Metric: GPU memory in use, in ``memory_unit_bytes`` units."""
    memory_unit_bytes: int
    """Bytes per unit of the memory metrics."""
    power_watts: str
    """Metric: the board's power draw in W."""
    error_counter: bool
    """``error_metric`` counts up (the panel shows its increase) rather than holding the last code."""
    error_panel_title: str
    error_panel_description: str


@dataclass(frozen=True)
class Exporter:
    """The GPU metrics exporter container every node runs."""

    unit: str
    container: str
    description: str
    image: str
    port: int
    run_args: tuple[str, ...]
    cmd_args: tuple[str, ...] = ()
    files: dict[str, str] = field(default_factory=dict)
    """Node path -> content of its config files (written by cloud-init before the exporter starts)."""
    metrics: GpuMetrics | None = None


@dataclass(frozen=True)
class GpuVendor:
    name: Vendor
    software: str
    """CUDA or ROCm, for messages."""
    vllm_image_repo: str
    docker_gpu_args: tuple[str, ...]
    """docker run flags that hand the node's GPUs to a container."""
    bootstrap_intro: str
    """The first boot script's opening comment: what the GPU image already ships ({gpu_images}: the clouds'
    GPU images)."""
    driver_check: str
    """Bash lines of the first boot that fail it when the GPU driver is missing (after log/die are defined)."""
    runtime_setup: str
    """Bash lines that make Docker able to run GPU containers (after Docker is installed)."""
    exporter: Exporter
    kubernetes_missing: str | None = None
    """Why the Kubernetes layout cannot run this vendor's GPUs yet (None: it can)."""

    def default_vllm_image(self, version: str = VLLM_VERSION) -> str:
        return f"{self.vllm_image_repo}:v{version.removeprefix('v')}"


# ---------------------------------------------------------------------------------------------
# NVIDIA (CUDA)
# ---------------------------------------------------------------------------------------------

# NVIDIA's DCGM exporter, pinned: DCGM 4.6.0 paired with exporter 4.8.3 (release 2026-07-15 per NVIDIA's
# DCGM Exporter release notes). The distroless variant is the one NVIDIA publishes for every 4.x release.
DCGM_EXPORTER_IMAGE = "nvcr.io/nvidia/k8s/dcgm-exporter:4.6.0-4.8.3-distroless"

_NVIDIA_DRIVER_CHECK = """\
command -v nvidia-smi >/dev/null 2>&1 || die "no NVIDIA driver (nvidia-smi missing): use the provider's GPU image"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || die "nvidia-smi cannot talk to the GPU"
"""

_NVIDIA_RUNTIME_SETUP = """\
if docker info --format '{{json .Runtimes}}' | grep -q '"nvidia"'; then
    log "NVIDIA container runtime already configured"
else
    if ! command -v nvidia-ctk >/dev/null 2>&1; then
        log "installing the NVIDIA container toolkit"
        if command -v apt-get >/dev/null 2>&1; then
            curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey \\
                | gpg --batch --yes --dearmor -o /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
            curl -fsSL https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list \\
                | sed 's#deb https://#deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] https://#g' \\
                > /etc/apt/sources.list.d/nvidia-container-toolkit.list
            retry apt-get update -q
            DEBIAN_FRONTEND=noninteractive retry apt-get install -y -q nvidia-container-toolkit
        else
            curl -fsSL https://nvidia.github.io/libnvidia-container/stable/rpm/nvidia-container-toolkit.repo \\
                > /etc/yum.repos.d/nvidia-container-toolkit.repo
            retry dnf install -y -q nvidia-container-toolkit
        fi
    fi
    nvidia-ctk runtime configure --runtime=docker
    systemctl restart docker.service
fi
"""

_DCGM_LABELS = {"job": "dcgm", "instance": f"10.0.0.2:{DCGM_EXPORTER_PORT}", "node": "node-0", "gpu": "0",
                "UUID": "GPU-00000000-0000-0000-0000-000000000000", "modelName": "NVIDIA L40S"}
# DCGM_FI_DEV_XID_ERRORS holds the last XID code until the exporter restarts (NVIDIA/dcgm-exporter#500,
# NVIDIA/DCGM#277): the alert fires when a new code appears and resolves XID_WINDOW after, instead of
# firing forever after one application fault (XID 13/31/43 when vLLM crashes).
XID_WINDOW = "15m"
ERROR_WINDOW = XID_WINDOW

NVIDIA = GpuVendor(
    name="nvidia",
    software="CUDA",
    vllm_image_repo="vllm/vllm-openai",
    docker_gpu_args=("--gpus", "all"),
    bootstrap_intro="{gpu_images} ship Docker and\n# the NVIDIA container toolkit already",
    driver_check=_NVIDIA_DRIVER_CHECK,
    runtime_setup=_NVIDIA_RUNTIME_SETUP,
    exporter=Exporter(
        unit="dcgm-exporter.service",
        container="dcgm-exporter",
        description="NVIDIA DCGM exporter (GPU metrics for Prometheus)",
        image=DCGM_EXPORTER_IMAGE,
        port=DCGM_EXPORTER_PORT,
        # SYS_ADMIN: NVIDIA's documented flag; DCGM needs it for the profiling counters.
        # The port is published by the unit renderer, on the private interface only (render._common).
        run_args=("--gpus", "all", "--cap-add", "SYS_ADMIN"),
        metrics=GpuMetrics(
            job="dcgm",
            gpu_label="gpu",
            sample_labels=_DCGM_LABELS,
            memory_ratio="DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE)",
            # framebuffer in MiB, a 48 GiB card
            memory_series=lambda used, total: {"DCGM_FI_DEV_FB_USED": used, "DCGM_FI_DEV_FB_FREE": total - used},
            memory_total=46068,
            temperature="DCGM_FI_DEV_GPU_TEMP",
            temperature_what="",
            error_alert="GpuXidErrors",
            # `and` keeps the left-hand value: the XID code, for the description.
            error_expr=f"DCGM_FI_DEV_XID_ERRORS != 0 and changes(DCGM_FI_DEV_XID_ERRORS[{XID_WINDOW}]) > 0",
            error_summary="GPU {{ $labels.gpu }} reported an XID error on {{ $labels.node }}",
            error_description=(
                "GPU {{ $labels.gpu }} on {{ $labels.node }} reported XID {{ $value }} "
                f"(the last XID code, new within {XID_WINDOW}); check dmesg and consider replacing the node."
            ),
            error_metric="DCGM_FI_DEV_XID_ERRORS",
            error_series=lambda minutes: f"0x4 79x{minutes - 5}",
            error_test_name="GpuXidErrors fires as soon as DCGM reports an XID, and resolves although the value stays",
            error_test_description=(
                f"GPU 0 on node-0 reported XID 79 (the last XID code, new within {XID_WINDOW}); check dmesg and "
                "consider replacing the node."
            ),
            # dcgm-exporter's default counters (etc/default-counters.csv): utilisation in %, framebuffer in MiB.
            utilisation_percent="DCGM_FI_DEV_GPU_UTIL",
            memory_used="DCGM_FI_DEV_FB_USED",
            memory_unit_bytes=1048576,
            power_watts="DCGM_FI_DEV_POWER_USAGE",
            error_counter=False,
            error_panel_title="Last XID error code",
            error_panel_description=(
                "The last XID the driver reported (0: none since the exporter started; 13/31/43 follow an "
                "application fault, 48/61/62/79 mean the GPU is failing). GpuXidErrors fires on a new code."
            ),
        ),
    ),
)

# ---------------------------------------------------------------------------------------------
# AMD (ROCm)
# ---------------------------------------------------------------------------------------------

# Pinned: v1.5.0 (release notes: ROCm 7.0, MI2xx/MI3xx), the tag AMD's GPU operator 1.5.0 ships and one a public
# MI300X run report found pre-pulled on its cloud's AMD GPU image.
AMD_METRICS_EXPORTER_IMAGE = "rocm/device-metrics-exporter:v1.5.0"
AMD_METRICS_CONFIG_DIR = "/etc/gpu-inference/device-metrics-exporter"
# Prefix written explicitly (the exporter's ConfigMap example's value) so the metric names below hold whatever
# config the image ships; no GPUConfig.Fields: every field is exported.
AMD_METRICS_PREFIX = "amd_"
_AMD_METRICS_CONFIG = json.dumps(
    {"ServerPort": AMD_METRICS_EXPORTER_PORT, "CommonConfig": {"MetricsFieldPrefix": AMD_METRICS_PREFIX}},
    indent=2,
) + "\n"

_AMD_DRIVER_CHECK = """\
command -v amd-smi >/dev/null 2>&1 || die "no ROCm driver tools (amd-smi missing): use the provider's AMD GPU image"
[[ -e /dev/kfd ]] || die "no /dev/kfd: the amdgpu kernel driver is not loaded, so no container can use the GPU"
amd-smi static --asic --vram || die "amd-smi cannot talk to the GPU"
"""

# ROCm needs no container-runtime hook: a container gets the GPU through the /dev/kfd and /dev/dri device nodes
# and the video group (vllm.service); Docker alone is enough.
_AMD_RUNTIME_SETUP = """\
log "ROCm containers take the GPU as /dev/kfd and /dev/dri: no container runtime to configure"
"""

_AMD_LABELS = {"job": "amd-metrics", "instance": f"10.0.0.2:{AMD_METRICS_EXPORTER_PORT}", "node": "node-0",
               "gpu_id": "0", "serial_number": "692251001124", "card_model": "MI300X",
               "hostname": "stack-node-0", "gpu_partition_id": "0"}

AMD = GpuVendor(
    name="amd",
    software="ROCm",
    vllm_image_repo="vllm/vllm-openai-rocm",
    # vLLM's ROCm docs: the GPU device nodes, the video group that owns them, ptrace for RCCL/ROCm profiling, and
    # no seccomp filter (ROCm's runtime uses syscalls Docker's default profile blocks). --ipc=host is shared.
    docker_gpu_args=("--device", "/dev/kfd", "--device", "/dev/dri", "--group-add", "video",
                     "--cap-add", "SYS_PTRACE", "--security-opt", "seccomp=unconfined"),
    bootstrap_intro="The clouds' AMD GPU images ship the ROCm driver and\n# amd-smi (Docker is installed if missing)",
    driver_check=_AMD_DRIVER_CHECK,
    runtime_setup=_AMD_RUNTIME_SETUP,
    exporter=Exporter(
        unit="amd-metrics-exporter.service",
        container="amd-metrics-exporter",
        description="AMD Device Metrics Exporter (GPU metrics for Prometheus)",
        image=AMD_METRICS_EXPORTER_IMAGE,
        port=AMD_METRICS_EXPORTER_PORT,
        run_args=("--device", "/dev/kfd", "--device", "/dev/dri",
                  "-v", f"{AMD_METRICS_CONFIG_DIR}:/etc/metrics"),
        files={f"{AMD_METRICS_CONFIG_DIR}/config.json": _AMD_METRICS_CONFIG},
        metrics=GpuMetrics(
            job="amd-metrics",
            gpu_label="gpu_id",
            sample_labels=_AMD_LABELS,
            # GPU_USED_VRAM / GPU_TOTAL_VRAM, both in MB (metricslist.md)
            memory_ratio=f"{AMD_METRICS_PREFIX}gpu_used_vram / {AMD_METRICS_PREFIX}gpu_total_vram",
            memory_series=lambda used, total: {f"{AMD_METRICS_PREFIX}gpu_used_vram": used,
                                               f"{AMD_METRICS_PREFIX}gpu_total_vram": total},
            memory_total=196592,
            # GPU_JUNCTION_TEMPERATURE: the hotspot, MI3xx's temperature field (the edge sensor is MI2xx-only).
            temperature=f"{AMD_METRICS_PREFIX}gpu_junction_temperature",
            temperature_what=" (junction, the hottest sensor)",
            error_alert="GpuEccUncorrectable",
            # GPU_ECC_UNCORRECT_TOTAL counts uncorrectable ECC errors since the driver loaded: any increase means
            # data the GPU could not repair (AMD's counterpart of the XIDs DCGM reports).
            error_expr=f"increase({AMD_METRICS_PREFIX}gpu_ecc_uncorrect_total[{ERROR_WINDOW}]) > 0",
            error_summary="GPU {{ $labels.gpu_id }} reported uncorrectable ECC errors on {{ $labels.node }}",
            error_description=(
                "GPU {{ $labels.gpu_id }} on {{ $labels.node }} counted new uncorrectable ECC errors within "
                f"{ERROR_WINDOW}; its memory is failing: drain the node and replace it."
            ),
            error_metric=f"{AMD_METRICS_PREFIX}gpu_ecc_uncorrect_total",
            error_series=lambda minutes: f"0x4 2x{minutes - 5}",
            error_test_name=("GpuEccUncorrectable fires as soon as the uncorrectable ECC count grows, and resolves "
                             "although the count stays"),
            error_test_description=(
                f"GPU 0 on node-0 counted new uncorrectable ECC errors within {ERROR_WINDOW}; its memory is "
                "failing: drain the node and replace it."
            ),
            utilisation_percent=f"{AMD_METRICS_PREFIX}gpu_gfx_activity",
            memory_used=f"{AMD_METRICS_PREFIX}gpu_used_vram",
            memory_unit_bytes=1048576,
            power_watts=f"{AMD_METRICS_PREFIX}gpu_power_usage",
            error_counter=True,
            error_panel_title="Uncorrectable ECC errors",
            error_panel_description=(
                "New uncorrectable ECC errors per GPU in the interval (0: none); any means failing GPU memory. "
                "GpuEccUncorrectable fires on an increase."
            ),
        ),
    ),
    kubernetes_missing=(
        "the Kubernetes layout schedules pods on nvidia.com/gpu and tolerates the NVIDIA taint only; AMD GPU "
        "pools (the ROCm device plugin's amd.com/gpu resource, its taint and the ROCm image in the pod spec) are "
        "not built yet"
    ),
)

VENDORS: dict[str, GpuVendor] = {v.name: v for v in (NVIDIA, AMD)}


def vendor_for(stack: ResolvedStack) -> GpuVendor:
    """The vendor of the stack's GPU (catalog ``vendor``)."""
    return VENDORS[stack.gpu.vendor]


def vllm_image(stack: ResolvedStack) -> str:
    """The vLLM image the nodes run: vllmImage when the config sets it, else the vendor's image of the pinned
    release (the CUDA image cannot start on a ROCm machine)."""
    cfg = stack.config
    return cfg.vllm_image or vendor_for(stack).default_vllm_image(cfg.vllm_version)


def image_problems(stack: ResolvedStack) -> list[str]:
    """A vllmImage of the other vendor's repository (exit 2: it cannot start on these GPUs)."""
    from gpu_inference.config import NAMESPACE

    vendor = vendor_for(stack)
    image = vllm_image(stack)
    repository = image.rsplit(":", 1)[0].removeprefix("docker.io/")
    for other in VENDORS.values():
        if other is not vendor and repository == other.vllm_image_repo:
            return [
                f"{NAMESPACE}:vllmImage = {image!r} is vLLM's {other.software} image, but {stack.offering.id} has "
                f"{stack.gpu.id} GPUs ({vendor.software}): use {vendor.default_vllm_image(stack.config.vllm_version)} "
                f"or leave vllmImage unset"
            ]
    return []


def layout_problems(stack: ResolvedStack) -> list[str]:
    """Why the stack's layout cannot run this vendor's GPUs (the can-start policy refuses them: exit 1)."""
    from gpu_inference.clouds import CLOUDS

    vendor = vendor_for(stack)
    if stack.cloud.layout == "kubernetes" and vendor.kubernetes_missing:
        # The machine clouds that sell this offering run the vendor's image on their own machines.
        machines = [name for name, cloud in CLOUDS.items()
                    if cloud.layout == "machines" and cloud.catalog_cloud == stack.offering.cloud]
        instead = f": use provider {' or '.join(machines)} for it" if machines else ""
        return [f"{stack.offering.id} has {vendor.name.upper()} GPUs ({stack.gpu.id}) but {vendor.kubernetes_missing}"
                f"{instead}."]
    return []
