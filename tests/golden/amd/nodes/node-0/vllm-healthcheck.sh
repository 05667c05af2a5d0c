#!/usr/bin/env bash
# Rendered by gpu-inference (gpu_inference/render); do not edit on the machine.
# Probes vLLM's /health once; after 3 consecutive failures it restarts vllm.service.
# Run by vllm-healthcheck.service every minute; output lands in the journal (journalctl -u vllm-healthcheck.service).
set -euo pipefail

readonly SERVICE="vllm.service"
readonly URL="http://127.0.0.1:8000/health"
# Model load + first download of ~141 GB of weights.
readonly GRACE_SECONDS=2640
readonly MAX_FAILURES=3
# StateDirectory= of the unit; survives between runs (unlike a RuntimeDirectory of a oneshot).
readonly STATE_FILE="${STATE_DIRECTORY:-/var/lib/vllm-healthcheck}/consecutive-failures"

reset_failures() {
    rm -f "$STATE_FILE"
}

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
now_us=$(( ${uptime_s%.*} * 1000000 ))
up_s=$(( (now_us - active_since_us) / 1000000 ))
if (( up_s < GRACE_SECONDS )); then
    echo "$SERVICE active for ${up_s}s, within the ${GRACE_SECONDS}s load grace period; skipping"
    reset_failures
    exit 0
fi

code="$(curl --silent --output /dev/null --write-out '%{http_code}' \
    --connect-timeout 5 --max-time 10 "$URL" || true)"
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
    echo "vLLM /health failed ${failures} times in a row (last HTTP ${code:-none}); restarting $SERVICE"
    reset_failures
    systemctl restart --no-block "$SERVICE"
    exit 1
fi
echo "$failures" >"$STATE_FILE"
echo "vLLM /health failed (HTTP ${code:-none}), ${failures}/${MAX_FAILURES} before a restart"
exit 1
