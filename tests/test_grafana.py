"""Grafana on the monitoring host: provisioning files through their consumers, the admin password kept secret,
port 3000 from allowedCidrs only, the grafanaUrl output, and the dashboards' validators the preview test reuses."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from render_fixtures import API_KEY, HF_TOKEN, SCENARIOS, dev, prod
from test_validators import run, systemd_root, systemd_verify, tool

from gpu_inference.render import dashboards as d
from gpu_inference.render import grafana as g
from gpu_inference.render import grafana_proxy as gp
from gpu_inference.render import render_all
from gpu_inference.render.dashboards import concrete_query

PASSWORD = "PLACEHOLDER-grafana-admin"

# Debian/Ubuntu's grafana package ships grafana-server.service running /usr/share/grafana/bin/grafana; a stub of
# it is enough for systemd-analyze to check our drop-in's syntax and that it applies.
GRAFANA_STUB = ("[Unit]\nDescription=stub of the grafana package's grafana-server.service\n[Service]\nUser=grafana\n"
                "ExecStart=/usr/share/grafana/bin/grafana server\n[Install]\nWantedBy=multi-user.target\n")


# ---------------------------------------------------------------------------------------------
# Validators (also used by test_preview_files_validate.py for what the preview writes)
# ---------------------------------------------------------------------------------------------


def verify_grafana_dropin(tmp_path: Path, dropin: str) -> subprocess.CompletedProcess[str]:
    units = {g.GRAFANA_UNIT: GRAFANA_STUB, "grafana-server.service.d/gpu-inference.conf": dropin}
    root = systemd_root(tmp_path, units, {"/usr/share/grafana/bin/grafana": "#!/bin/sh\nexit 0\n"})
    return systemd_verify(root, [g.GRAFANA_UNIT])


def check_dashboard_json(text: str, tmp_path: Path) -> None:
    """A dashboard file: Grafana's JSON model (round trip through the SDK's types) whose queries promtool parses."""
    model = json.loads(text)
    parsed = d.validate_dashboard(model)
    assert json.loads(json.dumps(parsed, cls=JSONEncoder)) == model
    exprs = [t["expr"] for p in model["panels"] for t in p.get("targets", [])]
    assert exprs, "a dashboard without queries"
    rules = [{"record": f"panel:q{i}", "expr": concrete_query(e, "1m")} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run([tool("promtool"), "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def check_provisioning(path: Path) -> None:
    """A Grafana provisioning file: YAML with apiVersion 1 and what Grafana's provisioners require."""
    doc = yaml.safe_load(path.read_text())
    assert doc["apiVersion"] == 1
    if "datasources" in doc:
        (ds,) = doc["datasources"]
        assert ds["type"] == "prometheus" and ds["url"] == g.LOCAL_PROMETHEUS_URL and ds["uid"] == d.DATASOURCE_UID
        assert ds["isDefault"] is True and ds["access"] == "proxy"
    else:
        (provider,) = doc["providers"]
        assert provider["type"] == "file" and provider["options"]["path"] == d.DASHBOARDS_DIR


# ---------------------------------------------------------------------------------------------
# Rendered files
# ---------------------------------------------------------------------------------------------


def _cloud_init(files: dict[str, str]) -> dict[str, dict[str, object]]:
    doc = yaml.safe_load(files["monitoring/cloud-init.yaml"])
    return {f["path"]: f for f in doc["write_files"]}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_grafana_dropin_passes_systemd_analyze_verify(scenario: str, tmp_path: Path) -> None:
    dropin = SCENARIOS[scenario]().render()["monitoring/grafana/grafana-server.service.d/gpu-inference.conf"]
    result = verify_grafana_dropin(tmp_path / "ok", dropin)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
    broken = verify_grafana_dropin(tmp_path / "broken", dropin.replace("Environment=", "Enviroment=", 1))
    assert "Enviroment" in broken.stderr


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_monitoring_cloud_init_provisions_grafana(scenario: str, tmp_path: Path) -> None:
    files = SCENARIOS[scenario]().render()
    written = _cloud_init(files)
    for path in (g.GRAFANA_DROPIN, g.DATASOURCE_FILE, g.DASHBOARD_PROVIDER_FILE, g.GRAFANA_BOOTSTRAP_PATH):
        assert path in written, path
    # The files on the host are the documents the preview shows (dashboards compact, same JSON).
    for name in ("serving.json", "gpu-nodes.json"):
        on_host = json.loads(str(written[f"{d.DASHBOARDS_DIR}/{name}"]["content"]))
        assert on_host == json.loads(files[f"monitoring/dashboards/{name}"])
        check_dashboard_json(files[f"monitoring/dashboards/{name}"], tmp_path)
    for rel in ("monitoring/grafana/datasources/gpu-inference.yaml", "monitoring/grafana/dashboards/gpu-inference.yaml"):
        path = tmp_path / Path(rel).name
        path.write_text(files[rel])
        check_provisioning(path)
    doc = yaml.safe_load(files["monitoring/cloud-init.yaml"])
    # Grafana's bootstrap after Prometheus'; behind the load balancer, the registration timer after Grafana.
    behind_lb = gp.grafana_behind_lb(SCENARIOS[scenario]().stack)
    registering = [["systemctl", "enable", "--now", gp.REGISTER_TIMER]] if behind_lb else []
    assert doc["runcmd"][1:] == [[g.GRAFANA_BOOTSTRAP_PATH], *registering]
    bootstrap = str(written[g.GRAFANA_BOOTSTRAP_PATH]["content"])
    assert 'grafana=$version' in bootstrap and "version=12.3.0" in bootstrap
    assert g.GRAFANA_APT_SOURCE in bootstrap and g.GRAFANA_APT_KEY_URL in bootstrap
    dropin = str(written[g.GRAFANA_DROPIN]["content"])
    assert 'Environment="GF_AUTH_ANONYMOUS_ENABLED=false"' in dropin


def test_admin_password_only_in_its_root_only_file() -> None:
    s = prod()
    files = render_all(s.stack, s.node_addresses, s.lb_address, API_KEY, HF_TOKEN, grafana_admin_password=PASSWORD)
    written = _cloud_init(files)
    entry = written[g.ADMIN_PASSWORD_FILE]
    assert entry["content"] == PASSWORD and entry["permissions"] == "0600" and entry["owner"] == "root:root"
    holders = [rel for rel, text in files.items() if PASSWORD in text]
    assert holders == ["monitoring/cloud-init.yaml"], holders  # not in the dropin, the bootstrap, any JSON
    assert sum(str(f["content"]).count(PASSWORD) for f in written.values()) == 1
    # Without the password the host makes one, and the cloud-init carries none.
    files = render_all(s.stack, s.node_addresses, s.lb_address, API_KEY, HF_TOKEN)
    assert g.ADMIN_PASSWORD_FILE not in _cloud_init(files)
    assert "/dev/urandom" in files["monitoring/grafana/bootstrap.sh"]


def test_grafana_off_renders_nothing_of_it() -> None:
    s = dev()
    off = s.stack.config.model_copy(update={"monitoring": s.stack.config.monitoring.model_copy(update={"grafana": False})})
    import dataclasses

    stack = dataclasses.replace(s.stack, config=off)
    files = render_all(stack, s.node_addresses, s.lb_address, None, HF_TOKEN)
    assert not [rel for rel in files if "grafana" in rel]
    assert "grafana" not in files["monitoring/cloud-init.yaml"]
    # The dashboards stay in the preview: they are also what a cluster's own Grafana would load.
    assert "monitoring/dashboards/serving.json" in files


def test_grafana_version_is_validated() -> None:
    from gpu_inference.config import parse_stack_config
    from gpu_inference.errors import ConfigError

    raw = {"provider": "digitalocean", "region": "tor1", "gpu": "gpu-l40sx1-48gb", "model": "Qwen/Qwen3-8B",
           "monthlyBudgetUsd": 5000, "monitoring": {"grafanaVersion": "latest"}}
    with pytest.raises(ConfigError) as exc:
        parse_stack_config(raw, secret_keys=set())
    assert "grafanaVersion" in exc.value.render()


# ---------------------------------------------------------------------------------------------
# The Pulumi program (under the preview's recording mocks)
# ---------------------------------------------------------------------------------------------


def _program(overrides: dict[str, object] | None = None, stack: str = "dev"):  # type: ignore[no-untyped-def]
    from test_program import run as run_program_for

    return run_program_for(stack, overrides)


@pytest.fixture(scope="module")
def with_password():  # type: ignore[no-untyped-def]
    # As the engine hands a stack file's `secure:` value over: the placeholder, listed as secret.
    return _program({"grafanaAdminPassword": {"secure": "v1:not-decryptable-offline"}})


def test_grafana_url_output_and_port_3000_only_from_allowed_cidrs() -> None:
    from test_program import DO_FIREWALL, PROMETHEUS, firewalls, ingress, value

    program = _program()
    address = value(program.namespace["monitoring"].public_ip)
    assert program.outputs["grafanaUrl"] == f"http://{address}:{g.GRAFANA_PORT}"
    fw = next(r for r in firewalls(program) if r.type == DO_FIREWALL and r.name == f"{PROMETHEUS}-fw")
    rules = {low: cidrs for low, _high, cidrs, _peers in ingress(fw)}
    assert rules[g.GRAFANA_PORT] == set(program.namespace["cfg"].allowed_cidrs) == {"203.0.113.0/24"}
    # No other firewall opens Grafana's port.
    others = [r for r in firewalls(program) if r is not fw]
    assert not [r.name for r in others for low, high, _c, _p in ingress(r) if low <= g.GRAFANA_PORT <= high]


def test_grafana_off_means_no_port_and_no_url() -> None:
    from test_program import firewalls, ingress

    program = _program({"monitoring": {"grafana": False}})
    assert program.outputs.get("grafanaUrl") is None
    assert not [low for r in firewalls(program) for low, high, _c, _p in ingress(r) if low <= g.GRAFANA_PORT <= high]


def test_aws_grafana_port_from_allowed_cidrs_only() -> None:
    from test_program import STACKS, firewalls, ingress

    program = _program(stack=str(STACKS / "aws-spot.yaml"))
    opened = [(r.name, cidrs) for r in firewalls(program) for low, high, cidrs, _p in ingress(r)
              if low <= g.GRAFANA_PORT <= high]
    assert opened and all(cidrs == set(program.namespace["cfg"].allowed_cidrs) for _n, cidrs in opened), opened
    assert str(program.outputs["grafanaUrl"]).endswith(f":{g.GRAFANA_PORT}")


def test_admin_password_stays_secret_in_the_program(with_password) -> None:  # type: ignore[no-untyped-def]
    from test_program import PLACEHOLDER, PROMETHEUS, is_secret, value

    ns = with_password.namespace
    user_data = ns["monitoring"].host.instance.user_data
    assert is_secret(user_data)
    assert f"path: {g.ADMIN_PASSWORD_FILE}" in value(user_data) and PLACEHOLDER in value(user_data)
    host = next(r for r in with_password.recorded if r.name == PROMETHEUS)
    assert "userData" in host.secret_inputs and host.inputs["userData"] == "[secret]"
    assert PLACEHOLDER not in json.dumps(with_password.outputs)
    assert PLACEHOLDER not in json.dumps([r.model_dump() for r in with_password.recorded])


def test_kubernetes_stack_has_no_grafana_url() -> None:
    from test_program import STACKS

    program = _program(stack=str(STACKS / "kubernetes.yaml"))
    assert program.outputs.get("grafanaUrl") is None


def test_kubernetes_dashboards_are_configmaps_for_the_grafana_sidecar() -> None:
    from test_program import STACKS

    program = _program(stack=str(STACKS / "kubernetes.yaml"))
    maps = [r for r in program.recorded if r.type == "kubernetes:core/v1:ConfigMap" and "-dashboard-" in r.name]
    assert len(maps) == 2, [r.name for r in maps]
    monitoring = next(r for r in program.recorded if r.type == "gpu-inference:index:MonitoringStack")
    for r in maps:
        meta = r.inputs["metadata"]
        assert meta["labels"]["grafana_dashboard"] == "1"
        assert meta["namespace"] == program.namespace["cfg"].kubernetes.namespace
        ((name, text),) = r.inputs["data"].items()
        assert name in {"serving.json", "gpu-nodes.json"}
        d.validate_dashboard(json.loads(text))
        assert r.parent == monitoring.urn
    off = _program({"monitoring": {"grafana": False}}, stack=str(STACKS / "kubernetes.yaml"))
    assert not [r for r in off.recorded if r.type == "kubernetes:core/v1:ConfigMap" and "-dashboard-" in r.name]


def _opening(program, port: int):  # type: ignore[no-untyped-def]
    """(firewall name, CIDR sources, peer sources) of every inbound rule that opens ``port``."""
    from test_program import firewalls, ingress

    return [(r.name, cidrs, peers) for r in firewalls(program) for low, high, cidrs, peers in ingress(r)
            if low <= port <= high]


@pytest.mark.parametrize("stack", ["prod", "aws-tls"])
def test_a_tls_stack_serves_grafana_through_the_load_balancer(stack: str) -> None:
    """With a tlsDomain, grafanaUrl is https://<domain>/grafana/, Grafana's port admits the load balancer only
    (no CIDR), and the load balancer's registration port admits the monitoring host only: on DigitalOcean (tags)
    and on AWS (security groups)."""
    from test_program import LB, PROMETHEUS, STACKS

    if stack == "aws-tls":
        program = _program({"loadBalancer": {"tlsDomain": "llm.example.com"}}, stack=str(STACKS / "aws-spot.yaml"))
    else:
        program = _program(stack="prod")
    assert program.outputs["grafanaUrl"] == "https://llm.example.com/grafana/"
    grafana = _opening(program, g.GRAFANA_PORT)
    assert len(grafana) == 1, grafana
    (name, cidrs, peers) = grafana[0]
    assert name.startswith(PROMETHEUS) and not cidrs and len(peers) == 1, grafana
    registration = _opening(program, gp.GRAFANA_REGISTRAR_PORT)
    assert len(registration) == 1, registration
    (lb_fw, reg_cidrs, reg_peers) = registration[0]
    assert lb_fw.startswith(LB) and not reg_cidrs and len(reg_peers) == 1, registration
    # The peer each admits is the other host's identity (a tag / a security group), not one the GPU nodes share.
    assert peers != reg_peers
    # And the monitoring host registers with the address the load balancer really has.
    ns = program.namespace
    from test_program import value

    instance = ns["monitoring"].host.instance
    user_data = value(instance.user_data)
    if user_data is None:  # AWS: gzip, base64 (components/clouds/aws.py)
        import base64
        import gzip

        user_data = gzip.decompress(base64.b64decode(value(instance.user_data_base64))).decode()
    lb_ip = value(ns["pool"].lb_private_ip)
    assert f"-X POST http://{lb_ip}:{gp.GRAFANA_REGISTRAR_PORT}/grafana" in user_data
    assert gp.REGISTER_TIMER in user_data


def test_without_a_domain_grafana_stays_on_its_own_port() -> None:
    """dev (no tlsDomain): nothing of the proxy is rendered, no registration port is opened."""
    s = dev()
    files = render_all(s.stack, s.node_addresses, s.lb_address, None, HF_TOKEN)
    assert not gp.grafana_behind_lb(s.stack)
    assert "/grafana/" not in files["loadbalancer/nginx.conf"]
    assert gp.REGISTRAR_UNIT not in files["loadbalancer/cloud-init.yaml"]
    assert gp.REGISTER_TIMER not in files["monitoring/cloud-init.yaml"]
    dropin = files["monitoring/grafana/grafana-server.service.d/gpu-inference.conf"]
    assert "GF_SECURITY_COOKIE_SECURE=false" in dropin and "ROOT_URL" not in dropin
    assert not _opening(_program(), gp.GRAFANA_REGISTRAR_PORT)


def test_behind_the_load_balancer_grafana_knows_its_public_sub_path() -> None:
    from render_fixtures import prod_config

    from gpu_inference.stack import resolve_stack

    s = prod()
    cidrs = ["198.51.100.0/24", "2001:db8::/32"]
    stack = resolve_stack(prod_config().model_copy(update={"allowed_cidrs": cidrs}), name="prod")
    files = render_all(stack, s.node_addresses, s.lb_address, API_KEY, HF_TOKEN)
    dropin = files["monitoring/grafana/grafana-server.service.d/gpu-inference.conf"]
    # Grafana's reverse-proxy guide: root_url with the sub path, serve_from_sub_path, and secure cookies on HTTPS.
    for line in ('Environment="GF_SERVER_ROOT_URL=https://llm.example.com/grafana/"',
                 'Environment="GF_SERVER_SERVE_FROM_SUB_PATH=true"',
                 'Environment="GF_SECURITY_COOKIE_SECURE=true"'):  # fmt: skip
        assert line in dropin.splitlines(), dropin
    assert "GF_SECURITY_COOKIE_SECURE=false" not in dropin
    conf = files["loadbalancer/nginx.conf"]
    tls_server = conf[conf.index("listen 0.0.0.0:443"):]
    for location in ("location /grafana/ {", "location /grafana/api/live/ {"):
        block = tls_server[tls_server.index(location):]
        block = block[:block.index("}")]
        assert [ln.strip() for ln in block.splitlines() if ln.strip().startswith(("allow", "deny"))] == [
            *(f"allow {c};" for c in cidrs), "deny all;"], block
        assert "access_log /var/log/nginx/grafana-access.log upstream;" in block
    assert g.grafana_unreachable_note(stack) is None
    assert g.grafana_unreachable_note(prod().stack) is not None  # the fixture has no allowedCidrs
    assert g.grafana_unreachable_note(resolve_stack(prod_config().model_copy(
        update={"allowed_cidrs": [], "monitoring": prod_config().monitoring.model_copy(update={"grafana": False})}),
        name="prod")) is None  # fmt: skip
    # Port 80 serves no Grafana (only ACME and the redirect).
    assert "/grafana/" not in conf[:conf.index("listen 0.0.0.0:443")]
