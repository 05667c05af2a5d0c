"""The cost diff of two git revisions (or two stack files): previews of each side, then the diff.

Each revision is checked out into a temporary ``git worktree add --detach`` directory and previewed there
with that checkout's own code and catalog data (``gpu_inference.preview_subprocess``). The worktrees are
always removed; the user's working tree, index and HEAD are never touched.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gpu_inference.constants import PROJECT_NAME
from gpu_inference.cost_diff.diff import CostDiff, Side, build_diff
from gpu_inference.preview_subprocess import preview_checkout

STACK_FILE = re.compile(r"^Pulumi\.(?P<name>[^/]+)\.ya?ml$")
# Git variables a hook or an outer git command may export; inherited, they would point our git calls
# (and so `worktree add`) at another index or work tree.
_GIT_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_PREFIX", "GIT_COMMON_DIR")

# (project_dir, stack argument, out_dir, source label) → one side of a diff.
PreviewFn = Callable[[Path, str, Path, str], Side]


class UsageError(ValueError):
    """Bad flags, refs or paths: the CLI prints it as one line and exits 2."""


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
    tmp = Path(tempfile.mkdtemp(prefix=f"{PROJECT_NAME}-cost-diff-"))
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


def run_preview_subprocess(project_dir: Path, stack_arg: str, out_dir: Path, source: str) -> Side:
    """The preview of a stack with that checkout's own code, as one side of a diff."""
    outcome = preview_checkout(project_dir, stack_arg, out_dir, env=_clean_env())
    return Side(status=outcome.status, report=outcome.report, message=outcome.message, source=source)


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

    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix=f"{PROJECT_NAME}-cost-diff-out-") as out:
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
    with tempfile.TemporaryDirectory(prefix=f"{PROJECT_NAME}-cost-diff-out-") as out:
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


