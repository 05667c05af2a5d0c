"""The spot interruption watcher: on a spot GPU node, it polls the instance metadata for the two-minute
interruption notice and, on notice, takes the node out of rotation and stops vLLM gracefully.

AWS posts the notice two minutes before it stops or terminates a spot instance, as the instance metadata item
``/latest/meta-data/spot/instance-action`` (HTTP 404 until then, then 200 with ``{"action": ..., "time": ...}``),
and recommends checking it every 5 seconds (AWS EC2 User Guide, "Spot Instance interruption notices",
docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html). The
nodes require IMDSv2 (session tokens: a PUT to ``/latest/api/token`` with
``X-aws-ec2-metadata-token-ttl-seconds``, then every request with ``X-aws-ec2-metadata-token``; EC2 User Guide,
"Use the Instance Metadata Service to access instance metadata"; an expired token answers 401).

On notice: SIGTERM to the vLLM container, whose HTTP server stops accepting connections at once and lets the
requests in flight finish, so the load balancer's health checks (refused connections count as fails,
``max_fails``) take the node out and its retries go to the other nodes; after at most DRAIN_SECONDS the unit is
stopped for good (Restart=always would otherwise bring vLLM back on a machine about to disappear).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpu_inference.render._common import RENDERED_BY, VLLM_CONTAINER, VLLM_UNIT

if TYPE_CHECKING:
    from gpu_inference.stack import ResolvedStack

SPOT_WATCHER_PATH = "/usr/local/bin/spot-interruption-watcher"
SPOT_WATCHER_UNIT = "spot-interruption-watcher.service"
# AWS's recommended interval for the notice (see above).
POLL_SECONDS = 5
# Of the two minutes' notice: finish streams for up to 90 s, leaving 30 s to stop the container.
DRAIN_SECONDS = 90
# Tokens live up to 6 h (21600 s); one is renewed well before it expires.
TOKEN_TTL_SECONDS = 21600
TOKEN_RENEW_SECONDS = 21000


def has_spot_watcher(stack: ResolvedStack, node_index: int) -> bool:
    """GPU node ``node_index`` runs on spot on a cloud that posts interruption notices in its metadata."""
    return stack.config.node_is_spot(node_index) and stack.cloud.spot_metadata_endpoint is not None


def spot_watcher_script(stack: ResolvedStack) -> str:
    """/usr/local/bin/spot-interruption-watcher (bash, shellcheck-clean). The metadata endpoint, poll and
    drain times can be overridden from the environment (the tests point it at a stand-in on loopback)."""
    endpoint = stack.cloud.spot_metadata_endpoint
    if endpoint is None:
        raise ValueError(f"provider {stack.cloud.name!r} posts no spot interruption notice")
    return f"""#!/usr/bin/env bash
# {RENDERED_BY}
# Polls the instance metadata (IMDSv2) every {POLL_SECONDS} s for the spot interruption notice; on notice,
# stops the vLLM container gracefully (at most {DRAIN_SECONDS} s of draining) and then {VLLM_UNIT}.
set -euo pipefail

readonly IMDS="${{SPOT_WATCHER_IMDS:-{endpoint}}}"
readonly POLL="${{SPOT_WATCHER_POLL_SECONDS:-{POLL_SECONDS}}}"
readonly DRAIN="${{SPOT_WATCHER_DRAIN_SECONDS:-{DRAIN_SECONDS}}}"
readonly SERVICE="{VLLM_UNIT}"
readonly CONTAINER="{VLLM_CONTAINER}"
# RuntimeDirectory= of the unit: the notice stays readable for the operator until the machine goes.
readonly NOTICE_FILE="${{RUNTIME_DIRECTORY:-/run/spot-interruption-watcher}}/instance-action"

token=""
token_at=0

renew_token() {{
    token="$(curl --silent --fail --connect-timeout 2 --max-time 5 -X PUT \\
        -H "X-aws-ec2-metadata-token-ttl-seconds: {TOKEN_TTL_SECONDS}" "$IMDS/latest/api/token" || true)"
    token_at=$SECONDS
}}

drain_and_stop() {{
    echo "spot interruption notice: $(<"$NOTICE_FILE"); draining vLLM for at most ${{DRAIN}}s"
    # SIGTERM: vLLM's HTTP server stops accepting connections (the load balancer's checks fail, it moves on)
    # and lets the requests in flight finish.
    docker kill --signal=SIGTERM "$CONTAINER" || true
    timeout "$DRAIN" docker wait "$CONTAINER" >/dev/null 2>&1 || true
    # Stopped for good: Restart=always must not bring vLLM back on a node about to disappear.
    systemctl stop "$SERVICE"
    echo "vLLM stopped ahead of the spot interruption"
}}

while true; do
    if [[ -z "$token" ]] || (( SECONDS - token_at >= {TOKEN_RENEW_SECONDS} )); then
        renew_token
    fi
    code="$(curl --silent --connect-timeout 2 --max-time 5 --output "$NOTICE_FILE.tmp" --write-out '%{{http_code}}' \\
        -H "X-aws-ec2-metadata-token: $token" "$IMDS/latest/meta-data/spot/instance-action" || true)"
    case "$code" in
        200)
            mv "$NOTICE_FILE.tmp" "$NOTICE_FILE"
            drain_and_stop
            exit 0
            ;;
        404) ;;  # no interruption scheduled
        401) token="" ;;  # the token expired: a new one on the next poll
        *) echo "instance metadata answered HTTP ${{code:-none}} for spot/instance-action; polling on" ;;
    esac
    rm -f "$NOTICE_FILE.tmp"
    sleep "$POLL"
done
"""


def spot_watcher_unit() -> str:
    """spot-interruption-watcher.service: a long-running poller, enabled on spot GPU nodes only."""
    return f"""# {RENDERED_BY}
[Unit]
Description=Spot interruption watcher (drains and stops vLLM on the two-minute notice)
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={SPOT_WATCHER_PATH}
Restart=on-failure
RestartSec=5
RuntimeDirectory=spot-interruption-watcher
SyslogIdentifier=spot-interruption-watcher

[Install]
WantedBy=multi-user.target
"""
