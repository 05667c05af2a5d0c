#!/usr/bin/env bash
# Rendered by gpu-inference (gpu_inference/render); do not edit on the machine.
# First boot of the load balancer: nginx.conf was written by cloud-init after the nginx package.
set -euo pipefail

log() { echo "gpu-inference-lb-bootstrap: $*"; }

nginx -t
systemctl daemon-reload
systemctl enable nginx.service prometheus-node-exporter.service gpu-inference-lb-healthcheck.service
systemctl restart nginx.service
systemctl restart prometheus-node-exporter.service
# After nginx: it reloads nginx whenever a node leaves or rejoins the rotation.
systemctl restart gpu-inference-lb-healthcheck.service
log "nginx is balancing over the GPU nodes; node health: journalctl -u gpu-inference-lb-healthcheck.service"
