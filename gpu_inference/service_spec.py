"""The deployment spec of one vLLM service: what the policies read, as one typed model.

The ``VllmService`` component registers it as its props (and again as outputs, for the stack policy), AWS
instances carry it as tags, and the policies parse it back from whichever they are shown. One model, one
serialisation (camelCase, like the stack config): ``props()`` out, ``from_props()`` in.

No Pulumi import.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from gpu_inference import naming
from gpu_inference.constants import VLLM_IMAGE
from gpu_inference.gpu_vendor import vllm_image
from gpu_inference.vocabulary import (
    DEFAULT_DTYPE,
    DEFAULT_GPU_MEMORY_UTILIZATION,
    DEFAULT_KV_CACHE_DTYPE,
    Dtype,
    KvCacheDtype,
    Quantization,
)

if TYPE_CHECKING:
    from gpu_inference.stack import ResolvedStack

CHECKPOINT: Literal["checkpoint"] = "checkpoint"
"""The spec's word for "no quantization flag: whatever the checkpoint has" (the config's omitted value)."""


class ServiceSpec(BaseModel):
    """One vLLM service as deployed: model, GPUs, vLLM flags, and the stack-wide values the policies need.

    ``from_stack`` fills every field; parsing (``from_props``) requires only what resolving the service needs
    (the config keys without a default), so a spec from an older component still sizes. Derived facts (GPU
    name and memory, vLLM version) are for people reading the props, never read back.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore",
                              use_attribute_docstrings=True)

    model: str
    """Catalog model id or config.json path (``gpu-inference:model``)."""
    model_repo: str | None = None
    """The repo vLLM downloads when it is not the model id (``gpu-inference:modelRepo``)."""
    model_gated: bool | None = None
    """``gpu-inference:modelGated``: whether that repo is gated (None: the catalog's record)."""
    hf_token_set: bool = False
    """Whether the nodes get a Hugging Face token (the token itself is a secret and never part of the spec)."""
    served_model_name: str | None = None
    """The name clients use in the API's ``model`` field."""
    gpu: str
    """Catalog offering id."""
    gpu_name: str | None = None
    gpu_count: int | None = Field(None, ge=1)
    gpu_memory_gib: float | None = Field(None, gt=0)
    """Usable memory per GPU as CUDA reports it."""
    node_count: int = Field(1, ge=1)
    tensor_parallel_size: int | None = Field(None, ge=1)
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    dtype: Dtype = DEFAULT_DTYPE
    quantization: Quantization | Literal["checkpoint"] = CHECKPOINT
    kv_cache_dtype: KvCacheDtype = DEFAULT_KV_CACHE_DTYPE
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION
    vllm_version: str | None = None
    vllm_image: str = VLLM_IMAGE
    typical_request_tokens: int | None = None
    provider: str
    region: str
    api_key_set: bool = False
    """Whether clients must send an API key (the key itself is a secret and never part of the spec)."""
    monthly_budget_usd: float
    allowed_cidrs: list[str] = Field(default_factory=list)
    public_endpoint: bool = True
    cluster_id: str | None = None
    """Kubernetes only: the cluster the service runs on."""
    tls_domain: str | None = None
    """The name the load balancer serves HTTPS for (``loadBalancer.tlsDomain``); None: the endpoint is plain HTTP."""

    @model_validator(mode="before")
    @classmethod
    def _image_from_version(cls, data: Any) -> Any:
        # A spec that names only the vLLM version runs that version's official image for its GPU's vendor.
        if isinstance(data, Mapping) and not data.get("vllmImage") and data.get("vllmVersion"):
            return {**data, "vllmImage": _vendor_image(data.get("gpu"), str(data["vllmVersion"]))}
        return data

    @classmethod
    def from_stack(cls, stack: ResolvedStack) -> ServiceSpec:
        cfg = stack.config
        return cls(
            model=cfg.model,
            model_repo=cfg.model_repo,
            model_gated=cfg.model_gated,
            hf_token_set=cfg.hf_token is not None,
            served_model_name=cfg.name_for_clients,
            gpu=stack.offering.id,
            gpu_name=stack.gpu.name,
            gpu_count=stack.offering.gpu_count,
            gpu_memory_gib=stack.gpu.usable_memory_gib,
            node_count=cfg.node_count,
            tensor_parallel_size=stack.tensor_parallel_size,
            max_model_len=cfg.max_model_len,
            max_num_seqs=cfg.max_num_seqs,
            dtype=cfg.dtype,
            quantization=cfg.quantization or CHECKPOINT,
            kv_cache_dtype=cfg.kv_cache_dtype,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            vllm_version=cfg.vllm_version,
            # The image the nodes run: the vendor's (ROCm on AMD) unless the config pins one.
            vllm_image=vllm_image(stack),
            typical_request_tokens=cfg.typical_request_tokens,
            provider=cfg.provider,
            region=cfg.region,
            api_key_set=cfg.api_key is not None,
            monthly_budget_usd=cfg.monthly_budget_usd,
            allowed_cidrs=list(cfg.allowed_cidrs),
            public_endpoint=cfg.public_endpoint,
            cluster_id=cfg.kubernetes.cluster_id if cfg.kubernetes else None,
            tls_domain=cfg.load_balancer.tls_domain,
        )

    @classmethod
    def from_props(cls, props: Mapping[str, Any]) -> ServiceSpec:
        """Parse the spec back from a component's props (numbers may arrive as doubles: 8192.0 reads as 8192)."""
        return cls.model_validate(dict(props))

    def props(self) -> dict[str, Any]:
        """The spec as component props / outputs: camelCase keys, plain JSON values."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def labels(self) -> dict[str, str]:
        """The spec as ``gpu-inference:<key>`` tags: tag values are strings, so lists and booleans as JSON."""
        return {naming.label_key(k): v if isinstance(v, str) else json.dumps(v) for k, v in self.props().items()}

    def stack_config(self) -> dict[str, Any]:
        """The ``gpu-inference:*`` config (camelCase) this service was deployed from, for the sizing to resolve."""
        raw: dict[str, Any] = {
            key: value for key, value in self.props().items()
            if key in _CONFIG_KEYS
        }
        if self.quantization == CHECKPOINT:
            raw.pop("quantization", None)
        if self.cluster_id:
            raw["kubernetes"] = {"clusterId": self.cluster_id}
        return raw


def _vendor_image(offering: Any, version: str) -> str:
    from gpu_inference.catalog import UnknownCatalogEntry, load_catalog
    from gpu_inference.gpu_vendor import NVIDIA, VENDORS

    try:
        catalog = load_catalog()
        vendor = VENDORS[catalog.gpu(catalog.offering(str(offering)).gpu).vendor]
    except (UnknownCatalogEntry, KeyError):
        vendor = NVIDIA  # an unknown offering is refused by gpu-availability anyway
    return vendor.default_vllm_image(version)


# The spec fields that are stack config keys as they are (the others are derived: GPU facts, vLLM version).
_CONFIG_KEYS = frozenset({
    "model", "modelRepo", "modelGated",
    "gpu", "provider", "region", "nodeCount", "tensorParallelSize", "maxModelLen", "maxNumSeqs", "dtype",
    "quantization", "kvCacheDtype", "gpuMemoryUtilization", "vllmImage", "typicalRequestTokens",
    "monthlyBudgetUsd", "allowedCidrs", "publicEndpoint",
})  # fmt: skip
