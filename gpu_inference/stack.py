"""A validated stack config resolved against the catalog: offering, GPU, model architecture, sizing.

This is the object the components, the policy pack, the preview and the cost tools share, so that
each of them sees the same GPU, the same model and the same sizing arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from gpu_inference.catalog import Catalog, Gpu, Offering, UnknownCatalogEntry, load_catalog
from gpu_inference.clouds import Cloud, cloud_for
from gpu_inference.config import NAMESPACE, StackConfig
from gpu_inference.errors import ConfigError
from gpu_inference.model_arch import ModelArchitecture, UnknownModel, resolve_model
from gpu_inference.sizing import SizingRequest, SizingResult, size_deployment


@dataclass(frozen=True)
class ResolvedStack:
    """A stack config plus the catalog entries it names."""

    name: str
    config: StackConfig
    offering: Offering
    gpu: Gpu
    model: ModelArchitecture
    catalog: Catalog = field(repr=False, compare=False)

    @property
    def cloud(self) -> Cloud:
        """The cloud module of the stack's provider."""
        return cloud_for(self.config.provider)

    @property
    def lb_size(self) -> str:
        """Size of the Nginx host: the config's, else the catalog's default for the stack's cloud."""
        return self.config.load_balancer.size or self.catalog.default_infra_size(self.cloud.catalog_cloud, "loadbalancer")

    @property
    def monitoring_size(self) -> str:
        """Size of the Prometheus host: the config's, else the catalog's default for the stack's cloud."""
        return self.config.monitoring.size or self.catalog.default_infra_size(self.cloud.catalog_cloud, "monitoring")

    @property
    def gpus_per_node(self) -> int:
        return self.offering.gpu_count

    @property
    def tensor_parallel_size(self) -> int:
        """vLLM --tensor-parallel-size: the configured value, or every GPU on the node."""
        return self.config.tensor_parallel_size or self.offering.gpu_count

    def sizing_request(self) -> SizingRequest:
        cfg = self.config
        return SizingRequest(
            model=self.model,
            gpu_memory_gib=self.gpu.usable_memory_gib,
            gpu_name=self.gpu.name,
            gpu_supports_fp8=self.gpu.fp8,
            gpu_vendor=self.gpu.vendor,
            gpu_multiprocessors=self.gpu.multiprocessors,
            tensor_parallel_size=self.tensor_parallel_size,
            pipeline_parallel_size=1,
            max_model_len=cfg.max_model_len,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            dtype=cfg.dtype,
            quantization=cfg.quantization,
            kv_cache_dtype=cfg.kv_cache_dtype,
            max_num_seqs=cfg.max_num_seqs,
            vllm_version=cfg.vllm_version,
        )

    @cached_property
    def sizing(self) -> SizingResult:
        return size_deployment(self.sizing_request())


def resolve_stack(config: StackConfig, name: str = "stack", catalog: Catalog | None = None) -> ResolvedStack:
    """Look up the offering, GPU and model a config names; every miss is a ConfigError with close matches."""
    catalog = catalog or load_catalog()
    problems: list[str] = []
    offering: Offering | None = None
    try:
        offering = catalog.offering(config.gpu)
    except UnknownCatalogEntry as exc:
        problems.append(f"{NAMESPACE}:gpu = {config.gpu!r} is not in the catalog: {exc}")
    sold_by = cloud_for(config.provider).catalog_cloud
    if offering is not None and offering.cloud != sold_by:
        choices = ", ".join(o.id for o in catalog.offerings_for(sold_by))
        problems.append(
            f"{NAMESPACE}:gpu = {config.gpu!r} is a {offering.cloud} offering but provider is "
            f"{config.provider}; choose one of {choices}"
        )
    model: ModelArchitecture | None = None
    try:
        model = resolve_model(config.model)
    except UnknownModel as exc:
        problems.append(f"{NAMESPACE}:model = {config.model!r} is unknown: {exc}")
    if offering is not None and config.tensor_parallel_size and config.tensor_parallel_size > offering.gpu_count:
        problems.append(
            f"{NAMESPACE}:tensorParallelSize = {config.tensor_parallel_size} exceeds the "
            f"{offering.gpu_count} GPU(s) of {offering.id}; allowed 1..{offering.gpu_count}"
        )
    if problems or offering is None or model is None:
        raise ConfigError(problems, source=name)
    stack = ResolvedStack(
        name=name, config=config, offering=offering, gpu=catalog.gpu(offering.gpu), model=model, catalog=catalog
    )
    from gpu_inference.gpu_vendor import image_problems  # gpu_vendor reads ResolvedStack

    image = image_problems(stack)
    if image:
        raise ConfigError(image, source=name)
    return stack


def check_stack_name(stack: ResolvedStack) -> None:
    """Refuse, before anything is created, a stack name the cloud's cloud-side names cannot carry."""
    problems = stack.cloud.stack_name_problems(stack.name, stack.config)
    if problems:
        raise ConfigError(problems)
