"""cloud-init user data for the three kinds of machine: GPU node, load balancer, Prometheus host.

Each is a ``#cloud-config`` document whose runcmd runs one rendered bootstrap script: the logic is a
real shell script (checked by shellcheck in the tests), not a list of YAML strings. Everything is
deterministic (no timestamps, no random names), so golden files are stable.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from gpu_inference.clouds import CLOUDS
from gpu_inference.constants import NODE_EXPORTER_PORT
from gpu_inference.gpu_vendor import Exporter, vendor_for, vllm_image
from gpu_inference.render import grafana_proxy
from gpu_inference.render._common import (
    BOOTSTRAP_PATH,
    DOCKER_LOG_ARGS,
    HEALTHCHECK_PATH,
    HEALTHCHECK_TIMER,
    HEALTHCHECK_UNIT,
    MODEL_CACHE_DIR,
    NETWORK_ENV_FILE,
    NODE_EXPORTER_IMAGE,
    PRIVATE_IP_VAR,
    RENDERED_BY,
    VLLM_ENV_FILE,
    VLLM_UNIT,
    Expanded,
    dump_yaml,
    exec_line,
    node_name,
    private_ip_publish,
    shell_quote,
    systemd_quote,
    systemd_text,
    yaml_comment,
)
from gpu_inference.render.acme import (
    CERT_DEPLOY_HOOK_PATH,
    CERT_OBTAIN_PATH,
    CERT_SERVICE,
    cert_unit,
    deploy_hook_script,
    obtain_script,
    placeholder_certificate,
)
from gpu_inference.render.grafana import grafana_cloud_init_files, grafana_runcmd
from gpu_inference.render.healthcheck import healthcheck_script, healthcheck_units
from gpu_inference.render.lb_healthcheck import (
    LB_HEALTHCHECK_CONFIG,
    LB_HEALTHCHECK_PATH,
    LB_HEALTHCHECK_UNIT,
    agent_script,
    healthcheck_unit,
    settings,
    settings_json,
    upstream_include,
)
from gpu_inference.render.nginx import FALLBACK_LISTEN, NginxPaths, auth_map, nginx_conf
from gpu_inference.render.nginx_metrics import nginx_metrics_files, nginx_metrics_runcmd
from gpu_inference.render.prometheus import RULES_PATH, alert_rules, prometheus_config
from gpu_inference.render.spot import (
    SPOT_WATCHER_PATH,
    SPOT_WATCHER_UNIT,
    has_spot_watcher,
    spot_watcher_script,
    spot_watcher_unit,
)
from gpu_inference.render.vllm import vllm_env_file, vllm_unit

if TYPE_CHECKING:
    from gpu_inference.stack import ResolvedStack

SYSTEMD_DIR = "/etc/systemd/system"
LB_BOOTSTRAP_PATH = "/usr/local/sbin/gpu-inference-lb-bootstrap"
MONITORING_BOOTSTRAP_PATH = "/usr/local/sbin/gpu-inference-monitoring-bootstrap"
# Self-signed certificate the LB starts with when TLS is configured and no certificate is there yet, so
# nginx can start; certbot's deploy hook replaces it (render/acme.py, docs/runbooks.md#tls).
SELF_SIGNED_DAYS = 30


def _file(path: str, content: str, permissions: str = "0644", defer: bool = False) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": path, "owner": "root:root", "permissions": permissions, "content": content}
    if defer:
        # Written after packages are installed: a file a package also ships (nginx.conf, prometheus.yml)
        # must replace the package's copy, not be overwritten by it or trip a conffile prompt.
        entry["defer"] = True
    return entry


def _cloud_config(comment: str, doc: dict[str, Any]) -> str:
    return dump_yaml(doc, f"#cloud-config\n# {RENDERED_BY}\n# {yaml_comment(comment)}\n")


def hostname_for(stack: ResolvedStack, role: str) -> str:
    """A valid hostname (RFC 1123 label) from the stack name and a role."""
    label = re.sub(r"[^a-z0-9-]+", "-", f"{stack.name}-{role}".lower()).strip("-")
    return label[:63].rstrip("-") or role


# ---------------------------------------------------------------------------------------------
# GPU node
# ---------------------------------------------------------------------------------------------


def _container_unit(description: str, name: str, image: str, run_args: list[str], cmd_args: list[str]) -> str:
    pull = f"docker image inspect {shell_quote(image)} >/dev/null 2>&1 || docker pull {shell_quote(image)}"
    return f"""# {RENDERED_BY}
[Unit]
Description={systemd_text(description)}
After=docker.service network-online.target
Wants=network-online.target
Requires=docker.service
StartLimitIntervalSec=0

[Service]
Type=simple
TimeoutStartSec=600
Restart=always
RestartSec=10
# {PRIVATE_IP_VAR}: the address the exporter listens on (written by the first-boot script).
EnvironmentFile={NETWORK_ENV_FILE}
ExecStartPre=-/usr/bin/docker rm -f {name}
ExecStartPre=/bin/sh -c {systemd_quote(pull)}
{exec_line("ExecStart", ["/usr/bin/docker", "run", "--name", name, *DOCKER_LOG_ARGS, *run_args, image, *cmd_args],
           own_line=[image])}
ExecStop=/usr/bin/docker stop {name}

[Install]
WantedBy=multi-user.target
"""


def gpu_exporter_unit(exporter: Exporter) -> str:
    """The GPU vendor's metrics exporter container (DCGM on NVIDIA, AMD's device metrics exporter on ROCm)."""
    # Published on the node's private address (and loopback) only: the cloud firewall stays the first line.
    run_args = [*exporter.run_args, *private_ip_publish(exporter.port)]
    return _container_unit(exporter.description, exporter.container, exporter.image, run_args, list(exporter.cmd_args))


def gpu_exporter_unit_for(stack: ResolvedStack) -> tuple[str, str]:
    """(unit file name, content) of the stack's GPU exporter."""
    exporter = vendor_for(stack).exporter
    return exporter.unit, gpu_exporter_unit(exporter)


def node_exporter_unit() -> str:
    """node-exporter.service: node_exporter in a container, seeing the host's filesystems and network."""
    return _container_unit(
        "Prometheus node_exporter (host metrics for Prometheus)",
        "node-exporter",
        NODE_EXPORTER_IMAGE,
        ["--net=host", "--pid=host", "-v", "/:/host:ro,rslave"],
        # Host networking: the listen address itself is the node's private one (no -p to narrow it).
        ["--path.rootfs=/host", Expanded(f"--web.listen-address=${{{PRIVATE_IP_VAR}}}:{NODE_EXPORTER_PORT}")],
    )


def private_ip_lines(stack: ResolvedStack, env_file: str = NETWORK_ENV_FILE) -> str:
    """The GPU node bootstrap's lines that write the node's private IPv4 (from the cloud's metadata service) to
    ``env_file`` for the units' EnvironmentFile=, or stop the boot: never fall back to every interface."""
    lookup = stack.cloud.private_ipv4_lookup
    if lookup is None:
        raise ValueError(f"provider {stack.config.provider!r} has no metadata lookup of a machine's private IPv4")
    return f"""# Containers publish their ports on the private interface only: its address from the metadata service.
private_ipv4() {{
    {lookup}
}}
private_ip=""
for attempt in 1 2 3 4 5; do
    if private_ip=$(private_ipv4) && [[ "$private_ip" =~ ^[0-9]{{1,3}}(\\.[0-9]{{1,3}}){{3}}$ ]]; then
        break
    fi
    private_ip=""
    log "attempt $attempt to read the private IPv4 from the metadata service failed; retrying in 5s"
    sleep 5
done
[[ -n "$private_ip" ]] || die "no private IPv4 from the metadata service: refusing to publish ports on every interface"
install -d -m 0755 {shell_quote(env_file.rsplit("/", 1)[0])}
printf '{PRIVATE_IP_VAR}=%s\\n' "$private_ip" > {shell_quote(env_file)}
log "services listen on $private_ip (private) and 127.0.0.1"
"""


def gpu_node_bootstrap(stack: ResolvedStack) -> str:
    """The GPU node's first-boot script: the driver check, Docker and the vendor's container runtime only if
    missing, then the services."""
    vendor = vendor_for(stack)
    exporter = vendor.exporter
    images = " ".join(shell_quote(i) for i in (vllm_image(stack), exporter.image, NODE_EXPORTER_IMAGE))
    units = " ".join(("node-exporter.service", exporter.unit, VLLM_UNIT, HEALTHCHECK_TIMER))
    gpu_images = " and ".join(c.gpu_image for c in CLOUDS.values() if c.gpu_image)
    intro = vendor.bootstrap_intro.format(gpu_images=gpu_images)
    return f"""#!/usr/bin/env bash
# {RENDERED_BY}
# First boot of a GPU node. {intro}: each step checks first and installs only what is missing.
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

{vendor.driver_check}
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

{vendor.runtime_setup}
install -d -m 0755 {MODEL_CACHE_DIR}
chmod 0600 {VLLM_ENV_FILE}

{private_ip_lines(stack)}
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
    exporter = vendor_for(stack).exporter
    exporter_unit, exporter_text = gpu_exporter_unit_for(stack)
    files = [
        # Secrets: root-only. (User data itself is readable through the provider's metadata service from
        # the machine, so this is no stronger than the instance's own isolation.)
        _file(VLLM_ENV_FILE, vllm_env_file(api_key, hf_token), "0600"),
        _file(f"{SYSTEMD_DIR}/{VLLM_UNIT}", vllm_unit(stack)),
        _file(HEALTHCHECK_PATH, healthcheck_script(stack), "0755"),
        _file(f"{SYSTEMD_DIR}/{HEALTHCHECK_UNIT}", hc_service),
        _file(f"{SYSTEMD_DIR}/{HEALTHCHECK_TIMER}", hc_timer),
        *(_file(path, content) for path, content in exporter.files.items()),
        _file(f"{SYSTEMD_DIR}/{exporter_unit}", exporter_text),
        _file(f"{SYSTEMD_DIR}/node-exporter.service", node_exporter_unit()),
        _file(BOOTSTRAP_PATH, gpu_node_bootstrap(stack), "0755"),
    ]
    runcmd: list[list[str]] = [[BOOTSTRAP_PATH]]
    if has_spot_watcher(stack, node_index):
        # Spot nodes only (the on-demand floor is never reclaimed): the watcher first, so a notice during a
        # long bootstrap is still seen.
        files += [_file(SPOT_WATCHER_PATH, spot_watcher_script(stack), "0755"),
                  _file(f"{SYSTEMD_DIR}/{SPOT_WATCHER_UNIT}", spot_watcher_unit())]
        runcmd.insert(0, ["systemctl", "enable", "--now", SPOT_WATCHER_UNIT])
    doc = {
        "hostname": hostname_for(stack, node_name(node_index)),
        "write_files": files,
        "runcmd": runcmd,
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
        tls = "\n" + placeholder_certificate(domain, paths, SELF_SIGNED_DAYS)
    auth = f"chmod 0600 {paths.auth_include}\n" if stack.config.api_key is not None else ""
    # --no-block: the first issuance waits for DNS and the ACME server; first boot must not.
    cert = f"systemctl enable {CERT_SERVICE}\nsystemctl start --no-block {CERT_SERVICE}\n" if domain else ""
    if grafana_proxy.grafana_behind_lb(stack):
        # After nginx: it rewrites the Grafana upstream when the monitoring host registers, and reloads nginx.
        cert += f"systemctl enable --now {grafana_proxy.REGISTRAR_UNIT}\n"
    return f"""#!/usr/bin/env bash
# {RENDERED_BY}
# First boot of the load balancer: nginx.conf was written by cloud-init after the nginx package.
set -euo pipefail

log() {{ echo "gpu-inference-lb-bootstrap: $*"; }}
{auth}{tls}
nginx -t
systemctl daemon-reload
systemctl enable nginx.service prometheus-node-exporter.service {LB_HEALTHCHECK_UNIT}
systemctl restart nginx.service
systemctl restart prometheus-node-exporter.service
# After nginx: it reloads nginx whenever a node leaves or rejoins the rotation.
systemctl restart {LB_HEALTHCHECK_UNIT}
{cert}log "nginx is balancing over the GPU nodes; node health: journalctl -u {LB_HEALTHCHECK_UNIT}"
"""


def load_balancer_cloud_init(stack: ResolvedStack, backends: list[str], api_key: str | None) -> str:
    """#cloud-config for the Nginx host (Ubuntu/Debian image)."""
    paths = NginxPaths()
    checks = settings(stack, backends, paths)
    files = [
        _file("/etc/nginx/nginx.conf", nginx_conf(stack, backends, prefix_paths=paths, upstream_include=True),
              defer=True),
        # First boot: every node in; the health checker takes out those not answering /health yet.
        _file(paths.upstream_include, upstream_include(checks), defer=True),
        _file(LB_HEALTHCHECK_PATH, agent_script(), "0755", defer=True),
        _file(LB_HEALTHCHECK_CONFIG, settings_json(checks), defer=True),
        _file(f"{SYSTEMD_DIR}/{LB_HEALTHCHECK_UNIT}", healthcheck_unit(), defer=True),
    ]  # fmt: skip
    if stack.config.api_key is not None:
        if api_key is None:
            raise ValueError("the stack has an apiKey: pass its value so the load balancer can check it")
        files.append(_file(paths.auth_include, auth_map(api_key), "0600", defer=True))
    if grafana_proxy.grafana_behind_lb(stack):
        registrar = grafana_proxy.registrar_settings(paths)
        files += [
            # First boot: nginx's fallback until the monitoring host registers (and after a replacement of this host).
            _file(paths.grafana_include, grafana_proxy.placeholder_include(FALLBACK_LISTEN), defer=True),
            _file(grafana_proxy.REGISTRAR_PATH, grafana_proxy.registrar_script(), "0755", defer=True),
            _file(grafana_proxy.REGISTRAR_CONFIG, grafana_proxy.registrar_settings_json(registrar), defer=True),
            _file(f"{SYSTEMD_DIR}/{grafana_proxy.REGISTRAR_UNIT}", grafana_proxy.registrar_unit(), defer=True),
        ]
    files += nginx_metrics_files()
    # python3 runs the health checker (Ubuntu ships it, cloud-init itself is Python: a no-op there).
    packages = ["nginx", "prometheus-node-exporter", "python3", "mtail"]
    if stack.config.load_balancer.tls_domain:
        # certbot (Debian/Ubuntu package) brings certbot.timer, which renews twice a day.
        packages += ["openssl", "certbot"]
        files += [
            _file(CERT_OBTAIN_PATH, obtain_script(stack, paths), "0755", defer=True),
            _file(CERT_DEPLOY_HOOK_PATH, deploy_hook_script(stack, paths), "0755", defer=True),
            _file(f"{SYSTEMD_DIR}/{CERT_SERVICE}", cert_unit(), defer=True),
        ]
    files.append(_file(LB_BOOTSTRAP_PATH, lb_bootstrap(stack, paths), "0755", defer=True))
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
# `mount` exits 0 for a nofail entry whose UUID it cannot resolve (util-linux mount(8): nofail "do not report
# errors for this device if it does not exist"), and the drop-in's ConditionPathIsMountPoint then skips
# Prometheus without an error: only a real mount point counts. Exit 1 fails runcmd, so `cloud-init status`
# reports an error instead of a host that logs "scraping" and runs nothing.
mountpoint -q "$data_dir" || die "$device (UUID=$uuid) is not mounted at $data_dir after mount:" \
    "Prometheus stays stopped; check 'journalctl -b' and /etc/fstab, then run $0 again"
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
    lb_address: str | None = None,
) -> str:
    """#cloud-config for the Prometheus host (Debian/Ubuntu `prometheus` package), with Grafana beside it.

    ``data_devices``: the TSDB volume's stable device paths (:func:`volume_devices`); the bootstrap mounts
    it at the data directory before Prometheus starts. The promtool tests of the rules are not shipped:
    CI runs them, and AWS caps user data at 16 KB. ``lb_address``: the load balancer's private address, which
    the host registers Grafana with when the load balancer serves it over TLS (render/grafana_proxy.py).
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
    runcmd: list[list[str]] = [[MONITORING_BOOTSTRAP_PATH], *grafana_runcmd(stack)]
    if grafana_proxy.grafana_behind_lb(stack):
        if lb_address is None:
            raise ValueError("Grafana is served by the load balancer: pass its private address to register with")
        service, timer = grafana_proxy.register_units(lb_address)
        files += [_file(f"{SYSTEMD_DIR}/{grafana_proxy.REGISTER_SERVICE}", service, defer=True),
                  _file(f"{SYSTEMD_DIR}/{grafana_proxy.REGISTER_TIMER}", timer, defer=True)]
        runcmd.append(["systemctl", "enable", "--now", grafana_proxy.REGISTER_TIMER])
    doc = {
        "hostname": hostname_for(stack, "monitoring"),
        "package_update": True,
        # Grafana's bootstrap fetches its apt key over HTTPS: curl and the CA bundle, which minimal images lack.
        "packages": ["prometheus", "prometheus-node-exporter", *(["curl", "ca-certificates"] if grafana_runcmd(stack) else [])],
        "write_files": files,
        "runcmd": runcmd,
    }
    return _cloud_config(f"Prometheus host of stack {stack.name}.", doc)
