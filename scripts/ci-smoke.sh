#!/usr/bin/env bash
# CI step after `pulumi up`: `python -m gpu_inference smoke` against the stack's outputs, its verdict and
# time to first token in the job summary. Reads ENDPOINT, MODEL, STACK and GPU_INFERENCE_API_KEY (a secret:
# smoke reads it from the environment, never from argv, so it is not in `ps` or the log).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${ENDPOINT:?the stack output 'endpoint' is empty}"
: "${MODEL:?the stack output 'servedModelName' is empty}"
: "${STACK:?}"
summary="${GITHUB_STEP_SUMMARY:-/dev/stdout}"
python="${PYTHON:-.venv/bin/python}"
mkdir -p build
code=0
"$python" -m gpu_inference smoke --endpoint "$ENDPOINT" --model "$MODEL" --timeout "${SMOKE_TIMEOUT_SECONDS:-2400}" --json \
  > "build/smoke-$STACK.json" || code=$?
"$python" - "build/smoke-$STACK.json" "$STACK" >> "$summary" <<'PY'
import json
import sys

path, stack = sys.argv[1], sys.argv[2]
try:
    with open(path, encoding="utf-8") as f:
        r = json.load(f)
except (OSError, ValueError) as exc:
    print(f"### smoke `{stack}`: no report ({exc})")
    raise SystemExit(0)
if r.get("ok"):
    print(f"### smoke `{stack}`: served `{r.get('model')}` at {r.get('endpoint')}")
    print()
    print("| time to first token | total | attempts until ready |")
    print("|---|---|---|")
    print(f"| {r.get('ttft_ms')} ms | {r.get('total_ms')} ms | {r.get('attempts')} |")
else:
    print(f"### smoke `{stack}`: FAILED at {r.get('endpoint')}: {r.get('error')}")
PY
if [ "$code" -ne 0 ]; then
  echo "::error::smoke test of $STACK failed (exit $code): see the job summary"
fi
exit "$code"
