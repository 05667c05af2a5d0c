"""Nginx request and error metrics for Prometheus: mtail reading the load balancer's access log.

Nginx OSS exposes no per-status counters (stub_status has only totals and connection states), yet the
answers an on-call engineer needs first, 502/503/504 from the edge when nodes die and 401/413 refused at
the edge, never reach vLLM's own ``http_requests_total``. Google's mtail (Debian/Ubuntu package ``mtail``)
turns the access log Nginx already writes (``log_format upstream`` in nginx.py) into
``nginx_http_requests_total{status}`` on port 3903, scraped by Prometheus like
the exporters. Its program is checked with ``mtail -compile_only`` and, in the data-plane tests, against the
log a real Nginx writes with the rendered nginx.conf.
"""

from __future__ import annotations

from typing import Any

from gpu_inference.constants import MTAIL_PORT
from gpu_inference.render._common import RENDERED_BY, exec_line

MTAIL_PROGS_DIR = "/etc/mtail/gpu-inference"
MTAIL_PROGRAM_FILE = "nginx.mtail"
MTAIL_UNIT = "gpu-inference-mtail.service"
NGINX_ACCESS_LOG = "/var/log/nginx/access.log"


def mtail_program() -> str:
    """nginx.mtail: requests by status, from lines of nginx.py's `upstream` log format
    (``$remote_addr [$time_iso8601] "$request" $status $body_bytes_sent rt=$request_time ...``).

    No request-time histogram: mtail 3.0.0~rc50 (Debian bookworm) leaves observations of 0 out of every
    bucket (``_count`` exceeds the ``+Inf`` bucket), which skews quantiles; vLLM's own histograms cover latency.
    """
    return f"""# {RENDERED_BY}
# Nginx access log (log_format upstream) -> Prometheus metrics; served by mtail on :{MTAIL_PORT}/metrics.
counter nginx_http_requests_total by status

/^\\S+ \\[\\S+\\] "[^"]*" (?P<status>\\d{{3}}) / {{
  nginx_http_requests_total[$status]++
}}
"""


def mtail_unit(access_log: str = NGINX_ACCESS_LOG) -> str:
    """gpu-inference-mtail.service: mtail with the program above, tailing Nginx's access log.

    Its own unit rather than the package's mtail.service (which runs only once /etc/default/mtail names
    logs): the flags are all here, and it reads the log (www-data:adm 0640 on Debian/Ubuntu) as a dynamic
    user in group adm.
    """
    argv = ["/usr/bin/mtail", "-progs", MTAIL_PROGS_DIR, "-logs", access_log, "-port", str(MTAIL_PORT),
            "-logtostderr"]
    return f"""# {RENDERED_BY}
[Unit]
Description=mtail: Nginx access log as Prometheus metrics (requests by status)
After=nginx.service network-online.target
Wants=network-online.target
StartLimitIntervalSec=0

[Service]
Type=simple
DynamicUser=yes
SupplementaryGroups=adm
Restart=always
RestartSec=5
{exec_line("ExecStart", argv)}

[Install]
WantedBy=multi-user.target
"""


def nginx_metrics_files() -> list[dict[str, Any]]:
    """The load balancer's write_files entries for mtail (after the packages: deferred)."""
    return [
        {"path": f"{MTAIL_PROGS_DIR}/{MTAIL_PROGRAM_FILE}", "owner": "root:root", "permissions": "0644",
         "content": mtail_program(), "defer": True},
        {"path": f"/etc/systemd/system/{MTAIL_UNIT}", "owner": "root:root", "permissions": "0644",
         "content": mtail_unit(), "defer": True},
    ]


def nginx_metrics_runcmd() -> list[list[str]]:
    """Start mtail once the bootstrap has started Nginx (whose access log it tails)."""
    return [["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", MTAIL_UNIT]]
