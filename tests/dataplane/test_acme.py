"""The load balancer gets, serves and renews its certificate by itself: Debian's pebble (an ACME test CA),
certbot and the rendered nginx.conf and scripts, all on loopback.

- pebble-challtestsrv is pebble's DNS: it answers every A query with 127.0.0.1, so pebble's HTTP-01
  validation of llm.example.com reaches the rendered nginx's port 80 server (pebble's ``httpPort``,
  README "Default validation ports", set to that nginx's loopback port);
- the rendered cert-obtain script runs certbot against pebble (``loadBalancer.acmeServer``), the rendered
  deploy hook swaps the certificate in and reloads nginx; the test then verifies the chain nginx serves
  against pebble's root (management interface ``/roots/0``);
- ``certbot renew --force-renewal`` (what certbot.timer runs, forced) must run the same hook from certbot's
  renewal config, and nginx must serve the new certificate.

Skipped cleanly when certbot, pebble, openssl or nginx is absent (.ci/validators.txt installs them). Every
wait is bounded; pebble and its DNS run in their own process groups and are killed at the end.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gpu_inference.config import StackConfig
from gpu_inference.render.acme import CertbotPaths, deploy_hook_script, obtain_script, placeholder_certificate
from gpu_inference.render.grafana_proxy import placeholder_include
from gpu_inference.render.nginx import FALLBACK_LISTEN, NginxPaths, nginx_conf, tls_paths
from gpu_inference.stack import resolve_stack
from tests.dataplane import harness
from tests.dataplane.harness import LOOPBACK, ManagedProcess, free_port, port_open, wait_until

pytestmark = pytest.mark.dataplane

DOMAIN = "llm.example.com"
TOOLS = ("certbot", "pebble", "pebble-challtestsrv", "openssl", "nginx")
CERTBOT_TIMEOUT = 180


def _require_tools() -> dict[str, str]:
    found = {name: shutil.which(name) or (harness.nginx_binary() if name == "nginx" else None) for name in TOOLS}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install -y certbot pebble openssl nginx)")
    return {k: str(v) for k, v in found.items()}


def run(argv: list[str], env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)


def openssl(*args: str) -> str:
    result = run(["openssl", *args])
    assert result.returncode == 0, result.stderr
    return result.stdout


@dataclass
class Pebble:
    acme_url: str
    management_port: int
    ca_bundle: Path
    """The CA that signed pebble's own HTTPS certificate (certbot must trust it: REQUESTS_CA_BUNDLE)."""

    def root_pem(self) -> str:
        """The root pebble issues under (regenerated at every start), for verifying what nginx serves."""
        ctx = ssl.create_default_context(cafile=str(self.ca_bundle))
        with socket.create_connection((LOOPBACK, self.management_port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET /roots/0 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            chunks = []
            while chunk := tls.recv(65536):
                chunks.append(chunk)
        body = b"".join(chunks).split(b"\r\n\r\n", 1)[1].decode()
        assert "BEGIN CERTIFICATE" in body, body
        return body


def _pebble_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for 127.0.0.1/localhost that pebble serves ACME over."""
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.pem", "key.pem", "req.csr", "cert.pem"))
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=gpu-inference test CA",
            "-keyout", str(ca_key), "-out", str(ca))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(csr))
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "1",
            "-extfile", str(ext), "-out", str(cert))
    return ca, cert, key


@pytest.fixture
def pebble_for(tmp_path: Path) -> Iterator[object]:
    """``pebble_for(http_port)``: pebble validating HTTP-01 on that loopback port, its DNS answering 127.0.0.1."""
    started: list[ManagedProcess] = []

    def start(http_port: int) -> Pebble:
        work = tmp_path / "pebble"
        work.mkdir()
        ca, cert, key = _pebble_tls(work)
        dns_port, mgmt_dns, acme_port, mgmt_port, tls_port = (free_port() for _ in range(5))
        dns = ManagedProcess("challtestsrv", [
            "pebble-challtestsrv", "-dns01", f"{LOOPBACK}:{dns_port}", "-defaultIPv4", LOOPBACK, "-defaultIPv6", "",
            "-http01", "", "-https01", "", "-tlsalpn01", "", "-management", f"{LOOPBACK}:{mgmt_dns}",
        ], log_path=work / "challtestsrv.log")  # fmt: skip
        started.append(dns)
        config = work / "pebble-config.json"
        config.write_text(json.dumps({"pebble": {
            "listenAddress": f"{LOOPBACK}:{acme_port}", "managementListenAddress": f"{LOOPBACK}:{mgmt_port}",
            "certificate": str(cert), "privateKey": str(key),
            "httpPort": http_port, "tlsPort": tls_port, "ocspResponderURL": "", "externalAccountBindingRequired": False,
        }}))  # fmt: skip
        # No artificial validation delay, no deliberately rejected nonces (README "Testing at full speed").
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
        proc = ManagedProcess("pebble", ["pebble", "-config", str(config), "-dnsserver", f"{LOOPBACK}:{dns_port}",
                                         "-strict=false"], env=env, log_path=work / "pebble.log")  # fmt: skip
        started.append(proc)
        wait_until(lambda: not proc.alive() or (port_open(acme_port) and port_open(mgmt_port)), 20, what="pebble")
        assert proc.alive() and dns.alive(), proc.log_tail() + dns.log_tail()
        return Pebble(f"https://{LOOPBACK}:{acme_port}/dir", mgmt_port, ca)

    yield start
    for proc in started:
        proc.stop()


def served_certificate(port: int, cafile: str | None = None) -> bytes:
    """The leaf certificate nginx presents for DOMAIN (SNI); with ``cafile``, the chain must verify to it."""
    if cafile:
        ctx = ssl.create_default_context(cafile=cafile)
    else:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((LOOPBACK, port), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=DOMAIN) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def pem_serial(pem_path: Path) -> str:
    return openssl("x509", "-in", str(pem_path), "-noout", "-serial").strip()


def der_field(der: bytes, field: str, tmp: Path) -> str:
    path = tmp / "served.der"
    path.write_bytes(der)
    return openssl("x509", "-inform", "DER", "-in", str(path), "-noout", f"-{field}").strip()


def wait_for_serial(port: int, serial: str, tmp: Path, timeout: float = 15) -> None:
    wait_until(lambda: der_field(served_certificate(port), "serial", tmp) == serial, timeout,
               interval=0.2, what=f"nginx to serve certificate {serial}")


def test_lb_obtains_serves_and_renews_its_certificate_from_an_acme_server(tmp_path: Path, pebble_for) -> None:  # type: ignore[no-untyped-def]
    _require_tools()
    http_port, https_port = free_port(), free_port()
    pebble = pebble_for(http_port)
    stack = resolve_stack(StackConfig.model_validate({
        "provider": "digitalocean", "region": "tor1", "gpu": "gpu-l40sx1-48gb", "model": "Qwen/Qwen3-8B",
        "monthlyBudgetUsd": 2000,
        "loadBalancer": {"tlsDomain": DOMAIN, "acmeServer": pebble.acme_url, "acmeEmail": "ops@example.com"},
    }), name="acme")  # fmt: skip

    # 1. First boot: the rendered placeholder lines, then nginx starts with the rendered config.
    prefix = tmp_path / "lb"
    harness.prepare_prefix(prefix)
    paths = NginxPaths.inside(prefix)
    # The stack has Grafana (the default), which the TLS server proxies: its first-boot upstream include.
    Path(paths.grafana_include).write_text(placeholder_include(FALLBACK_LISTEN))
    made = run(["bash", "-c", 'set -euo pipefail; log() { echo "$*"; }\n' + placeholder_certificate(DOMAIN, paths, 30)])
    assert made.returncode == 0, made.stderr
    conf = nginx_conf(stack, [f"{LOOPBACK}:{free_port()}"], listen=f"{LOOPBACK}:{http_port}", prefix_paths=paths,
                      tls_listen=f"{LOOPBACK}:{https_port}")
    nginx = harness.start_nginx(conf, prefix, http_port)
    try:
        wait_until(lambda: port_open(https_port), 10, what="nginx on 443")
        placeholder = served_certificate(https_port)
        assert der_field(placeholder, "issuer", tmp_path).endswith(f"CN = {DOMAIN}"), "not the self-signed placeholder"

        # Port 80: everything but ACME challenges is redirected to https://<the configured name>.
        conn = http.client.HTTPConnection(LOOPBACK, http_port, timeout=5)
        conn.request("POST", "/v1/chat/completions", body=b"{}", headers={"Host": "evil.example"})
        response = conn.getresponse()
        assert (response.status, response.getheader("Location")) == (308, f"https://{DOMAIN}/v1/chat/completions")
        conn.close()

        # 2. The rendered obtain script and deploy hook, with test directories and nginx -s reload.
        certbot_dirs = CertbotPaths.inside(tmp_path / "certbot")
        base = ["nginx", "-p", f"{prefix}/", "-c", str(nginx.conf_path)]
        hook = tmp_path / "cert-deploy"
        hook.write_text(deploy_hook_script(stack, paths, check=(*base, "-t", "-q"), reload=(*base, "-s", "reload")))
        obtain = tmp_path / "cert-obtain"
        obtain.write_text(obtain_script(stack, paths, certbot_dirs, deploy_hook=str(hook)))
        for script in (hook, obtain):
            script.chmod(0o755)
        env = {**os.environ, "REQUESTS_CA_BUNDLE": str(pebble.ca_bundle)}
        got = run([str(obtain)], env=env, timeout=CERTBOT_TIMEOUT)
        assert got.returncode == 0, got.stdout + got.stderr + nginx.error_log()
        assert "nginx now serves the certificate" in got.stdout + got.stderr

        # 3. nginx serves the issued certificate, and its chain verifies against pebble's root for DOMAIN.
        live = Path(certbot_dirs.live_dir(DOMAIN))
        issued = pem_serial(live / "cert.pem")
        wait_for_serial(https_port, issued, tmp_path)
        root = tmp_path / "pebble-root.pem"
        root.write_text(pebble.root_pem())
        verified = served_certificate(https_port, cafile=str(root))  # raises on a chain that does not verify
        assert der_field(verified, "serial", tmp_path) == issued
        cert, _key = tls_paths(DOMAIN, paths)
        assert pem_serial(Path(cert)) == issued  # the placeholder's path now holds the issued pair

        # Idempotent: a second run (every boot) sees the lineage and does not ask the CA again.
        again = run([str(obtain)], env=env, timeout=CERTBOT_TIMEOUT)
        assert again.returncode == 0 and "already holds a certificate" in again.stdout, again.stdout + again.stderr

        # 4. Renewal as certbot.timer runs it (forced): the hook comes from certbot's renewal config.
        renewal_conf = (tmp_path / "certbot" / "config" / "renewal" / f"{DOMAIN}.conf").read_text()
        assert str(hook) in renewal_conf and "webroot" in renewal_conf
        # --no-random-sleep-on-renew: what Debian's certbot.service passes (else certbot sleeps up to 8 minutes
        # when it has no terminal).
        renewed = run(["certbot", "renew", "--force-renewal", "--non-interactive", "--no-random-sleep-on-renew",
                       *certbot_dirs.args()], env=env,
                      timeout=CERTBOT_TIMEOUT)
        assert renewed.returncode == 0, renewed.stdout + renewed.stderr
        new_serial = pem_serial(live / "cert.pem")
        assert new_serial != issued
        wait_for_serial(https_port, new_serial, tmp_path)
        assert der_field(served_certificate(https_port, cafile=str(root)), "serial", tmp_path) == new_serial
        assert nginx.proc.alive(), "nginx died during a reload"
    finally:
        started = time.monotonic()
        nginx.stop()
        assert time.monotonic() - started < 15
