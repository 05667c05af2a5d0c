#!/usr/bin/env python3
"""Regenerate tests/golden/<scenario>/** from the renderers (run after an intended change to a renderer).

    .venv/bin/python -m scripts.update_golden          # rewrite the golden files (from the repo root)
    .venv/bin/python -m scripts.update_golden --check  # exit 1 if they differ (what CI runs via the test)

Review the resulting `git diff`: it is exactly what changes on the machines.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from tests.render_fixtures import SCENARIOS

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"


def expected() -> dict[str, dict[str, str]]:
    return {name: make().render() for name, make in sorted(SCENARIOS.items())}


def on_disk(name: str) -> dict[str, str]:
    base = GOLDEN / name
    return {p.relative_to(base).as_posix(): p.read_text() for p in sorted(base.rglob("*")) if p.is_file()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report whether the golden files are current")
    args = parser.parse_args(argv)
    stale = False
    for name, files in expected().items():
        if on_disk(name) == files:
            continue
        stale = True
        if args.check:
            print(f"tests/golden/{name} is out of date")
            continue
        shutil.rmtree(GOLDEN / name, ignore_errors=True)
        for rel, text in files.items():
            path = GOLDEN / name / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        print(f"rewrote tests/golden/{name} ({len(files)} files)")
    if not stale:
        print("golden files are up to date")
    return 1 if (stale and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
