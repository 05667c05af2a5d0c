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
import json
import sys
from pathlib import Path

from gpu_inference.commands import check_output_file, path_arg, write_output
from gpu_inference.constants import PROJECT_DIR
from gpu_inference.cost_diff import (
    PreviewFn,
    UsageError,
    diff_files,
    diff_revisions,
    exit_code,
    render_markdown,
    run_preview_subprocess,
    to_json,
)


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
    p.add_argument("--base-file", type=path_arg, metavar="FILE", help="base stack file (with --head-file: compare two files)")
    p.add_argument("--head-file", type=path_arg, metavar="FILE", help="head stack file, previewed in the current checkout")
    p.add_argument("--format", choices=("markdown", "json"), default="markdown", help="output format (default markdown)")
    p.add_argument("--json", action="store_true", help="same as --format json")
    p.add_argument("-o", "--output", type=path_arg, metavar="FILE", help="write the diff to FILE instead of stdout")
    p.add_argument(
        "--fail-on-policy",
        choices=("any", "new", "never"),
        default="any",
        help=(
            "exit 1 when the head side has a failing mandatory policy or invalid config: any (default), "
            "new (only if the base side was not already failing), never"
        ),
    )


def run(args: argparse.Namespace, preview: PreviewFn = run_preview_subprocess) -> int:
    project_dir = Path(getattr(args, "project_dir", None) or PROJECT_DIR)
    if args.output:
        check_output_file(args.output, "-o")  # before the previews, which take seconds each
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
        write_output(args.output, text, "-o")
    else:
        sys.stdout.write(text)
    return exit_code(diff, args.fail_on_policy)
