"""The offline preview of another checkout, run as a subprocess with that checkout's own code.

One runner for everyone who previews a revision that is not this one (``cost-diff``'s worktrees, and
``preview_runner.run_preview`` given another project directory): two revisions never share imported modules,
and each is priced by its own code and catalog data. No Pulumi import here (the child imports it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

# A preview runs the real Pulumi program under mocks: seconds normally; a hang must not eat CI's hour.
PREVIEW_TIMEOUT_SECONDS = 600

Status = Literal["ok", "policy_failed", "invalid", "error"]


@dataclass(frozen=True)
class CheckoutPreview:
    """What the child preview said: its JSON report (ok / policy_failed), or why there is none."""

    status: Status
    report: dict[str, Any] | None = None
    message: str | None = None


def first_lines(text: str, limit: int = 6) -> str:
    """The first lines of an error output as one line, without the CLI's ``error:`` prefix."""
    lines = [line.removeprefix("error: ").strip() for line in text.strip().splitlines() if line.strip()]
    joined = " ".join(lines[:limit])
    return joined if len(joined) <= 600 else joined[:597] + "..."


def preview_checkout(
    project_dir: Path, stack_arg: str, out_dir: Path, env: Mapping[str, str] | None = None,
    timeout: float = PREVIEW_TIMEOUT_SECONDS,
) -> CheckoutPreview:
    """`python -m gpu_inference preview STACK --json --out OUT_DIR` in ``project_dir`` with its own code."""
    child_env = {k: v for k, v in (env if env is not None else os.environ).items() if not k.startswith("PULUMI_CONFIG")}
    # The checkout's own package first, never an installed or inherited copy of gpu_inference.
    child_env["PYTHONPATH"] = str(project_dir)
    child_env.pop("PYTHONSAFEPATH", None)
    cmd = [sys.executable, "-m", "gpu_inference", "preview", stack_arg, "--json", "--out", str(out_dir)]
    try:
        proc = subprocess.run(cmd, cwd=project_dir, env=child_env, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        return CheckoutPreview("error", message=f"preview timed out after {timeout:g} s")
    if proc.returncode == 2:
        if "usage:" in proc.stderr:
            # argparse, not the config: this revision's CLI has no (compatible) `preview` command.
            return CheckoutPreview("error", message=f"no usable `preview` command here: {first_lines(proc.stderr, 2)}")
        return CheckoutPreview("invalid", message=first_lines(proc.stderr))
    if proc.returncode in (0, 1):
        try:
            report = json.loads(proc.stdout)
        except json.JSONDecodeError:
            report = None
        if isinstance(report, dict):
            return CheckoutPreview("ok" if proc.returncode == 0 else "policy_failed", report=report)
    detail = first_lines(proc.stderr.splitlines()[-1] if proc.stderr.strip() else proc.stdout, 2)
    return CheckoutPreview("error", message=f"exit {proc.returncode}: {detail or 'no output'}")
