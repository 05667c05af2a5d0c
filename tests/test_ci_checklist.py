"""docs/ci.md's first-deploy checklist, followed end to end in a scratch copy of the repository.

Every ```bash block of the checklist runs, in order, with `gh`, `pulumi`, `aws` and `git push` replaced by
recorders (the first call to GitHub or a cloud is as far as this machine can go). The recorded calls are then
checked against what the workflows read: every secret a job reads is set in that job's environment (or, for a
job without one, at repository level), no deploy credential is set at repository level, every environment a
job names admits `main` only, production has reviewers, the AWS trust policies admit exactly the OIDC `sub`
of the jobs that assume each role, and the stack files end with no shipped ciphertext and an offline preview
that passes.
"""

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

# Values a platform engineer brings from a password manager; the checklist names them as shell variables.
STAND_INS = (
    "DEV_PASSPHRASE",
    "PROD_PASSPHRASE",
    "DEV_API_KEY",
    "PROD_API_KEY",
    "APPROVERS_TEAM_ID",
    "PULUMI_TOKEN_WRITE",
    "PULUMI_TOKEN_READ",
    "PULUMI_TOKEN_READ_DEV",
    "DO_TOKEN_WRITE",
    "DO_TOKEN_READ",
    "AWS_ACCOUNT_ID",
)
DOC = PROJECT_DIR / "docs" / "ci.md"
WORKFLOWS = {p.name: p for p in (PROJECT_DIR / ".github" / "workflows").glob("*.yml")}

# Records argv (and for `gh secret set`, whether stdin carried a value) as JSON lines; emulates the two
# `pulumi` calls that change files (`stack init` writes a salt, `config set --secret` a ciphertext).
RECORDER = r"""
import json, os, sys
from pathlib import Path
tool, args = sys.argv[1], sys.argv[2:]
entry = {"tool": tool, "args": args, "passphrase": bool(os.environ.get("PULUMI_CONFIG_PASSPHRASE"))}
if tool == "gh" and args[:2] == ["secret", "set"]:
    entry["stdin_len"] = len(sys.stdin.read())
with open(os.environ["RECORD"], "a", encoding="utf-8") as f:
    f.write(json.dumps(entry) + "\n")
if tool == "pulumi" and args[:2] == ["stack", "init"]:
    stack = args[2]
    path = Path(f"Pulumi.{stack}.yaml")
    text = path.read_text()
    assert "encryptionsalt" not in text, "stack init over a file that still has the shipped salt"
    path.write_text(f"encryptionsalt: v1:recorded-{stack}=:v1:salt\n" + text)
if tool == "pulumi" and args[:3] == ["config", "set", "--secret"]:
    key, stack = args[3], args[args.index("--stack") + 1]
    path = Path(f"Pulumi.{stack}.yaml")
    path.write_text(path.read_text().replace("config:\n", f"config:\n  {key}:\n    secure: v1:recorded:{len(args[4])}\n", 1))
"""


def checklist_blocks() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## First deploy checklist", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, re.S)


def trust_policies() -> dict[str, set[str]]:
    """`deploy-trust.json` / `preview-trust.json` as the checklist gives them: file name -> admitted `sub`s."""
    text = DOC.read_text(encoding="utf-8")
    out = {}
    for name, body in re.findall(r"`([a-z-]+-trust\.json)`[^\n]*\n\n```json\n(.*?)```", text, re.S):
        (statement,) = json.loads(body)["Statement"]
        cond = statement["Condition"]["StringEquals"]
        assert cond["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
        out[name] = set(cond["token.actions.githubusercontent.com:sub"])
    return out


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def environment_of(job: dict[str, Any]) -> str | None:
    env = job.get("environment")
    return env if env is None or isinstance(env, str) else env["name"]


@pytest.fixture(scope="module")
def followed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]], subprocess.CompletedProcess[str]]:
    root = tmp_path_factory.mktemp("checklist")
    repo = root / "repo"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=PROJECT_DIR, capture_output=True, check=True
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = PROJECT_DIR / rel
        if src.is_file() and not src.is_symlink():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / rel)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "clone"], cwd=repo, check=True)
    bin_dir = root / "bin"
    bin_dir.mkdir()
    (bin_dir / "recorder.py").write_text(RECORDER)
    real_git = shutil.which("git")
    # `git push` reaches GitHub: recorded; every other git command is real.
    (bin_dir / "git").write_text(
        "#!/usr/bin/env bash\n"
        f'if [ "$1" = push ]; then printf \'{{"tool": "git", "args": ["push"]}}\\n\' >> "$RECORD"; exit 0; fi\n'
        f'exec {real_git} -c user.name=t -c user.email=t@example.invalid "$@"\n'
    )
    (bin_dir / "python").write_text(f'#!/usr/bin/env bash\nexec {sys.executable} "$@"\n')
    for tool in ("gh", "pulumi", "aws"):
        (bin_dir / tool).write_text(f'#!/usr/bin/env bash\nexec {sys.executable} {bin_dir / "recorder.py"} {tool} "$@"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    record = root / "record.jsonl"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "RECORD": str(record),
        "REPO": "acme/gpu-inference",
        "HOME": str(root),
        # The values a platform engineer brings (password manager); any non-empty stand-ins.
        **{k: f"value-of-{k.lower()}" for k in STAND_INS},
    }
    env.pop("PULUMI_CONFIG_PASSPHRASE", None)
    script = "set -euo pipefail\n" + "\n".join(checklist_blocks())
    proc = subprocess.run(["bash", "-c", script], cwd=repo, env=env, capture_output=True, text=True, check=False, timeout=600)
    calls = [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
    return repo, calls, proc


def test_the_checklist_runs_to_its_end(followed: tuple[Path, list[dict[str, Any]], subprocess.CompletedProcess[str]]) -> None:
    _, calls, proc = followed
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert calls and calls[-1] == {"tool": "git", "args": ["push"]}  # it ends by pushing to main


def test_the_shipped_ciphertexts_are_gone_and_each_stack_has_its_own_salt(
    followed: tuple[Path, list[dict[str, Any]], subprocess.CompletedProcess[str]],
) -> None:
    repo, calls, _ = followed
    for stack in ("dev", "prod"):
        shipped = (PROJECT_DIR / f"Pulumi.{stack}.yaml").read_text()
        now = (repo / f"Pulumi.{stack}.yaml").read_text()
        for ciphertext in re.findall(r"(?:secure|encryptionsalt):\s*(v1:\S+)", shipped):
            assert ciphertext not in now, f"Pulumi.{stack}.yaml still carries a shipped ciphertext"
        assert f"encryptionsalt: v1:recorded-{stack}=" in now
        assert yaml.safe_load(now)["config"]["gpu-inference:apiKey"]["secure"].startswith("v1:recorded")
    # Each stack's secret was set with a passphrase in the environment (its own: the commands name it).
    sets = [c for c in calls if c["tool"] == "pulumi" and c["args"][:3] == ["config", "set", "--secret"]]
    assert {c["args"][c["args"].index("--stack") + 1] for c in sets} == {"dev", "prod"}
    assert all(c["passphrase"] for c in calls if c["tool"] == "pulumi" and c["args"][:1] != ["login"])
    committed = subprocess.run(["git", "log", "--format=%s", "-1"], cwd=repo, capture_output=True, text=True, check=True).stdout
    assert "secrets" in committed


def _secrets_set(calls: list[dict[str, Any]]) -> dict[tuple[str, str | None], int]:
    out = {}
    for c in calls:
        a = c["args"]
        if c["tool"] == "gh" and a[:2] == ["secret", "set"]:
            env = a[a.index("--env") + 1] if "--env" in a else None
            out[(a[2], env)] = c["stdin_len"]
    return out


def test_every_secret_a_job_reads_is_set_where_that_job_can_read_it_and_nowhere_wider(
    followed: tuple[Path, list[dict[str, Any]], subprocess.CompletedProcess[str]],
) -> None:
    _, calls, _ = followed
    secrets = _secrets_set(calls)
    assert all(length > 0 for length in secrets.values())  # values came on stdin, not argv
    needed: set[tuple[str, str | None]] = set()
    for wf in WORKFLOWS.values():
        for job in load(wf)["jobs"].values():
            for name in re.findall(r"secrets\.([A-Z0-9_]+)", json.dumps(job)):
                needed.add((name, environment_of(job)))
    assert needed <= set(secrets), sorted(needed - set(secrets))
    # Deploy credentials never at repository level (a PR run would receive them).
    deploy_names = {name for name, env in needed if env is not None}
    assert not [(n, e) for n, e in secrets if e is None and n in deploy_names]
    assert {n for n, e in secrets if e is None} == {n for n, e in needed if e is None}


def test_every_environment_a_job_names_admits_main_only_and_production_has_reviewers(
    followed: tuple[Path, list[dict[str, Any]], subprocess.CompletedProcess[str]],
) -> None:
    _, calls, _ = followed
    named = {environment_of(job) for wf in WORKFLOWS.values() for job in load(wf)["jobs"].values()} - {None}
    gh_api = [c["args"] for c in calls if c["tool"] == "gh" and c["args"][:1] == ["api"]]
    for env in named:
        puts = [a for a in gh_api if a[1:3] == ["-X", "PUT"] and a[3] == f"repos/acme/gpu-inference/environments/{env}"]
        assert puts and all("deployment_branch_policy[custom_branch_policies]=true" in a for a in puts), env
        policies = [a for a in gh_api if a[3] == f"repos/acme/gpu-inference/environments/{env}/deployment-branch-policies"]
        assert policies and all("name=main" in a for a in policies), env
    reviewers = [
        a for a in gh_api if a[3] == "repos/acme/gpu-inference/environments/production" and any("reviewers" in x for x in a)
    ]
    assert reviewers


def test_the_variables_that_open_the_gates_are_set(
    followed: tuple[Path, list[dict[str, Any]], subprocess.CompletedProcess[str]],
) -> None:
    _, calls, _ = followed
    variables = {
        c["args"][2]: c["args"][c["args"].index("--body") + 1]
        for c in calls
        if c["tool"] == "gh" and c["args"][:2] == ["variable", "set"]
    }
    gates = set()
    for wf in WORKFLOWS.values():
        gates |= set(re.findall(r"vars\.([A-Z0-9_]+) == 'true'", wf.read_text()))
    assert gates and {g: variables.get(g) for g in gates} == {g: "true" for g in gates}
    roles = set()
    for wf in WORKFLOWS.values():
        roles |= set(re.findall(r"vars\.(AWS_[A-Z_]+_ROLE_ARN)", wf.read_text()))
    assert roles <= set(variables)


def test_each_aws_role_trusts_exactly_the_oidc_subjects_of_the_jobs_that_assume_it(
    followed: tuple[Path, list[dict[str, Any]], subprocess.CompletedProcess[str]],
) -> None:
    _, calls, _ = followed
    policies = trust_policies()
    created = {
        c["args"][c["args"].index("--role-name") + 1]: c["args"][-1]
        for c in calls
        if c["tool"] == "aws" and c["args"][:2] == ["iam", "create-role"]
    }
    variables = {c["args"][2]: c["args"][-1] for c in calls if c["tool"] == "gh" and c["args"][:2] == ["variable", "set"]}
    for var in ("AWS_DEPLOY_ROLE_ARN", "AWS_PREVIEW_ROLE_ARN"):
        role = variables[var].rsplit("/", 1)[1]
        policy_file = created[role].removeprefix("file://")
        expected = set()
        for wf in WORKFLOWS.values():
            for job in load(wf)["jobs"].values():
                if f"vars.{var}" in json.dumps(job):
                    env = environment_of(job)
                    # GitHub's OIDC `sub`: the environment when the job has one, else the event for a PR.
                    expected.add(f"repo:OWNER/REPO:environment:{env}" if env else "repo:OWNER/REPO:pull_request")
        assert policies[policy_file] == expected, var


def test_reset_stack_secrets_strips_salt_and_every_secret_form_and_keeps_the_rest() -> None:
    from scripts.reset_stack_secrets import reset

    text = (
        "# a comment that stays\nencryptionsalt: v1:abc=:v1:def\nconfig:\n  gpu-inference:region: tor1\n"
        "  gpu-inference:apiKey:\n    secure: v1:aaa:bbb\n"
        "  gpu-inference:hfToken: {secure: v1:ccc:ddd}\n  gpu-inference:nodeCount: 2\n"
    )
    out, removed, had_salt = reset(text)
    assert had_salt and removed == ["gpu-inference:apiKey", "gpu-inference:hfToken"]
    assert out == "# a comment that stays\nconfig:\n  gpu-inference:region: tor1\n  gpu-inference:nodeCount: 2\n"
