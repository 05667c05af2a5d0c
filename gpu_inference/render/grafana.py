"""Grafana on the monitoring host: apt repository, provisioning, dashboards, and its first-boot script.

Installed from Grafana Labs' own apt repository, as its install guide for Debian/Ubuntu says
(grafana/grafana docs/sources/setup-grafana/installation/debian/index.md): the key from
https://apt.grafana.com/gpg-full.key in /etc/apt/keyrings/grafana.asc and
``deb [signed-by=/etc/apt/keyrings/grafana.asc] https://apt.grafana.com stable main``; the package is pinned
to ``monitoring.grafanaVersion``. Settings go in a systemd drop-in as ``GF_<SECTION>_<KEY>`` variables, not in
the package's grafana.ini (a conffile), and the admin password is read from a root:grafana 0640 file through
Grafana's ``$__file{}`` expansion, which Grafana applies after the environment overrides
(pkg/setting/setting.go: applyEnvVariableOverrides, then expandConfig), so it never sits in the unit or
the environment of other processes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gpu_inference.constants import GRAFANA_PORT, PROMETHEUS_PORT
from gpu_inference.render._common import RENDERED_BY, dump_yaml, shell_quote
from gpu_inference.render.dashboards import (
    DASHBOARDS_DIR,
    dashboard_files,
    dashboard_provisioning,
    datasource_provisioning,
)

if TYPE_CHECKING:
    from gpu_inference.stack import ResolvedStack

GRAFANA_APT_KEY_URL = "https://apt.grafana.com/gpg-full.key"
GRAFANA_KEYRING = "/etc/apt/keyrings/grafana.asc"
GRAFANA_APT_SOURCE = f"deb [signed-by={GRAFANA_KEYRING}] https://apt.grafana.com stable main"
GRAFANA_SOURCES_LIST = "/etc/apt/sources.list.d/grafana.list"
GRAFANA_UNIT = "grafana-server.service"
GRAFANA_DROPIN = "/etc/systemd/system/grafana-server.service.d/gpu-inference.conf"
GRAFANA_SECRETS_DIR = "/etc/grafana/gpu-inference"
ADMIN_PASSWORD_FILE = f"{GRAFANA_SECRETS_DIR}/admin-password"
DATASOURCE_FILE = "/etc/grafana/provisioning/datasources/gpu-inference.yaml"
DASHBOARD_PROVIDER_FILE = "/etc/grafana/provisioning/dashboards/gpu-inference.yaml"
GRAFANA_BOOTSTRAP_PATH = "/usr/local/sbin/gpu-inference-grafana-bootstrap"
# Prometheus is on the same host: Grafana's server-side proxy reaches it on loopback.
LOCAL_PROMETHEUS_URL = f"http://localhost:{PROMETHEUS_PORT}"


def grafana_enabled(stack: ResolvedStack) -> bool:
    """Grafana runs on the monitoring host of a machine cloud (Kubernetes: the cluster's own Grafana)."""
    mon = stack.config.monitoring
    return mon.enabled and mon.grafana and stack.cloud.layout == "machines"


def grafana_unreachable_note(stack: ResolvedStack) -> str | None:
    """The preview's note when grafanaUrl admits nobody: Grafana (its port, or /grafana/ on the load balancer)
    is for allowedCidrs only, and the stack has none."""
    if not grafana_enabled(stack) or stack.config.allowed_cidrs:
        return None
    return ("grafanaUrl admits nobody: Grafana is for allowedCidrs only and allowedCidrs is empty; add your "
            "network to gpu-inference:allowedCidrs")


def grafana_dropin(stack: ResolvedStack) -> str:
    """grafana-server.service drop-in: every setting this stack needs, as Grafana's env overrides."""
    from gpu_inference.render.grafana_proxy import grafana_server_settings

    settings = {
        "GF_SERVER_HTTP_PORT": str(GRAFANA_PORT),
        # Nobody sees a dashboard without logging in; nobody can sign up.
        "GF_AUTH_ANONYMOUS_ENABLED": "false",
        "GF_USERS_ALLOW_SIGN_UP": "false",
        "GF_AUTH_DISABLE_LOGIN_FORM": "false",
        "GF_SECURITY_ADMIN_USER": "admin",
        # Expanded by Grafana itself from the root:grafana 0640 file (see the module docstring).
        "GF_SECURITY_ADMIN_PASSWORD": f"$__file{{{ADMIN_PASSWORD_FILE}}}",
        # Plain HTTP on port 3000 from allowedCidrs; behind the load balancer's TLS it becomes true (below).
        "GF_SECURITY_COOKIE_SECURE": "false",
        # The host talks to its Prometheus and the package mirror only; no phoning home.
        "GF_ANALYTICS_REPORTING_ENABLED": "false",
        "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
        "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES": "false",
        "GF_NEWS_NEWS_FEED_ENABLED": "false",
        **grafana_server_settings(stack),
    }
    lines = [f"# {RENDERED_BY}", "[Service]"]
    # systemd takes Environment= values literally except for %-specifiers (none here) and quotes.
    lines += [f'Environment="{key}={value}"' for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def grafana_datasource_file() -> str:
    return dump_yaml(datasource_provisioning(LOCAL_PROMETHEUS_URL), f"# {RENDERED_BY}\n")


def grafana_dashboard_provider_file() -> str:
    return dump_yaml(dashboard_provisioning(DASHBOARDS_DIR), f"# {RENDERED_BY}\n")


def grafana_bootstrap(stack: ResolvedStack, password_given: bool) -> str:
    """First boot: add Grafana's apt repository, install the pinned release, own the password file, start it."""
    version = stack.config.monitoring.grafana_version
    generate = "" if password_given else f"""
# No grafanaAdminPassword in the stack config: make one here, once, readable by root (and Grafana) only.
if [[ ! -s {ADMIN_PASSWORD_FILE} ]]; then
    install -d -m 0750 {GRAFANA_SECRETS_DIR}
    (umask 077; head -c 32 /dev/urandom | base64 | tr -d '/+=\\n' > {ADMIN_PASSWORD_FILE})
    log "generated the admin password into {ADMIN_PASSWORD_FILE}"
fi
"""
    return f"""#!/usr/bin/env bash
# {RENDERED_BY}
# First boot of Grafana on the Prometheus host: Grafana's apt repository, the pinned release, provisioning
# from files (written by cloud-init), then start. Safe to run again.
set -euo pipefail

log() {{ echo "gpu-inference-grafana-bootstrap: $*"; }}

version={shell_quote(version)}
export DEBIAN_FRONTEND=noninteractive
if [[ ! -s {GRAFANA_KEYRING} ]]; then
    install -d -m 0755 /etc/apt/keyrings
    curl -fsSL --retry 5 --retry-delay 5 -o {GRAFANA_KEYRING}.tmp {GRAFANA_APT_KEY_URL}
    chmod 0644 {GRAFANA_KEYRING}.tmp
    mv {GRAFANA_KEYRING}.tmp {GRAFANA_KEYRING}
fi
echo {shell_quote(GRAFANA_APT_SOURCE)} > {GRAFANA_SOURCES_LIST}
apt-get update -o Dir::Etc::sourcelist={GRAFANA_SOURCES_LIST} -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0
apt-get install -y --no-install-recommends "grafana=$version"
# Pinned: an unattended upgrade must not move Grafana under the dashboards.
apt-mark hold grafana
{generate}
[[ -s {ADMIN_PASSWORD_FILE} ]] || {{ log "ERROR: no admin password in {ADMIN_PASSWORD_FILE}"; exit 1; }}
chown root:grafana {GRAFANA_SECRETS_DIR} {ADMIN_PASSWORD_FILE}
chmod 0750 {GRAFANA_SECRETS_DIR}
chmod 0640 {ADMIN_PASSWORD_FILE}
chown -R root:grafana {DASHBOARDS_DIR}
systemctl daemon-reload
systemctl enable {GRAFANA_UNIT}
systemctl restart {GRAFANA_UNIT}
log "Grafana $version on :{GRAFANA_PORT}, dashboards from {DASHBOARDS_DIR}"
"""


def _write(path: str, content: str, permissions: str = "0644") -> dict[str, Any]:
    # Deferred: written after the packages module, before runcmd (cloud-init's write_files_deferred).
    return {"path": path, "owner": "root:root", "permissions": permissions, "content": content, "defer": True}


def grafana_cloud_init_files(stack: ResolvedStack, admin_password: str | None) -> list[dict[str, Any]]:
    """The monitoring host's write_files entries for Grafana (empty when it gets no Grafana).

    ``admin_password``: the plaintext inside the Pulumi program's apply (the host's user data is a secret
    Output); None lets the host generate one. Dashboards go in compact JSON (clouds cap user data; AWS's
    16 KiB is met gzipped, tests/test_render.py); the preview's monitoring/dashboards/*.json are the same documents.
    """
    if not grafana_enabled(stack):
        return []
    import json

    files = [
        _write(GRAFANA_DROPIN, grafana_dropin(stack)),
        _write(DATASOURCE_FILE, grafana_datasource_file()),
        _write(DASHBOARD_PROVIDER_FILE, grafana_dashboard_provider_file()),
        *(
            _write(f"{DASHBOARDS_DIR}/{name}", json.dumps(json.loads(text), separators=(",", ":"), sort_keys=True))
            for name, text in dashboard_files(stack).items()
        ),
        _write(GRAFANA_BOOTSTRAP_PATH, grafana_bootstrap(stack, admin_password is not None), "0755"),
    ]
    if admin_password is not None:
        files.append(_write(ADMIN_PASSWORD_FILE, admin_password, "0600"))
    return files


def grafana_runcmd(stack: ResolvedStack) -> list[list[str]]:
    return [[GRAFANA_BOOTSTRAP_PATH]] if grafana_enabled(stack) else []
