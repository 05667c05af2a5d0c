"""Compare two offline-preview reports of a stack: cost per resource, budget, policies, sizing.

Pure: input is the JSON that ``python -m gpu_inference preview STACK --json`` prints (or the fact
that a side has no stack / an invalid config), output is the diff model (``markdown`` renders it).
Nothing here runs git or a preview (``revisions`` does). Only the documented fields of the preview
contract are read, and every one of them is read defensively, so a base revision with an older report
shape still renders.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

# Below half a cent a "change" is float noise from summing line items, not a change on the bill.
CENT = 0.005
# Sizing figures the comment always names first when they change; the rest follow alphabetically.
HEADLINE_SIZING = ("kv_cache_tokens", "max_concurrency")

SideStatus = Literal["ok", "policy_failed", "absent", "invalid", "error"]


class Side(BaseModel):
    """One side (base or head) of one stack: a preview report, or why there is none."""

    status: SideStatus
    report: dict[str, Any] | None = None
    """The preview's JSON (status ok / policy_failed)."""
    message: str | None = None
    """Why there is no report: the preview's stderr line for an invalid config, or the failure."""
    source: str | None = None
    """What was previewed: a stack name at a revision, or a stack file path."""

    @property
    def has_report(self) -> bool:
        return self.report is not None

    @property
    def total(self) -> float:
        return _num(self.report.get("monthly_cost_usd")) if self.report else 0.0

    @property
    def budget(self) -> float | None:
        if not self.report or self.report.get("budget_usd") is None:
            return None
        return _num(self.report["budget_usd"])


class ResourceDelta(BaseModel):
    resource_type: str
    resource_name: str
    description: str = ""
    before_usd: float | None
    """None: the resource does not exist on the base side."""
    after_usd: float | None
    """None: the resource does not exist on the head side."""
    comparable: bool = True
    """False: the other side could not be previewed (invalid config, failed preview), so no delta."""

    @property
    def delta_usd(self) -> float | None:
        if not self.comparable:
            return None
        return (self.after_usd or 0.0) - (self.before_usd or 0.0)

    @property
    def change(self) -> Literal["added", "removed", "changed", "unchanged", "unknown"]:
        if not self.comparable:
            return "unknown"
        if self.before_usd is None:
            return "added"
        if self.after_usd is None:
            return "removed"
        return "changed" if abs((self.after_usd or 0.0) - (self.before_usd or 0.0)) >= CENT else "unchanged"


class PolicyChange(BaseModel):
    name: str
    resource: str | None = None
    level: str | None = None
    before: bool | None
    """passed on the base side; None: not evaluated there."""
    after: bool | None
    """passed on the head side; None: not evaluated there."""
    message: str = ""


class SizingChange(BaseModel):
    node: str
    metric: str
    before: Any = None
    after: Any = None


class StackDiff(BaseModel):
    name: str
    base: Side
    head: Side
    resources: list[ResourceDelta] = Field(default_factory=list)
    policies_changed: list[PolicyChange] = Field(default_factory=list)
    head_failing_mandatory: list[PolicyChange] = Field(default_factory=list)
    """Every mandatory policy failing on the head side, changed or not (it blocks `pulumi up`)."""
    sizing_changed: list[SizingChange] = Field(default_factory=list)
    resources_added: list[str] = Field(default_factory=list)
    """Every resource (costed or free) only on the head side, as `type name`."""
    resources_removed: list[str] = Field(default_factory=list)

    @property
    def change(self) -> Literal["added", "removed", "changed"]:
        if self.base.status == "absent":
            return "added"
        if self.head.status == "absent":
            return "removed"
        return "changed"

    @property
    def comparable(self) -> bool:
        """Both sides have a bill (an absent stack bills $0); an invalid or failed side has none."""
        return self.base.status not in ("invalid", "error") and self.head.status not in ("invalid", "error")

    @property
    def unchanged(self) -> bool:
        """Both sides previewed and nothing a reviewer would act on differs."""
        return (
            self.base.has_report
            and self.head.has_report
            and abs(self.after_usd - self.before_usd) < CENT
            and all(r.change == "unchanged" for r in self.resources)
            and not (self.policies_changed or self.sizing_changed or self.resources_added or self.resources_removed)
            and self.base.budget == self.head.budget
        )

    @property
    def before_usd(self) -> float:
        return self.base.total

    @property
    def after_usd(self) -> float:
        return self.head.total

    @property
    def delta_usd(self) -> float | None:
        """None when one side has no bill: showing -100% for a typo in a stack file would mislead."""
        return self.after_usd - self.before_usd if self.comparable else None

    @property
    def head_blocked(self) -> bool:
        """The head side cannot be deployed: a mandatory policy fails or the preview itself failed."""
        return self.head.status in ("policy_failed", "invalid", "error") or bool(self.head_failing_mandatory)

    @property
    def newly_blocked(self) -> bool:
        """Head is blocked by something the base did not already suffer from."""
        if self.head.status in ("invalid", "error"):
            return self.base.status not in ("invalid", "error")
        return any(p.before is not False for p in self.head_failing_mandatory)


class CostDiff(BaseModel):
    base_label: str
    head_label: str
    stacks: list[StackDiff]

    @property
    def comparable_stacks(self) -> list[StackDiff]:
        return [s for s in self.stacks if s.comparable]

    @property
    def before_usd(self) -> float:
        """Sum over the stacks whose both sides have a bill."""
        return sum(s.before_usd for s in self.comparable_stacks)

    @property
    def after_usd(self) -> float:
        return sum(s.after_usd for s in self.comparable_stacks)

    @property
    def delta_usd(self) -> float:
        return self.after_usd - self.before_usd


# ---------------------------------------------------------------------------------------------
# Building the diff
# ---------------------------------------------------------------------------------------------


def _num(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return 0.0
    return out if math.isfinite(out) else 0.0


def _resource_costs(report: Mapping[str, Any] | None) -> dict[tuple[str, str], tuple[float, str]]:
    """(type, name) → (monthly USD summed over its cost lines, description)."""
    out: dict[tuple[str, str], tuple[float, str]] = {}
    if not report:
        return out
    for line in report.get("cost_lines") or []:
        key = (str(line.get("resource_type", "")), str(line.get("resource_name", "")))
        usd, desc = out.get(key, (0.0, ""))
        description = str(line.get("description") or "")
        out[key] = (usd + _num(line.get("monthly_usd")), "; ".join(d for d in (desc, description) if d))
    # Whatever the report's total holds beyond its itemised lines must still show in the table,
    # otherwise the rows would not add up to the total the header states.
    unitemised = _num(report.get("monthly_cost_usd")) - sum(usd for usd, _ in out.values())
    if abs(unitemised) >= CENT:
        out[("", "(not itemised)")] = (unitemised, "total minus the sum of the cost lines")
    return out


def _resource_keys(report: Mapping[str, Any] | None) -> set[tuple[str, str]]:
    if not report:
        return set()
    return {(str(r.get("type", "")), str(r.get("name", ""))) for r in report.get("resources") or []}


def _policies(report: Mapping[str, Any] | None) -> dict[tuple[str, str | None], Mapping[str, Any]]:
    if not report:
        return {}
    out: dict[tuple[str, str | None], Mapping[str, Any]] = {}
    for p in report.get("policies") or []:
        resource = p.get("resource")
        out[(str(p.get("name", "")), None if resource is None else str(resource))] = p
    return out


def _is_mandatory(level: Any) -> bool:
    # CrossGuard levels: mandatory / remediate block an update, advisory only warns.
    return str(level or "mandatory").lower() in ("mandatory", "remediate")


def _sizing_entries(report: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Normalise `sizing` to node → {metric: scalar}.

    The contract says "per node"; accepted shapes: {node: {...}}, [{name|node|resource: ..., ...}],
    or one flat {...} for a stack whose nodes are all alike.
    """
    if not report:
        return {}
    sizing = report.get("sizing")
    entries: dict[str, dict[str, Any]] = {}
    if isinstance(sizing, Mapping):
        if sizing and all(isinstance(v, Mapping) for v in sizing.values()):
            for node, metrics in sizing.items():
                entries[str(node)] = _flatten(metrics)
        elif sizing:
            entries["(every node)"] = _flatten(sizing)
    elif isinstance(sizing, list):
        for i, item in enumerate(sizing):
            if not isinstance(item, Mapping):
                continue
            # The first of these keys that is present names the node; `node: 0` is a name, not a miss.
            key = next((k for k in ("name", "node", "resource") if item.get(k) is not None), None)
            node = f"node {item[key]}" if key == "node" and isinstance(item[key], int) else item[key] if key else f"node {i}"
            entries[str(node)] = _flatten({k: v for k, v in item.items() if k not in ("name", "node", "resource")})
    return entries


def _flatten(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        elif isinstance(value, list):
            out[name] = json.dumps(value, sort_keys=True)
        else:
            out[name] = value
    return out


def _metric_order(metric: str) -> tuple[int, str]:
    return (HEADLINE_SIZING.index(metric) if metric in HEADLINE_SIZING else len(HEADLINE_SIZING), metric)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def diff_stack(name: str, base: Side, head: Side) -> StackDiff:
    """The diff of one stack between two sides (either may be absent, invalid or failed)."""
    result = StackDiff(name=name, base=base, head=head)

    before_costs = _resource_costs(base.report)
    after_costs = _resource_costs(head.report)
    for key in sorted(set(before_costs) | set(after_costs), key=lambda k: (k[1] == "(not itemised)", k[1], k[0])):
        before = before_costs.get(key)
        after = after_costs.get(key)
        result.resources.append(
            ResourceDelta(
                resource_type=key[0],
                resource_name=key[1],
                description=(after or before or (0.0, ""))[1],
                before_usd=None if before is None else before[0],
                after_usd=None if after is None else after[0],
                comparable=base.status not in ("invalid", "error") and head.status not in ("invalid", "error"),
            )
        )

    # Free resources (firewalls, VPCs) have no cost line but their arrival still belongs in the review.
    if base.has_report and head.has_report:
        before_keys, after_keys = _resource_keys(base.report), _resource_keys(head.report)
        result.resources_added = [f"{t} {n}" for t, n in sorted(after_keys - before_keys, key=lambda k: (k[1], k[0]))]
        result.resources_removed = [f"{t} {n}" for t, n in sorted(before_keys - after_keys, key=lambda k: (k[1], k[0]))]

    before_pol, after_pol = _policies(base.report), _policies(head.report)
    for pol_key in sorted(set(before_pol) | set(after_pol), key=lambda k: (k[0], k[1] or "")):
        b, a = before_pol.get(pol_key), after_pol.get(pol_key)
        change = PolicyChange(
            name=pol_key[0],
            resource=pol_key[1],
            level=str((a or b or {}).get("level") or "") or None,
            before=None if b is None else bool(b.get("passed")),
            after=None if a is None else bool(a.get("passed")),
            message=str((a or b or {}).get("message") or ""),
        )
        # A policy only reported on one side because that side has no report is not news: the stack
        # row already says the side is absent/invalid.
        one_sided = (b is None and not base.has_report) or (a is None and not head.has_report)
        # A passing verdict on a resource that was added (or removed) is not news; a failing one is.
        unremarkable = {change.before, change.after} == {None, True}
        if change.before != change.after and not one_sided and not unremarkable:
            result.policies_changed.append(change)
        if a is not None and change.after is False and _is_mandatory(change.level):
            result.head_failing_mandatory.append(change)

    before_size, after_size = _sizing_entries(base.report), _sizing_entries(head.report)
    if base.has_report and head.has_report:
        for node in sorted(set(before_size) | set(after_size)):
            b_metrics, a_metrics = before_size.get(node, {}), after_size.get(node, {})
            metrics = set(b_metrics) | set(a_metrics)
            if node not in before_size or node not in after_size:
                # An added/removed node: its headline figures say enough; every field would be noise.
                metrics = {m for m in metrics if m in HEADLINE_SIZING} or metrics
            for metric in sorted(metrics, key=_metric_order):
                b_val, a_val = b_metrics.get(metric), a_metrics.get(metric)
                if not _same(b_val, a_val):
                    result.sizing_changed.append(SizingChange(node=node, metric=metric, before=b_val, after=a_val))
    return result


def build_diff(base_label: str, head_label: str, pairs: Iterable[tuple[str, Side, Side]]) -> CostDiff:
    return CostDiff(
        base_label=base_label,
        head_label=head_label,
        stacks=[diff_stack(name, base, head) for name, base, head in pairs],
    )
