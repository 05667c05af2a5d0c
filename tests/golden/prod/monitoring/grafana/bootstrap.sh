#!/usr/bin/env bash
# Rendered by gpu-inference (gpu_inference/render); do not edit on the machine.
# First boot of Grafana on the Prometheus host: Grafana's apt repository, the pinned release, provisioning
# from files (written by cloud-init), then start. Safe to run again.
set -euo pipefail

log() { echo "gpu-inference-grafana-bootstrap: $*"; }

version=12.3.0
export DEBIAN_FRONTEND=noninteractive
if [[ ! -s /etc/apt/keyrings/grafana.asc ]]; then
    install -d -m 0755 /etc/apt/keyrings
    curl -fsSL --retry 5 --retry-delay 5 -o /etc/apt/keyrings/grafana.asc.tmp https://apt.grafana.com/gpg-full.key
    chmod 0644 /etc/apt/keyrings/grafana.asc.tmp
    mv /etc/apt/keyrings/grafana.asc.tmp /etc/apt/keyrings/grafana.asc
fi
echo 'deb [signed-by=/etc/apt/keyrings/grafana.asc] https://apt.grafana.com stable main' > /etc/apt/sources.list.d/grafana.list
apt-get update -o Dir::Etc::sourcelist=/etc/apt/sources.list.d/grafana.list -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0
apt-get install -y --no-install-recommends "grafana=$version"
# Pinned: an unattended upgrade must not move Grafana under the dashboards.
apt-mark hold grafana

# No grafanaAdminPassword in the stack config: make one here, once, readable by root (and Grafana) only.
if [[ ! -s /etc/grafana/gpu-inference/admin-password ]]; then
    install -d -m 0750 /etc/grafana/gpu-inference
    (umask 077; head -c 32 /dev/urandom | base64 | tr -d '/+=\n' > /etc/grafana/gpu-inference/admin-password)
    log "generated the admin password into /etc/grafana/gpu-inference/admin-password"
fi

[[ -s /etc/grafana/gpu-inference/admin-password ]] || { log "ERROR: no admin password in /etc/grafana/gpu-inference/admin-password"; exit 1; }
chown root:grafana /etc/grafana/gpu-inference /etc/grafana/gpu-inference/admin-password
chmod 0750 /etc/grafana/gpu-inference
chmod 0640 /etc/grafana/gpu-inference/admin-password
chown -R root:grafana /var/lib/grafana/dashboards/gpu-inference
systemctl daemon-reload
systemctl enable grafana-server.service
systemctl restart grafana-server.service
log "Grafana $version on :3000, dashboards from /var/lib/grafana/dashboards/gpu-inference"
