"""The cost diff rendered: the pull-request comment (markdown) and the machine-readable JSON."""

from __future__ import annotations

from typing import Any

from gpu_inference.cost_diff.diff import CENT, CostDiff, Side, StackDiff

# The workflow finds and updates its one sticky PR comment by this marker; never change it lightly,
# or every open PR gets a second comment.
MARKER = "<!-- gpu-inference-cost-diff -->"
# GitHub's limit for a comment body is 65,536 characters; stay clear of it.
MAX_COMMENT_CHARS = 60_000


# ---------------------------------------------------------------------------------------------


def _usd(value: float | None) -> str:
    if value is None:
        return "—"
    sign = "-" if value < -CENT / 10 else ""
    return f"{sign}${abs(value):,.2f}"


def _signed_usd(value: float | None) -> str:
    if value is None:
        return "?"
    if abs(value) < CENT:
        return "$0.00"
    return f"{'+' if value > 0 else '-'}${abs(value):,.2f}"


def _pct(before: float | None, after: float | None) -> str:
    if before is None or after is None:
        return "new" if before is None and after is not None else ("gone" if after is None and before else "")
    if abs(after - before) < CENT:
        return ""
    if abs(before) < CENT:
        return "new"
    return f"{(after - before) / abs(before) * 100:+.1f}%"


def _cell(text: Any, limit: int = 1000) -> str:
    """Markdown table cell: one line, pipes escaped (policy messages quote config like a|b), bounded length."""
    text = str(text).replace("\r", " ").replace("\n", " ").strip()
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("\\", "\\\\").replace("|", "\\|")


def _verdict(passed: bool | None) -> str:
    return {True: "✅ passed", False: "❌ failed", None: "— (not evaluated)"}[passed]


def _fmt_metric(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() and abs(value) >= 1000 else f"{value:,.4g}"
    return str(value)


def _side_text(side: Side) -> str:
    match side.status:
        case "absent":
            return "no such stack"
        case "invalid":
            return f"invalid config: {side.message or 'see the preview output'}"
        case "error":
            return f"preview failed: {side.message or 'see the job log'}"
        case _:
            return _usd(side.total)


def _stack_badge(stack: StackDiff) -> str:
    if stack.head.status == "absent":
        return "🗑️ removed"
    if stack.head.status == "invalid":
        return "⛔ invalid config"
    if stack.head.status == "error":
        return "⛔ preview failed"
    if stack.head_blocked:
        return "❌ mandatory policy fails"
    budget = stack.head.budget
    if budget is not None and stack.after_usd > budget + CENT:
        return "❌ over budget"
    return "🆕 added" if stack.base.status == "absent" else "✅"


def render_markdown(diff: CostDiff) -> str:
    lines: list[str] = [MARKER]
    delta = diff.delta_usd
    pct = _pct(diff.before_usd, diff.after_usd)
    blocked = [s.name for s in diff.stacks if s.head_blocked]
    incomparable = [s.name for s in diff.stacks if not s.comparable]
    headline = f"{_signed_usd(delta)}/month" + (f" ({pct})" if pct and pct != "new" else "")
    if incomparable and not diff.comparable_stacks:
        headline = "unknown (no bill on one side)"
    lines.append(f"## gpu-inference cost diff: {headline}")
    lines.append("")
    lines.append(
        f"`{diff.base_label}` → `{diff.head_label}` · {len(diff.stacks)} stack(s) · "
        f"{_usd(diff.before_usd)} → {_usd(diff.after_usd)} per month (730 h, catalog list prices)"
        + (f" · **blocked: {', '.join(blocked)}**" if blocked else "")
        + (f" · not in the totals (no bill on one side): {', '.join(incomparable)}" if incomparable else "")
    )
    if not diff.stacks:
        lines += ["", "No `Pulumi.<stack>.yaml` in either revision."]

    for stack in diff.stacks:
        lines += ["", f"### {_stack_badge(stack)} `{stack.name}`: {_side_text(stack.base)} → {_side_text(stack.head)}"]
        quiet = stack.unchanged
        if quiet:
            # Nothing moved: one line, the table folded away, so the comment's eye goes to what changed.
            lines += ["No change to cost, policy verdicts or sizing.", "", "<details><summary>Resources</summary>"]
        elif stack.base.has_report and stack.head.has_report:
            lines.append(
                f"Δ **{_signed_usd(stack.delta_usd)}/month**"
                + (f" ({_pct(stack.before_usd, stack.after_usd)})" if _pct(stack.before_usd, stack.after_usd) else "")
            )
        lines.append("")
        if stack.resources:
            lines.append("| Resource | Type | Before | After | Δ / month | Δ % |")
            lines.append("|---|---|--:|--:|--:|--:|")
            for r in stack.resources:
                mark = {"added": " 🆕", "removed": " 🗑️", "changed": "", "unchanged": "", "unknown": ""}[r.change]
                # Unknown: the other side has no bill, so its column reads "?", not "—" (absent).
                before_cell = "?" if r.change == "unknown" and r.before_usd is None else _usd(r.before_usd)
                after_cell = "?" if r.change == "unknown" and r.after_usd is None else _usd(r.after_usd)
                pct_cell = "" if r.change == "unknown" else _pct(r.before_usd, r.after_usd)
                lines.append(
                    f"| `{_cell(r.resource_name)}`{mark} | {_cell(r.resource_type) or '—'} | {before_cell} | "
                    f"{after_cell} | {_signed_usd(r.delta_usd) if r.change != 'unchanged' else '—'} | {pct_cell} |"
                )
            before = stack.before_usd if stack.base.has_report else None
            after = stack.after_usd if stack.head.has_report else None
            total_pct = _pct(before, after) if stack.comparable else ""
            before_total = _usd(before) if stack.comparable or before is not None else "?"
            after_total = _usd(after) if stack.comparable or after is not None else "?"
            lines.append(
                f"| **Total** | | **{before_total}** | **{after_total}** | **{_signed_usd(stack.delta_usd)}** | {total_pct} |"
            )
            lines.append(f"| Budget | | {_budget_cell(stack.base)} | {_budget_cell(stack.head)} | | |")
        else:
            lines.append("_No priced resources on either side._")
        if quiet:
            lines += ["", "</details>"]

        if stack.resources_added or stack.resources_removed:
            lines += ["", "<details><summary>Resources added / removed (incl. free ones)</summary>", ""]
            lines += [f"- ➕ `{_cell(r)}`" for r in stack.resources_added]
            lines += [f"- ➖ `{_cell(r)}`" for r in stack.resources_removed]
            lines += ["", "</details>"]

        if stack.policies_changed:
            lines += ["", "**Policy verdicts that changed**", ""]
            lines.append("| Policy | Resource | Level | Before | After | Message |")
            lines.append("|---|---|---|---|---|---|")
            for p in stack.policies_changed:
                lines.append(
                    f"| {_cell(p.name)} | {_cell(p.resource or '—')} | {_cell(p.level or '—')} | {_verdict(p.before)} | "
                    f"{_verdict(p.after)} | {_cell(p.message)} |"
                )
        unchanged_failures = [p for p in stack.head_failing_mandatory if p.before is False]
        if unchanged_failures:
            lines += ["", "**Still failing (mandatory, unchanged by this PR)**", ""]
            lines += [f"- {_cell(p.name)} on `{_cell(p.resource or '—')}`: {_cell(p.message)}" for p in unchanged_failures]

        if stack.sizing_changed:
            lines += ["", "**Sizing that changed (per node)**", ""]
            lines.append("| Node | Metric | Before | After |")
            lines.append("|---|---|--:|--:|")
            for s in stack.sizing_changed:
                lines.append(
                    f"| `{_cell(s.node)}` | {_cell(s.metric)} | {_cell(_fmt_metric(s.before))} | {_cell(_fmt_metric(s.after))} |"
                )

    footer = [
        "",
        "<sub>Offline preview of each stack at both revisions (`python -m gpu_inference cost-diff`); "
        "updated on every push. See docs/ci.md.</sub>",
    ]
    text = "\n".join(lines)
    if len(text) > MAX_COMMENT_CHARS:
        # GitHub refuses a comment body over 65,536 characters; a cut comment beats no comment.
        text = text[: MAX_COMMENT_CHARS - 200].rsplit("\n", 1)[0] + "\n\n_… truncated: run `cost-diff --json` for all of it._"
    return text + "\n" + "\n".join(footer) + "\n"


def _budget_cell(side: Side) -> str:
    budget = side.budget
    if budget is None:
        return "—"
    share = side.total / budget * 100 if budget else 0.0
    flag = " ❌" if side.total > budget + CENT else ""
    return f"{_usd(budget)} ({share:.0f}% used){flag}"


def to_json(diff: CostDiff) -> dict[str, Any]:
    """Machine-readable diff: `stacks` of {name, before_usd, after_usd, delta_usd, ...} plus totals."""
    stacks: list[dict[str, Any]] = []
    for s in diff.stacks:
        stacks.append(
            {
                "name": s.name,
                "change": s.change,
                "before_usd": s.before_usd if s.base.has_report else None,
                "after_usd": s.after_usd if s.head.has_report else None,
                "delta_usd": s.delta_usd,
                "budget_before_usd": s.base.budget,
                "budget_after_usd": s.head.budget,
                "base": {"status": s.base.status, "message": s.base.message, "source": s.base.source},
                "head": {"status": s.head.status, "message": s.head.message, "source": s.head.source},
                "head_blocked": s.head_blocked,
                "resources": [{**r.model_dump(mode="json"), "delta_usd": r.delta_usd, "change": r.change} for r in s.resources],
                "resources_added": s.resources_added,
                "resources_removed": s.resources_removed,
                "policies_changed": [p.model_dump(mode="json") for p in s.policies_changed],
                "head_failing_mandatory": [p.model_dump(mode="json") for p in s.head_failing_mandatory],
                "sizing_changed": [c.model_dump(mode="json") for c in s.sizing_changed],
            }
        )
    return {
        "base": diff.base_label,
        "head": diff.head_label,
        "before_usd": diff.before_usd,
        "after_usd": diff.after_usd,
        "delta_usd": diff.delta_usd,
        "stacks": stacks,
    }
