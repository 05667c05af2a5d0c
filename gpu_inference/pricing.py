"""Price the resources a Pulumi program registers, from the catalog.

Input is what a registration (or a test mock) sees: the Pulumi type token, the resource name and its
input properties with their camelCase names. The offline preview, the CrossGuard budget policy and the
PR cost diff all call ``bill_for_resources`` on the same registrations, so they can never disagree.

Each cloud module (``gpu_inference/clouds``) prices its own resource types (conventions in
``gpu_inference.bill``). Types of packages that never appear on a cloud bill (providers, local helpers,
component resources) price as nothing; a type of a cloud's package that its module neither prices nor
knows to be free raises ``UnknownCatalogEntry``, so a newly added paid resource cannot slip into a bill as $0.

No Pulumi import: inputs are plain mappings.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gpu_inference.bill import Bill, CostLine
from gpu_inference.catalog import Catalog, Offering, UnknownCatalogEntry, load_catalog
from gpu_inference.clouds import CLOUDS
from gpu_inference.constants import HOURS_PER_MONTH

# Packages whose resources never appear on a cloud bill (local helpers, the engine's own, providers).
FREE_PACKAGES = frozenset({"random", "tls", "command", "pulumi"})


class SpotSavings(BaseModel):
    """On-demand vs spot for one offering, per 730 h month."""

    model_config = ConfigDict(frozen=True)

    offering_id: str
    on_demand_monthly_usd: float
    spot_monthly_usd: float
    savings_monthly_usd: float
    savings_fraction: float = Field(ge=0, le=1)
    price_date: datetime.date
    price_source: str


def price_resources(
    resource_type: str, name: str, inputs: Mapping[str, Any], catalog: Catalog | None = None
) -> list[CostLine]:
    """All cost lines of one registered resource (an EC2 instance may add root-volume and IPv4 lines)."""
    cat = catalog or load_catalog()
    for cloud in CLOUDS.values():
        lines = cloud.price(resource_type, name, inputs, cat)
        if lines is not None:
            return lines
    package = resource_type.split(":", 1)[0]
    paid = {p for cloud in CLOUDS.values() for p in cloud.packages}
    if package in FREE_PACKAGES or package not in paid:
        return []  # component resources (``gpu-inference:index:VllmService``) only group children
    known = sorted({t for cloud in CLOUDS.values() for t in cloud.free_types})
    raise UnknownCatalogEntry("resource type (not priced and not known to be free)", resource_type, known)


def bill_for_resources(
    resources: Iterable[tuple[str, str, Mapping[str, Any]]], catalog: Catalog | None = None
) -> Bill:
    """Price ``(type token, name, inputs)`` registrations into one bill at 730 h/month."""
    cat = catalog or load_catalog()
    lines = [line for rtype, name, inputs in resources for line in price_resources(rtype, name, inputs, cat)]
    return Bill(lines=lines, total_monthly_usd=sum(line.monthly_usd for line in lines))


def cost_per_million_tokens(hourly_usd: float, tokens_per_second: float, utilization: float) -> float:
    """USD per million generated tokens: ``hourly / (tps * utilization * 3600 / 1e6)``.

    ``tokens_per_second`` is the machine's aggregate throughput when busy; ``utilization`` the share
    of paid hours it is busy (0 < u <= 1).
    """
    if hourly_usd < 0:
        raise ValueError(f"hourly_usd must not be negative, got {hourly_usd}")
    if tokens_per_second <= 0:
        raise ValueError(f"tokens_per_second must be positive, got {tokens_per_second}")
    if not 0 < utilization <= 1:
        raise ValueError(f"utilization must be in (0, 1], got {utilization}")
    return hourly_usd / (tokens_per_second * utilization * 3600 / 1e6)


def break_even_utilization(hourly_usd: float, tokens_per_second: float, api_usd_per_million_tokens: float) -> float:
    """Utilization at which self-hosting costs the same per token as the API.

    Solves ``cost_per_million_tokens(hourly, tps, u) == api price`` for ``u``:
    ``u = hourly * 1e6 / (tps * 3600 * api_price)``. A result above 1 means the machine cannot
    break even even when busy all the time.
    """
    if hourly_usd < 0:
        raise ValueError(f"hourly_usd must not be negative, got {hourly_usd}")
    if tokens_per_second <= 0:
        raise ValueError(f"tokens_per_second must be positive, got {tokens_per_second}")
    if api_usd_per_million_tokens <= 0:
        raise ValueError(f"api_usd_per_million_tokens must be positive, got {api_usd_per_million_tokens}")
    return hourly_usd * 1e6 / (tokens_per_second * 3600 * api_usd_per_million_tokens)


def spot_savings(offering: Offering) -> SpotSavings | None:
    """Monthly on-demand vs spot for ``offering``; ``None`` when the catalog has no spot price for it."""
    if offering.spot_hourly_usd is None:
        return None
    on_demand = offering.hourly_usd * HOURS_PER_MONTH
    spot = offering.spot_hourly_usd * HOURS_PER_MONTH
    return SpotSavings(
        offering_id=offering.id,
        on_demand_monthly_usd=on_demand,
        spot_monthly_usd=spot,
        savings_monthly_usd=on_demand - spot,
        savings_fraction=(on_demand - spot) / on_demand,
        price_date=offering.price_date,
        price_source=offering.price_source,
    )


__all__ = [
    "Bill",
    "CostLine",
    "SpotSavings",
    "bill_for_resources",
    "break_even_utilization",
    "cost_per_million_tokens",
    "price_resources",
    "spot_savings",
]
