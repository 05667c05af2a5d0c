#!/usr/bin/env bash
# Rendered by gpu-inference (gpu_inference/render); do not edit on the machine.
# First boot of a GPU node. DigitalOcean's GPU droplet image and AWS's NVIDIA-driver AMIs ship Docker and
# the NVIDIA container toolkit already: each step checks first and installs only what is missing.
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

if docker info --format '{{json .Runtimes}}' | grep -q '"nvidia"'; then
    log "NVIDIA container runtime already configured"
else
    if ! command -v nvidia-ctk >/dev/null 2>&1; then
        log "installing the NVIDIA container toolkit"
        if command -v apt-get >/dev/null 2>&1; then
            curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey \
                | gpg --batch --yes --dearmor -o /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
            curl -fsSL https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list \
                | sed 's#deb https://#deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] https://#g' \
                > /etc/apt/sources.list.d/nvidia-container-toolkit.list
            retry apt-get update -q
            DEBIAN_FRONTEND=noninteractive retry apt-get install -y -q nvidia-container-toolkit
        else
            curl -fsSL https://nvidia.github.io/libnvidia-container/stable/rpm/nvidia-container-toolkit.repo \
                > /etc/yum.repos.d/nvidia-container-toolkit.repo
            retry dnf install -y -q nvidia-container-toolkit
        fi
    fi
    nvidia-ctk runtime configure --runtime=docker
    systemctl restart docker.service
fi

install -d -m 0755 /opt/models
chmod 0600 /etc/vllm/vllm.env

# Containers publish their ports on the private interface only: its address from the metadata service.
private_ipv4() {
    token=$(curl -fsS --max-time 5 -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 60" http://169.254.169.254/latest/api/token) && curl -fsS --max-time 5 -H "X-aws-ec2-metadata-token: $token" http://169.254.169.254/latest/meta-data/local-ipv4
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
for image in vllm/vllm-openai:v0.19.0 nvcr.io/nvidia/k8s/dcgm-exporter:4.6.0-4.8.3-distroless quay.io/prometheus/node-exporter:v1.9.1; do
    retry docker pull -q "$image"
done

systemctl daemon-reload
systemctl enable --now node-exporter.service dcgm-exporter.service vllm.service vllm-healthcheck.timer
log "vLLM is starting; the model loads for several minutes (journalctl -fu vllm.service)"
