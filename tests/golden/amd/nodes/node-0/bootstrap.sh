#!/usr/bin/env bash
# Rendered by gpu-inference (gpu_inference/render); do not edit on the machine.
# First boot of a GPU node. The clouds' AMD GPU images ship the ROCm driver and
# amd-smi (Docker is installed if missing): each step checks first and installs only what is missing.
set -euo pipefail

log() { echo "gpu-inference-bootstrap: $*"; }
die() { log "ERROR: $*"; exit 1; }

retry() {
    local attempt
    for attempt in 1 2 3 4 5; do
        if "$@"; then return 0; fi
        log "attempt $attempt of '$*' failed; retrying in 15s"
        sleep 15
    done
    return 1
}

command -v amd-smi >/dev/null 2>&1 || die "no ROCm driver tools (amd-smi missing): use the provider's AMD GPU image"
[[ -e /dev/kfd ]] || die "no /dev/kfd: the amdgpu kernel driver is not loaded, so no container can use the GPU"
amd-smi static --asic --vram || die "amd-smi cannot talk to the GPU"

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

log "ROCm containers take the GPU as /dev/kfd and /dev/dri: no container runtime to configure"

install -d -m 0755 /opt/models
chmod 0600 /etc/vllm/vllm.env

# Containers publish their ports on the private interface only: its address from the metadata service.
private_ipv4() {
    curl -fsS --max-time 5 http://169.254.169.254/metadata/v1/interfaces/private/0/ipv4/address
}
private_ip=""
for attempt in 1 2 3 4 5; do
    if private_ip=$(private_ipv4) && [[ "$private_ip" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]]; then
        break
    fi
    private_ip=""
    log "attempt $attempt to read the private IPv4 from the metadata service failed; retrying in 5s"
    sleep 5
done
[[ -n "$private_ip" ]] || die "no private IPv4 from the metadata service: refusing to publish ports on every interface"
install -d -m 0755 /etc/gpu-inference
printf 'GPU_INFERENCE_PRIVATE_IP=%s\n' "$private_ip" > /etc/gpu-inference/network.env
log "services listen on $private_ip (private) and 127.0.0.1"

# Pull before starting: the pull is the slow part of a first boot and is worth its own log lines.
for image in vllm/vllm-openai-rocm:v0.19.0 rocm/device-metrics-exporter:v1.5.0 quay.io/prometheus/node-exporter:v1.9.1; do
    retry docker pull -q "$image"
done

systemctl daemon-reload
systemctl enable --now node-exporter.service amd-metrics-exporter.service vllm.service vllm-healthcheck.timer
log "vLLM is starting; the model loads for several minutes (journalctl -fu vllm.service)"
