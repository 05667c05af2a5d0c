"""Every tunable of the product in one place, each with the reason it has its value."""

from __future__ import annotations

from pathlib import Path

# The vLLM release every stack runs unless it pins another. Sizing calibration, metric names in
# alert rules and the test server all follow this version: v0.19 is the newest release with a full
# set of raw startup logs in the calibration data, and it already exposes the renamed metrics
# (vllm:kv_cache_usage_perc, vllm:inter_token_latency_seconds).
VLLM_VERSION = "0.19.0"
VLLM_IMAGE = f"vllm/vllm-openai:v{VLLM_VERSION}"

# Billing convention: AWS and most price sheets quote monthly figures as 730 hours (8760 / 12).
HOURS_PER_MONTH = 730.0

# Port the vLLM OpenAI server listens on inside each GPU node (vLLM's own default).
VLLM_PORT = 8000
# node_exporter's and NVIDIA dcgm-exporter's default ports.
NODE_EXPORTER_PORT = 9100
DCGM_EXPORTER_PORT = 9400
# AMD Device Metrics Exporter's default port (ROCm/device-metrics-exporter docs: http://localhost:5000/metrics).
AMD_METRICS_EXPORTER_PORT = 5000
PROMETHEUS_PORT = 9090
# mtail's default HTTP port (`mtail -port`): the load balancer's Nginx request metrics.
MTAIL_PORT = 3903
# Grafana's default HTTP port (grafana.ini [server] http_port).
GRAFANA_PORT = 3000
# With a TLS domain the load balancer proxies https://<domain>/grafana/ to Grafana; the monitoring host tells it
# its address on this port (render/grafana_registrar_agent.py); clear of every port the hosts already use.
GRAFANA_REGISTRAR_PORT = 9101
# Grafana OSS release the monitoring host installs from apt.grafana.com unless the stack pins another
# (monitoring.grafanaVersion): 12.3.0, released 2025-11-19 (grafana/grafana's changelog, as quoted in
# @grafana/data's release notes).
GRAFANA_VERSION = "12.3.0"
NGINX_HTTP_PORT = 80
NGINX_HTTPS_PORT = 443

# vLLM's KV-cache block size on CUDA (tokens per block).
KV_BLOCK_SIZE = 16

PACKAGE_DIR = Path(__file__).resolve().parent
DATA_DIR = PACKAGE_DIR / "data"
PROJECT_DIR = PACKAGE_DIR.parent
PROJECT_NAME = "gpu-inference"

# How long the post-deploy smoke check waits for the endpoint to serve (issue 14): a 70B checkpoint in bf16
# is ~140 GB, ~25 min at 100 MB/s from the Hub, plus the droplet's boot, the NVIDIA toolkit, the ~10 GB vLLM
# image and loading the weights onto the GPUs; an hour covers that with room to spare.
SMOKE_TIMEOUT_SECONDS = 3600.0
