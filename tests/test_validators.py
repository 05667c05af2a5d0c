"""The rendered files, checked by the real tools that will read them.

Each tool runs on what the renderers produce for the dev-like and prod-like stacks
(tests/render_fixtures.py). A test is skipped only when its tool's binary is absent (CI installs the
Debian packages listed in .ci/validators.txt). Every validator also gets a negative control: a broken
input it must reject, so none of these checks can pass vacuously.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from render_fixtures import API_KEY, SCENARIOS, Scenario, kube

from gpu_inference.gpu_vendor import vendor_for
from gpu_inference.render import alert_rule_tests, alert_rules, prometheus_config
from gpu_inference.render.grafana_proxy import placeholder_include
from gpu_inference.render.lb_healthcheck import settings as lb_settings
from gpu_inference.render.lb_healthcheck import upstream_include
from gpu_inference.render.nginx import FALLBACK_LISTEN, NginxPaths, auth_map, nginx_conf, tls_paths

pytestmark = pytest.mark.validators

SCENARIO_NAMES = sorted(SCENARIOS)


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install -y $(cat .ci/validators.txt))")
    return path


def run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=120, check=False)


def rendered(name: str) -> dict[str, str]:
    return SCENARIOS[name]().render()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def cloud_init_files(name: str) -> dict[str, str]:
    return {p: c for p, c in rendered(name).items() if p.endswith("cloud-init.yaml")}


# The LB's health checker is Python (tests/test_lb_healthcheck.py), not a shell script.
PYTHON_SHEBANG = "#!/usr/bin/env python3"


def embedded_scripts(cloud_config: str) -> dict[str, str]:
    """write_files entries that are shell scripts (the bootstrap and the health check)."""
    doc = yaml.safe_load(cloud_config)
    return {f["path"]: f["content"] for f in doc.get("write_files", [])
            if f["content"].startswith("#!") and not f["content"].startswith(PYTHON_SHEBANG)}  # fmt: skip



# ---------------------------------------------------------------------------------------------
# cloud-init
# ---------------------------------------------------------------------------------------------


def cloud_init_schema(path: Path) -> subprocess.CompletedProcess[str]:
    # Debian's cloud-init 22.4 validates with `schema --config-file`; newer releases accept the same.
    return run([tool("cloud-init"), "schema", "--config-file", str(path)])


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_cloud_init_schema(scenario: str, tmp_path: Path) -> None:
    files = cloud_init_files(scenario)
    assert files, "no cloud-init files rendered"
    for rel, text in files.items():
        result = cloud_init_schema(write(tmp_path / rel, text))
        assert result.returncode == 0, f"{rel}:\n{result.stdout}{result.stderr}"
        assert "Valid cloud-config" in result.stdout, result.stdout
        # Deprecated keys pass the schema but stop working in a later cloud-init.
        assert "deprecat" not in (result.stdout + result.stderr).lower().replace(
            "cloud config schema deprecations: \n", ""
        ), result.stderr


def test_cloud_init_schema_rejects_a_broken_config(tmp_path: Path) -> None:
    good = cloud_init_files("dev")["nodes/node-0/cloud-init.yaml"]
    doc = yaml.safe_load(good)
    doc["write_files"][0]["permisions"] = "0600"  # typo'd key
    doc["runcmd"] = "not-a-list"
    bad = write(tmp_path / "bad.yaml", "#cloud-config\n" + yaml.safe_dump(doc))
    result = cloud_init_schema(bad)
    assert result.returncode != 0
    assert "permisions" in result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------
# shellcheck
# ---------------------------------------------------------------------------------------------


def shellcheck(path: Path) -> subprocess.CompletedProcess[str]:
    # Every severity, style included: these scripts run unattended as root.
    return run([tool("shellcheck"), "--shell=bash", "--severity=style", str(path)])


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_shellcheck_rendered_scripts(scenario: str, tmp_path: Path) -> None:
    scripts = {rel: text for rel, text in rendered(scenario).items() if rel.endswith(".sh")}
    # The copies cloud-init writes must be the same scripts (and clean too).
    for rel, text in cloud_init_files(scenario).items():
        for path, content in embedded_scripts(text).items():
            scripts[f"{rel}:{path}"] = content
    assert any("vllm-healthcheck" in k for k in scripts), "the health check script was not rendered"
    assert len(scripts) >= 6
    for i, (rel, text) in enumerate(sorted(scripts.items())):
        result = shellcheck(write(tmp_path / f"script-{i}.sh", text))
        assert result.returncode == 0, f"{rel}:\n{result.stdout}{result.stderr}"


def test_shellcheck_rejects_a_sloppy_script(tmp_path: Path) -> None:
    result = shellcheck(write(tmp_path / "bad.sh", "#!/usr/bin/env bash\nf=$1\nrm -rf $f/*\n"))
    assert result.returncode != 0
    assert "SC2086" in result.stdout


# ---------------------------------------------------------------------------------------------
# nginx
# ---------------------------------------------------------------------------------------------


def nginx_prefix(scenario: Scenario, prefix: Path, conf_text: Callable[[NginxPaths], str] | None = None) -> Path:
    """nginx.conf + everything it references (auth include, TLS pair) inside a temporary prefix."""
    paths = NginxPaths.inside(prefix)
    (prefix / "logs").mkdir(parents=True)
    (prefix / "tmp").mkdir()
    stack = scenario.stack
    if stack.config.api_key is not None:
        write(prefix / "auth.conf", auth_map(API_KEY))
    domain = stack.config.load_balancer.tls_domain
    if domain:
        # The same self-signed placeholder the LB bootstrap creates before a real certificate exists.
        cert, key = tls_paths(domain, paths)
        Path(cert).parent.mkdir(parents=True)
        made = run([tool("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", f"/CN={domain}", "-keyout", key, "-out", cert])  # fmt: skip
        assert made.returncode == 0, made.stderr
    backends = [f"{a}:8000" for a in scenario.node_addresses]
    write(Path(paths.upstream_include), upstream_include(lb_settings(stack, backends, paths)))
    # The Grafana upstream's first-boot include (nginx's fallback until the monitoring host registers).
    write(Path(paths.grafana_include), placeholder_include(FALLBACK_LISTEN))
    text = (
        conf_text(paths)
        if conf_text
        else nginx_conf(stack, backends, listen="127.0.0.1:18080", prefix_paths=paths, tls_listen="127.0.0.1:18443",
                        upstream_include=True)
    )
    return write(prefix / "nginx.conf", text)


PATH_FIELDS = ("pid", "error_log", "access_log", "temp_dir", "auth_include", "tls_dir", "upstream_include",
               "grafana_include", "grafana_access_log")


def relocate(conf: str, src: NginxPaths, dst: NginxPaths, fields: tuple[str, ...] = PATH_FIELDS) -> str:
    """An nginx.conf rendered with ``src`` paths, rewritten as if rendered with ``dst`` (paths only)."""
    if dst.user is None and src.user:
        conf = conf.replace(f"user {src.user};\n", "")
    for field in fields:
        conf = conf.replace(getattr(src, field), getattr(dst, field))
    return conf


def nginx_test(conf: Path, prefix: Path) -> subprocess.CompletedProcess[str]:
    return run([tool("nginx"), "-t", "-c", str(conf), "-p", str(prefix)])


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_nginx_accepts_the_rendered_config(scenario: str, tmp_path: Path) -> None:
    conf = nginx_prefix(SCENARIOS[scenario](), tmp_path)
    result = nginx_test(conf, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    assert "[warn]" not in result.stderr and "[emerg]" not in result.stderr, result.stderr


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_nginx_rendered_config_differs_from_the_tested_one_only_in_paths(scenario: str) -> None:
    """What the LB gets is the tested config with production paths: nothing else may differ."""
    s = SCENARIOS[scenario]()
    production = rendered(scenario)["loadbalancer/nginx.conf"]
    tmp = NginxPaths(pid="P", error_log="E", access_log="A", temp_dir="T", auth_include="I", tls_dir="S",
                     upstream_include="U", grafana_include="G", grafana_access_log="L",
                     user=None)  # fmt: skip
    tested = nginx_conf(s.stack, [f"{a}:8000" for a in s.node_addresses], prefix_paths=tmp, upstream_include=True)
    assert relocate(production, NginxPaths(), tmp) == tested


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged user")
def test_nginx_config_also_checks_as_an_unprivileged_user() -> None:
    # pytest's tmp_path lives under a 0700 directory of root: use a world-traversable one instead.
    with tempfile.TemporaryDirectory(prefix="nginx-nonroot-") as tmp:
        prefix = Path(tmp)
        prefix.chmod(0o755)
        conf = nginx_prefix(SCENARIOS["prod"](), prefix)
        for root, dirs, files in os.walk(prefix):
            for name in [*dirs, *files, "."]:
                shutil.chown(Path(root) / name, "nobody")
        result = run([tool("runuser"), "-u", "nobody", "--", tool("nginx"), "-t", "-c", str(conf), "-p", str(prefix)])
        assert result.returncode == 0, result.stderr
        assert "test is successful" in result.stderr
        assert "[emerg]" not in result.stderr, result.stderr


@pytest.mark.parametrize("key", ["AbC-def_123", "Mixed.Case$key*{x};'|(y)+?^["])
def test_nginx_edge_key_check_is_exact_and_case_sensitive(key: str, tmp_path: Path) -> None:
    """The auth include on real nginx: only `Bearer <key>` byte for byte passes. (A plain-string map key
    matched case-insensitively: "Bearer abc-def_123" passed for "AbC-def_123".)"""
    import socket
    import time
    import urllib.error
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "logs").mkdir()
    write(tmp_path / "auth.conf", auth_map(key))
    conf = write(tmp_path / "nginx.conf", f"""
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/logs/error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    include {tmp_path}/auth.conf;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            if ($gpu_inference_authorized = 0) {{ return 401; }}
            return 204;
        }}
    }}
}}
""")
    started = run([tool("nginx"), "-c", str(conf), "-p", str(tmp_path)])
    assert started.returncode == 0, started.stderr

    def status(authorization: str | None) -> int:
        req = urllib.request.Request(f"http://127.0.0.1:{port}/")
        if authorization is not None:
            req.add_header("Authorization", authorization)
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as err:
            return int(err.code)

    try:
        for _ in range(100):
            try:
                status(None)
                break
            except OSError:
                time.sleep(0.05)
        assert status(f"Bearer {key}") == 204
        for wrong in (f"Bearer {key.lower()}", f"Bearer {key.upper()}", f"bearer {key}", f"Bearer {key}x",
                      f"xBearer {key}", f"Bearer {key[:-1]}", "Bearer ", None):
            assert status(wrong) == 401, wrong
    finally:
        run([tool("nginx"), "-c", str(conf), "-p", str(tmp_path), "-s", "stop"])


def test_nginx_rejects_a_broken_config(tmp_path: Path) -> None:
    s = SCENARIOS["dev"]()

    def broken(paths: NginxPaths) -> str:
        text = nginx_conf(s.stack, ["10.0.0.2:8000"], listen="127.0.0.1:18080", prefix_paths=paths)
        return text.replace("least_conn;", "least_conn 3;")

    conf = nginx_prefix(s, tmp_path, broken)
    result = nginx_test(conf, tmp_path)
    assert result.returncode != 0
    assert "least_conn" in result.stderr


# nginx on Kubernetes: `server <name> resolve` needs nginx >= 1.27.3 (the pinned image has it). Debian's
# nginx (1.22 in bookworm) rejects the parameter, so there everything *but* `resolve` is checked: the same
# config with the parameter removed and the pod names pointed at loopback addresses.

_POD_NAME = re.compile(r"vllm-(\d+)\.vllm-pods\.[a-z0-9-]+\.svc\.cluster\.local")


def _nginx_version() -> tuple[int, ...]:
    out = run([tool("nginx"), "-v"]).stderr
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out)
    assert match, out
    return tuple(int(g) for g in match.groups())


def kube_nginx_prefix(prefix: Path, strip_resolve: bool) -> Path:
    from gpu_inference.render.kubernetes import vllm_pod_targets

    stack = kube()
    paths = NginxPaths.inside(prefix)
    (prefix / "logs").mkdir(parents=True)
    (prefix / "tmp").mkdir()
    write(prefix / "auth.conf", auth_map(API_KEY))
    # A resolver nginx can parse offline; the production file names kube-dns, resolved at startup in the pod.
    text = nginx_conf(stack, list(vllm_pod_targets(stack).values()), listen="127.0.0.1:18080", prefix_paths=paths,
                      resolver="127.0.0.1")
    if strip_resolve:
        text = _POD_NAME.sub(lambda m: f"127.0.0.{int(m.group(1)) + 1}", text.replace(" resolve ", " "))
    return write(prefix / "nginx.conf", text)


def test_nginx_accepts_the_kubernetes_config(tmp_path: Path) -> None:
    strip = _nginx_version() < (1, 27, 3)
    conf = kube_nginx_prefix(tmp_path, strip_resolve=strip)
    text = conf.read_text()
    assert ("resolve max_fails" in text) is not strip
    result = nginx_test(conf, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    assert "[warn]" not in result.stderr and "[emerg]" not in result.stderr, result.stderr


def test_old_nginx_rejects_resolve_which_is_why_the_image_is_pinned(tmp_path: Path) -> None:
    """Negative control for the stripped check above: an nginx older than 1.27.3 refuses `resolve`."""
    if _nginx_version() >= (1, 27, 3):
        pytest.skip("this nginx supports `resolve`: the full config is checked above")
    conf = kube_nginx_prefix(tmp_path, strip_resolve=False)
    result = nginx_test(conf, tmp_path)
    assert result.returncode != 0 and "resolve" in result.stderr, result.stderr


def test_kubernetes_nginx_conf_differs_from_the_tested_one_only_in_paths_and_names() -> None:
    from gpu_inference.render.kubernetes import KUBE_DNS, NGINX_PATHS, kubernetes_nginx_conf, vllm_pod_targets

    stack = kube()
    production = kubernetes_nginx_conf(stack)
    tmp = NginxPaths(pid="P", error_log="E", access_log="A", temp_dir="T", auth_include="I", tls_dir="S",
                     mime_types="M", user=None)  # fmt: skip
    tested = nginx_conf(stack, list(vllm_pod_targets(stack).values()), prefix_paths=tmp, resolver=KUBE_DNS)
    fields = ("pid", "error_log", "access_log", "temp_dir", "auth_include", "mime_types")
    assert relocate(production, NGINX_PATHS, tmp, fields) == tested


def test_promtool_checks_the_kubernetes_prometheus_config(tmp_path: Path) -> None:
    from gpu_inference.render.kubernetes import PROMETHEUS_CONF_DIR, PROMETHEUS_RULES_FILE, render_kubernetes

    files = render_kubernetes(kube())
    rules = write(tmp_path / "rules.yml", files["monitoring/rules/gpu-inference.yml"])
    text = files["monitoring/prometheus.yml"]
    assert f"{PROMETHEUS_CONF_DIR}/{PROMETHEUS_RULES_FILE}" in text
    conf = write(tmp_path / "prometheus.yml", text.replace(f"{PROMETHEUS_CONF_DIR}/{PROMETHEUS_RULES_FILE}", str(rules)))
    result = run([tool("promtool"), "check", "config", str(conf)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------
# promtool
# ---------------------------------------------------------------------------------------------


def monitoring_dir(scenario: str, tmp_path: Path) -> Path:
    """prometheus.yml (rule_files pointing into tmp_path), the rules and their tests side by side."""
    files = rendered(scenario)
    s = SCENARIOS[scenario]()
    rules = write(tmp_path / "rules" / "gpu-inference.yml", files["monitoring/rules/gpu-inference.yml"])
    write(tmp_path / "rules" / "gpu-inference.test.yml", files["monitoring/rules/gpu-inference.test.yml"])
    production = yaml.safe_load(files["monitoring/prometheus.yml"])
    jobs = {j["job_name"]: j for j in production["scrape_configs"]}
    nginx = {sc["labels"]["node"]: sc["targets"][0] for sc in jobs["nginx"]["static_configs"]} if "nginx" in jobs else None
    prom = yaml.safe_load(prometheus_config(s.stack, *_targets(production), rule_files=[str(rules)], nginx_targets=nginx))
    # Apart from where the rules live, the checked config is the rendered one.
    assert {**production, "rule_files": prom["rule_files"]} == prom
    write(tmp_path / "prometheus.yml", yaml.safe_dump(prom))
    return tmp_path


def _targets(doc: dict) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
    named = [
        {sc["labels"]["node"]: sc["targets"][0] for sc in jobs[job]["static_configs"]}
        for job in ("vllm", "node", *(j for j in jobs if j not in ("vllm", "node", "prometheus")))
    ]
    return named[0], named[1], named[2]


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_promtool_check_config(scenario: str, tmp_path: Path) -> None:
    d = monitoring_dir(scenario, tmp_path)
    result = run([tool("promtool"), "check", "config", str(d / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_promtool_check_rules(scenario: str, tmp_path: Path) -> None:
    d = monitoring_dir(scenario, tmp_path)
    result = run([tool("promtool"), "check", "rules", str(d / "rules" / "gpu-inference.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"SUCCESS: \d+ rules found", result.stdout), result.stdout


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_promtool_test_rules(scenario: str, tmp_path: Path) -> None:
    d = monitoring_dir(scenario, tmp_path)
    result = run([tool("promtool"), "test", "rules", "gpu-inference.test.yml"], cwd=d / "rules")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_tests_fail_when_a_threshold_drifts(tmp_path: Path) -> None:
    """The rule tests pin each threshold: rules rendered from other thresholds must fail them."""
    s = SCENARIOS["dev"]()
    mon = s.stack.config.monitoring
    drifted_cfg = s.stack.config.model_copy(
        update={"monitoring": mon.model_copy(update={"queue_depth_threshold": mon.queue_depth_threshold * 3})}
    )
    drifted = type(s.stack)(
        name=s.stack.name, config=drifted_cfg, offering=s.stack.offering, gpu=s.stack.gpu,
        model=s.stack.model, catalog=s.stack.catalog,
    )  # fmt: skip
    write(tmp_path / "gpu-inference.yml", alert_rules(drifted))
    write(tmp_path / "gpu-inference.test.yml", alert_rule_tests(s.stack))
    result = run([tool("promtool"), "test", "rules", "gpu-inference.test.yml"], cwd=tmp_path)
    assert result.returncode != 0
    assert "VllmQueueDepthHigh" in result.stdout + result.stderr


@pytest.mark.parametrize(("metric", "alert"), [
    ("amd_gpu_junction_temperature", "GpuTemperatureHigh"),
    ("amd_gpu_used_vram", "GpuMemoryNearlyFull"),
    ("amd_gpu_ecc_uncorrect_total", "GpuEccUncorrectable"),
])  # fmt: skip
def test_amd_rule_tests_fail_when_a_rule_reads_another_metric(metric: str, alert: str, tmp_path: Path) -> None:
    """The AMD cases feed the exporter's metric names: a rule on any other name (DCGM's, or a renamed field)
    fails them, so the AMD alerts are not blind by construction."""
    s = SCENARIOS["amd"]()
    write(tmp_path / "gpu-inference.yml", alert_rules(s.stack).replace(metric, metric + "_renamed"))
    write(tmp_path / "gpu-inference.test.yml", alert_rule_tests(s.stack))
    result = run([tool("promtool"), "test", "rules", "gpu-inference.test.yml"], cwd=tmp_path)
    assert result.returncode != 0
    assert alert in result.stdout + result.stderr


def test_promtool_rejects_broken_rules(tmp_path: Path) -> None:
    text = alert_rules(SCENARIOS["dev"]().stack).replace("vllm:num_requests_waiting)", "vllm:num_requests_waiting", 1)
    path = write(tmp_path / "bad.yml", text)
    result = run([tool("promtool"), "check", "rules", str(path)])
    assert result.returncode != 0


# ---------------------------------------------------------------------------------------------
# systemd-analyze verify
# ---------------------------------------------------------------------------------------------

SYSTEM_UNIT_DIRS = [Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")]


def systemd_root(tmp_path: Path, units: dict[str, str], scripts: dict[str, str]) -> Path:
    """A root for `systemd-analyze verify --root`: the distribution's units, our units, and the programs
    they run. docker is a stub (it is not installed here, and verify only checks that it is executable);
    everything else our units execute is the real rendered file.
    """
    tool("systemd-analyze")  # skip before building anything when the tool is absent
    root = tmp_path / "root"
    system_dir = next((d for d in SYSTEM_UNIT_DIRS if (d / "multi-user.target").exists()), None)
    # systemd-analyze comes with systemd, and so do these units: their absence is a broken install.
    assert system_dir is not None, f"no multi-user.target in {SYSTEM_UNIT_DIRS}"
    shutil.copytree(system_dir, root / "usr/lib/systemd/system", symlinks=True)
    bin_dir = root / "usr/bin"
    bin_dir.mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")
    for name in ("docker", "sh"):
        stub = write(bin_dir / name, "#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    # docker.service is what our units require; the stub stands in for the docker.io package's unit.
    write(root / "etc/systemd/system/docker.service", "[Unit]\nDescription=stub\n[Service]\nExecStart=/usr/bin/docker\n")
    for path, text in scripts.items():
        script = write(root / path.lstrip("/"), text)
        script.chmod(0o755)
    for name, text in units.items():
        write(root / "etc/systemd/system" / name, text)
    return root


def systemd_verify(root: Path, names: list[str]) -> subprocess.CompletedProcess[str]:
    return run([tool("systemd-analyze"), "verify", f"--root={root}", *names])


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_systemd_analyze_verify_units(scenario: str, tmp_path: Path) -> None:
    files = rendered(scenario)
    units = {Path(rel).name: text for rel, text in files.items() if rel.startswith("nodes/node-0/")
             and rel.endswith((".service", ".timer"))}  # fmt: skip
    exporter = vendor_for(SCENARIOS[scenario]().stack).exporter.unit  # dcgm-exporter or amd-metrics-exporter
    assert set(units) >= {"vllm.service", "vllm-healthcheck.service", "vllm-healthcheck.timer",
                          exporter, "node-exporter.service"}  # fmt: skip
    scripts = {"/usr/local/bin/vllm-healthcheck": files["nodes/node-0/vllm-healthcheck.sh"]}
    root = systemd_root(tmp_path, units, scripts)
    result = systemd_verify(root, sorted(units))
    assert result.returncode == 0, result.stderr
    # verify exits 0 on unknown keys and sections (it only warns): any output at all is a finding.
    assert result.stderr.strip() == "", result.stderr


def test_systemd_analyze_catches_a_broken_unit(tmp_path: Path) -> None:
    unit = rendered("dev")["nodes/node-0/vllm.service"].replace("Restart=always", "Restart=always\nRestartSecs=10")
    root = systemd_root(tmp_path, {"vllm.service": unit}, {})
    result = systemd_verify(root, ["vllm.service"])
    assert "RestartSecs" in result.stderr


def test_systemd_analyze_catches_a_missing_program(tmp_path: Path) -> None:
    timer_and_service = rendered("dev")
    units = {
        "vllm-healthcheck.service": timer_and_service["nodes/node-0/vllm-healthcheck.service"],
        "vllm-healthcheck.timer": timer_and_service["nodes/node-0/vllm-healthcheck.timer"],
    }
    root = systemd_root(tmp_path, units, {})  # the health check script is not installed
    result = systemd_verify(root, sorted(units))
    assert result.returncode != 0
    assert "vllm-healthcheck" in result.stderr


PROMETHEUS_STUB = ("[Unit]\nDescription=stub of Debian's prometheus.service\n[Service]\nUser=prometheus\n"
                   "EnvironmentFile=-/etc/default/prometheus\nExecStart=/usr/bin/prometheus $ARGS\n"
                   "[Install]\nWantedBy=multi-user.target\n")
PROMETHEUS_DROPIN = "prometheus.service.d/gpu-inference-data-volume.conf"


def verify_prometheus_dropin(tmp_path: Path, dropin: str) -> subprocess.CompletedProcess[str]:
    """systemd-analyze verify of a stand-in for the Debian package's prometheus.service plus ``dropin``."""
    units = {"prometheus.service": PROMETHEUS_STUB, PROMETHEUS_DROPIN: dropin}
    root = systemd_root(tmp_path, units, {"/usr/bin/prometheus": "#!/bin/sh\nexit 0\n"})
    return systemd_verify(root, ["prometheus.service"])


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_systemd_analyze_verify_prometheus_data_volume_dropin(scenario: str, tmp_path: Path) -> None:
    dropin = rendered(scenario)["monitoring/prometheus-data-volume.conf"]
    result = verify_prometheus_dropin(tmp_path / "ok", dropin)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr
    result = verify_prometheus_dropin(tmp_path / "broken", dropin.replace("RequiresMountsFor", "RequiresMountFor"))
    assert "RequiresMountFor" in result.stderr
