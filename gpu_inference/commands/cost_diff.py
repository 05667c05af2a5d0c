"""`cost-diff`: what a change does to each stack's monthly bill, policy verdicts and sizing.

Two modes:

- ``--base REF [--head REF]`` previews every stack (``Pulumi.<stack>.yaml`` in either revision, or
  the ``--stack`` ones) at both revisions. Each revision is checked out into a temporary
  ``git worktree add --detach`` directory and previewed there by a subprocess
  ``python -m gpu_inference preview <stack> --json`` whose cwd and PYTHONPATH are that checkout, so each
  side is priced by its own code and catalog data. The worktrees are always removed; the user's working
  tree, index and HEAD are never touched. ``--head`` defaults to ``HEAD`` (the last commit, not
  uncommitted edits: a PR comment must describe what was pushed; to diff an edited stack file use
  the file mode).
- ``--base-file F --head-file F`` previews two stack files in the current checkout.

Exit codes: 0 diff printed; 1 the head side is blocked (``--fail-on-policy``: ``any`` mandatory policy
failing or invalid config on the head side — the default; ``new`` only when the base was not already
blocked the same way; ``never``); 2 usage error (bad flag, unknown ref, missing file). An invalid config
or a failed preview on one side is part of the diff, never a crash.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gpu_inference.constants import PROJECT_DIR
from gpu_inference.cost_diff import CostDiff, Side, build_diff, render_markdown, to_json

STACK_FILE = re.compile(r"^Pulumi\.(?P<name>[^/]+)\.ya?ml$")
# A preview runs the real Pulumi program under mocks: seconds normally; a hang must not eat CI's hour.
PREVIEW_TIMEOUT_SECONDS = 600
# Git variables a hook or an outer git command may export; inherited, they would point our git calls
# (and so `worktree add`) at another index or work tree.
_GIT_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_PREFIX", "GIT_COMMON_DIR")

# (project_dir, stack argument, out_dir, source label) → one side of a diff.
PreviewFn = Callable[[Path, str, Path, str], Side]


class UsageError(ValueError):
    """Bad flags, refs or paths: the CLI prints it as one line and exits 2."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "cost-diff",
        help="monthly cost, policy and sizing diff of every stack between two git revisions (the PR comment)",
        description=(
            "Preview each stack at --base and --head (temporary git worktrees) or two stack files, and print "
            "per-resource cost before → after, the total against budget, policy verdicts and sizing that changed."
        ),
    )
    p.add_argument("--base", metavar="REF", help="base revision, e.g. origin/main (required unless --base-file)")
    p.add_argument("--head", metavar="REF", help="head revision (default: HEAD, the last commit; uncommitted edits are ignored)")
    p.add_argument(
        "--stack",
        action="append",
        metavar="NAME",
        help="only this stack (repeatable); default: every Pulumi.<stack>.yaml present in either revision",
    )
    p.add_argument("--base-file", type=Path, metavar="FILE", help="base stack file (with --head-file: compare two files)")
    p.add_argument("--head-file", type=Path, metavar="FILE", help="head stack file, previewed in the current checkout")
    p.add_argument("--format", choices=("markdown", "json"), default="markdown", help="output format (default markdown)")
    p.add_argument("--json", action="store_true", help="same as --format json")
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="write the diff to FILE instead of stdout")
    p.add_argument(
        "--fail-on-policy",
        choices=("any", "new", "never"),
        default="any",
        help=(
            "exit 1 when the head side has a failing mandatory policy or invalid config: any (default), "
            "new (only if the base side was not already failing), never"
        ),
    )


# ---------------------------------------------------------------------------------------------
# git
# ---------------------------------------------------------------------------------------------


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _GIT_ENV}


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        env=_clean_env(),
        check=False,
    )
    if proc.returncode != 0:
        raise UsageError(f"git {' '.join(args)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def repo_layout(project_dir: Path) -> tuple[Path, Path]:
    """(top of the git checkout, the project's path inside it) — the project may sit in a subfolder."""
    try:
        top = Path(_git(project_dir, "rev-parse", "--show-toplevel").strip())
    except UsageError:
        raise UsageError(f"{project_dir} is not inside a git checkout; use --base-file/--head-file") from None
    return top, project_dir.resolve().relative_to(top.resolve())


def resolve_commit(repo: Path, ref: str) -> str:
    try:
        return _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip()
    except UsageError:
        raise UsageError(f"unknown git revision {ref!r} (fetch it first, e.g. `git fetch origin main`)") from None


def stacks_at(repo: Path, commit: str, subdir: Path) -> dict[str, str]:
    """Stack name → file name of every `Pulumi.<stack>.yaml` in the project folder at a commit."""
    prefix = "" if str(subdir) in ("", ".") else f"{subdir.as_posix()}/"
    names = _git(repo, "ls-tree", "--name-only", commit, "--", prefix or ".").splitlines()
    out: dict[str, str] = {}
    for path in names:
        match = STACK_FILE.match(path.removeprefix(prefix))
        if match:
            out.setdefault(match.group("name"), path.removeprefix(prefix))
    return out


@contextlib.contextmanager
def worktree(repo: Path, commit: str) -> Iterator[Path]:
    """A detached checkout of `commit` in a temporary directory, removed on exit (even on error)."""
    tmp = Path(tempfile.mkdtemp(prefix="gpu-inference-cost-diff-"))
    path = tmp / "tree"
    try:
        _git(repo, "worktree", "add", "--detach", "--quiet", str(path), commit)
        yield path
    finally:
        # `worktree remove` also drops its admin entry under .git/worktrees; if it fails (e.g. the add
        # itself failed half-way) the rmtree + prune pair does the same.
        subprocess.run(
            ["git", "-C", str(repo), "worktree", "remove", "--force", str(path)],
            capture_output=True,
            env=_clean_env(),
            check=False,
        )
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(["git", "-C", str(repo), "worktree", "prune"], capture_output=True, env=_clean_env(), check=False)


# ---------------------------------------------------------------------------------------------
# previews
# ---------------------------------------------------------------------------------------------


def _first_lines(text: str, limit: int = 6) -> str:
    lines = [line.removeprefix("error: ").strip() for line in text.strip().splitlines() if line.strip()]
    text = " ".join(lines[:limit])
    return text if len(text) <= 600 else text[:597] + "..."


def run_preview_subprocess(project_dir: Path, stack_arg: str, out_dir: Path, source: str) -> Side:
    """`python -m gpu_inference preview STACK --json` with that checkout's code, as one side of a diff."""
    env = _clean_env()
    # The checkout's own package first, never an installed or inherited copy of gpu_inference.
    env["PYTHONPATH"] = str(project_dir)
    env.pop("PYTHONSAFEPATH", None)
    cmd = [sys.executable, "-m", "gpu_inference", "preview", stack_arg, "--json", "--out", str(out_dir)]
    try:
        proc = subprocess.run(
            cmd, cwd=project_dir, env=env, capture_output=True, text=True, timeout=PREVIEW_TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        return Side(status="error", message=f"preview timed out after {PREVIEW_TIMEOUT_SECONDS} s", source=source)
    if proc.returncode == 2:
        if "usage:" in proc.stderr:
            # argparse, not the config: this revision's CLI has no (compatible) `preview` command.
            message = f"no usable `preview` command here: {_first_lines(proc.stderr, 2)}"
            return Side(status="error", message=message, source=source)
        return Side(status="invalid", message=_first_lines(proc.stderr), source=source)
    if proc.returncode in (0, 1):
        try:
            report = json.loads(proc.stdout)
        except json.JSONDecodeError:
            report = None
        if isinstance(report, dict):
            return Side(status="ok" if proc.returncode == 0 else "policy_failed", report=report, source=source)
    detail = _first_lines(proc.stderr.splitlines()[-1] if proc.stderr.strip() else proc.stdout, 2)
    return Side(status="error", message=f"exit {proc.returncode}: {detail or 'no output'}", source=source)


def _run_all(jobs: Sequence[tuple[Path, str, Path, str]], preview: PreviewFn) -> list[Side]:
    # Each preview is a separate Python process importing Pulumi: run a few at once, not all.
    workers = max(1, min(len(jobs), os.cpu_count() or 2, 4))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda job: preview(*job), jobs))


def diff_revisions(
    project_dir: Path,
    base_ref: str,
    head_ref: str,
    stacks: Sequence[str] | None = None,
    preview: PreviewFn = run_preview_subprocess,
) -> CostDiff:
    top, subdir = repo_layout(project_dir)
    base_commit, head_commit = resolve_commit(top, base_ref), resolve_commit(top, head_ref)
    base_files, head_files = stacks_at(top, base_commit, subdir), stacks_at(top, head_commit, subdir)
    names = sorted(set(base_files) | set(head_files))
    if stacks:
        unknown = [s for s in stacks if s not in names]
        if unknown:
            raise UsageError(
                f"stack(s) {', '.join(unknown)} exist in neither {base_ref} nor {head_ref} (found: {', '.join(names) or 'none'})"
            )
        names = list(dict.fromkeys(stacks))

    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="gpu-inference-cost-diff-out-") as out:
        base_tree = stack.enter_context(worktree(top, base_commit)) / subdir
        head_tree = stack.enter_context(worktree(top, head_commit)) / subdir
        jobs: list[tuple[Path, str, Path, str]] = []
        slots: list[tuple[str, str]] = []  # (stack, side) for each job
        for name in names:
            for side, tree, files, ref in (("base", base_tree, base_files, base_ref), ("head", head_tree, head_files, head_ref)):
                if name in files:
                    file_name = files[name]
                    # A name is what `pulumi` itself would pass; a .yml file can only be named by its path.
                    arg = name if file_name.endswith(".yaml") else str(tree / file_name)
                    jobs.append((tree, arg, Path(out) / side / name, f"{file_name} at {ref}"))
                    slots.append((name, side))
        results = dict(zip(slots, _run_all(jobs, preview), strict=True))

    pairs = [
        (
            name,
            results.get((name, "base"), Side(status="absent", source=f"no Pulumi.{name}.yaml at {base_ref}")),
            results.get((name, "head"), Side(status="absent", source=f"no Pulumi.{name}.yaml at {head_ref}")),
        )
        for name in names
    ]
    return build_diff(_label(base_ref, base_commit), _label(head_ref, head_commit), pairs)


def _label(ref: str, commit: str) -> str:
    # A ref that is already a commit needs no second spelling of itself.
    return commit[:7] if commit.startswith(ref) else f"{ref} ({commit[:7]})"


def _stack_name_of(path: Path) -> str:
    match = STACK_FILE.match(path.name)
    return match.group("name") if match else path.stem


def diff_files(
    project_dir: Path,
    base_file: Path,
    head_file: Path,
    preview: PreviewFn = run_preview_subprocess,
) -> CostDiff:
    for f in (base_file, head_file):
        if not f.is_file():
            raise UsageError(f"stack file {f} does not exist")
    base_name, head_name = _stack_name_of(base_file), _stack_name_of(head_file)
    name = base_name if base_name == head_name else f"{base_name} → {head_name}"
    with tempfile.TemporaryDirectory(prefix="gpu-inference-cost-diff-out-") as out:
        jobs = [
            (project_dir, str(base_file.resolve()), Path(out) / "base", str(base_file)),
            (project_dir, str(head_file.resolve()), Path(out) / "head", str(head_file)),
        ]
        base, head = _run_all(jobs, preview)
    return build_diff(str(base_file), str(head_file), [(name, base, head)])


def exit_code(diff: CostDiff, fail_on_policy: str) -> int:
    stacks = [s for s in diff.stacks if s.head.status != "absent"]
    if fail_on_policy == "any":
        return 1 if any(s.head_blocked for s in stacks) else 0
    if fail_on_policy == "new":
        return 1 if any(s.head_blocked and s.newly_blocked for s in stacks) else 0
    return 0


def run(args: argparse.Namespace, preview: PreviewFn = run_preview_subprocess) -> int:
    project_dir = Path(getattr(args, "project_dir", None) or PROJECT_DIR)
    try:
        if args.base_file is not None or args.head_file is not None:
            if args.base_file is None or args.head_file is None:
                raise UsageError("--base-file and --head-file go together")
            if args.base or args.head or args.stack:
                raise UsageError("--base-file/--head-file compare two files; drop --base/--head/--stack")
            diff = diff_files(project_dir, args.base_file, args.head_file, preview=preview)
        else:
            if not args.base:
                raise UsageError("--base REF is required (e.g. --base origin/main), or give --base-file and --head-file")
            diff = diff_revisions(project_dir, args.base, args.head or "HEAD", args.stack, preview=preview)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    fmt = "json" if args.json else args.format
    text = json.dumps(to_json(diff), indent=2) + "\n" if fmt == "json" else render_markdown(diff)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return exit_code(diff, args.fail_on_policy)
