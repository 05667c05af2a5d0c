"""cost-diff: the pure diff over recorded preview JSON, the subcommand's modes, git worktrees, end to end.

Three layers:
- recorded preview reports (the `preview --json` contract) through ``gpu_inference.cost_diff``;
- the subcommand with an injected preview function, in throwaway git repositories (worktree handling,
  added/removed stacks, cleanup on error, the user's index and tree untouched);
- the real thing: `python -m gpu_inference cost-diff` running real previews, in the checkout and in a
  fresh clone with a commit changing nodeCount (skipped while this revision has no preview command).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpu_inference.commands import cost_diff as cmd
from gpu_inference.constants import PROJECT_DIR
from gpu_inference.cost_diff import MARKER, Side, build_diff, diff_stack, render_markdown, to_json

# ---------------------------------------------------------------------------------------------
# Recorded preview reports (shape of `python -m gpu_inference preview STACK --json`)
# ---------------------------------------------------------------------------------------------

GPU_DROPLET_MONTHLY = 1.57 * 730  # gpu-l40sx1-48gb list price per hour × 730 h
VOLUME_MONTHLY = 200 * 0.10  # 200 GB block storage at $0.10/GB-month
CPU_DROPLET_MONTHLY = 24.0  # s-2vcpu-4gb, billing capped at its monthly price
DROPLET = "digitalocean:index/droplet:Droplet"
VOLUME = "digitalocean:index/volume:Volume"
FIREWALL = "digitalocean:index/firewall:Firewall"


def recorded_report(
    node_count: int = 1,
    budget: float = 5000.0,
    vram_fit: bool = True,
    kv_cache_tokens: int = 181_872,
    max_concurrency: float = 22.2,
    stack: str = "dev",
) -> dict[str, Any]:
    """A preview report as the preview prints it: nodes, their volumes, the LB and Prometheus hosts."""
    resources: list[dict[str, Any]] = []
    cost_lines: list[dict[str, Any]] = []
    sizing: dict[str, Any] = {}
    for i in range(node_count):
        node, vol = f"{stack}-gpu-{i}", f"{stack}-gpu-{i}-models"
        resources += [{"type": DROPLET, "name": node, "urn": f"urn:{node}"}, {"type": VOLUME, "name": vol}]
        cost_lines += [
            _line(DROPLET, node, "gpu-l40sx1-48gb 1 × L40S", 1.57, GPU_DROPLET_MONTHLY),
            _line(VOLUME, vol, "200 GB block storage", VOLUME_MONTHLY / 730, VOLUME_MONTHLY),
        ]
        sizing[node] = {"kv_cache_tokens": kv_cache_tokens, "max_concurrency": max_concurrency, "fits": vram_fit}
    for host in (f"{stack}-lb", f"{stack}-prometheus"):
        resources.append({"type": DROPLET, "name": host})
        cost_lines.append(_line(DROPLET, host, "s-2vcpu-4gb", 0.03571, CPU_DROPLET_MONTHLY))
    resources.append({"type": FIREWALL, "name": f"{stack}-fw"})
    total = sum(line["monthly_usd"] for line in cost_lines)
    policies = [
        {
            "name": "vram-fit",
            "passed": vram_fit,
            "level": "mandatory",
            "message": "weights 16.4 GiB + activations fit in 40.0 GiB"
            if vram_fit
            else "needs 52.1 GiB | has 40.0 GiB: lower maxModelLen or use a bigger GPU",
            "resource": f"{stack}-vllm",
        },
        {
            "name": "budget",
            "passed": total <= budget,
            "level": "mandatory",
            "message": f"${total:,.2f} of ${budget:,.2f}",
            "resource": None,
        },
        {"name": "kv-headroom", "passed": True, "level": "advisory", "message": "ok", "resource": f"{stack}-vllm"},
    ]
    return {
        "stack": stack,
        "resources": resources,
        "monthly_cost_usd": total,
        "budget_usd": budget,
        "cost_lines": cost_lines,
        "policies": policies,
        "sizing": sizing,
        "files": [f"build/{stack}/cloud-init.yaml"],
    }


def _line(rtype: str, name: str, desc: str, hourly: float, monthly: float) -> dict[str, Any]:
    return {
        "resource_type": rtype,
        "resource_name": name,
        "description": desc,
        "quantity": 1,
        "unit": "hour",
        "hourly_usd": hourly,
        "monthly_usd": monthly,
        "price_date": "2026-11-23",
        "price_source": "catalog",
    }


def ok(report: dict[str, Any]) -> Side:
    mandatory_fail = any(not p["passed"] and p["level"] == "mandatory" for p in report["policies"])
    return Side(status="policy_failed" if mandatory_fail else "ok", report=report)


NODE_MONTH = GPU_DROPLET_MONTHLY + VOLUME_MONTHLY


# ---------------------------------------------------------------------------------------------
# The pure diff
# ---------------------------------------------------------------------------------------------


def test_node_count_one_to_three_adds_exactly_two_node_months() -> None:
    before, after = recorded_report(1), recorded_report(3)
    stack = diff_stack("dev", ok(before), ok(after))
    assert stack.delta_usd == pytest.approx(after["monthly_cost_usd"] - before["monthly_cost_usd"])
    assert stack.delta_usd == pytest.approx(2 * NODE_MONTH)
    added = [r for r in stack.resources if r.change == "added"]
    assert sorted(r.resource_name for r in added) == ["dev-gpu-1", "dev-gpu-1-models", "dev-gpu-2", "dev-gpu-2-models"]
    assert all(r.change == "unchanged" for r in stack.resources if r not in added)
    assert sum(r.delta_usd for r in stack.resources) == pytest.approx(stack.delta_usd)

    md = render_markdown(build_diff("base", "head", [("dev", ok(before), ok(after))]))
    assert md.startswith(MARKER)
    # Every table ends at a blank line (GFM would read a following text line as one more row).
    body = md.splitlines()
    assert all(not body[i + 1] or body[i + 1].startswith("|") for i, line in enumerate(body[:-1]) if line.startswith("|"))
    assert "| Resource | Type | Before | After | Δ / month | Δ % |" in md
    assert f"+${2 * NODE_MONTH:,.2f}" in md
    assert f"| **Total** | | **${before['monthly_cost_usd']:,.2f}** | **${after['monthly_cost_usd']:,.2f}** |" in md
    # New nodes appear in the sizing section as added nodes, with their KV tokens.
    assert "| `dev-gpu-2` | kv_cache_tokens | — | 181,872 |" in md


def test_json_has_stacks_with_before_after_delta() -> None:
    diff = build_diff("b", "h", [("dev", ok(recorded_report(1)), ok(recorded_report(3)))])
    data = json.loads(json.dumps(to_json(diff)))
    (entry,) = data["stacks"]
    assert entry["name"] == "dev"
    assert entry["delta_usd"] == pytest.approx(entry["after_usd"] - entry["before_usd"])
    assert entry["delta_usd"] == pytest.approx(2 * NODE_MONTH)
    assert {r["resource_name"] for r in entry["resources"] if r["change"] == "added"} >= {"dev-gpu-1", "dev-gpu-2"}
    assert data["delta_usd"] == pytest.approx(2 * NODE_MONTH)


def test_policy_flip_is_reported_with_message_and_blocks_head() -> None:
    before = recorded_report(vram_fit=True, stack="prod")
    after = recorded_report(vram_fit=False, kv_cache_tokens=0, max_concurrency=0.0, stack="prod")
    diff = build_diff("b", "h", [("prod", ok(before), ok(after))])
    (stack,) = diff.stacks
    (flip,) = stack.policies_changed
    assert (flip.name, flip.before, flip.after, flip.level) == ("vram-fit", True, False, "mandatory")
    assert stack.head_blocked and stack.newly_blocked
    md = render_markdown(diff)
    assert "| vram-fit | prod-vllm | mandatory | ✅ passed | ❌ failed |" in md
    assert "52.1 GiB \\| has 40.0 GiB" in md  # a pipe in a message must not break the table
    assert "| `prod-gpu-0` | kv_cache_tokens | 181,872 | 0 |" in md
    assert "| `prod-gpu-0` | max_concurrency | 22.2 | 0 |" in md
    assert cmd.exit_code(diff, "any") == 1
    assert cmd.exit_code(diff, "new") == 1
    assert cmd.exit_code(diff, "never") == 0


def test_failure_already_on_base_only_fails_with_any() -> None:
    bad = recorded_report(vram_fit=False)
    diff = build_diff("b", "h", [("dev", ok(bad), ok(copy.deepcopy(bad)))])
    (stack,) = diff.stacks
    assert stack.policies_changed == []
    assert stack.head_blocked and not stack.newly_blocked
    assert "Still failing (mandatory, unchanged by this PR)" in render_markdown(diff)
    assert (cmd.exit_code(diff, "any"), cmd.exit_code(diff, "new")) == (1, 0)


def test_over_budget_shows_budget_flip() -> None:
    before, after = recorded_report(1, budget=2000), recorded_report(3, budget=2000)
    diff = build_diff("b", "h", [("dev", ok(before), ok(after))])
    md = render_markdown(diff)
    assert "| budget | — | mandatory | ✅ passed | ❌ failed |" in md
    assert "| Budget | | $2,000.00 (" in md and "❌ over budget" not in md  # the policy badge wins
    assert "❌ mandatory policy fails" in md


def test_invalid_config_on_head_is_shown_not_raised() -> None:
    head = Side(status="invalid", message="invalid stack config in Pulumi.dev.yaml: gpu-inference:nodeCount = 0 is out of range")
    diff = build_diff("b", "h", [("dev", ok(recorded_report(1)), head)])
    md = render_markdown(diff)
    assert "⛔ invalid config" in md and "nodeCount = 0 is out of range" in md
    (entry,) = to_json(diff)["stacks"]
    assert entry["head"]["status"] == "invalid" and entry["after_usd"] is None
    # No bill on the head side: the delta is unknown, never "-100%".
    assert entry["delta_usd"] is None and all(r["change"] == "unknown" for r in entry["resources"])
    assert "| **Total** | | **$1,214.10** | **?** | **?** |  |" in md
    assert "cost diff: unknown (no bill on one side)" in md and "-100" not in md
    assert cmd.exit_code(diff, "any") == 1
    assert cmd.exit_code(diff, "new") == 1


def test_invalid_config_on_base_only_does_not_block() -> None:
    base = Side(status="invalid", message="bad key")
    diff = build_diff("b", "h", [("dev", base, ok(recorded_report(1)))])
    assert "invalid config: bad key" in render_markdown(diff)
    assert cmd.exit_code(diff, "any") == 0


def test_added_and_removed_stacks() -> None:
    diff = build_diff(
        "b",
        "h",
        [
            ("new", Side(status="absent"), ok(recorded_report(1, stack="new"))),
            ("old", ok(recorded_report(2, stack="old")), Side(status="absent")),
        ],
    )
    new, old = diff.stacks
    assert new.change == "added" and new.delta_usd == pytest.approx(recorded_report(1)["monthly_cost_usd"])
    assert old.change == "removed" and old.delta_usd == pytest.approx(-recorded_report(2)["monthly_cost_usd"])
    assert new.policies_changed == [] and old.policies_changed == []  # one-sided policies are not "changes"
    md = render_markdown(diff)
    assert "🆕 added `new`: no such stack →" in md
    assert "🗑️ removed `old`:" in md
    assert cmd.exit_code(diff, "any") == 0


def test_free_resources_listed_and_unitemised_total_shown() -> None:
    before = recorded_report(1)
    after = copy.deepcopy(before)
    after["resources"].append({"type": "digitalocean:index/vpc:Vpc", "name": "dev-vpc"})
    after["monthly_cost_usd"] += 12.5  # a total the lines do not explain must still add up in the table
    stack = diff_stack("dev", ok(before), ok(after))
    assert stack.resources_added == ["digitalocean:index/vpc:Vpc dev-vpc"]
    (extra,) = [r for r in stack.resources if r.resource_name == "(not itemised)"]
    assert extra.delta_usd == pytest.approx(12.5)
    assert sum(r.delta_usd for r in stack.resources) == pytest.approx(stack.delta_usd)


@pytest.mark.parametrize(
    "sizing_before, sizing_after, expected",
    [
        ({"kv_cache_tokens": 100, "max_concurrency": 1.5}, {"kv_cache_tokens": 200, "max_concurrency": 1.5},
         [("(every node)", "kv_cache_tokens", 100, 200)]),
        ([{"name": "n0", "kv_cache_tokens": 1, "max_concurrency": 2}],
         [{"name": "n0", "kv_cache_tokens": 1, "max_concurrency": 3}],
         [("n0", "max_concurrency", 2, 3)]),
        ({"n0": {"kv_cache_tokens": 5, "memory": {"weights_gib": 1.0}}},
         {"n0": {"kv_cache_tokens": 5, "memory": {"weights_gib": 2.0}}},
         [("n0", "memory.weights_gib", 1.0, 2.0)]),
        ({"n0": {"max_concurrency": 1.0, "kv_cache_tokens": 1}}, {"n0": {"max_concurrency": 2.0, "kv_cache_tokens": 2}},
         [("n0", "kv_cache_tokens", 1, 2), ("n0", "max_concurrency", 1.0, 2.0)]),
    ],
)  # fmt: skip
def test_sizing_shapes(sizing_before: Any, sizing_after: Any, expected: list[tuple[Any, ...]]) -> None:
    before, after = recorded_report(1), recorded_report(1)
    before["sizing"], after["sizing"] = sizing_before, sizing_after
    stack = diff_stack("dev", ok(before), ok(after))
    assert [(c.node, c.metric, c.before, c.after) for c in stack.sizing_changed] == expected


def test_older_report_shape_does_not_crash() -> None:
    # A base revision may predate fields (no sizing, no resources list, string numbers).
    old = {"stack": "dev", "monthly_cost_usd": "100.5", "cost_lines": [{"resource_name": "x", "monthly_usd": "100.5"}]}
    diff = build_diff("b", "h", [("dev", Side(status="ok", report=old), ok(recorded_report(1)))])
    md = render_markdown(diff)
    assert "$100.50" in md
    assert diff.stacks[0].before_usd == pytest.approx(100.5)


# ---------------------------------------------------------------------------------------------
# The subcommand, with an injected preview (no Pulumi): file mode, git worktrees, cleanup
# ---------------------------------------------------------------------------------------------


def _stack_yaml(node_count: int, budget: float = 5000, model: str = "Qwen/Qwen3-8B") -> str:
    return yaml.safe_dump(
        {
            "config": {
                "gpu-inference:provider": "digitalocean",
                "gpu-inference:region": "tor1",
                "gpu-inference:gpu": "gpu-l40sx1-48gb",
                "gpu-inference:model": model,
                "gpu-inference:nodeCount": node_count,
                "gpu-inference:monthlyBudgetUsd": budget,
            }
        },
        sort_keys=False,
    )


def fake_preview(project_dir: Path, stack_arg: str, out_dir: Path, source: str) -> Side:
    """Stands in for the preview subprocess: reads the stack file as that checkout has it."""
    path = Path(stack_arg) if stack_arg.endswith((".yaml", ".yml")) else project_dir / f"Pulumi.{stack_arg}.yaml"
    config = yaml.safe_load(path.read_text())["config"]
    if config.get("gpu-inference:nodeCount", 1) < 1:
        return Side(status="invalid", message="gpu-inference:nodeCount = 0 is out of range: allowed ≥ 1", source=source)
    name = path.name.split(".")[1]
    report = recorded_report(config.get("gpu-inference:nodeCount", 1), config["gpu-inference:monthlyBudgetUsd"], stack=name)
    return ok(report)


def _args(**kw: Any) -> argparse.Namespace:
    base = {
        "base": None, "head": None, "stack": None, "base_file": None, "head_file": None, "format": "markdown",
        "json": False, "output": None, "fail_on_policy": "any", "project_dir": None,
    }  # fmt: skip
    base.update(kw)
    return argparse.Namespace(**base)


def test_parser_accepts_the_documented_flags() -> None:
    parser = argparse.ArgumentParser()
    cmd.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["cost-diff", "--base", "origin/main", "--head", "HEAD", "--stack", "dev", "--stack", "prod", "--json",
         "--fail-on-policy", "new"]
    )  # fmt: skip
    assert (args.base, args.head, args.stack, args.json, args.fail_on_policy) == (
        "origin/main",
        "HEAD",
        ["dev", "prod"],
        True,
        "new",
    )
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["cost-diff", "--format", "html"])
    assert exc.value.code == 2


def test_file_mode_one_to_three(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "Pulumi.one.yaml").write_text(_stack_yaml(1))
    (tmp_path / "Pulumi.three.yaml").write_text(_stack_yaml(3))
    args = _args(base_file=tmp_path / "Pulumi.one.yaml", head_file=tmp_path / "Pulumi.three.yaml", json=True)
    assert cmd.run(args, preview=fake_preview) == 0
    (entry,) = json.loads(capsys.readouterr().out)["stacks"]
    assert entry["name"] == "one → three"
    assert entry["delta_usd"] == pytest.approx(2 * NODE_MONTH)


@pytest.mark.parametrize(
    "kw, message",
    [
        ({}, "--base REF is required"),
        ({"base_file": Path("a.yaml")}, "go together"),
        ({"base_file": Path("/nonexistent/a.yaml"), "head_file": Path("/nonexistent/b.yaml")}, "does not exist"),
        ({"base_file": Path("a.yaml"), "head_file": Path("b.yaml"), "base": "HEAD"}, "drop --base"),
    ],
)
def test_usage_errors_exit_2(kw: dict[str, Any], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd.run(_args(**kw), preview=fake_preview) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}  # fmt: skip
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repo with dev (1 node) and prod committed, then a commit: dev → 3 nodes, prod removed, new added."""
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    (root / "Pulumi.yaml").write_text("name: gpu-inference\nruntime: python\n")
    (root / "Pulumi.dev.yaml").write_text(_stack_yaml(1))
    (root / "Pulumi.prod.yaml").write_text(_stack_yaml(2))
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "base")
    (root / "Pulumi.dev.yaml").write_text(_stack_yaml(3))
    (root / "Pulumi.prod.yaml").unlink()
    (root / "Pulumi.new.yaml").write_text(_stack_yaml(1))
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "head")
    return root


def _fingerprint(repo: Path) -> tuple[str, str, str, str]:
    # --no-optional-locks: `git status` would otherwise refresh (rewrite) the index we are fingerprinting.
    status = _git(repo, "--no-optional-locks", "status", "--porcelain")
    index = hashlib.sha256((repo / ".git" / "index").read_bytes()).hexdigest()
    return index, status, _git(repo, "rev-parse", "HEAD"), _git(repo, "worktree", "list")


def test_revisions_in_worktrees(repo: Path) -> None:
    # An uncommitted edit in the user's tree: must neither be previewed (head is HEAD) nor be touched.
    (repo / "Pulumi.dev.yaml").write_text(_stack_yaml(7))
    before = _fingerprint(repo)
    seen: list[Path] = []

    def spy(project_dir: Path, stack_arg: str, out_dir: Path, source: str) -> Side:
        seen.append(project_dir)
        assert project_dir != repo
        return fake_preview(project_dir, stack_arg, out_dir, source)

    diff = cmd.diff_revisions(repo, "HEAD~1", "HEAD", preview=spy)
    assert [s.name for s in diff.stacks] == ["dev", "new", "prod"]
    dev, new, prod = diff.stacks
    assert dev.delta_usd == pytest.approx(2 * NODE_MONTH)
    assert (new.change, prod.change) == ("added", "removed")
    assert _fingerprint(repo) == before
    assert seen and not any(p.exists() for p in seen)  # every temporary worktree is gone

    only_dev = cmd.diff_revisions(repo, "HEAD~1", "HEAD", stacks=["dev"], preview=fake_preview)
    assert [s.name for s in only_dev.stacks] == ["dev"]


def test_worktrees_removed_when_preview_raises(repo: Path) -> None:
    before = _fingerprint(repo)
    seen: list[Path] = []

    def boom(project_dir: Path, stack_arg: str, out_dir: Path, source: str) -> Side:
        seen.append(project_dir)
        raise RuntimeError("preview exploded")

    with pytest.raises(RuntimeError):
        cmd.diff_revisions(repo, "HEAD~1", "HEAD", preview=boom)
    assert seen and not any(p.exists() for p in seen)
    assert _fingerprint(repo) == before
    assert not (repo / ".git" / "worktrees").exists() or not any((repo / ".git" / "worktrees").iterdir())


def test_unknown_ref_and_unknown_stack_are_usage_errors(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd.run(_args(base="no-such-ref", project_dir=repo), preview=fake_preview) == 2
    assert "unknown git revision 'no-such-ref'" in capsys.readouterr().err
    assert cmd.run(_args(base="HEAD~1", stack=["staging"], project_dir=repo), preview=fake_preview) == 2
    assert "staging" in capsys.readouterr().err


def test_head_invalid_config_in_a_commit(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (repo / "Pulumi.dev.yaml").write_text(_stack_yaml(0))
    _git(repo, "commit", "-q", "-am", "break dev")
    code = cmd.run(_args(base="HEAD~1", stack=["dev"], project_dir=repo), preview=fake_preview)
    out = capsys.readouterr().out
    assert code == 1
    assert "⛔ invalid config" in out and "nodeCount = 0" in out
    assert cmd.run(_args(base="HEAD~1", stack=["dev"], project_dir=repo, fail_on_policy="never"), preview=fake_preview) == 0


def test_output_file_and_project_in_subfolder(tmp_path: Path) -> None:
    root = tmp_path / "mono"
    project = root / "infra" / "gpu"
    project.mkdir(parents=True)
    _git(root, "init", "-q", "-b", "main")
    (project / "Pulumi.dev.yaml").write_text(_stack_yaml(1))
    (root / "Pulumi.elsewhere.yaml").write_text(_stack_yaml(1))  # outside the project: not a stack of ours
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "base")
    (project / "Pulumi.dev.yaml").write_text(_stack_yaml(2))
    _git(root, "commit", "-q", "-am", "head")
    out = tmp_path / "build" / "cost-diff.md"
    assert cmd.run(_args(base="HEAD~1", project_dir=project, output=out), preview=fake_preview) == 0
    text = out.read_text()
    assert text.startswith(MARKER) and "`dev`" in text and "elsewhere" not in text
    assert f"+${NODE_MONTH:,.2f}" in text


def test_preview_subprocess_classifies_exit_codes(tmp_path: Path) -> None:
    """run_preview_subprocess against a stand-in `gpu_inference` package: 0/1 JSON, 2 invalid, usage, crash."""
    pkg = tmp_path / "gpu_inference"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(
        "import json, sys\n"
        "stack = sys.argv[2]\n"
        "if stack == 'ok': print(json.dumps({'monthly_cost_usd': 1.0})); sys.exit(0)\n"
        "if stack == 'fail': print(json.dumps({'monthly_cost_usd': 2.0})); sys.exit(1)\n"
        "if stack == 'bad': print('error: invalid stack config: gpu-inference:gpu is required', file=sys.stderr); sys.exit(2)\n"
        "if stack == 'usage': print('usage: x\\nerror: invalid choice', file=sys.stderr); sys.exit(2)\n"
        "raise RuntimeError('kaboom')\n"
    )
    run = cmd.run_preview_subprocess
    assert run(tmp_path, "ok", tmp_path / "o", "s").status == "ok"
    failed = run(tmp_path, "fail", tmp_path / "o", "s")
    assert failed.status == "policy_failed" and failed.total == 2.0
    bad = run(tmp_path, "bad", tmp_path / "o", "s")
    assert bad.status == "invalid" and bad.message == "invalid stack config: gpu-inference:gpu is required"
    assert run(tmp_path, "usage", tmp_path / "o", "s").status == "error"
    crash = run(tmp_path, "crash", tmp_path / "o", "s")
    assert crash.status == "error" and "kaboom" in (crash.message or "")


# ---------------------------------------------------------------------------------------------
# End to end with the real preview (skipped until this revision has `python -m gpu_inference preview`)
# ---------------------------------------------------------------------------------------------


def _has_real_preview(project_dir: Path) -> bool:
    return (project_dir / "gpu_inference" / "preview_runner.py").is_file() and (
        project_dir / "gpu_inference" / "commands" / "preview.py"
    ).is_file()


needs_preview = pytest.mark.skipif(not _has_real_preview(PROJECT_DIR), reason="the offline preview has not landed yet")


def _gpu_inference(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["PYTHONPATH"] = str(cwd)
    return subprocess.run(
        [sys.executable, "-m", "gpu_inference", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


def _set_node_count(text: str, count: int) -> str:
    new, n = re.subn(r"(?m)^(\s*gpu-inference:nodeCount:\s*).*$", rf"\g<1>{count}", text)
    if n:
        return new
    # No nodeCount line (the default of 1 applies): add one under `config:`.
    return re.sub(r"(?m)^config:\s*$", f"config:\n  gpu-inference:nodeCount: {count}", text, count=1)


def _dev_stack_file(project_dir: Path) -> Path:
    for name in ("dev", "prod"):
        path = project_dir / f"Pulumi.{name}.yaml"
        if path.is_file():
            return path
    pytest.skip("no Pulumi.dev.yaml / Pulumi.prod.yaml in this checkout")


def _on_aws(text: str) -> str:
    """The same stack on AWS (L40S g6e.xlarge), where a node-month also holds its EBS root volume and public IPv4."""
    for key, value in (("provider", "aws"), ("region", "us-east-1"), ("gpu", "g6e.xlarge")):
        text = re.sub(rf"(?m)^(\s*gpu-inference:{key}:\s*).*$", rf"\g<1>{value}", text)
    return text


@needs_preview
@pytest.mark.parametrize("variant", ["as-committed", "aws"])
def test_e2e_files_one_to_three_delta_is_two_node_months(tmp_path: Path, variant: str) -> None:
    source = _dev_stack_file(PROJECT_DIR).read_text()
    if variant == "aws":
        source = _on_aws(source)
    # Only nodeCount differs between the two files (the budget policy may fail on three: exit 1 is fine).
    one, three = tmp_path / "Pulumi.one.yaml", tmp_path / "Pulumi.three.yaml"
    one.write_text(_set_node_count(source, 1))
    three.write_text(_set_node_count(source, 3))

    previews = {}
    for path in (one, three):
        proc = _gpu_inference(PROJECT_DIR, "preview", str(path), "--json", "--out", str(tmp_path / path.stem))
        if variant == "aws" and proc.returncode == 2:
            pytest.skip(f"the catalog cannot place this stack on AWS: {proc.stderr.strip()}")
        assert proc.returncode in (0, 1), proc.stderr
        previews[path.stem] = json.loads(proc.stdout)
    expected = previews["Pulumi.three"]["monthly_cost_usd"] - previews["Pulumi.one"]["monthly_cost_usd"]

    proc = _gpu_inference(PROJECT_DIR, "cost-diff", "--base-file", str(one), "--head-file", str(three), "--json",
                          "--fail-on-policy", "never")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (entry,) = json.loads(proc.stdout)["stacks"]
    assert entry["delta_usd"] == pytest.approx(expected, abs=0.005)
    # Exactly two node-months: the resources only the head has are two more copies of the node.
    added = [r for r in entry["resources"] if r["change"] == "added"]
    assert added, "nodeCount 1 → 3 must add resources"
    assert sum(r["after_usd"] for r in added) == pytest.approx(expected, abs=0.005)
    assert all(r["change"] in ("added", "unchanged") for r in entry["resources"])
    # A node-month = what node 0's priced resources (GPU droplet/instance, plus its disk if any) cost
    # on the base side; every added resource is the node-1/node-2 copy of one of them, at the same price.
    base_rows = {r["resource_name"]: r for r in entry["resources"] if r["before_usd"] is not None}
    node0: dict[str, float] = {}
    for r in added:
        twin = re.sub(r"-[12](?=-|/|$)", "-0", r["resource_name"], count=1)
        assert twin in base_rows, f"{r['resource_name']} has no node-0 counterpart in {sorted(base_rows)}"
        assert r["after_usd"] == pytest.approx(base_rows[twin]["before_usd"])
        node0[twin] = base_rows[twin]["before_usd"]
    node_month = sum(node0.values())
    assert len(added) == 2 * len(node0)
    assert expected == pytest.approx(2 * node_month, abs=0.005)

    md = _gpu_inference(PROJECT_DIR, "cost-diff", "--base-file", str(one), "--head-file", str(three),
                        "--fail-on-policy", "never")  # fmt: skip
    assert md.returncode == 0, md.stderr
    assert md.stdout.startswith(MARKER)
    assert "| Resource | Type | Before | After | Δ / month | Δ % |" in md.stdout


@needs_preview
def test_e2e_fresh_clone_commit_changing_node_count(tmp_path: Path) -> None:
    if not (PROJECT_DIR / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(PROJECT_DIR), str(clone)], check=True, capture_output=True)
    if not _has_real_preview(clone):
        pytest.skip("the committed revision has no preview yet")
    stack_file = _dev_stack_file(clone)
    stack = stack_file.name.split(".")[1]
    text = stack_file.read_text()
    count = int(m.group(1)) if (m := re.search(r"(?m)^\s*gpu-inference:nodeCount:\s*(\d+)", text)) else 1
    stack_file.write_text(_set_node_count(text, count + 1))
    _git(clone, "commit", "-q", "-am", f"{stack}: one more node")
    # The clone's own code runs (cwd and PYTHONPATH = the clone), against its own two commits.
    shutil.rmtree(clone / "build", ignore_errors=True)
    before = _fingerprint(clone)
    proc = _gpu_inference(clone, "cost-diff", "--base", "HEAD~1", "--head", "HEAD", "--stack", stack, "--json",
                          "--fail-on-policy", "never")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (entry,) = json.loads(proc.stdout)["stacks"]
    assert entry["name"] == stack
    assert entry["delta_usd"] > 0
    added = [r for r in entry["resources"] if r["change"] == "added"]
    assert sum(r["after_usd"] for r in added) == pytest.approx(entry["delta_usd"], abs=0.005)
    assert _fingerprint(clone) == before


def test_unchanged_stack_is_folded() -> None:
    same = recorded_report(2, stack="prod")
    diff = build_diff("b", "h", [("prod", ok(same), ok(copy.deepcopy(same)))])
    assert diff.stacks[0].unchanged
    md = render_markdown(diff)
    assert "No change to cost, policy verdicts or sizing." in md
    assert md.index("<details><summary>Resources</summary>") < md.index("| **Total** |") < md.index("</details>")


@needs_preview
def test_e2e_invalid_head_file_is_shown_not_a_crash(tmp_path: Path) -> None:
    source = _dev_stack_file(PROJECT_DIR).read_text()
    good, bad = tmp_path / "Pulumi.good.yaml", tmp_path / "Pulumi.bad.yaml"
    good.write_text(source)
    bad.write_text(_set_node_count(source, 0))
    proc = _gpu_inference(PROJECT_DIR, "cost-diff", "--base-file", str(good), "--head-file", str(bad))
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith(MARKER)
    assert "⛔ invalid config" in proc.stdout and "nodeCount" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_huge_diff_stays_under_githubs_comment_limit() -> None:
    pairs = [(f"s{i}", Side(status="absent"), ok(recorded_report(64, stack=f"s{i}"))) for i in range(12)]
    md = render_markdown(build_diff("b", "h", pairs))
    assert len(md) < 65_536 and md.startswith(MARKER) and "truncated" in md
