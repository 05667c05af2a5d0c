"""Fuzz the stack-file reader: mutated and random YAML must end as a stack config or one ConfigError line.

    .venv/bin/python bench/fuzz_stack_files.py [--cases 30000] [--seed 11]

Two thirds of the cases insert 1-4 YAML fragments (anchors, aliases, explicit tags, flow brackets, quotes, NUL,
BOM, `.inf`, ...) at random places of a valid stack file; a third are random runs of those fragments. Bounded
by --cases. The last line is exactly `cases=<n> crashes=<exceptions other than ConfigError> multiline=<one-problem
errors spanning lines>`; target 0 and 0.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_inference.config import load_stack_config  # after the sys.path line: the repo root must be importable
from gpu_inference.errors import ConfigError

BITS = ["config:", "\n", "  ", "gpu-inference:", "nodeCount", ": ", "- ", "&a ", "*a", "{", "}", "[", "]",
        "!!python/object:os.system ", "!!binary ", "?", "'", '"', "#", "\t", "1e400", ".inf", "secure: ", "~",
        "<<: ", "---\n", "...\n", "%YAML 1.1\n", "\x00", "provider", "digitalocean", ",", "monitoring", "apiKey",
        "\ufeff", "\r", "2026-01-01", "!!set ", "!!timestamp ", "!x ", "!<tag:yaml.org,2002:str> ", "=", "<<"]
GOOD = ("config:\n  gpu-inference:provider: digitalocean\n  gpu-inference:region: tor1\n"
        "  gpu-inference:gpu: gpu-l40sx1-48gb\n  gpu-inference:model: Qwen/Qwen3-8B\n"
        "  gpu-inference:monthlyBudgetUsd: 1500\n  gpu-inference:monitoring:\n    retention: 15d\n"
        "  gpu-inference:tags: [a]\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=30000)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    crashes = multiline = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "Pulumi.fuzz.yaml"
        for i in range(args.cases):
            if i % 3 == 0:
                text = "".join(rng.choice(BITS) for _ in range(rng.randint(0, 30)))
            else:
                chars = list(GOOD)
                for _ in range(rng.randint(1, 4)):
                    chars.insert(rng.randrange(len(chars) + 1), rng.choice(BITS))
                text = "".join(chars)
            path.write_text(text, encoding="utf-8")
            try:
                load_stack_config(path)
            except ConfigError as exc:
                if len(exc.messages) == 1 and "\n" in exc.render():
                    multiline += 1
            except Exception as exc:  # counting exactly these is the point
                crashes += 1
                if crashes <= 5:
                    print(f"crash: {type(exc).__name__}: {exc} on {text[:120]!r}")
    print(f"cases={args.cases} crashes={crashes} multiline={multiline}")
    return 1 if crashes or multiline else 0


if __name__ == "__main__":
    sys.exit(main())
