#!/usr/bin/env bash
# Rendered by gpu-inference (gpu_inference/render); do not edit on the machine.
# Obtain the certificate for llm.example.com from https://acme-v02.api.letsencrypt.org/directory (HTTP-01 through the
# nginx webroot). Run by gpu-inference-cert.service, retried until it succeeds; renewals are certbot.timer's job.
set -euo pipefail

log() { echo "gpu-inference-cert-obtain: $*"; }

if [[ -s /etc/letsencrypt/live/llm.example.com/fullchain.pem ]]; then
    log "certbot already holds a certificate for llm.example.com; renewals run from certbot.timer"
    exit 0
fi
install -d -m 0755 /var/www/acme
log "requesting a certificate for llm.example.com (nginx keeps serving the placeholder until it arrives)"
certbot certonly --non-interactive --agree-tos \
    --register-unsafely-without-email \
    --server https://acme-v02.api.letsencrypt.org/directory \
    --webroot \
    -w /var/www/acme \
    -d llm.example.com \
    --cert-name llm.example.com \
    --keep-until-expiring \
    --deploy-hook /usr/local/sbin/gpu-inference-cert-deploy
log "certificate for llm.example.com issued and deployed"
