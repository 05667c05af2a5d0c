#!/usr/bin/env bash
# Rendered by gpu-inference (gpu_inference/render); do not edit on the machine.
# First boot of the Prometheus host: validate everything with promtool before (re)starting Prometheus.
set -euo pipefail

log() { echo "gpu-inference-monitoring-bootstrap: $*"; }

promtool check config /etc/prometheus/prometheus.yml
promtool check rules /etc/prometheus/rules/gpu-inference.yml
systemctl enable prometheus.service prometheus-node-exporter.service
systemctl restart prometheus.service
systemctl restart prometheus-node-exporter.service
log "Prometheus is scraping; alerts: http://localhost:9090/alerts"
