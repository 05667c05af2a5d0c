"""A stack's bill: its cost lines, and the line builders every cloud prices its resource types with.

Conventions (shared by every cloud module in ``gpu_inference/clouds``):

- A month is ``HOURS_PER_MONTH`` = 730 hours (8760 / 12), as AWS and most price sheets quote it:
  ``monthly_usd = hourly_usd * 730``, except where a provider caps the month (a capped size never bills
  more than its monthly price).
- Storage is priced per provisioned GB-month, independent of hours.
- A size, type or price the catalog does not know raises ``UnknownCatalogEntry``: an unknown is never
  priced as zero.

No Pulumi import: inputs are plain mappings.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from gpu_inference.catalog import Catalog, InfraOffering, Offering, UnknownCatalogEntry
from gpu_inference.constants import HOURS_PER_MONTH


class CostLine(BaseModel):
    """One priced item of a bill. ``hourly_usd`` and ``monthly_usd`` are for the whole line (all units)."""

    model_config = ConfigDict(frozen=True)

    resource_type: str
    resource_name: str
    description: str
    quantity: float
    unit: str
    hourly_usd: float
    monthly_usd: float
    price_date: datetime.date | None
    price_source: str | None
    min_hourly_usd: float | None = None
    """A line that scales (an autoscaling node pool): the price at its floor; ``hourly_usd`` and
    ``monthly_usd`` are at its ceiling, the bill that can be charged. None: a fixed line."""
    min_monthly_usd: float | None = None


class Bill(BaseModel):
    """The priced resources of a stack. Monthly totals assume ``hours_per_month`` = 730 h."""

    model_config = ConfigDict(frozen=True)

    lines: list[CostLine]
    total_monthly_usd: float
    hours_per_month: float = HOURS_PER_MONTH

    @property
    def min_total_monthly_usd(self) -> float:
        """The month at every autoscaled line's floor (``total_monthly_usd`` is at their ceilings)."""
        return sum(ln.monthly_usd if ln.min_monthly_usd is None else ln.min_monthly_usd for ln in self.lines)

    def by_resource(self) -> dict[str, CostLine]:
        """Lines keyed by resource name (a root volume is ``<instance>/root-volume``)."""
        return {line.resource_name: line for line in self.lines}


@dataclass(frozen=True)
class Registration:
    """A paid resource as the program registers it: type token, logical name, price-relevant inputs (wire names).

    The program records one for every resource it creates that costs money and prices its own bill from
    them, exactly as the preview and the budget policy price what the engine sees.
    """

    type: str
    name: str
    inputs: Mapping[str, Any]


def line(
    resource_type: str,
    name: str,
    description: str,
    quantity: float,
    unit: str,
    hourly: float,
    monthly: float,
    price_date: datetime.date | None,
    price_source: str | None,
) -> CostLine:
    return CostLine(
        resource_type=resource_type,
        resource_name=name,
        description=description,
        quantity=quantity,
        unit=unit,
        # Rounded far below a cent: only binary float noise goes (4 x 1146.1 = 4584.400000000001).
        hourly_usd=round(hourly, 9),
        monthly_usd=round(monthly, 6),
        price_date=price_date,
        price_source=price_source,
    )


def require(inputs: Mapping[str, Any], key: str, resource_type: str, name: str) -> Any:
    value = inputs.get(key)
    if value is None or value == "":
        raise ValueError(f"{resource_type} {name!r}: input {key!r} is required to price it")
    return value


def positive_number(value: Any, what: str) -> float:
    try:
        number = float(value)  # mocks and config may hand numbers over as strings
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{what} must be a finite number ≥ 0, got {value!r}")
    return number


def truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def machine_size(catalog: Catalog, cloud: str, size: str, kind: str) -> Offering | InfraOffering:
    """A machine size one cloud sells: one of its GPU offerings or one of its small hosts."""
    if size in catalog.offerings and catalog.offerings[size].cloud == cloud:
        return catalog.offerings[size]
    if size in catalog.infra and catalog.infra[size].cloud == cloud:
        return catalog.infra[size]
    candidates = [o.id for o in catalog.offerings.values() if o.cloud == cloud]
    candidates += [h.id for h in catalog.infra.values() if h.cloud == cloud]
    raise UnknownCatalogEntry(kind, size, candidates)


def machines(
    resource_type: str, name: str, size: Offering | InfraOffering, count: float, unit: str, extra: str = ""
) -> CostLine:
    """``count`` machines of one size for a 730 h month (capped per machine where the provider caps)."""
    if isinstance(size, Offering):
        what = f"{size.id} ({size.gpu_count}x {size.gpu})"
        monthly_each = size.hourly_usd * HOURS_PER_MONTH
    else:
        what = size.id
        monthly_each = size.monthly_usd(HOURS_PER_MONTH)
        if size.monthly_cap_usd is not None and monthly_each < size.hourly_usd * HOURS_PER_MONTH:
            extra += f"; capped at ${size.monthly_cap_usd:.2f}/month"
    plural = "" if count == 1 else f"{count:g} x "
    return line(
        resource_type,
        name,
        f"{plural}{what} at ${size.hourly_usd:g}/h{extra}",
        count,
        unit,
        size.hourly_usd * count,
        monthly_each * count,
        size.price_date,
        size.price_source,
    )


def storage(
    catalog: Catalog, resource_type: str, name: str, cloud: str, kind: str, size_gb: float, label: str
) -> CostLine:
    price = catalog.storage_price(cloud, kind)
    monthly = price.usd_per_gb_month * size_gb
    return line(
        resource_type,
        name,
        f"{size_gb:g} GB {label} at ${price.usd_per_gb_month:g}/GB-month",
        size_gb,
        "GB-month",
        monthly / HOURS_PER_MONTH,
        monthly,
        price.price_date,
        price.price_source,
    )


def address(catalog: Catalog, resource_type: str, name: str, cloud: str, kind: str, description: str) -> CostLine:
    """One IP address billed by the hour (``description`` says what it is and why it costs what it costs)."""
    price = catalog.address_price(cloud, kind)
    return line(
        resource_type,
        name,
        description.format(hourly=f"${price.hourly_usd:g}/h"),
        1,
        "address",
        price.hourly_usd,
        price.hourly_usd * HOURS_PER_MONTH,
        price.price_date,
        price.price_source,
    )


def node_range(inputs: Mapping[str, Any], resource_type: str, name: str) -> tuple[float, float | None]:
    """Nodes to bill for a node pool: (``nodeCount``, None), or with ``autoScale`` (``maxNodes``, ``minNodes``):
    an autoscaling pool is billed at the most it can run (what the budget must cover), its floor beside it."""
    if truthy(inputs.get("autoScale")) or (inputs.get("nodeCount") is None and inputs.get("maxNodes") is not None):
        high = positive_number(require(inputs, "maxNodes", resource_type, name), f"{resource_type} {name!r} maxNodes")
        low = positive_number(require(inputs, "minNodes", resource_type, name), f"{resource_type} {name!r} minNodes")
        return high, low
    if inputs.get("nodeCount") is not None:
        return positive_number(inputs["nodeCount"], f"{resource_type} {name!r} nodeCount"), None
    raise ValueError(f"{resource_type} {name!r}: nodeCount (or autoScale with minNodes/maxNodes) is required to price it")


def scaling_machines(
    resource_type: str, name: str, size: Offering | InfraOffering, high: float, low: float | None, unit: str
) -> CostLine:
    """``machines`` at ``high``; with a floor ``low``, the line also carries its price at the floor."""
    if low is None:
        return machines(resource_type, name, size, high, unit)
    floor = machines(resource_type, name, size, low, unit)
    ceiling = machines(resource_type, name, size, high, unit,
                       f"; autoscaling {low:g}-{high:g} nodes, priced at maxNodes (${floor.monthly_usd:,.2f}/month at minNodes)")
    return ceiling.model_copy(update={"min_hourly_usd": floor.hourly_usd, "min_monthly_usd": floor.monthly_usd})


def bill_table(lines: list[Mapping[str, Any]], total_monthly_usd: float, budget_usd: float | None) -> list[str]:
    """A bill as the CLI prints it (``preview`` and ``cost`` alike): one row per line, the total, the budget,
    and with an autoscaled line the month's range from every floor to every ceiling.

    ``lines`` are ``CostLine`` dicts as the preview report carries them (JSON).
    """
    width = max([len(str(ln["resource_name"])) for ln in lines] + [8])
    hourly_total = total_monthly_usd / HOURS_PER_MONTH
    rows = [f"{'resource':<{width}}  {'$/hour':>9}  {'$/month':>11}  description"]
    rows += [
        f"{ln['resource_name']:<{width}}  {float(ln['hourly_usd']):>9.4f}  {float(ln['monthly_usd']):>11,.2f}  "
        f"{ln['description']} [{ln.get('price_date') or 'n/a'}]"
        for ln in lines
    ]
    rows.append(f"{'total':<{width}}  {hourly_total:>9.4f}  {total_monthly_usd:>11,.2f}  "
                f"(effective $/hour = month / {HOURS_PER_MONTH:.0f})")
    if any(ln.get("min_monthly_usd") is not None for ln in lines):
        low = sum(float(ln["monthly_usd"] if ln.get("min_monthly_usd") is None else ln["min_monthly_usd"]) for ln in lines)
        rows.append(f"{'range':<{width}}  {'':>9}  {'':>11}  ${low:,.2f} to ${total_monthly_usd:,.2f} per month "
                    "(autoscaling: minNodes to maxNodes; the total and the budget check are at maxNodes)")
    if budget_usd:
        over = total_monthly_usd - budget_usd
        verdict = "within budget" if over <= 0 else f"OVER BUDGET by ${over:,.2f}"
        rows.append(f"{'budget':<{width}}  {'':>9}  {budget_usd:>11,.2f}  "
                    f"{total_monthly_usd / budget_usd * 100:.0f}% used — {verdict}")
    return rows
