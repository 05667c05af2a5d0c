"""prod is HTTPS (issue 11): the LB's certificate (certbot over HTTP-01), its config keys, and the files it renders.

The end-to-end proof (pebble + certbot + nginx on loopback) is tests/dataplane/test_acme.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from render_fixtures import API_KEY, prod
from test_validators import shellcheck, systemd_root, systemd_verify, write

from gpu_inference.config import StackConfig, parse_stack_config
from gpu_inference.errors import ConfigError
from gpu_inference.render import load_balancer_cloud_init, nginx_conf
from gpu_inference.render.acme import (
    CERT_DEPLOY_HOOK_PATH,
    CERT_OBTAIN_PATH,
    CERT_SERVICE,
    CertbotPaths,
    cert_unit,
    certbot_certonly_args,
    obtain_script,
)
from gpu_inference.render.nginx import NginxPaths, checked_domain
from gpu_inference.stack import resolve_stack

BASE = {
    "provider": "digitalocean",
    "region": "tor1",
    "gpu": "gpu-l40sx1-48gb",
    "model": "Qwen/Qwen3-8B",
    "monthlyBudgetUsd": 2000,
}
AWS = {**BASE, "provider": "aws", "region": "us-east-1", "gpu": "g6e.xlarge"}


def problems(raw: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_stack_config(raw)
    return info.value.messages


def with_lb(**lb: object) -> StackConfig:
    return StackConfig.model_validate({**BASE, "loadBalancer": lb})


# ---------------------------------------------------------------------------------------------
# config: loadBalancer.acmeEmail / acmeServer / dnsZone
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lb", "key"),
    [
        ({"tlsDomain": "llm.example.com", "acmeEmail": "ops@example.com\nrm -rf /"}, "loadBalancer.acmeEmail"),
        ({"tlsDomain": "llm.example.com", "acmeEmail": "$(id)@example.com"}, "loadBalancer.acmeEmail"),
        ({"tlsDomain": "llm.example.com", "acmeServer": "http://acme.example/dir"}, "loadBalancer.acmeServer"),
        ({"tlsDomain": "llm.example.com", "acmeServer": "https://a.example/dir;id"}, "loadBalancer.acmeServer"),
        ({"tlsDomain": "llm.example.com", "acmeServer": "https://a.example/dir\n"}, "loadBalancer.acmeServer"),
        ({"dnsZone": "example.com"}, "loadBalancer.dnsZone"),  # a zone but no name to put in it
        ({"tlsDomain": "llm.example.org", "dnsZone": "example.com"}, "loadBalancer.dnsZone"),
        ({"tlsDomain": "llm.example.com", "dnsZone": "example.com;x"}, "loadBalancer.dnsZone"),
        ({"tlsDomain": "llm.example.com", "dnsZone": "localhost"}, "loadBalancer.dnsZone"),
    ],
)
def test_bad_acme_and_dns_values_are_one_line_naming_the_key(lb: dict[str, object], key: str) -> None:
    [message] = problems({**BASE, "loadBalancer": lb})
    assert f"gpu-inference:{key}" in message and "\n" not in message


def test_aws_dns_zone_is_a_hosted_zone_id() -> None:
    [message] = problems({**AWS, "loadBalancer": {"tlsDomain": "llm.example.com", "dnsZone": "example.com"}})
    assert "gpu-inference:loadBalancer.dnsZone" in message and "hosted zone id" in message
    ok = parse_stack_config({**AWS, "loadBalancer": {"tlsDomain": "llm.example.com", "dnsZone": "Z0123456789ABCDEFGHIJ"}})
    assert ok.load_balancer.dns_zone == "Z0123456789ABCDEFGHIJ"


def test_dns_zone_is_refused_on_kubernetes() -> None:
    raw = {**BASE, "provider": "kubernetes", "kubernetes": {"clusterId": "c-1"}, "loadBalancer": {"dnsZone": "example.com"}}
    assert any("loadBalancer.dnsZone" in m and "kubernetes" in m for m in problems(raw))


def test_acme_defaults_are_lets_encrypt_production_without_an_email() -> None:
    lb = with_lb(tlsDomain="llm.example.com").load_balancer
    assert lb.acme_server == "https://acme-v02.api.letsencrypt.org/directory"
    assert lb.acme_email is None and lb.dns_zone is None


# ---------------------------------------------------------------------------------------------
# nginx: port 80 answers ACME challenges and redirects; the API only on 443
# ---------------------------------------------------------------------------------------------


def _server_blocks(conf: str) -> list[str]:
    return conf.split("    server {")[1:]


def test_port_80_serves_only_acme_challenges_and_redirects_to_the_configured_name() -> None:
    conf = nginx_conf(prod().stack, ["10.0.1.2:8000"])
    http, https = _server_blocks(conf)
    assert "listen 0.0.0.0:80 default_server;" in http
    assert "location ^~ /.well-known/acme-challenge/ {" in http and "root /var/www/acme;" in http
    # Redirect to the configured name, never to whatever Host the client sent.
    assert "return 308 https://llm.example.com$request_uri;" in http and "$host" not in http
    assert "proxy_pass" not in http and "/health" not in http
    assert "listen 0.0.0.0:443 ssl default_server;" in https and "proxy_pass http://vllm_backend;" in https


@pytest.mark.parametrize(
    "domain",
    ["a.com; location ~ ^/metrics { proxy_pass http://vllm_backend; } #", "$(touch${IFS}/tmp/x)", "../../etc/x",
     "llm.example.com\nx", "a..b", ""],
)
def test_renderers_refuse_a_domain_that_is_not_a_dns_name(domain: str) -> None:
    """A second line of defence behind the config's validator: nothing but a DNS name reaches nginx or bash."""
    with pytest.raises(ValueError, match="not a DNS name"):
        checked_domain(domain)
    stack = resolve_stack(with_lb(tlsDomain="llm.example.com"), name="t")
    bad = stack.config.model_copy(update={"load_balancer": stack.config.load_balancer.model_copy(
        update={"tls_domain": domain})})
    bad_stack = resolve_stack(bad, name="t")
    if domain:
        with pytest.raises(ValueError, match="not a DNS name"):
            nginx_conf(bad_stack, ["10.0.0.2:8000"])
        with pytest.raises(ValueError, match="not a DNS name"):
            obtain_script(bad_stack)


# ---------------------------------------------------------------------------------------------
# certbot command line, scripts and unit
# ---------------------------------------------------------------------------------------------


def test_certbot_command_is_certonly_webroot_with_the_configured_server_and_hook() -> None:
    stack = resolve_stack(with_lb(tlsDomain="llm.example.com", acmeEmail="ops@example.com",
                                  acmeServer="https://acme-staging-v02.api.letsencrypt.org/directory"), name="t")
    argv = certbot_certonly_args(stack, NginxPaths(), CertbotPaths())
    assert argv[:2] == ["certbot", "certonly"]
    for flag, value in (("-w", "/var/www/acme"), ("-d", "llm.example.com"), ("--cert-name", "llm.example.com"),
                        ("-m", "ops@example.com"), ("--deploy-hook", CERT_DEPLOY_HOOK_PATH),
                        ("--server", "https://acme-staging-v02.api.letsencrypt.org/directory")):
        assert argv[argv.index(flag) + 1] == value
    assert {"--webroot", "--non-interactive", "--agree-tos", "--keep-until-expiring"} <= set(argv)
    # Default directories are left out, so certbot.timer's plain `certbot renew` finds the same lineage.
    assert "--config-dir" not in argv
    anonymous = certbot_certonly_args(resolve_stack(with_lb(tlsDomain="llm.example.com"), name="t"),
                                      NginxPaths(), CertbotPaths())
    assert "--register-unsafely-without-email" in anonymous and "-m" not in anonymous


def test_lb_cloud_init_installs_certbot_and_starts_issuance_only_with_tls() -> None:
    s = prod()
    doc = yaml.safe_load(load_balancer_cloud_init(s.stack, ["10.0.1.2:8000"], API_KEY))
    assert {"certbot", "openssl", "nginx"} <= set(doc["packages"])
    paths = {f["path"]: f for f in doc["write_files"]}
    assert paths[CERT_OBTAIN_PATH]["permissions"] == "0755"
    assert paths[CERT_DEPLOY_HOOK_PATH]["permissions"] == "0755"
    assert f"/etc/systemd/system/{CERT_SERVICE}" in paths
    bootstrap = paths["/usr/local/sbin/gpu-inference-lb-bootstrap"]["content"]
    # The placeholder comes before nginx starts, the issuance after (and without blocking first boot).
    assert bootstrap.index("openssl req -x509") < bootstrap.index("systemctl restart nginx.service") < \
        bootstrap.index(f"systemctl start --no-block {CERT_SERVICE}")
    plain = resolve_stack(with_lb(), name="t")
    doc = yaml.safe_load(load_balancer_cloud_init(plain, ["10.0.0.2:8000"], None))
    assert "certbot" not in doc["packages"]
    assert not any("cert" in f["path"] for f in doc["write_files"])


def test_rendered_certificate_scripts_pass_shellcheck(tmp_path: Path) -> None:
    files = prod().render()
    for name in ("cert-obtain.sh", "cert-deploy.sh"):
        result = shellcheck(write(tmp_path / name, files[f"loadbalancer/{name}"]))
        assert result.returncode == 0, f"{name}:\n{result.stdout}"


def test_certificate_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    files = prod().render()
    root = systemd_root(tmp_path, {CERT_SERVICE: cert_unit()}, {CERT_OBTAIN_PATH: files["loadbalancer/cert-obtain.sh"]})
    if not (root / "usr/lib/systemd/system/nginx.service").exists():
        write(root / "etc/systemd/system/nginx.service", "[Unit]\nDescription=stub\n[Service]\nExecStart=/bin/sh\n")
    result = systemd_verify(root, [CERT_SERVICE])
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
    # Negative control: the same unit with its program missing is refused.
    bare = systemd_root(tmp_path / "bare", {CERT_SERVICE: cert_unit()}, {})
    assert systemd_verify(bare, [CERT_SERVICE]).returncode != 0
