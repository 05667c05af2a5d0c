"""What `python -m gpu_inference preview dev|prod` writes passes the real validators, file by file.

test_validators.py checks the renderers on fixed fixtures; this checks the files the main job writes
for the stacks a user actually edits (Pulumi.dev.yaml, Pulumi.prod.yaml). Every written file must be
claimed by a validator, so a new kind of machine file cannot slip through unchecked.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from test_grafana import check_dashboard_json, check_provisioning, verify_grafana_dropin
from test_nginx_metrics import check_mtail_program
from test_validators import nginx_test, relocate, run, systemd_root, systemd_verify, tool, verify_prometheus_dropin, write

from gpu_inference.constants import GRAFANA_REGISTRAR_PORT
from gpu_inference.preview_runner import run_preview
from gpu_inference.render.acme import CERT_OBTAIN_PATH, placeholder_certificate
from gpu_inference.render.grafana_proxy import REGISTRAR_PATH
from gpu_inference.render.grafana_registrar_agent import Settings as RegistrarSettings
from gpu_inference.render.lb_healthcheck import LB_HEALTHCHECK_PATH
from gpu_inference.render.lb_healthcheck_agent import Settings
from gpu_inference.render.nginx import NginxPaths, auth_map

pytestmark = pytest.mark.validators

# The AMD test stack too: its nodes get the ROCm path (gpu_inference/gpu_vendor.py).
STACKS = ["dev", "prod", str(Path(__file__).parent / "stacks" / "amd-mi300x.yaml")]


@pytest.fixture(scope="module", params=STACKS)
def written(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, list[Path]]:
    out = tmp_path_factory.mktemp(f"preview-{Path(request.param).stem}")
    report = run_preview(request.param, out_dir=out)
    assert report.exit_code == 0, [p for p in report.policies if not p["passed"]]
    files = [Path(f) for f in report.files]
    assert files, "the preview wrote no machine files"
    return request.param, out, files


def _validate_cloud_init(path: Path) -> None:
    result = run([tool("cloud-init"), "schema", "--config-file", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def _validate_shell(path: Path) -> None:
    result = run([tool("shellcheck"), "--severity=style", str(path)])
    assert result.returncode == 0, result.stdout


def _validate_nginx(path: Path, tmp: Path) -> None:
    # The file names production paths (/etc/nginx, /var/log/nginx, /run): point only those into a
    # temporary prefix so nginx -t can run here; test_validators proves nothing else differs.
    text = relocate(path.read_text(), NginxPaths(), NginxPaths.inside(tmp))
    for sub in ("logs", "tmp"):
        (tmp / sub).mkdir(parents=True, exist_ok=True)
    write(tmp / "auth.conf", auth_map("PLACEHOLDER-api-key"))
    # The node list the preview wrote beside it (the LB's first-boot upstream include).
    write(tmp / "upstream.conf", (path.parent / "gpu-inference-upstream.conf").read_text())
    if (grafana := path.parent / "gpu-inference-grafana.conf").exists():  # the Grafana upstream's include
        write(tmp / "grafana.conf", grafana.read_text())
    # Listen on a loopback port instead of :80 so the check needs no privileged, free port 80.
    text = text.replace("listen 0.0.0.0:80 ", "listen 127.0.0.1:18081 ").replace("listen 0.0.0.0:443 ", "listen 127.0.0.1:18444 ")
    # TLS: the self-signed placeholder the LB bootstrap creates (its own lines) before certbot has run.
    for domain in re.findall(r"ssl_certificate \S+/tls/([^/\s]+)/fullchain\.pem;", text):
        made = run(["bash", "-c", 'set -euo pipefail; log() { :; }\n'
                    + placeholder_certificate(domain, NginxPaths.inside(tmp), 1)])
        assert made.returncode == 0, made.stderr
    conf = write(tmp / "nginx.conf", text)
    result = nginx_test(conf, tmp)
    assert result.returncode == 0, result.stderr
    assert "[warn]" not in result.stderr and "[emerg]" not in result.stderr, result.stderr


def _validate_prometheus(path: Path, rules_dir: Path, tmp: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    # Only where the rules live differs on this machine (the host has them under /etc/prometheus/rules).
    doc["rule_files"] = [str(rules_dir / Path(p).name) for p in doc.get("rule_files", [])]
    conf = write(tmp / "prometheus.yml", yaml.safe_dump(doc))
    result = run([tool("promtool"), "check", "config", str(conf)])
    assert result.returncode == 0, result.stdout + result.stderr


def _validate_amd_exporter_config(path: Path) -> None:
    # AMD's exporter reads /etc/metrics/config.json (ROCm/device-metrics-exporter example/config.json): JSON with
    # ServerPort and CommonConfig.MetricsFieldPrefix, a Prometheus-name prefix (else it falls back to none).
    import json
    import re

    doc = json.loads(path.read_text())
    assert set(doc) <= {"ServerPort", "CommonConfig", "GPUConfig"}, doc
    assert isinstance(doc["ServerPort"], int) and 0 < doc["ServerPort"] < 65536
    assert re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", doc["CommonConfig"]["MetricsFieldPrefix"])


def test_every_file_the_preview_writes_passes_its_validator(
    written: tuple[str, Path, list[Path]], tmp_path: Path
) -> None:
    stack, out, files = written
    checked: set[Path] = set()
    for path in files:
        if path.name == "cloud-init.yaml":
            _validate_cloud_init(path)
        elif path.suffix == ".sh":
            _validate_shell(path)
        elif path.name == "nginx.conf":
            _validate_nginx(path, tmp_path / "nginx")
            # nginx -t read them as its includes
            checked.update(p for p in (path.parent / "gpu-inference-upstream.conf",
                                       path.parent / "gpu-inference-grafana.conf") if p.exists())  # fmt: skip
        elif path.name in {"gpu-inference-upstream.conf", "gpu-inference-grafana.conf"}:
            continue
        elif path.name in {"lb-healthcheck.py", "grafana-registrar.py"}:
            result = run([sys.executable, "-m", "py_compile", str(path)])
            assert result.returncode == 0, result.stderr
        elif path.name == "lb-healthcheck.json":
            settings = Settings.from_json(json.loads(path.read_text()))
            assert settings.include_path == NginxPaths().upstream_include
        elif path.name == "grafana-registrar.json":
            registrar = RegistrarSettings.from_json(json.loads(path.read_text()))
            assert registrar.include_path == NginxPaths().grafana_include
            assert registrar.listen_port == GRAFANA_REGISTRAR_PORT
        elif path.name == "prometheus.yml":
            _validate_prometheus(path, out / "monitoring" / "rules", tmp_path / "prom")
        elif path.name.endswith(".test.yml"):
            result = run([tool("promtool"), "test", "rules", path.name], cwd=path.parent)
            assert result.returncode == 0, result.stdout + result.stderr
        elif path.parent.name == "rules" and path.suffix == ".yml":
            result = run([tool("promtool"), "check", "rules", str(path)])
            assert result.returncode == 0, result.stdout + result.stderr
        elif path.name == "prometheus-data-volume.conf":
            result = verify_prometheus_dropin(tmp_path / "dropin", path.read_text())
            assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
        elif path.parent.name == "dashboards" and path.suffix == ".json":
            check_dashboard_json(path.read_text(), tmp_path)
        elif path.parent.parent.name == "grafana" and path.suffix == ".yaml":
            check_provisioning(path)
        elif path.parent.name == "grafana-server.service.d":
            result = verify_grafana_dropin(tmp_path / "grafana-dropin", path.read_text())
            assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
        elif path.suffix == ".mtail":
            check_mtail_program(path.read_text(), tmp_path / "mtail")
        elif path.name == "amd-metrics-exporter-config.json":
            _validate_amd_exporter_config(path)
        elif path.suffix in {".service", ".timer"}:
            continue  # verified together per node below
        else:
            pytest.fail(f"{stack}: no validator claims {path.relative_to(out)}")
        checked.add(path)

    node_dirs = sorted({p.parent for p in files if p.suffix in {".service", ".timer"}})
    assert node_dirs, f"{stack}: the preview wrote no systemd units"
    for node_dir in node_dirs:
        units = {p.name: p.read_text() for p in node_dir.iterdir() if p.suffix in {".service", ".timer"}}
        # The programs the units run, as rendered beside them (the LB's certificate unit runs cert-obtain,
        # its health checker lb-healthcheck.py under python3).
        programs = {"/usr/local/bin/vllm-healthcheck": "vllm-healthcheck.sh", CERT_OBTAIN_PATH: "cert-obtain.sh",
                    LB_HEALTHCHECK_PATH: "lb-healthcheck.py", REGISTRAR_PATH: "grafana-registrar.py"}  # fmt: skip
        scripts = {path: (node_dir / name).read_text() for path, name in programs.items() if (node_dir / name).exists()}
        if node_dir.name == "loadbalancer":
            # Packaged binaries the LB's units run: the health checker's interpreter, mtail (Nginx metrics).
            scripts["/usr/bin/python3"] = "#!/bin/sh\nexit 0\n"
            scripts["/usr/bin/mtail"] = "#!/bin/sh\nexit 0\n"
        if node_dir.name == "monitoring":
            scripts["/usr/bin/curl"] = "#!/bin/sh\nexit 0\n"  # the Grafana registration's client (a package)
        root = systemd_root(tmp_path / node_dir.name, units, scripts)
        result = systemd_verify(root, sorted(units))
        assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
        checked.update(p for p in node_dir.iterdir() if p.suffix in {".service", ".timer"})
    assert checked == set(files)
