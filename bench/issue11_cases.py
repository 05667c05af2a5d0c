"""Issue 11's bad inputs run against a checkout: one JSON row per case [case, exit code, stderr lines,
traceback at exit?, machine files rendered?, the message line].

    .venv/bin/python bench/issue11_cases.py [CHECKOUT]   # default: this repository

Before/after: export an old revision (`mkdir OLD && git archive ce45393 | tar -x -C OLD`) and pass its directory; it runs
with this venv's interpreter and PYTHONPATH=CHECKOUT. Each case is a fresh CLI process with a timeout.
Target: every row exit 2, one line (argparse prints its usage before its one error line), nothing rendered.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

RUN_TIMEOUT_SECONDS = 240
ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent).resolve()
TMP = Path(tempfile.mkdtemp(prefix="issue11-"))
OUT = TMP / "out"
DEV_TEXT = (ROOT / "Pulumi.dev.yaml").read_text()
BASE = yaml.safe_load(DEV_TEXT)
BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9 if prev else ['x'] * 9)}]\n"
    for prev, name in zip(["", "a", "b", "c"], ["a", "b", "c", "d"], strict=True)
)


def stack(name: str, change: dict[str, Any] | None = None, text: str | None = None) -> str:
    """A stack file: the checkout's dev stack with ``change`` applied (``a.b`` is key b of block a), or ``text``."""
    path = TMP / f"Pulumi.{name}.yaml"
    if text is None:
        doc = json.loads(json.dumps(BASE))
        cfg = doc["config"]
        for key, value in (change or {}).items():
            if ":" in key:
                cfg[key] = value
            elif "." in key:
                head, tail = key.split(".", 1)
                cfg.setdefault(f"gpu-inference:{head}", {})[tail] = value
            else:
                cfg[f"gpu-inference:{key}"] = value
        text = yaml.safe_dump(doc)
    path.write_text(text)
    return str(path)


def preview(path: str) -> list[str]:
    return ["preview", path, "--out", str(OUT)]


def cases() -> list[tuple[str, list[str]]]:
    listed = TMP / "config.json"
    listed.write_text("[1, 2]")
    zero = TMP / "h0" / "config.json"
    zero.parent.mkdir()
    zero.write_text(json.dumps({"hidden_size": 0, "num_hidden_layers": 2, "num_attention_heads": 2,
                                "vocab_size": 10, "max_position_embeddings": 128, "intermediate_size": 8,
                                "architectures": ["LlamaForCausalLM"]}))
    a_file = TMP / "afile"
    a_file.write_text("x")
    size = ["size", "Qwen/Qwen3-8B", "--gpu", "L40S"]
    nginx = "a.com; location ~ ^/metrics { proxy_pass http://vllm_backend; } #"
    # A shell substitution that would leave a marker file in this run's temporary directory if it ever ran.
    touch = f"$(touch${{IFS}}{TMP / 'injected'})"
    return [
        ("tlsDomain $(touch${IFS}<marker>)", preview(stack("t1", {"loadBalancer.tlsDomain": touch}))),
        ("tlsDomain nginx location injection", preview(stack("t2", {"loadBalancer.tlsDomain": nginx}))),
        ("tlsDomain ../../etc/x", preview(stack("t3", {"loadBalancer.tlsDomain": "../../etc/x"}))),
        ("tlsDomain with a newline", preview(stack("t4", {"loadBalancer.tlsDomain": "a.com\nb"}))),
        ("servedModelName with a newline", preview(stack("s1", {"servedModelName": "qwen\nx"}))),
        ("modelRepo with a newline", preview(stack("s2", {"modelRepo": "Qwen/Qwen3-8B\n"}))),
        ("modelRepo %n", preview(stack("s3", {"modelRepo": "Qwen/%n"}))),
        ("vllmImage trailing newline", preview(stack("s4", {"vllmImage": "vllm/vllm-openai:v0.19.0\n"}))),
        ("monthlyBudgetUsd: .inf", preview(stack("b1", text=DEV_TEXT.replace("monthlyBudgetUsd: 1250",
                                                                               "monthlyBudgetUsd: .inf")))),
        ('monthlyBudgetUsd: "inf"', preview(stack("b2", {"monthlyBudgetUsd": "inf"}))),
        ('monthlyBudgetUsd: "1e400"', preview(stack("b3", {"monthlyBudgetUsd": "1e400"}))),
        ("cost --tokens-per-second nan", ["cost", "dev", "--tokens-per-second", "nan"]),
        ("size --gpu-memory-gib inf", ["size", "Qwen/Qwen3-8B", "--gpu-memory-gib", "inf"]),
        ("duplicate key in the stack file", preview(stack("d1", text=DEV_TEXT + "  gpu-inference:nodeCount: 2\n"))),
        ("misspelt namespace gpu-inferenc:", preview(stack("d2", {"gpu-inferenc:nodeCount": 2}))),
        ("kubernetes: block on a droplet stack", preview(stack("d3", {"kubernetes": {"clusterId": "abc"}}))),
        ("apiKey: {secure: ''}", preview(stack("d4", {"apiKey": {"secure": ""}}))),
        ("size <config.json that is a JSON list>", ["size", str(listed), "--gpu", "L40S"]),
        ("preview <a directory>", ["preview", str(TMP)]),
        ("preview --out <a file>", ["preview", "dev", "--out", str(a_file)]),
        ("preview --out <unwritable>", ["preview", "dev", "--out", "/proc/x/y"]),
        ("cost-diff -o <unwritable>", ["cost-diff", "--base-file", "Pulumi.dev.yaml", "--head-file", "Pulumi.dev.yaml",
                                       "-o", "/proc/x/y"]),
        ("size <config.json hidden_size 0>", ["size", str(zero), "--gpu", "L40S"]),
        ("size --tensor-parallel-size 0", [*size, "--tensor-parallel-size", "0"]),
        ("size --max-model-len -1", [*size, "--max-model-len", "-1"]),
        ("size --gpu-memory-utilization 2", [*size, "--gpu-memory-utilization", "2"]),
        ("empty stack file", ["preview", stack("e1", text="")]),
        ("invalid YAML", ["preview", stack("e2", text="config: [\n")]),
        ("YAML bomb (aliases)", ["preview", stack("e3", text=BOMB + DEV_TEXT)]),
    ]


def main() -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_CONFIG")}
    env["PYTHONPATH"] = str(ROOT)
    for name, argv in cases():
        shutil.rmtree(OUT, ignore_errors=True)
        try:
            proc = subprocess.run([sys.executable, "-m", "gpu_inference", *argv], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS, check=False)
        except subprocess.TimeoutExpired:
            print(json.dumps([name, "timeout", 0, False, False, ""]), flush=True)
            continue
        err = proc.stderr.strip().splitlines()
        noisy = "Traceback" in proc.stderr or "Exception ignored" in proc.stderr
        rendered = OUT.exists() and any(OUT.rglob("*.service"))
        tail = proc.stdout.strip().splitlines()[-1:] or [""]
        line = (err[-1] if noisy else err[0]) if err else tail[0]
        print(json.dumps([name, proc.returncode, len(err), noisy, rendered, line[:150]]), flush=True)
    shutil.rmtree(TMP, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
