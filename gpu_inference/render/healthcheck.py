"""The vLLM health check: a oneshot script on a one-minute timer that restarts a hung server."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from gpu_inference.constants import VLLM_PORT
from gpu_inference.render._common import HEALTHCHECK_PATH, HEALTHCHECK_UNIT, RENDERED_BY, VLLM_UNIT

if TYPE_CHECKING:
    from gpu_inference.stack import ResolvedStack

# Loading is slow and /health answers only once the engine is up: the seeds' 15 minutes cover the
# container start, CUDA graph capture and torch.compile of a small model with a warm cache.
BASE_GRACE_SECONDS = 900
# On first boot the weights are downloaded inside the running container as well; allow 12 s per GB
# (about 85 MB/s, a pessimistic figure for cloud egress from the Hugging Face CDN).
GRACE_SECONDS_PER_WEIGHT_GB = 12
# One failed probe can be a long GC pause or a saturated event loop; three in a row (3 minutes) is a hang.
MAX_CONSECUTIVE_FAILURES = 3
CONNECT_TIMEOUT_SECONDS = 5
MAX_TIME_SECONDS = 10
# Bytes per parameter when the model's quantization is unknown: bf16.
_DEFAULT_BYTES_PER_PARAM = 2.0


def weights_gb(stack: ResolvedStack) -> float:
    """Approximate checkpoint size in GB, from the catalog's parameter count and storage format."""
    from gpu_inference.model_arch import QUANT_BYTES_PER_PARAM

    model = stack.model
    params = model.total_params_b * 1e9 if model.total_params_b else model.computed_params
    per_param = QUANT_BYTES_PER_PARAM.get(model.quantization.method, _DEFAULT_BYTES_PER_PARAM)
    return params * per_param / 1e9


def grace_seconds(stack: ResolvedStack) -> int:
    """Seconds after vllm.service became active during which a failing /health is expected."""
    raw = BASE_GRACE_SECONDS + GRACE_SECONDS_PER_WEIGHT_GB * weights_gb(stack)
    return int(math.ceil(raw / 60.0) * 60)


def healthcheck_script(stack: ResolvedStack) -> str:
    """/usr/local/bin/vllm-healthcheck (bash, shellcheck-clean); its output goes to the journal."""
    return f"""#!/usr/bin/env bash
# {RENDERED_BY}
# Probes vLLM's /health once; after {MAX_CONSECUTIVE_FAILURES} consecutive failures it restarts {VLLM_UNIT}.
# Run by {HEALTHCHECK_UNIT} every minute; output lands in the journal (journalctl -u {HEALTHCHECK_UNIT}).
set -euo pipefail

readonly SERVICE="{VLLM_UNIT}"
readonly URL="http://127.0.0.1:{VLLM_PORT}/health"
# Model load + first download of ~{weights_gb(stack):.0f} GB of weights.
readonly GRACE_SECONDS={grace_seconds(stack)}
readonly MAX_FAILURES={MAX_CONSECUTIVE_FAILURES}
# StateDirectory= of the unit; survives between runs (unlike a RuntimeDirectory of a oneshot).
readonly STATE_FILE="${{STATE_DIRECTORY:-/var/lib/vllm-healthcheck}}/consecutive-failures"

reset_failures() {{
    rm -f "$STATE_FILE"
}}

state="$(systemctl is-active "$SERVICE" || true)"
if [[ "$state" == "activating" ]]; then
    echo "$SERVICE is still activating (pulling the image?); skipping"
    reset_failures
    exit 0
fi
if [[ "$state" != "active" ]]; then
    # Restart=always brings it back; restarting from here would race systemd.
    echo "$SERVICE is $state; leaving it to systemd"
    reset_failures
    exit 0
fi

# Monotonic clock: immune to NTP steps right after boot, and no date parsing.
active_since_us="$(systemctl show "$SERVICE" --property=ActiveEnterTimestampMonotonic --value)"
read -r uptime_s _ </proc/uptime
now_us=$(( ${{uptime_s%.*}} * 1000000 ))
up_s=$(( (now_us - active_since_us) / 1000000 ))
if (( up_s < GRACE_SECONDS )); then
    echo "$SERVICE active for ${{up_s}}s, within the ${{GRACE_SECONDS}}s load grace period; skipping"
    reset_failures
    exit 0
fi

code="$(curl --silent --output /dev/null --write-out '%{{http_code}}' \\
    --connect-timeout {CONNECT_TIMEOUT_SECONDS} --max-time {MAX_TIME_SECONDS} "$URL" || true)"
if [[ "$code" == "200" ]]; then
    reset_failures
    exit 0
fi

failures=0
if [[ -r "$STATE_FILE" ]]; then
    failures="$(<"$STATE_FILE")"
fi
failures=$(( failures + 1 ))
if (( failures >= MAX_FAILURES )); then
    echo "vLLM /health failed ${{failures}} times in a row (last HTTP ${{code:-none}}); restarting $SERVICE"
    reset_failures
    systemctl restart --no-block "$SERVICE"
    exit 1
fi
echo "$failures" >"$STATE_FILE"
echo "vLLM /health failed (HTTP ${{code:-none}}), ${{failures}}/${{MAX_FAILURES}} before a restart"
exit 1
"""


def healthcheck_units(stack: ResolvedStack) -> tuple[str, str]:
    """(vllm-healthcheck.service, vllm-healthcheck.timer)."""
    service = f"""# {RENDERED_BY}
[Unit]
Description=vLLM health check (restarts {VLLM_UNIT} after {MAX_CONSECUTIVE_FAILURES} failed /health probes)
After={VLLM_UNIT}

[Service]
Type=oneshot
ExecStart={HEALTHCHECK_PATH}
StateDirectory=vllm-healthcheck
SyslogIdentifier=vllm-healthcheck
TimeoutStartSec=60
"""
    timer = f"""# {RENDERED_BY}
[Unit]
Description=Run the vLLM health check every minute

[Timer]
# The first run falls inside the grace period anyway; the timer must just be running.
OnBootSec=2min
OnUnitActiveSec=1min
AccuracySec=5s
Unit={HEALTHCHECK_UNIT}

[Install]
WantedBy=timers.target
"""
    return service, timer
