"""Grafana behind the load balancer's TLS when the stack has a domain: https://<domain>/grafana/.

Why through the load balancer: its nginx holds the stack's only certificate (certbot, render/acme.py) for the
only name the stack has. Grafana then listens to the load balancer alone; people reach it on 443, where nginx
admits ``allowedCidrs`` only for ``/grafana/``.

How the load balancer learns where Grafana is: the monitoring host is created after the load balancer (its
Prometheus scrapes the load balancer by private address) and a droplet's private address cannot be reserved in
advance (the Droplet API takes no address; AWS could, with a fixed ENI address, but one mechanism serves both
clouds), so no renderer knows Grafana's address when the load balancer's user data is written. The
monitoring host registers itself instead (``gpu-inference-grafana-register.timer``: ``POST /grafana`` to the
load balancer's private address, port GRAFANA_REGISTRAR_PORT, which the cloud firewall opens to the monitoring
role only), and the load balancer's registrar daemon (grafana_registrar_agent.py) writes the connection's source
address into the Grafana upstream. Until then ``/grafana/`` answers 503 "not registered yet".

Grafana's side, from its guide "Run Grafana behind a reverse proxy" (grafana.com/tutorials/run-grafana-behind-
a-proxy): ``root_url`` with the sub path and ``serve_from_sub_path = true``, nginx passing the path unchanged
(``proxy_pass`` without a URI) and ``Host``; Grafana Live's websocket under ``/grafana/api/live/`` needs
HTTP/1.1 with ``Upgrade``/``Connection`` from the ``$connection_upgrade`` map.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

from gpu_inference.constants import GRAFANA_PORT, GRAFANA_REGISTRAR_PORT
from gpu_inference.render import grafana_registrar_agent as agent
from gpu_inference.render._common import RENDERED_BY
from gpu_inference.render.grafana import grafana_enabled

if TYPE_CHECKING:
    from collections.abc import Sequence

    from gpu_inference.render.nginx import NginxPaths
    from gpu_inference.stack import ResolvedStack

GRAFANA_SUB_PATH = "/grafana/"
REGISTRAR_PATH = "/usr/local/sbin/gpu-inference-grafana-registrar"
REGISTRAR_CONFIG = "/etc/gpu-inference/grafana-registrar.json"
REGISTRAR_UNIT = "gpu-inference-grafana-registrar.service"
REGISTER_SERVICE = "gpu-inference-grafana-register.service"
REGISTER_TIMER = "gpu-inference-grafana-register.timer"
# The monitoring host registers a minute after boot, then every 5 minutes: a replaced load balancer (a new
# machine with the placeholder include) learns Grafana's address within 5 minutes of booting.
REGISTER_EVERY_MINUTES = 5
# What nginx answers for /grafana/ while no monitoring host has registered (the upstream's placeholder is the
# fallback server, whose status is mapped to this).
UNREGISTERED_MESSAGE = "Grafana has not registered with the load balancer yet (it does within minutes of booting)."
RELOAD_COMMAND = ("systemctl", "reload", "nginx.service")
TEST_COMMAND = ("nginx", "-t", "-q")


def grafana_behind_lb(stack: ResolvedStack) -> bool:
    """Grafana is served by the load balancer over HTTPS (machine clouds with Grafana and a tlsDomain)."""
    return grafana_enabled(stack) and stack.config.load_balancer.tls_domain is not None


def grafana_public_url(stack: ResolvedStack) -> str:
    """grafanaUrl when Grafana is behind the load balancer."""
    domain = stack.config.load_balancer.tls_domain
    if not grafana_behind_lb(stack) or domain is None:
        raise ValueError("Grafana is behind the load balancer only with monitoring.grafana and a tlsDomain")
    return f"https://{domain}{GRAFANA_SUB_PATH}"


def grafana_server_settings(stack: ResolvedStack) -> dict[str, str]:
    """Grafana's [server]/[security] overrides when it is behind the load balancer's TLS (none otherwise)."""
    if not grafana_behind_lb(stack):
        return {}
    return {
        "GF_SERVER_DOMAIN": str(stack.config.load_balancer.tls_domain),
        "GF_SERVER_ROOT_URL": grafana_public_url(stack),
        "GF_SERVER_SERVE_FROM_SUB_PATH": "true",
        # Browsers only ever reach it over HTTPS now.
        "GF_SECURITY_COOKIE_SECURE": "true",
    }


# --- the load balancer: nginx --------------------------------------------------------------------------------


def placeholder_include(fallback_listen: str) -> str:
    """The Grafana upstream before any registration: nginx's own fallback server (answers the unregistered 503)."""
    return (f"# {RENDERED_BY}\n# No monitoring host has registered yet ({REGISTRAR_UNIT} rewrites this).\n"
            f"server {fallback_listen};\n")


def nginx_http_blocks(include_path: str) -> list[str]:
    """http-level blocks: the websocket map and the Grafana upstream (its one server line from the include)."""
    return [
        "    # Grafana Live's websocket needs Upgrade/Connection passed on (Grafana's reverse-proxy guide).",
        "    map $http_upgrade $connection_upgrade {",
        "        default upgrade;",
        "        '' close;",
        "    }",
        "",
        "    upstream grafana {",
        f"        # Grafana on the monitoring host, registered by it ({REGISTRAR_UNIT}); nginx's fallback until then.",
        f"        include {include_path};",
        "    }",
    ]


def nginx_locations(stack: ResolvedStack, fallback_status: int, paths: NginxPaths) -> list[str]:
    """The /grafana/ locations of the TLS server: allowedCidrs only, the path passed through unchanged; logged
    apart from the API (mtail counts the API's log: dashboard refreshes, strangers' 403s and the unregistered 503
    are not API traffic)."""
    access = [f"            allow {cidr};" for cidr in stack.config.allowed_cidrs] + ["            deny all;",
              f"            access_log {paths.grafana_access_log} upstream;"]
    proxy = [
        "            proxy_pass http://grafana;",
        "            proxy_set_header Host $host;",
        "            proxy_set_header X-Real-IP $remote_addr;",
        "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "            proxy_set_header X-Forwarded-Proto $scheme;",
        # Only the fallback's status is intercepted: Grafana's own errors (401, a data source's 502) pass as sent.
        "            proxy_intercept_errors on;",
        f"            error_page {fallback_status} =503 @grafana_unregistered;",
    ]
    return [
        "        # Grafana (on the monitoring host) for allowedCidrs only; everyone else gets 403 here.",
        f"        location {GRAFANA_SUB_PATH} {{",
        *access,
        *proxy,
        "        }",
        f"        location {GRAFANA_SUB_PATH}api/live/ {{",
        *access,
        "            proxy_http_version 1.1;",
        "            proxy_set_header Upgrade $http_upgrade;",
        "            proxy_set_header Connection $connection_upgrade;",
        *proxy,
        "        }",
        "        location @grafana_unregistered {",
        f"            access_log {paths.grafana_access_log} upstream;",
        "            default_type text/plain;",
        "            add_header Retry-After 60 always;",
        f"            return 503 '{UNREGISTERED_MESSAGE}\\n';",
        "        }",
    ]


# --- the load balancer: the registrar daemon -------------------------------------------------------------------


def registrar_script() -> str:
    """The daemon's source, as the load balancer runs it: its shebang, then the code without its comment lines
    (the same program, tests/dataplane/test_grafana_proxy.py compares the syntax trees) — the load balancer's
    user data is bounded (16 KB on EC2, tests/test_render.py::test_user_data_fits_ec2_limits)."""
    shebang, *rest = Path(agent.__file__).read_text(encoding="utf-8").splitlines()
    return "\n".join([shebang, *(line for line in rest if not line.lstrip().startswith("#"))]) + "\n"


def registrar_settings(paths: NginxPaths, *, listen_host: str = "0.0.0.0", listen_port: int = GRAFANA_REGISTRAR_PORT,
                       reload_cmd: Sequence[str] = RELOAD_COMMAND, test_cmd: Sequence[str] = TEST_COMMAND,
                       grafana_port: int = GRAFANA_PORT, allow_loopback: bool = False) -> agent.Settings:  # fmt: skip
    """The daemon's settings; tests pass their own nginx prefix, port and commands.

    It listens on every address: the load balancer's private address is not known to its own user data, and the
    cloud firewall (monitoring role only) and the daemon's private-address check decide who registers."""
    return agent.Settings(
        listen_host=listen_host,
        listen_port=listen_port,
        include_path=paths.grafana_include,
        grafana_port=grafana_port,
        reload_cmd=tuple(reload_cmd),
        test_cmd=tuple(test_cmd),
        header=f"# {RENDERED_BY}\n# Written by {REGISTRAR_UNIT}: the address the monitoring host registered from.",
        allow_loopback=allow_loopback,
    )


def registrar_settings_json(s: agent.Settings) -> str:
    """The daemon's --config: every field of Settings (Settings.from_json reads it back)."""
    return json.dumps(dataclasses.asdict(s), indent=2) + "\n"


def registrar_unit() -> str:
    return f"""# {RENDERED_BY}
[Unit]
Description=Accepts the monitoring host's registration and points nginx's /grafana/ at it
After=nginx.service network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart=/usr/bin/python3 {REGISTRAR_PATH} --config {REGISTRAR_CONFIG}
Restart=always
RestartSec=2
NoNewPrivileges=yes
PrivateTmp=yes
ProtectHome=yes

[Install]
WantedBy=multi-user.target
"""


# --- the monitoring host: registering ----------------------------------------------------------------------------


def register_units(lb_address: str) -> tuple[str, str]:
    """(service, timer) on the monitoring host that register it with the load balancer at ``lb_address``."""
    import ipaddress

    # An address, nothing else, reaches the unit file (a second line of defence: it comes from the cloud).
    ip = ipaddress.ip_address(lb_address)
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    url = f"http://{host}:{GRAFANA_REGISTRAR_PORT}{agent.REGISTER_PATH}"
    service = f"""# {RENDERED_BY}
[Unit]
Description=Register Grafana with the load balancer (which serves it at https://<domain>{GRAFANA_SUB_PATH})
After=network-online.target
Wants=network-online.target

[Service]
Type=oneshot
ExecStart=/usr/bin/curl -fsS --max-time 10 --retry 5 --retry-connrefused --retry-delay 10 -X POST {url}
"""
    timer = f"""# {RENDERED_BY}
[Unit]
Description=Register Grafana with the load balancer, after boot and every {REGISTER_EVERY_MINUTES} minutes

[Timer]
OnBootSec=1min
OnUnitActiveSec={REGISTER_EVERY_MINUTES}min

[Install]
WantedBy=timers.target
"""
    return service, timer
