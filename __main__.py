"""gpu-inference: vLLM on rented GPUs behind an Nginx least-connections host, with Prometheus beside it.

Run by `pulumi up`, and offline by `python -m gpu_inference preview` under recording mocks. Which cloud and
layout: the stack config's `provider`, through the registry in gpu_inference/clouds.
"""

import pulumi

from components.config_source import read_stack_config
from components.stack_args import from_config, resolve, secrets_of
from components.stack_layout import deploy
from gpu_inference.catalog import UnknownCatalogEntry
from gpu_inference.errors import ConfigError
from gpu_inference.pricing import bill_for_resources

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

try:
    # Priced from the paid resources as registered, with the same function the preview and policies use.
    monthly_cost: float | None = round(
        bill_for_resources((r.type, r.name, r.inputs) for r in layout.registrations).total_monthly_usd, 2)
except UnknownCatalogEntry as exc:
    # A size the catalog has no price for must not block a deploy; the preview and budget policy refuse it.
    pulumi.log.warn(f"monthlyCostUsd unknown: {exc}")
    monthly_cost = None

sizing = layout.stack.sizing
pulumi.export("endpoint", layout.endpoint)
pulumi.export("nodeAddresses", layout.node_addresses)
pulumi.export("prometheusUrl", layout.prometheus_url)
pulumi.export("monthlyCostUsd", monthly_cost)
pulumi.export("kvCacheTokensPerNode", sizing.kv_cache_tokens)
pulumi.export("maxConcurrencyPerNode", sizing.max_concurrency)
if cfg.api_key is not None:
    pulumi.export("apiKey", api_key)
