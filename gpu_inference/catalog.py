"""The hardware and price catalog: GPUs, GPU offerings, small infrastructure hosts and storage prices.

Everything lives as human-edited YAML under ``gpu_inference/data`` (``gpus.yaml`` and
``offerings/*.yaml``); every price row carries the date it was read and where. ``load_catalog`` parses
and cross-checks the files once (cached) and fails with one message naming the file and row when
something is wrong, so a bad edit never turns into a silently wrong bill.

Lookups raise ``UnknownCatalogEntry`` (a ``LookupError``) with close matches, never return ``None``.
"""

from __future__ import annotations

import datetime
import difflib
import functools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gpu_inference.constants import DATA_DIR, HOURS_PER_MONTH

Vendor = Literal["nvidia", "amd"]
InfraRole = Literal["loadbalancer", "monitoring"]
StorageKind = Literal["volume", "ebs-gp3"]
Interconnect = Literal["nvlink", "pcie", "infinity-fabric"]
AddressKind = Literal["public-ipv4", "reserved-ipv4-assigned"]
LoadBalancerKind = Literal["regional"]
_M = TypeVar("_M", bound=BaseModel)

OFFERINGS_DIR = "offerings"
INFRA_FILE = "infrastructure.yaml"
GPUS_FILE = "gpus.yaml"


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class GpuPerf(_Row):
    """Peak figures from the vendor's data sheet, for the capacity planner's roofline (``estimate.py``)."""

    memory_bandwidth_gb_s: float = Field(gt=0)
    """Memory (HBM / GDDR) bandwidth, GB/s."""
    bf16_dense_tflops: float = Field(gt=0)
    """Dense (no 2:4 sparsity) BF16 tensor throughput, TFLOPS."""
    fp8_dense_tflops: float | None = Field(default=None, gt=0)
    """Dense FP8 tensor throughput, TFLOPS; ``None`` without FP8 tensor cores."""
    interconnect: Interconnect
    """The GPU-to-GPU link tensor-parallel all-reduces use."""
    interconnect_gb_s: float = Field(gt=0)
    """That link's bandwidth per GPU and direction, GB/s."""
    source: str = Field(min_length=1)
    source_date: datetime.date


class Gpu(_Row):
    """One GPU model, with the memory vLLM can actually budget against."""

    id: str = Field(min_length=1)
    """Catalog id, e.g. ``H100-80GB``; offerings refer to it."""
    name: str
    """Human-readable model name."""
    vendor: Vendor
    """``nvidia`` (CUDA image) or ``amd`` (ROCm image)."""
    memory_gb_marketed: int = Field(gt=0)
    """The size on the box, in GB."""
    usable_memory_gib: float = Field(gt=0)
    """Total memory as ``torch.cuda.mem_get_info()`` reports it, GiB; vLLM's budget is this x utilization."""
    usable_memory_source: str = Field(min_length=1)
    """Where ``usable_memory_gib`` comes from (measured log line, or how it was derived)."""
    architecture: str
    """``ada``, ``hopper``, ``ampere`` or ``cdna3``."""
    compute_capability: str | None
    """CUDA compute capability (``"9.0"``); ``None`` for AMD."""
    fp8: bool
    """Hardware FP8 (weights or KV cache) support."""
    bf16: bool
    """BF16 support."""
    multiprocessors: int | None = Field(default=None, gt=0)
    """Streaming multiprocessors (AMD: compute units); sizes the sampler's top-k/top-p buffer."""
    perf: GpuPerf
    """Bandwidth, tensor throughput and interconnect, with their source."""

    @model_validator(mode="after")
    def _fp8_figure_matches_support(self) -> Gpu:
        if self.fp8 != (self.perf.fp8_dense_tflops is not None):
            raise ValueError(f"fp8 is {self.fp8} but perf.fp8_dense_tflops is {self.perf.fp8_dense_tflops}")
        return self


class Offering(_Row):
    """A GPU machine size one cloud rents (its own size slug or instance type)."""

    id: str = Field(min_length=1)
    """The cloud's own name for the size (a machine size slug or an instance type)."""
    cloud: str = Field(min_length=1)
    """The cloud that rents it (``Cloud.catalog_cloud`` of the clouds that buy it)."""
    gpu: str
    """``Gpu.id`` of the GPUs in the machine."""
    gpu_count: int = Field(ge=1)
    vcpus: int = Field(ge=1)
    memory_gib: float = Field(gt=0)
    """Host RAM in GiB."""
    disk_gb: int | None
    """Boot disk that comes with the size; ``None`` where the root disk is bought separately (EBS)."""
    hourly_usd: float = Field(gt=0)
    """On-demand price for the whole machine (all its GPUs), USD per hour."""
    spot_hourly_usd: float | None = Field(default=None, gt=0)
    """Spot price when a dated one is known; ``None`` means unknown or no spot tier."""
    regions: list[str] = Field(min_length=1)
    """Regions / datacenters where the size is offered (see ``regions_source``)."""
    price_date: datetime.date
    price_source: str = Field(min_length=1)
    regions_source: str = ""
    notes: str = ""

    @model_validator(mode="after")
    def _spot_below_on_demand(self) -> Offering:
        if self.spot_hourly_usd is not None and self.spot_hourly_usd >= self.hourly_usd:
            raise ValueError(
                f"spot_hourly_usd {self.spot_hourly_usd} must be below hourly_usd {self.hourly_usd}"
            )
        return self

    @property
    def monthly_usd(self) -> float:
        """On-demand month at the 730 h convention."""
        return self.hourly_usd * HOURS_PER_MONTH


class InfraOffering(_Row):
    """A small non-GPU host (Nginx load balancer, Prometheus)."""

    id: str = Field(min_length=1)
    cloud: str = Field(min_length=1)
    vcpus: int = Field(ge=1)
    memory_gib: float = Field(gt=0)
    hourly_usd: float = Field(gt=0)
    monthly_cap_usd: float | None = Field(gt=0)
    """The most the cloud bills for the size per month (an hourly price capped monthly); ``None``: no cap."""
    price_date: datetime.date
    price_source: str = Field(min_length=1)
    roles: list[InfraRole] = Field(default_factory=list)
    """Roles this size is the default for (at most one size per cloud and role)."""

    def monthly_usd(self, hours: float = HOURS_PER_MONTH) -> float:
        """Cost of running it ``hours`` in a month, capped where the cloud caps it."""
        uncapped = self.hourly_usd * hours
        return uncapped if self.monthly_cap_usd is None else min(uncapped, self.monthly_cap_usd)


class StoragePrice(_Row):
    """Block storage price per provisioned GB-month."""

    cloud: str = Field(min_length=1)
    kind: StorageKind
    """The cloud's volume product (``volume``, ``ebs-gp3``)."""
    usd_per_gb_month: float = Field(gt=0)
    price_date: datetime.date
    price_source: str = Field(min_length=1)


class AddressPrice(_Row):
    """A per-address charge (AWS bills every public IPv4 by the hour). Zero only for a sourced free case
    (e.g. a reserved IPv4 that is free while assigned to a machine)."""

    cloud: str = Field(min_length=1)
    kind: AddressKind
    hourly_usd: float = Field(ge=0)
    price_date: datetime.date
    price_source: str = Field(min_length=1)


class LoadBalancerPrice(_Row):
    """A managed cloud load balancer, priced per node (a regional LB scales in nodes)."""

    cloud: str = Field(min_length=1)
    kind: LoadBalancerKind
    hourly_usd: float = Field(gt=0)
    """Per load-balancer node."""
    monthly_cap_usd: float | None = Field(gt=0)
    """Per node, billed hourly up to this cap; ``None`` where there is no cap."""
    price_date: datetime.date
    price_source: str = Field(min_length=1)

    def monthly_usd(self, hours: float = HOURS_PER_MONTH) -> float:
        """One node for ``hours`` in a month, capped where the cloud caps it."""
        uncapped = self.hourly_usd * hours
        return uncapped if self.monthly_cap_usd is None else min(uncapped, self.monthly_cap_usd)


class UnknownCatalogEntry(LookupError):
    """A lookup by id that the catalog does not have; the message names close matches."""

    def __init__(self, kind: str, value: str, candidates: Iterable[str] = ()) -> None:
        self.kind = kind
        self.value = value
        self.close_matches = difflib.get_close_matches(value, sorted(set(candidates)), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(m) for m in self.close_matches)}?" if self.close_matches else ""
        super().__init__(f"unknown {kind} {value!r}{hint}")

    def __str__(self) -> str:
        return str(self.args[0])


class CatalogError(ValueError):
    """A catalog data file is malformed or inconsistent; the message names the file and the row."""


class Catalog(BaseModel):
    """All catalog data, keyed by id. Build it with ``load_catalog``.

    Extra attributes are allowed so later data sets (e.g. model architectures) can ride along.
    """

    model_config = ConfigDict(extra="allow")

    gpus: dict[str, Gpu]
    offerings: dict[str, Offering]
    infra: dict[str, InfraOffering]
    storage: dict[str, StoragePrice]
    """Keyed ``"<cloud>/<kind>"``, e.g. ``"aws/ebs-gp3"``; use ``storage_price``."""
    addresses: dict[str, AddressPrice] = Field(default_factory=dict)
    """Keyed ``"<cloud>/<kind>"``, e.g. ``"aws/public-ipv4"``; use ``address_price``."""
    load_balancers: dict[str, LoadBalancerPrice] = Field(default_factory=dict)
    """Keyed ``"<cloud>/<kind>"``, e.g. ``"aws/regional"``; use ``load_balancer_price``."""

    def gpu(self, gpu_id: str) -> Gpu:
        try:
            return self.gpus[gpu_id]
        except KeyError:
            raise UnknownCatalogEntry("GPU", gpu_id, self.gpus) from None

    def offering(self, offering_id: str) -> Offering:
        try:
            return self.offerings[offering_id]
        except KeyError:
            raise UnknownCatalogEntry("GPU offering", offering_id, self.offerings) from None

    def offerings_for(self, cloud: str) -> list[Offering]:
        """GPU offerings one cloud rents (a ``Cloud.catalog_cloud``), cheapest first."""
        clouds = {o.cloud for o in self.offerings.values()}
        if cloud not in clouds:
            raise UnknownCatalogEntry("cloud", cloud, clouds)
        rows = [o for o in self.offerings.values() if o.cloud == cloud]
        return sorted(rows, key=lambda o: (o.hourly_usd, o.id))

    def gpu_of(self, offering_id: str) -> Gpu:
        return self.gpu(self.offering(offering_id).gpu)

    def infra_offering(self, infra_id: str) -> InfraOffering:
        try:
            return self.infra[infra_id]
        except KeyError:
            raise UnknownCatalogEntry("infrastructure size", infra_id, self.infra) from None

    def storage_price(self, cloud: str, kind: str) -> StoragePrice:
        key = f"{cloud}/{kind}"
        try:
            return self.storage[key]
        except KeyError:
            raise UnknownCatalogEntry("storage price", key, self.storage) from None

    def address_price(self, cloud: str, kind: str) -> AddressPrice:
        key = f"{cloud}/{kind}"
        try:
            return self.addresses[key]
        except KeyError:
            raise UnknownCatalogEntry("address price", key, self.addresses) from None

    def load_balancer_price(self, cloud: str, kind: str) -> LoadBalancerPrice:
        key = f"{cloud}/{kind}"
        try:
            return self.load_balancers[key]
        except KeyError:
            raise UnknownCatalogEntry("load balancer price", key, self.load_balancers) from None

    def default_infra_size(self, cloud: str, role: InfraRole) -> str:
        """The size a stack uses for its load balancer or Prometheus host on ``cloud`` (a catalog cloud)."""
        for row in self.infra.values():
            if row.cloud == cloud and role in row.roles:
                return row.id
        raise UnknownCatalogEntry(f"default {role} size for cloud", cloud, [])


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise CatalogError(f"{path}: catalog file is missing") from None
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise CatalogError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _rows(path: Path, data: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    rows = data.get(key)
    if not isinstance(rows, list) or not rows:
        raise CatalogError(f"{path}: expected a non-empty list under {key!r}")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise CatalogError(f"{path}: {key}[{i}] is not a mapping")
    return rows


def _build(model: type[_M], path: Path, key: str, index: int, row: Mapping[str, Any]) -> _M:
    try:
        return model.model_validate(row)
    except ValidationError as exc:
        label = row.get("id") or row.get("kind") or "?"
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(row)'}: {err['msg']}" for err in exc.errors()
        )
        raise CatalogError(f"{path}: {key}[{index}] ({label}): {problems}") from None


def _add_unique(target: dict[str, _M], key: str, value: _M, path: Path, seen: dict[str, Path]) -> None:
    if key in seen:
        raise CatalogError(f"{path}: id {key!r} is already defined in {seen[key]}")
    seen[key] = path
    target[key] = value


# File-level defaults a row may override; `cloud` lets an offerings file skip it on every row.
_OFFERING_DEFAULTS = ("cloud", "price_date", "price_source", "regions_source")


def _load(data_dir: Path) -> Catalog:
    gpus_path = data_dir / GPUS_FILE
    gpus: dict[str, Gpu] = {}
    seen_gpu: dict[str, Path] = {}
    for i, row in enumerate(_rows(gpus_path, _read_yaml(gpus_path), "gpus")):
        gpu = _build(Gpu, gpus_path, "gpus", i, row)
        _add_unique(gpus, gpu.id, gpu, gpus_path, seen_gpu)

    seen: dict[str, Path] = {}  # offering and infra ids share one namespace: both are Droplet sizes
    offerings: dict[str, Offering] = {}
    offering_files = sorted((data_dir / OFFERINGS_DIR).glob("*.yaml"))
    for path in offering_files:
        if path.name == INFRA_FILE:
            continue
        data = _read_yaml(path)
        defaults = {k: data[k] for k in _OFFERING_DEFAULTS if k in data}
        for i, row in enumerate(_rows(path, data, "offerings")):
            offering = _build(Offering, path, "offerings", i, {**defaults, **row})
            if offering.gpu not in gpus:
                err = UnknownCatalogEntry("GPU", offering.gpu, gpus)
                raise CatalogError(f"{path}: offerings[{i}] ({offering.id}): {err}")
            _add_unique(offerings, offering.id, offering, path, seen)
    if not offerings:
        raise CatalogError(f"{data_dir / OFFERINGS_DIR}: no offerings files found")

    infra_path = data_dir / OFFERINGS_DIR / INFRA_FILE
    infra_data = _read_yaml(infra_path)
    infra: dict[str, InfraOffering] = {}
    for i, row in enumerate(_rows(infra_path, infra_data, "infra")):
        host = _build(InfraOffering, infra_path, "infra", i, row)
        _add_unique(infra, host.id, host, infra_path, seen)
    storage: dict[str, StoragePrice] = {}
    for i, row in enumerate(_rows(infra_path, infra_data, "storage")):
        price = _build(StoragePrice, infra_path, "storage", i, row)
        key = f"{price.cloud}/{price.kind}"
        if key in storage:
            raise CatalogError(f"{infra_path}: storage[{i}]: a {key} price is already defined")
        storage[key] = price
    addresses: dict[str, AddressPrice] = {}
    for i, row in enumerate(infra_data.get("addresses") or []):
        address = _build(AddressPrice, infra_path, "addresses", i, row)
        key = f"{address.cloud}/{address.kind}"
        if key in addresses:
            raise CatalogError(f"{infra_path}: addresses[{i}]: a {key} price is already defined")
        addresses[key] = address
    load_balancers: dict[str, LoadBalancerPrice] = {}
    for i, row in enumerate(infra_data.get("load_balancers") or []):
        lb = _build(LoadBalancerPrice, infra_path, "load_balancers", i, row)
        key = f"{lb.cloud}/{lb.kind}"
        if key in load_balancers:
            raise CatalogError(f"{infra_path}: load_balancers[{i}]: a {key} price is already defined")
        load_balancers[key] = lb

    # Every cloud with GPU offerings needs exactly one default host per role, or its stacks could not be priced.
    roles: tuple[InfraRole, ...] = ("loadbalancer", "monitoring")
    for cloud in sorted({o.cloud for o in offerings.values()}):
        for role in roles:
            ids = [h.id for h in infra.values() if h.cloud == cloud and role in h.roles]
            if len(ids) != 1:
                raise CatalogError(
                    f"{infra_path}: cloud {cloud} needs exactly one infra row with role {role!r}, "
                    f"found {ids or 'none'}"
                )

    return Catalog(gpus=gpus, offerings=offerings, infra=infra, storage=storage, addresses=addresses,
                   load_balancers=load_balancers)


@functools.cache
def load_catalog(data_dir: Path = DATA_DIR) -> Catalog:
    """Load and validate the catalog under ``data_dir`` (cached per directory).

    Raises ``CatalogError`` naming the file and row on any malformed or inconsistent entry: a missing
    date or source, a non-positive price, an offering whose GPU is not in ``gpus.yaml``, a duplicate id.
    """
    return _load(Path(data_dir))
