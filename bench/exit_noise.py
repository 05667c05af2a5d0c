"""How often a CLI run prints a traceback at interpreter exit (the "Exception ignored in BaseEventLoop.__del__
... Invalid file descriptor: -1" of issue 11), over a bounded number of fresh processes.

    .venv/bin/python bench/exit_noise.py [--runs 12] [--command cost dev]

Each run is a new `python -m gpu_inference ...` process (the noise came from interpreter teardown, so it
cannot be seen in-process), with a per-run timeout. The last line is exactly
`runs=<n> exit_noise=<runs whose stderr held "Exception ignored" or "Traceback"> bad_exit=<runs with rc != 0>`.
Target: exit_noise=0. Before the fix (loops of pulumi's executor threads left open): 2 of 24 runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUN_TIMEOUT_SECONDS = 120


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--command", nargs="+", default=["cost", "dev"])
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_CONFIG")}
    noisy = bad = 0
    for i in range(args.runs):
        proc = subprocess.run([sys.executable, "-m", "gpu_inference", *args.command], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS, check=False)
        hit = "Exception ignored" in proc.stderr or "Traceback" in proc.stderr
        noisy += hit
        bad += proc.returncode != 0
        print(f"run {i + 1}: rc={proc.returncode} {'EXIT NOISE: ' + proc.stderr.strip().splitlines()[0] if hit else 'clean'}")
    print(f"runs={args.runs} exit_noise={noisy} bad_exit={bad}")
    return 1 if noisy or bad else 0


if __name__ == "__main__":
    sys.exit(main())
