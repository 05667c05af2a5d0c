"""gpu-inference: vLLM on rented GPUs behind an Nginx least-connections host, with Prometheus beside it.

Run by `pulumi up`, and offline by `python -m gpu_inference preview` under recording mocks. Which cloud and
layout: the stack config's `provider`, through the registry in gpu_inference/clouds.
"""

import pulumi

from components.config_source import read_stack_config
from components.stack_args import from_config, resolve, secrets_of
from components.stack_layout import deploy
from gpu_inference.errors import ConfigError

try:
    cfg = read_stack_config()
    secrets = secrets_of(cfg)
    args = from_config(cfg, secrets)
    resolve(args)  # every check (config, catalog, stack name) before the first resource
except ConfigError as exc:
    # One readable message, and nothing registered: a half-created stack is worse than none.
    pulumi.log.error(exc.render())
    raise pulumi.RunError("stopped before creating anything: fix the stack config above") from exc

layout = deploy(args)
pool, monitoring = layout.pool, layout.monitoring
api_key = secrets.api_key

sizing = layout.stack.sizing
pulumi.export("endpoint", layout.endpoint)
# What clients (and the CI smoke step) put in `model`.
pulumi.export("servedModelName", layout.stack.config.name_for_clients)
pulumi.export("nodeAddresses", layout.node_addresses)
pulumi.export("prometheusUrl", layout.prometheus_url)
pulumi.export("grafanaUrl", monitoring.grafana_url if monitoring else None)
pulumi.export("monthlyCostUsd", layout.monthly_cost_usd())
pulumi.export("kvCacheTokensPerNode", sizing.kv_cache_tokens)
pulumi.export("maxConcurrencyPerNode", sizing.max_concurrency)
if cfg.api_key is not None:
    pulumi.export("apiKey", api_key)
