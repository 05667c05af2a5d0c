"""The load balancer's own certificate: certbot (Debian/Ubuntu package) over HTTP-01, renewed by certbot's timer.

How it fits together on the Nginx host when ``loadBalancer.tlsDomain`` is set:

1. first boot writes a self-signed placeholder where nginx reads the certificate (``tls_paths``), so nginx
   starts and serves port 80 (ACME challenges + redirect) and 443 before any certificate exists;
2. ``gpu-inference-cert.service`` runs :func:`obtain_script` after nginx is up, and systemd retries it every
   15 minutes until a certificate exists (the DNS record may not point at the host yet): ``certbot certonly
   --webroot`` puts the HTTP-01 token under the webroot nginx serves on port 80;
3. on success certbot runs :func:`deploy_hook_script` (``--deploy-hook``), which copies the issued pair over
   the placeholder and reloads nginx gracefully;
4. certbot stores the webroot and the hook in its renewal config, so the package's own ``certbot.timer``
   (``certbot -q renew``, twice a day) renews and runs the same hook again.

Flags are certbot's (``certbot --help all`` of certbot 2.1 in Debian 12, also manpages.ubuntu.com certbot.1 of
2.1.0-4; the same flags in Ubuntu 24.04's 2.9):
``certonly``, ``--webroot -w PATH``, ``-d DOMAIN``, ``--cert-name``, ``--agree-tos``, ``-m EMAIL`` /
``--register-unsafely-without-email``, ``--non-interactive``, ``--server URL`` (the ACME directory),
``--keep-until-expiring``, ``--deploy-hook CMD`` ("run in a shell once for each successfully issued
certificate ... $RENEWED_LINEAGE will point to the config live subdirectory"), ``--config-dir``,
``--work-dir``, ``--logs-dir``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpu_inference.render._common import RENDERED_BY, shell_quote
from gpu_inference.render.nginx import NginxPaths, checked_domain, tls_paths

if TYPE_CHECKING:
    from pathlib import Path

    from gpu_inference.stack import ResolvedStack

CERT_OBTAIN_PATH = "/usr/local/sbin/gpu-inference-cert-obtain"
CERT_DEPLOY_HOOK_PATH = "/usr/local/sbin/gpu-inference-cert-deploy"
CERT_SERVICE = "gpu-inference-cert.service"
# Until the first certificate exists, systemd tries again this often. Let's Encrypt allows 5 failed validations per
# account, hostname and hour (letsencrypt.org/docs/rate-limits): every 15 minutes stays under it while the
# DNS record propagates. Once the certificate exists each run is one file test.
OBTAIN_RETRY_MINUTES = 15
# One certbot run (account registration, order, validation, download) never needs longer than this.
OBTAIN_TIMEOUT_SECONDS = 300
NGINX_RELOAD = ("systemctl", "reload", "nginx.service")
NGINX_CHECK = ("nginx", "-t", "-q")


@dataclass(frozen=True)
class CertbotPaths:
    """certbot's directories (its defaults on the machine); tests put them under a temporary prefix."""

    config_dir: str = "/etc/letsencrypt"
    work_dir: str = "/var/lib/letsencrypt"
    logs_dir: str = "/var/log/letsencrypt"

    @classmethod
    def inside(cls, prefix: Path) -> CertbotPaths:
        return cls(config_dir=str(prefix / "config"), work_dir=str(prefix / "work"), logs_dir=str(prefix / "logs"))

    def args(self) -> list[str]:
        """Directory flags; none when they are certbot's defaults, so `certbot renew` from the package's timer
        finds the same lineage without them."""
        if self == CertbotPaths():
            return []
        return ["--config-dir", self.config_dir, "--work-dir", self.work_dir, "--logs-dir", self.logs_dir]

    def live_dir(self, domain: str) -> str:
        return f"{self.config_dir}/live/{checked_domain(domain)}"


def certbot_certonly_args(
    stack: ResolvedStack, paths: NginxPaths, certbot: CertbotPaths, deploy_hook: str = CERT_DEPLOY_HOOK_PATH
) -> list[str]:
    """The certbot command line that obtains the stack's certificate (argv, not yet shell-quoted)."""
    lb = stack.config.load_balancer
    if not lb.tls_domain:
        raise ValueError("the stack has no loadBalancer.tlsDomain: nothing to get a certificate for")
    domain = checked_domain(lb.tls_domain)
    contact = ["-m", lb.acme_email, "--no-eff-email"] if lb.acme_email else ["--register-unsafely-without-email"]
    return [
        "certbot", "certonly", "--non-interactive", "--agree-tos",
        *contact,
        "--server", lb.acme_server,
        "--webroot", "-w", paths.acme_webroot,
        "-d", domain, "--cert-name", domain,
        "--keep-until-expiring",
        "--deploy-hook", deploy_hook,
        *certbot.args(),
    ]  # fmt: skip


def _argv(args: list[str] | tuple[str, ...]) -> str:
    return " ".join(shell_quote(a) for a in args)


def obtain_script(
    stack: ResolvedStack,
    paths: NginxPaths | None = None,
    certbot: CertbotPaths | None = None,
    deploy_hook: str = CERT_DEPLOY_HOOK_PATH,
) -> str:
    """gpu-inference-cert-obtain: get the first certificate, or do nothing when certbot already has one."""
    paths = paths or NginxPaths()
    certbot = certbot or CertbotPaths()
    domain = checked_domain(stack.config.load_balancer.tls_domain or "")
    live = certbot.live_dir(domain)
    args = certbot_certonly_args(stack, paths, certbot, deploy_hook)
    lines = [_argv(args[:4])]
    i = 4
    while i < len(args):  # one flag (and its value) per line, so a diff shows which one changed
        step = 2 if i + 1 < len(args) and not args[i + 1].startswith("-") else 1
        lines.append("    " + _argv(args[i:i + step]))
        i += step
    command = " \\\n".join(lines)
    return f"""#!/usr/bin/env bash
# {RENDERED_BY}
# Obtain the certificate for {domain} from {stack.config.load_balancer.acme_server} (HTTP-01 through the
# nginx webroot). Run by {CERT_SERVICE}, retried until it succeeds; renewals are certbot.timer's job.
set -euo pipefail

log() {{ echo "gpu-inference-cert-obtain: $*"; }}

if [[ -s {shell_quote(live)}/fullchain.pem ]]; then
    log "certbot already holds a certificate for {domain}; renewals run from certbot.timer"
    exit 0
fi
install -d -m 0755 {shell_quote(paths.acme_webroot)}
log "requesting a certificate for {domain} (nginx keeps serving the placeholder until it arrives)"
{command}
log "certificate for {domain} issued and deployed"
"""


def placeholder_certificate(domain: str, paths: NginxPaths, days: int) -> str:
    """The LB bootstrap's lines that create a self-signed pair where nginx reads the certificate, unless one is
    there: nginx refuses to start without the certificate it names, and the real one needs nginx running."""
    cert, key = tls_paths(domain, paths)
    return f"""# nginx refuses to start without the certificate it names: begin with a short-lived self-signed one;
# {CERT_SERVICE} then gets the real one from the ACME server and its deploy hook swaps it in.
if [[ ! -s {shell_quote(cert)} ]]; then
    log "no certificate for {domain} yet; creating a self-signed placeholder"
    install -d -m 0755 {shell_quote(cert.rsplit("/", 1)[0])} {shell_quote(paths.acme_webroot)}
    openssl req -x509 -newkey rsa:2048 -nodes -days {days} -subj {shell_quote(f"/CN={domain}")} \\
        -keyout {shell_quote(key)} -out {shell_quote(cert)}
    chmod 0600 {shell_quote(key)}
fi
"""


def deploy_hook_script(
    stack: ResolvedStack,
    paths: NginxPaths | None = None,
    check: tuple[str, ...] = NGINX_CHECK,
    reload: tuple[str, ...] = NGINX_RELOAD,
) -> str:
    """gpu-inference-cert-deploy: certbot's deploy hook; puts the new pair where nginx reads it, reloads nginx.

    Copies rather than pointing nginx at certbot's ``live/`` symlinks: the placeholder lives at the same path
    before the first issuance, and nginx.conf never depends on whether certbot has run. Each file is written
    beside its target and renamed over it (atomic), and nginx is reloaded (workers finish their requests)
    only after both are in place and ``nginx -t`` accepts them.
    """
    paths = paths or NginxPaths()
    domain = checked_domain(stack.config.load_balancer.tls_domain or "")
    cert, key = tls_paths(domain, paths)
    return f"""#!/usr/bin/env bash
# {RENDERED_BY}
# certbot --deploy-hook for {domain}: runs after every issuance and renewal with RENEWED_LINEAGE set to the
# certificate's live directory.
set -euo pipefail

log() {{ echo "gpu-inference-cert-deploy: $*"; }}

lineage="${{RENEWED_LINEAGE:?certbot sets RENEWED_LINEAGE for a deploy hook}}"
cert={shell_quote(cert)}
key={shell_quote(key)}
install -d -m 0755 "$(dirname "$cert")"
install -m 0644 "$lineage/fullchain.pem" "$cert.new"
install -m 0600 "$lineage/privkey.pem" "$key.new"
mv -f "$cert.new" "$cert"
mv -f "$key.new" "$key"
{_argv(check)}
{_argv(reload)}
log "nginx now serves the certificate from $lineage"
"""


def cert_unit() -> str:
    """gpu-inference-cert.service: the first issuance, retried until it succeeds.

    A oneshot that systemd restarts on failure (allowed for oneshot since systemd 245, systemd/systemd#13796;
    Ubuntu 24.04 has 255, and `systemd-analyze verify` accepts it in the tests),
    so a failed attempt stays visible (`systemctl status`) and is retried without a timer of our own. Started at
    every boot too: it is one file test once the certificate exists.
    """
    return f"""# {RENDERED_BY}
[Unit]
Description=Obtain the load balancer's TLS certificate (certbot, HTTP-01)
After=network-online.target nginx.service
Wants=network-online.target
Requires=nginx.service
# Retry forever: the DNS record may take a while to point here, and a host without a certificate only
# serves the placeholder.
StartLimitIntervalSec=0

[Service]
Type=oneshot
TimeoutStartSec={OBTAIN_TIMEOUT_SECONDS}
ExecStart={CERT_OBTAIN_PATH}
Restart=on-failure
RestartSec={OBTAIN_RETRY_MINUTES}min

[Install]
WantedBy=multi-user.target
"""
