"""Active health checking on the load balancer host: the daemon, its settings, its unit, the first include.

The daemon (lb_healthcheck_agent.py, shipped verbatim, standard library only) probes each node's /health
and rewrites nginx's upstream include; see its docstring. Everything it needs to know is rendered here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from gpu_inference.render import lb_healthcheck_agent as agent
from gpu_inference.render._common import RENDERED_BY
from gpu_inference.render.nginx import NginxPaths, upstream_server

if TYPE_CHECKING:
    from collections.abc import Sequence

    from gpu_inference.stack import ResolvedStack

LB_HEALTHCHECK_PATH = "/usr/local/sbin/gpu-inference-lb-healthcheck"
LB_HEALTHCHECK_CONFIG = "/etc/gpu-inference/lb-healthcheck.json"
LB_HEALTHCHECK_UNIT = "gpu-inference-lb-healthcheck.service"
# A hung node must be out of rotation within 15 s (issue 11). A probe round lasts at most max(interval,
# timeout); the node leaves after FALL failed rounds, and the hang may start just after a round began:
# worst case interval + FALL × max(interval, timeout) = 2 + 3 × 2 = 8 s, plus a reload (well under 1 s).
PROBE_INTERVAL_SECONDS = 2.0
# vLLM's /health answers in milliseconds even under load (an async route of the API server); 2 s of
# silence is a hang or a dead network, and 3 in a row rule out one slow moment.
PROBE_TIMEOUT_SECONDS = 2.0
FALL = 3
# Back after two good answers in a row: a node that flaps between up and down stays out a little longer.
RISE = 2
# Debian's nginx.service reloads with `nginx -s reload` (ExecReload): graceful, the master re-reads the
# config and old workers finish their requests (https://nginx.org/en/docs/control.html).
RELOAD_COMMAND = ("systemctl", "reload", "nginx.service")
TEST_COMMAND = ("nginx", "-t", "-q")


def worst_case_exit_seconds() -> float:
    """Seconds from a node hanging to the include marking it down (before the reload)."""
    return PROBE_INTERVAL_SECONDS + FALL * max(PROBE_INTERVAL_SECONDS, PROBE_TIMEOUT_SECONDS)


def agent_script() -> str:
    """The daemon's source, as the LB runs it (its first line is the python3 shebang)."""
    return Path(agent.__file__).read_text(encoding="utf-8")


def _backend_addr(backend: str) -> str:
    from gpu_inference.constants import VLLM_PORT

    return backend if ":" in backend else f"{backend}:{VLLM_PORT}"


def settings(stack: ResolvedStack, backends: Sequence[str], paths: NginxPaths | None = None, *,
             reload_cmd: Sequence[str] = RELOAD_COMMAND, test_cmd: Sequence[str] = TEST_COMMAND) -> agent.Settings:  # fmt: skip
    """The daemon's settings for these nodes; tests pass their own nginx prefix and commands."""
    paths = paths or NginxPaths()
    return agent.Settings(
        nodes=tuple((_backend_addr(b), upstream_server(stack, b)) for b in backends),
        include_path=paths.upstream_include,
        reload_cmd=tuple(reload_cmd),
        test_cmd=tuple(test_cmd),
        header=f"# {RENDERED_BY}\n# Rewritten by {LB_HEALTHCHECK_UNIT}: a node whose /health fails is marked down.",
        interval=PROBE_INTERVAL_SECONDS,
        timeout=PROBE_TIMEOUT_SECONDS,
        fall=FALL,
        rise=RISE,
    )


def settings_json(s: agent.Settings) -> str:
    """The JSON file the daemon reads (``--config``)."""
    data = {
        "nodes": [{"addr": addr, "server": server} for addr, server in s.nodes],
        "include_path": s.include_path,
        "reload_cmd": list(s.reload_cmd),
        "test_cmd": list(s.test_cmd),
        "header": s.header,
        "health_path": s.health_path,
        "interval": s.interval,
        "timeout": s.timeout,
        "fall": s.fall,
        "rise": s.rise,
    }
    return json.dumps(data, indent=2) + "\n"


def upstream_include(s: agent.Settings, down: Sequence[str] = ()) -> str:
    """The upstream include as the daemon writes it; first boot starts with every node in rotation."""
    return agent.render_include(s, {addr: addr not in down for addr, _ in s.nodes})


def healthcheck_unit() -> str:
    """gpu-inference-lb-healthcheck.service: the daemon, restarted if it ever exits."""
    return f"""# {RENDERED_BY}
[Unit]
Description=Active health checks of the vLLM nodes behind nginx (rewrites the upstream, reloads nginx)
After=nginx.service network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart=/usr/bin/python3 {LB_HEALTHCHECK_PATH} --config {LB_HEALTHCHECK_CONFIG}
Restart=always
RestartSec=2
NoNewPrivileges=yes
PrivateTmp=yes
ProtectHome=yes

[Install]
WantedBy=multi-user.target
"""
