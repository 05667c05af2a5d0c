"""Everything the offline preview says about a stack, at two git revisions: JSON report and machine files.

`cost-diff` compares bills and verdicts; this compares all of it (resources with their inputs, parents and
options, outputs, sizing, policies, every rendered file byte for byte), for a change meant to leave a stack
as it was (a refactor, the packaging):

    .venv/bin/python scripts/compare_previews.py 2db297f 2c89276 --stack dev --stack prod

Exit 0 when identical (the stack file's own path aside), 1 when something differs (listed), 2 on bad input.
"""

import argparse
import filecmp
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def preview(rev: str, stack: str, work: Path) -> tuple[dict[str, Any], Path]:
    checkout = work / f"{rev}-checkout"
    if not checkout.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(checkout), rev], check=True)
    out = work / f"{rev}-{stack}"
    proc = subprocess.run(
        [sys.executable, "-m", "gpu_inference", "preview", stack, "--json", "--out", str(out)],
        cwd=checkout,
        env={**os.environ, "PYTHONPATH": str(checkout)},
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode == 2 or not proc.stdout.strip():
        raise SystemExit(f"error: preview of {stack} at {rev} failed: {proc.stderr.strip()[-500:]}")
    text = proc.stdout.replace(str(out), "<out>").replace(str(checkout), "<checkout>")
    return json.loads(text), out


def files(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in root.rglob("*") if p.is_file()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base")
    parser.add_argument("head")
    parser.add_argument("--stack", action="append", default=None)
    args = parser.parse_args(argv)
    differs = False
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        try:
            for stack in args.stack or ["dev", "prod"]:
                (a, out_a), (b, out_b) = preview(args.base, stack, work), preview(args.head, stack, work)
                keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                fa, fb = files(out_a), files(out_b)
                changed = sorted(f for f in set(fa) & set(fb) if not filecmp.cmp(fa[f], fb[f], shallow=False))
                only = sorted(set(fa) ^ set(fb))
                same = not keys and not changed and not only
                differs |= not same
                print(f"{stack}: {'IDENTICAL' if same else 'DIFFERS'} ({len(fa)} vs {len(fb)} files)")
                for k in keys:
                    print(f"  report key {k!r}:\n    {json.dumps(a.get(k))[:400]}\n    -> {json.dumps(b.get(k))[:400]}")
                for f in changed:
                    print(f"  file changed: {f}")
                for f in only:
                    print(f"  file only in {'base' if f in fa else 'head'}: {f}")
        finally:
            for d in work.glob("*-checkout"):
                git_remove = ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(d)]
                subprocess.run(git_remove, check=False, capture_output=True)
    return 1 if differs else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
