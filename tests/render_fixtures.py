"""Fixed inputs for the renderer, validator and golden tests: a dev-like and a prod-like stack.

Addresses are fixed private IPs and secrets are obvious placeholders, so golden files are stable and
never hold anything real.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from gpu_inference.config import StackConfig
from gpu_inference.render import render_all
from gpu_inference.secrets import SecretValue
from gpu_inference.stack import ResolvedStack, resolve_stack

API_KEY = "PLACEHOLDER-api-key"
HF_TOKEN = "PLACEHOLDER-hf-token"


@dataclass(frozen=True)
class Scenario:
    name: str
    stack: ResolvedStack
    node_addresses: list[str]
    lb_address: str
    api_key: str | None
    hf_token: str | None

    def render(self) -> dict[str, str]:
        return render_all(
            self.stack, self.node_addresses, self.lb_address, self.api_key, self.hf_token
        )


def dev_config() -> StackConfig:
    """1 × L40S on DigitalOcean serving Qwen3-8B, no API key, defaults everywhere else."""
    return StackConfig.model_validate(
        {
            "provider": "digitalocean",
            "region": "tor1",
            "gpu": "gpu-l40sx1-48gb",
            "nodeCount": 1,
            "model": "Qwen/Qwen3-8B",
            "maxModelLen": 8192,
            "monthlyBudgetUsd": 2000,
        }
    )


def prod_config() -> StackConfig:
    """3 × g6e.12xlarge (4 × L40S each) on AWS serving Llama 3.3 70B in FP8, API key, TLS, tuned alerts."""
    return StackConfig.model_validate(
        {
            "provider": "aws",
            "region": "us-east-1",
            "gpu": "g6e.12xlarge",
            "nodeCount": 3,
            "model": "meta-llama/Llama-3.3-70B-Instruct",
            "servedModelName": "llama-3.3-70b",
            "quantization": "fp8",
            "kvCacheDtype": "fp8",
            "maxModelLen": 16384,
            "maxNumSeqs": 128,
            "gpuMemoryUtilization": 0.92,
            "monthlyBudgetUsd": 60000,
            "apiKey": SecretValue(plaintext=API_KEY),
            "hfToken": SecretValue(plaintext=HF_TOKEN),
            "monitoring": {
                "scrapeIntervalSeconds": 15,
                "retention": "30d",
                "queueDepthThreshold": 32,
                "queueDepthFor": "3m",
                "kvCacheUsageThreshold": 0.95,
                "kvCacheFor": "10m",
                "ttftP95Seconds": 1.5,
                "ttftFor": "5m",
                "targetDownFor": "2m",
                "gpuMemoryUsageThreshold": 0.97,
                "gpuTemperatureCelsius": 83,
                "diskFreeRatio": 0.15,
            },
            "loadBalancer": {
                "readTimeoutSeconds": 900,
                "clientMaxBodySizeMb": 16,
                "maxFails": 3,
                "failTimeoutSeconds": 20,
                "proxyNextUpstreamTries": 3,
                "tlsDomain": "llm.example.com",
            },
        }
    )


@cache
def dev() -> Scenario:
    return Scenario("dev", resolve_stack(dev_config(), name="dev"), ["10.0.0.2"], "10.0.0.10", None, HF_TOKEN)


@cache
def prod() -> Scenario:
    return Scenario(
        "prod",
        resolve_stack(prod_config(), name="prod"),
        ["10.0.1.2", "10.0.1.3", "10.0.1.4"],
        "10.0.1.10",
        API_KEY,
        HF_TOKEN,
    )


def amd_config() -> StackConfig:
    """2 × MI300X droplets on DigitalOcean (ROCm) serving Llama 3.1 70B in bf16 with an HF token (gated)."""
    return StackConfig.model_validate(
        {
            "provider": "digitalocean",
            "region": "atl1",
            "gpu": "gpu-mi300x1-192gb",
            "nodeCount": 2,
            "model": "meta-llama/Llama-3.1-70B-Instruct",
            "maxModelLen": 32768,
            "maxNumSeqs": 64,
            "monthlyBudgetUsd": 3500,
            "apiKey": SecretValue(plaintext=API_KEY),
            "hfToken": SecretValue(plaintext=HF_TOKEN),
        }
    )


@cache
def amd() -> Scenario:
    return Scenario("amd", resolve_stack(amd_config(), name="amd"), ["10.0.2.2", "10.0.2.3"], "10.0.2.10",
                    API_KEY, HF_TOKEN)


SCENARIOS = {"dev": dev, "prod": prod, "amd": amd}


@cache
def kube() -> ResolvedStack:
    """3 × L40S as a GPU pool on a DOKS cluster, namespace llm, API key set (not a golden scenario:
    its files are the same renderers with in-cluster names, see gpu_inference/render/kubernetes.py)."""
    config = StackConfig.model_validate(
        {
            "provider": "kubernetes",
            "region": "tor1",
            "gpu": "gpu-l40sx1-48gb",
            "nodeCount": 3,
            "model": "Qwen/Qwen3-8B",
            "monthlyBudgetUsd": 5000,
            "publicEndpoint": False,
            "allowedCidrs": ["198.51.100.0/24"],
            "kubernetes": {"clusterId": "c-1", "namespace": "llm"},
            "apiKey": SecretValue(plaintext=API_KEY),
        }
    )
    return resolve_stack(config, name="kube")
