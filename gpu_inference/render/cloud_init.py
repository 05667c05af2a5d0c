"""cloud-init user data for the three kinds of machine: GPU node, load balancer, Prometheus host.

Each is a ``#cloud-config`` document whose runcmd runs one rendered bootstrap script: the logic is a
real shell script (checked by shellcheck in the tests), not a list of YAML strings. Everything is
deterministic (no timestamps, no random names), so golden files are stable.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from gpu_inference.clouds import CLOUDS
from gpu_inference.constants import DCGM_EXPORTER_PORT, NODE_EXPORTER_PORT
from gpu_inference.render._common import (
    BOOTSTRAP_PATH,
    DCGM_EXPORTER_IMAGE,
    DOCKER_LOG_ARGS,
    HEALTHCHECK_PATH,
    HEALTHCHECK_TIMER,
    HEALTHCHECK_UNIT,
    MODEL_CACHE_DIR,
    NODE_EXPORTER_IMAGE,
    RENDERED_BY,
    VLLM_ENV_FILE,
    VLLM_UNIT,
    dump_yaml,
    exec_line,
    node_name,
    shell_quote,
    systemd_quote,
)
from gpu_inference.render.grafana import grafana_cloud_init_files, grafana_runcmd
from gpu_inference.render.healthcheck import healthcheck_script, healthcheck_units
from gpu_inference.render.nginx import NginxPaths, auth_map, nginx_conf, tls_paths
from gpu_inference.render.nginx_metrics import nginx_metrics_files, nginx_metrics_runcmd
from gpu_inference.render.prometheus import RULES_PATH, alert_rules, prometheus_config
from gpu_inference.render.vllm import vllm_env_file, vllm_unit

if TYPE_CHECKING:
    from gpu_inference.stack import ResolvedStack

SYSTEMD_DIR = "/etc/systemd/system"
LB_BOOTSTRAP_PATH = "/usr/local/sbin/gpu-inference-lb-bootstrap"
MONITORING_BOOTSTRAP_PATH = "/usr/local/sbin/gpu-inference-monitoring-bootstrap"
# Self-signed certificate the LB starts with when TLS is configured and no certificate is there yet, so
# nginx can start; the operator replaces it (e.g. certbot) — see docs/runbooks.md#tls.
SELF_SIGNED_DAYS = 30
def _file(path: str, content: str, permissions: str = "0644", defer: bool = False) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": path, "owner": "root:root", "permissions": permissions, "content": content}
    if defer:
        # Written after packages are installed: a file a package also ships (nginx.conf, prometheus.yml)
        # must replace the package's copy, not be overwritten by it or trip a conffile prompt.
        entry["defer"] = True
    return entry


def _cloud_config(comment: str, doc: dict[str, Any]) -> str:
    return dump_yaml(doc, f"#cloud-config\n# {RENDERED_BY}\n# {comment}\n")


def hostname_for(stack: ResolvedStack, role: str) -> str:
    """A valid hostname (RFC 1123 label) from the stack name and a role."""
    label = re.sub(r"[^a-z0-9-]+", "-", f"{stack.name}-{role}".lower()).strip("-")
    return label[:63].rstrip("-") or role


# ---------------------------------------------------------------------------------------------
# GPU node
# ---------------------------------------------------------------------------------------------


def _container_unit(description: str, name: str, image: str, run_args: list[str], cmd_args: list[str]) -> str:
    pull = f"docker image inspect {image} >/dev/null 2>&1 || docker pull {image}"
    return f"""# {RENDERED_BY}
[Unit]
Description={description}
After=docker.service network-online.target
Wants=network-online.target
Requires=docker.service
StartLimitIntervalSec=0

[Service]
Type=simple
TimeoutStartSec=600
Restart=always
RestartSec=10
ExecStartPre=-/usr/bin/docker rm -f {name}
ExecStartPre=/bin/sh -c {systemd_quote(pull)}
{exec_line("ExecStart", ["/usr/bin/docker", "run", "--name", name, *DOCKER_LOG_ARGS, *run_args, image, *cmd_args],
           own_line=[image])}
ExecStop=/usr/bin/docker stop {name}

[Install]
WantedBy=multi-user.target
"""


def dcgm_exporter_unit() -> str:
    """dcgm-exporter.service: NVIDIA's exporter container (GPU memory, temperature, XIDs) on :9400."""
    return _container_unit(
        "NVIDIA DCGM exporter (GPU metrics for Prometheus)",
        "dcgm-exporter",
        DCGM_EXPORTER_IMAGE,
        # SYS_ADMIN: NVIDIA's documented flag; DCGM needs it for the profiling counters.
        ["--gpus", "all", "--cap-add", "SYS_ADMIN", "-p", f"{DCGM_EXPORTER_PORT}:{DCGM_EXPORTER_PORT}"],
        [],
    )


def node_exporter_unit() -> str:
    """node-exporter.service: node_exporter in a container, seeing the host's filesystems and network."""
    return _container_unit(
        "Prometheus node_exporter (host metrics for Prometheus)",
        "node-exporter",
        NODE_EXPORTER_IMAGE,
        ["--net=host", "--pid=host", "-v", "/:/host:ro,rslave"],
        ["--path.rootfs=/host", f"--web.listen-address=:{NODE_EXPORTER_PORT}"],
    )


def gpu_node_bootstrap(stack: ResolvedStack) -> str:
    """The GPU node's first-boot script: Docker and the NVIDIA runtime only if missing, then the services."""
    images = " ".join(shell_quote(i) for i in (stack.config.vllm_image, DCGM_EXPORTER_IMAGE, NODE_EXPORTER_IMAGE))
    units = " ".join(("node-exporter.service", "dcgm-exporter.service", VLLM_UNIT, HEALTHCHECK_TIMER))
    gpu_images = " and ".join(c.gpu_image for c in CLOUDS.values() if c.gpu_image)
    return f"""#!/usr/bin/env bash
# {RENDERED_BY}
# First boot of a GPU node. {gpu_images} ship Docker and
# the NVIDIA container toolkit already: each step checks first and installs only what is missing.
set -euo pipefail

log() {{ echo "gpu-inference-bootstrap: $*"; }}
die() {{ log "ERROR: $*"; exit 1; }}

retry() {{
    local attempt
    for attempt in 1 2 3 4 5; do
        if "$@"; then return 0; fi
        log "attempt $attempt of '$*' failed; retrying in 15s"
        sleep 15
    done
    return 1
}}

command -v nvidia-smi >/dev/null 2>&1 || die "no NVIDIA driver (nvidia-smi missing): use the provider's GPU image"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || die "nvidia-smi cannot talk to the GPU"

if command -v docker >/dev/null 2>&1; then
    log "Docker already installed"
elif command -v apt-get >/dev/null 2>&1; then
    log "installing Docker (docker.io)"
    retry apt-get update -q
    DEBIAN_FRONTEND=noninteractive retry apt-get install -y -q docker.io
elif command -v dnf >/dev/null 2>&1; then
    log "installing Docker (dnf)"
    retry dnf install -y -q docker
else
    die "no Docker and no apt-get/dnf to install it"
fi
systemctl enable --now docker.service

if docker info --format '{{{{json .Runtimes}}}}' | grep -q '"nvidia"'; then
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

install -d -m 0755 {MODEL_CACHE_DIR}
chmod 0600 {VLLM_ENV_FILE}

# Pull before starting: the pull is the slow part of a first boot and is worth its own log lines.
for image in {images}; do
    retry docker pull -q "$image"
done

systemctl daemon-reload
systemctl enable --now {units}
log "vLLM is starting; the model loads for several minutes (journalctl -fu {VLLM_UNIT})"
"""


def gpu_node_cloud_init(stack: ResolvedStack, node_index: int, api_key: str | None, hf_token: str | None) -> str:
    """#cloud-config for GPU node ``node_index``: files, then the bootstrap script."""
    hc_service, hc_timer = healthcheck_units(stack)
    files = [
        # Secrets: root-only. (User data itself is readable through the provider's metadata service from
        # the machine, so this is no stronger than the instance's own isolation.)
        _file(VLLM_ENV_FILE, vllm_env_file(api_key, hf_token), "0600"),
        _file(f"{SYSTEMD_DIR}/{VLLM_UNIT}", vllm_unit(stack)),
        _file(HEALTHCHECK_PATH, healthcheck_script(stack), "0755"),
        _file(f"{SYSTEMD_DIR}/{HEALTHCHECK_UNIT}", hc_service),
        _file(f"{SYSTEMD_DIR}/{HEALTHCHECK_TIMER}", hc_timer),
        _file(f"{SYSTEMD_DIR}/dcgm-exporter.service", dcgm_exporter_unit()),
        _file(f"{SYSTEMD_DIR}/node-exporter.service", node_exporter_unit()),
        _file(BOOTSTRAP_PATH, gpu_node_bootstrap(stack), "0755"),
    ]
    doc = {
        "hostname": hostname_for(stack, node_name(node_index)),
        "write_files": files,
        "runcmd": [[BOOTSTRAP_PATH]],
    }
    return _cloud_config(f"GPU node {node_name(node_index)} of stack {stack.name}: {_node_description(stack)}", doc)


def _node_description(stack: ResolvedStack) -> str:
    """What this one node runs. Not the pool's size or the budget: user data is immutable (a change replaces
    the machine), so a stack-wide value here would rebuild every GPU node on a scale-out or a budget edit."""
    cfg = stack.config
    return (
        f"{cfg.gpu} on {cfg.provider}/{cfg.region} serving {cfg.model} ({cfg.dtype}, "
        f"quant={cfg.quantization or 'checkpoint'}, kv={cfg.kv_cache_dtype}, max_model_len={cfg.max_model_len}, "
        f"util={cfg.gpu_memory_utilization})"
    )


# ---------------------------------------------------------------------------------------------
# Load balancer
# ---------------------------------------------------------------------------------------------


def lb_bootstrap(stack: ResolvedStack, paths: NginxPaths | None = None) -> str:
    """First boot of the Nginx host: check the config, start nginx and node_exporter."""
    paths = paths or NginxPaths()
    domain = stack.config.load_balancer.tls_domain
    tls = ""
    if domain:
        cert, key = tls_paths(domain, paths)
        tls = f"""
# nginx refuses to start without the certificate it names: begin with a short-lived self-signed one
# and let the operator install the real one (docs/runbooks.md#tls).
if [[ ! -s {cert} ]]; then
    log "no certificate for {domain} yet; creating a self-signed placeholder"
    install -d -m 0755 {cert.rsplit("/", 1)[0]}
    openssl req -x509 -newkey rsa:2048 -nodes -days {SELF_SIGNED_DAYS} -subj "/CN={domain}" \\
        -keyout {key} -out {cert}
    chmod 0600 {key}
fi
"""
    auth = f"chmod 0600 {paths.auth_include}\n" if stack.config.api_key is not None else ""
    return f"""#!/usr/bin/env bash
# {RENDERED_BY}
# First boot of the load balancer: nginx.conf was written by cloud-init after the nginx package.
set -euo pipefail

log() {{ echo "gpu-inference-lb-bootstrap: $*"; }}
{auth}{tls}
nginx -t
systemctl enable nginx.service prometheus-node-exporter.service
systemctl restart nginx.service
systemctl restart prometheus-node-exporter.service
log "nginx is balancing over the GPU nodes"
"""


def load_balancer_cloud_init(stack: ResolvedStack, backends: list[str], api_key: str | None) -> str:
    """#cloud-config for the Nginx host (Ubuntu/Debian image)."""
    paths = NginxPaths()
    files = [_file("/etc/nginx/nginx.conf", nginx_conf(stack, backends, prefix_paths=paths), defer=True)]
    if stack.config.api_key is not None:
        if api_key is None:
            raise ValueError("the stack has an apiKey: pass its value so the load balancer can check it")
        files.append(_file(paths.auth_include, auth_map(api_key), "0600", defer=True))
    files.append(_file(LB_BOOTSTRAP_PATH, lb_bootstrap(stack, paths), "0755", defer=True))
    files += nginx_metrics_files()
    packages = ["nginx", "prometheus-node-exporter", "mtail"]
    if stack.config.load_balancer.tls_domain:
        packages.append("openssl")
    doc = {
        "hostname": hostname_for(stack, "lb"),
        "package_update": True,
        "packages": packages,
        "write_files": files,
        "runcmd": [[LB_BOOTSTRAP_PATH], *nginx_metrics_runcmd()],
    }
    return _cloud_config(f"Load balancer of stack {stack.name}: least_conn over {len(backends)} node(s).", doc)


# ---------------------------------------------------------------------------------------------
# Monitoring
# ---------------------------------------------------------------------------------------------


# Where Debian/Ubuntu's `prometheus` package keeps the TSDB (its default --storage.tsdb.path, also passed
# explicitly in /etc/default/prometheus below): the data volume is mounted exactly here.
PROMETHEUS_DATA_DIR = "/var/lib/prometheus/metrics2"
PROMETHEUS_DROPIN = f"{SYSTEMD_DIR}/prometheus.service.d/gpu-inference-data-volume.conf"
# How long first boot waits for the data volume. It is attached only once the new host exists (and, when
# the host is replaced, once the old host has let go of it: AWS stops the old instance first).
DATA_VOLUME_WAIT_SECONDS = 900
# Share of the data volume Prometheus may fill (--storage.tsdb.retention.size): past it the oldest blocks go
# first, so a volume too small for `retention` loses old history instead of failing writes. The rest is
# headroom for the WAL, compaction and the filesystem's own overhead.
TSDB_VOLUME_SHARE = 0.8
def prometheus_data_dropin() -> str:
    """prometheus.service drop-in: never run Prometheus on the root disk.

    Written before the package is installed, so the package's own start (before the bootstrap has mounted
    the volume) is skipped rather than creating an empty TSDB on the root disk, and a boot where the volume
    did not come back leaves Prometheus stopped instead of silently starting a second, empty history.
    """
    return f"""# {RENDERED_BY}
[Unit]
RequiresMountsFor={PROMETHEUS_DATA_DIR}
ConditionPathIsMountPoint={PROMETHEUS_DATA_DIR}
"""


def monitoring_bootstrap(stack: ResolvedStack, data_devices: list[str]) -> str:
    """First boot of the Prometheus host: mount the TSDB volume, validate with promtool, (re)start Prometheus.

    The volume is prepared here rather than by cloud-init's ``disk_setup``/``fs_setup``/``mounts`` modules:
    those run once, early in boot, and give up on a device that is not there yet, while the volume is
    attached only after the host exists (and after the previous host released it). The script waits for it,
    formats it only when it carries no filesystem or partition table at all, and is safe to run again.
    """
    devices = " ".join(shell_quote(d) for d in data_devices)
    return f"""#!/usr/bin/env bash
# {RENDERED_BY}
# First boot of the Prometheus host: mount the TSDB volume, validate everything with promtool, then (re)start
# Prometheus. Safe to run again (e.g. by hand after the volume was late): every step checks first.
set -euo pipefail

log() {{ echo "gpu-inference-monitoring-bootstrap: $*"; }}
die() {{ log "ERROR: $*"; exit 1; }}

data_dir={PROMETHEUS_DATA_DIR}
candidates=({devices})
wait_seconds={DATA_VOLUME_WAIT_SECONDS}

# The package may have tried to start Prometheus; the drop-in kept it off the root disk. Keep it stopped.
systemctl stop prometheus.service || true

device=""
for ((waited = 0; waited <= wait_seconds; waited += 5)); do
    for candidate in "${{candidates[@]}}"; do
        if [[ -b "$candidate" ]]; then
            device=$(readlink -f "$candidate")
            break 2
        fi
    done
    sleep 5
done
[[ -n "$device" ]] || die "no data volume after ${{wait_seconds}}s (looked for: ${{candidates[*]}});" \
    "Prometheus stays stopped: attach the volume and run $0 again"
udevadm settle || true
log "data volume: $device"

# Format only a blank volume: one that already holds a TSDB (the host was replaced) is kept as it is.
probe=0
blkid -p "$device" >/dev/null 2>&1 || probe=$?
if [[ "$probe" -eq 2 ]]; then
    log "$device is blank: creating an ext4 filesystem"
    mkfs.ext4 -q -L prometheus "$device"
elif [[ "$probe" -ne 0 ]]; then
    die "cannot probe $device (blkid exit $probe)"
fi
fstype=$(blkid -p -o value -s TYPE "$device" || true)
uuid=$(blkid -p -o value -s UUID "$device" || true)
[[ -n "$fstype" && -n "$uuid" ]] || die "$device holds no filesystem with a UUID (a partition table?): not touching it"

# By UUID, so a reboot that renames the device still mounts it; nofail, so a missing volume never stops the
# boot (the drop-in then keeps Prometheus stopped rather than writing to the root disk).
install -d -m 0755 "$data_dir"
entry="UUID=$uuid $data_dir $fstype defaults,nofail,x-systemd.device-timeout=5min 0 2"
if ! grep -qxF "$entry" /etc/fstab; then
    sed -i "\\#[[:space:]]${{data_dir}}[[:space:]]#d" /etc/fstab
    echo "$entry" >> /etc/fstab
    systemctl daemon-reload
fi
mountpoint -q "$data_dir" || mount "$data_dir"
if [[ "$fstype" == ext4 ]]; then
    resize2fs "$device" >/dev/null 2>&1 || log "resize2fs $device failed; the filesystem keeps its size"
fi
# The prometheus user's uid may differ from the host that wrote the volume: own everything again.
find "$data_dir" -xdev \\( ! -user prometheus -o ! -group prometheus \\) -exec chown -h prometheus:prometheus {{}} +

promtool check config /etc/prometheus/prometheus.yml
promtool check rules {RULES_PATH}
systemctl daemon-reload
systemctl enable prometheus.service prometheus-node-exporter.service
systemctl restart prometheus.service
systemctl restart prometheus-node-exporter.service
log "Prometheus is scraping into $data_dir on $device; alerts: http://localhost:9090/alerts"
"""


def monitoring_cloud_init(
    stack: ResolvedStack,
    vllm_targets: list[str],
    node_targets: list[str] | dict[str, str],
    dcgm_targets: list[str],
    data_devices: list[str],
    grafana_admin_password: str | None = None,
    nginx_targets: dict[str, str] | None = None,
) -> str:
    """#cloud-config for the Prometheus host (Debian/Ubuntu `prometheus` package), with Grafana beside it.

    ``data_devices``: the TSDB volume's stable device paths (:func:`volume_devices`); the bootstrap mounts
    it at the data directory before Prometheus starts. The promtool tests of the rules are not shipped:
    CI runs them, and AWS caps user data at 16 KB.
    """
    if not data_devices:
        raise ValueError("the Prometheus host needs its data volume's device paths")
    retention = stack.config.monitoring.retention
    retention_size_gb = max(1, int(stack.config.monitoring.storage_gb * TSDB_VOLUME_SHARE))
    files = [
        # Not deferred: in place before the package's postinst tries to start Prometheus.
        _file(PROMETHEUS_DROPIN, prometheus_data_dropin()),
        _file("/etc/prometheus/prometheus.yml",
              prometheus_config(stack, vllm_targets, node_targets, dcgm_targets, nginx_targets=nginx_targets),
              defer=True),
        _file(RULES_PATH, alert_rules(stack), defer=True),
        # Debian's prometheus.service passes $ARGS from this file to the server.
        _file("/etc/default/prometheus",
              f'# {RENDERED_BY}\nARGS="--storage.tsdb.path={PROMETHEUS_DATA_DIR} '
              f'--storage.tsdb.retention.time={retention} --storage.tsdb.retention.size={retention_size_gb}GB"\n',
              defer=True),
        _file(MONITORING_BOOTSTRAP_PATH, monitoring_bootstrap(stack, data_devices), "0755", defer=True),
        *grafana_cloud_init_files(stack, grafana_admin_password),
    ]
    doc = {
        "hostname": hostname_for(stack, "monitoring"),
        "package_update": True,
        "packages": ["prometheus", "prometheus-node-exporter"],
        "write_files": files,
        "runcmd": [[MONITORING_BOOTSTRAP_PATH], *grafana_runcmd(stack)],
    }
    return _cloud_config(f"Prometheus host of stack {stack.name}.", doc)
