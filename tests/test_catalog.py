"""The catalog data files load, cross-check, and fail loudly (file + row) when edited wrongly."""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path

import pytest
import yaml

from gpu_inference.catalog import (
    Catalog,
    CatalogError,
    UnknownCatalogEntry,
    load_catalog,
)
from gpu_inference.clouds import cloud_for
from gpu_inference.constants import DATA_DIR, HOURS_PER_MONTH

# Figures quoted from the 2026 GPU price survey (gpu-prices-2026.md): a wrong edit of the YAML shows up here.
DO_PRICES = {
    "gpu-4000adax1-20gb": 0.76,
    "gpu-l40sx1-48gb": 1.57,
    "gpu-h100x1-80gb": 3.39,
    "gpu-h100x8-640gb": 23.92,
    "gpu-mi300x1-192gb": 1.99,
    "gpu-mi300x8-1536gb": 15.92,
}
AWS_PRICES = {
    "g5.xlarge": 1.006,
    "g5.2xlarge": 1.212,
    "g5.12xlarge": 5.672,
    "g5.48xlarge": 16.288,
    "g6.xlarge": 0.8048,
    "g6.2xlarge": 0.9776,
    "g6.12xlarge": 4.6016,
    "g6.48xlarge": 13.3504,
    "g6e.xlarge": 1.861,
    "g6e.2xlarge": 2.24208,
    "g6e.12xlarge": 10.49264,
    "g6e.48xlarge": 30.13118,
    "p4d.24xlarge": 21.957642,
    "p4de.24xlarge": 27.44705,
    "p5.48xlarge": 55.04,
    "p5en.48xlarge": 63.296,
}
GPU_IDS = {
    "H100-80GB",
    "H200-141GB",
    "L40S",
    "A10G",
    "L4",
    "A100-40GB",
    "A100-80GB",
    "RTX-4000-Ada",
    "RTX-6000-Ada",
    "MI300X",
    "RTX-4090",  # no offering: there for the planner's benchmark points
}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def test_every_file_loads(catalog: Catalog) -> None:
    assert set(catalog.gpus) == GPU_IDS
    assert {o.cloud for o in catalog.offerings.values()} == {"digitalocean", "aws"}
    assert set(DO_PRICES) | set(AWS_PRICES) <= set(catalog.offerings)
    assert set(catalog.storage) == {"digitalocean/volume", "aws/ebs-gp3"}
    assert load_catalog() is catalog  # cached: one parse per process


def test_every_offering_gpu_exists(catalog: Catalog) -> None:
    for offering in catalog.offerings.values():
        assert offering.gpu in catalog.gpus, offering.id
        assert catalog.gpu_of(offering.id).id == offering.gpu


def test_every_price_has_a_date_and_a_source(catalog: Catalog) -> None:
    rows = [*catalog.offerings.values(), *catalog.infra.values(), *catalog.storage.values()]
    for row in rows:
        assert isinstance(row.price_date, datetime.date), row
        # Prices researched for this catalog: nothing older than 2025 or from the future.
        assert datetime.date(2025, 1, 1) <= row.price_date <= datetime.date(2026, 12, 31), row
        assert len(row.price_source) > 10, row


def test_reference_prices(catalog: Catalog) -> None:
    for offering_id, price in {**DO_PRICES, **AWS_PRICES}.items():
        assert catalog.offering(offering_id).hourly_usd == pytest.approx(price), offering_id
    # The sizes API (12/2025) bills $1.57, superseding $1.89 on the April 2025 pricing page.
    assert catalog.offering("gpu-6000adax1-48gb").hourly_usd == pytest.approx(1.57)


def test_digitalocean_has_no_spot_tier(catalog: Catalog) -> None:
    for offering in catalog.offerings_for("digitalocean"):
        assert offering.spot_hourly_usd is None, offering.id


def test_gpu_counts_and_models(catalog: Catalog) -> None:
    expected = {
        "gpu-h100x8-640gb": ("H100-80GB", 8),
        "gpu-mi300x8-1536gb": ("MI300X", 8),
        "g5.12xlarge": ("A10G", 4),
        "g6.48xlarge": ("L4", 8),
        "g6e.xlarge": ("L40S", 1),
        "p4d.24xlarge": ("A100-40GB", 8),
        "p4de.24xlarge": ("A100-80GB", 8),
        "p5.48xlarge": ("H100-80GB", 8),
        "p5en.48xlarge": ("H200-141GB", 8),
    }
    for offering_id, (gpu, count) in expected.items():
        offering = catalog.offering(offering_id)
        assert (offering.gpu, offering.gpu_count) == (gpu, count), offering_id


def test_usable_memory_matches_the_reference_table(catalog: Catalog) -> None:
    assert catalog.gpu("H100-80GB").usable_memory_gib == pytest.approx(79.19)
    assert catalog.gpu("L40S").usable_memory_gib == pytest.approx(44.42)
    assert catalog.gpu("A100-80GB").usable_memory_gib == pytest.approx(79.15)
    assert catalog.gpu("MI300X").usable_memory_gib == pytest.approx(191.98)
    for gpu_id in ("A10G", "L4"):
        assert 21.99 <= catalog.gpu(gpu_id).usable_memory_gib <= 22.07


def test_usable_memory_never_exceeds_the_marketed_size(catalog: Catalog) -> None:
    for gpu in catalog.gpus.values():
        # HBM/GDDR "GB" on the box are GiB; CUDA reserves some, so reported total is a bit less.
        assert gpu.usable_memory_gib <= gpu.memory_gb_marketed, gpu.id
        assert gpu.usable_memory_gib >= 0.9 * gpu.memory_gb_marketed * 0.95, gpu.id


def test_derived_memory_says_so(catalog: Catalog) -> None:
    for gpu_id in ("RTX-4000-Ada", "RTX-6000-Ada"):
        assert "DERIVED" in catalog.gpu(gpu_id).usable_memory_source


def test_precision_support_by_architecture(catalog: Catalog) -> None:
    for gpu in catalog.gpus.values():
        assert gpu.bf16, gpu.id
        assert gpu.fp8 == (gpu.architecture != "ampere"), gpu.id
    assert catalog.gpu("MI300X").vendor == "amd"
    assert catalog.gpu("MI300X").compute_capability is None
    assert catalog.gpu("H100-80GB").compute_capability == "9.0"
    assert catalog.gpu("L40S").compute_capability == "8.9"


def test_unknown_offering_suggests_close_matches(catalog: Catalog) -> None:
    with pytest.raises(UnknownCatalogEntry) as info:
        catalog.offering("gpu-l40s-48gb")
    err = info.value
    assert isinstance(err, LookupError)
    assert err.kind == "GPU offering"
    assert err.value == "gpu-l40s-48gb"
    assert err.close_matches[0] == "gpu-l40sx1-48gb"
    assert "gpu-l40s-48gb" in str(err) and "gpu-l40sx1-48gb" in str(err)


def test_other_lookups_raise_with_suggestions(catalog: Catalog) -> None:
    with pytest.raises(UnknownCatalogEntry, match="H100-80GB"):
        catalog.gpu("H100-80G")
    with pytest.raises(UnknownCatalogEntry, match=r"g6e\.xlarge"):
        catalog.gpu_of("g6e.xlarg")
    with pytest.raises(UnknownCatalogEntry, match="s-2vcpu-4gb"):
        catalog.infra_offering("s-2vcpu-4g")
    with pytest.raises(UnknownCatalogEntry, match="aws/ebs-gp3"):
        catalog.storage_price("aws", "ebs-gp2")
    with pytest.raises(UnknownCatalogEntry, match="unknown cloud 'gcp'"):
        catalog.offerings_for("gcp")


def test_offerings_for_is_one_cloud_cheapest_first(catalog: Catalog) -> None:
    aws = catalog.offerings_for("aws")
    assert {o.cloud for o in aws} == {"aws"}
    assert [o.hourly_usd for o in aws] == sorted(o.hourly_usd for o in aws)
    assert aws[0].id == "g6.xlarge"
    # A DOKS GPU pool buys Droplet slugs: the kubernetes provider reads the DigitalOcean rows.
    assert catalog.offerings_for(cloud_for("kubernetes").catalog_cloud) == catalog.offerings_for("digitalocean")


def test_default_infra_sizes(catalog: Catalog) -> None:
    assert catalog.default_infra_size("digitalocean", "loadbalancer") == "s-1vcpu-2gb"
    assert catalog.default_infra_size("digitalocean", "monitoring") == "s-2vcpu-4gb"
    assert catalog.default_infra_size("aws", "loadbalancer") == "t3.small"
    assert catalog.default_infra_size("aws", "monitoring") == "t3.medium"
    assert catalog.default_infra_size(cloud_for("kubernetes").catalog_cloud, "monitoring") == "s-2vcpu-4gb"


def test_droplet_caps_are_672_hours(catalog: Catalog) -> None:
    for host in catalog.infra.values():
        if host.cloud == "digitalocean":
            assert host.monthly_cap_usd == pytest.approx(host.hourly_usd * 672, abs=0.01), host.id
        else:
            assert host.monthly_cap_usd is None, host.id
    assert catalog.infra_offering("s-2vcpu-4gb").monthly_usd() == pytest.approx(24.00)
    assert catalog.infra_offering("t3.medium").monthly_usd() == pytest.approx(0.0416 * HOURS_PER_MONTH)


# --- broken copies of the data: each fails with the file and row named ---


@pytest.fixture
def data_copy(tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(DATA_DIR, target)
    return target


def _edit(path: Path, edit: object) -> None:
    data = yaml.safe_load(path.read_text())
    edit(data)  # type: ignore[operator]
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_offering_with_unknown_gpu_is_rejected(data_copy: Path) -> None:
    path = data_copy / "offerings" / "aws.yaml"
    _edit(path, lambda d: d["offerings"][0].update(gpu="A10"))
    with pytest.raises(CatalogError, match=r"aws\.yaml: offerings\[0\] \(g5\.xlarge\): unknown GPU 'A10'"):
        load_catalog(data_copy)


def test_missing_price_date_is_rejected(data_copy: Path) -> None:
    path = data_copy / "offerings" / "digitalocean.yaml"

    def drop_dates(d: dict) -> None:
        del d["price_date"]  # file default gone: rows without their own date must fail
        for row in d["offerings"]:
            row.pop("price_date", None)

    _edit(path, drop_dates)
    with pytest.raises(CatalogError, match=r"digitalocean\.yaml: offerings\[0\].*price_date: Field required"):
        load_catalog(data_copy)


def test_non_positive_price_is_rejected(data_copy: Path) -> None:
    path = data_copy / "offerings" / "infrastructure.yaml"
    _edit(path, lambda d: d["storage"][1].update(usd_per_gb_month=0))
    with pytest.raises(CatalogError, match=r"infrastructure\.yaml: storage\[1\] \(ebs-gp3\): usd_per_gb_month"):
        load_catalog(data_copy)


def test_missing_source_is_rejected(data_copy: Path) -> None:
    path = data_copy / "offerings" / "infrastructure.yaml"
    _edit(path, lambda d: d["infra"][0].update(price_source=""))
    with pytest.raises(CatalogError, match=r"infra\[0\] \(s-1vcpu-2gb\): price_source"):
        load_catalog(data_copy)


def test_duplicate_id_is_rejected(data_copy: Path) -> None:
    path = data_copy / "offerings" / "aws.yaml"
    _edit(path, lambda d: d["offerings"].append(dict(d["offerings"][0])))
    with pytest.raises(CatalogError, match=r"'g5\.xlarge' is already defined"):
        load_catalog(data_copy)


def test_spot_above_on_demand_is_rejected(data_copy: Path) -> None:
    path = data_copy / "offerings" / "aws.yaml"
    _edit(path, lambda d: d["offerings"][0].update(spot_hourly_usd=2.0))
    with pytest.raises(CatalogError, match=r"spot_hourly_usd 2\.0 must be below hourly_usd 1\.006"):
        load_catalog(data_copy)


def test_missing_default_role_is_rejected(data_copy: Path) -> None:
    path = data_copy / "offerings" / "infrastructure.yaml"
    _edit(path, lambda d: [row.pop("roles", None) for row in d["infra"] if row["id"] == "t3.small"])
    with pytest.raises(CatalogError, match="cloud aws needs exactly one infra row with role 'loadbalancer'"):
        load_catalog(data_copy)
