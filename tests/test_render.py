"""Unit tests of the renderers: what each file must say, and what it must never say (secrets)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from render_fixtures import API_KEY, HF_TOKEN, SCENARIOS, Scenario, amd, dev, kube, prod

from gpu_inference.clouds import cloud_for
from gpu_inference.config import StackConfig
from gpu_inference.render import (
    alert_rule_tests,
    alert_rules,
    gpu_node_cloud_init,
    healthcheck_script,
    healthcheck_units,
    load_balancer_cloud_init,
    monitoring_cloud_init,
    nginx_conf,
    prometheus_config,
    render_all,
    vllm_args,
    vllm_env_file,
    vllm_unit,
)
from gpu_inference.render._common import systemd_quote
from gpu_inference.render.healthcheck import BASE_GRACE_SECONDS, MAX_CONSECUTIVE_FAILURES, grace_seconds
from gpu_inference.render.nginx import auth_map
from gpu_inference.render.prometheus import LOADING_CASE_PREFIX, alerts, duration_seconds
from gpu_inference.secrets import SecretValue
from gpu_inference.stack import ResolvedStack, resolve_stack

ROOT = Path(__file__).resolve().parent.parent


def restack(base: ResolvedStack, **changes: object) -> ResolvedStack:
    """The same stack with some config fields changed (validated again)."""
    data = base.config.model_dump(by_alias=False)
    data.update({"api_key": base.config.api_key, "hf_token": base.config.hf_token}, **changes)
    return resolve_stack(StackConfig.model_validate(data), name=base.name)


def flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


# ---------------------------------------------------------------------------------------------
# vLLM
# ---------------------------------------------------------------------------------------------


def test_vllm_args_carry_every_config_value() -> None:
    s = prod().stack
    args = vllm_args(s)
    cfg = s.config
    assert flag(args, "--model") == "meta-llama/Llama-3.3-70B-Instruct"
    assert flag(args, "--served-model-name") == "llama-3.3-70b"
    assert flag(args, "--dtype") == "auto"
    assert flag(args, "--quantization") == "fp8"
    assert flag(args, "--max-model-len") == str(cfg.max_model_len)
    assert flag(args, "--max-num-seqs") == str(cfg.max_num_seqs)
    assert flag(args, "--gpu-memory-utilization") == "0.92"
    assert flag(args, "--tensor-parallel-size") == "4" == str(s.tensor_parallel_size)
    assert flag(args, "--kv-cache-dtype") == "fp8"
    assert flag(args, "--host") == "0.0.0.0"
    assert flag(args, "--port") == "8000"


def test_vllm_args_default_served_name_is_the_model() -> None:
    args = vllm_args(dev().stack)
    assert flag(args, "--served-model-name") == "Qwen/Qwen3-8B"
    assert flag(args, "--tensor-parallel-size") == "1"


@pytest.mark.parametrize(("quantization", "expected"), [
    (None, None), ("none", None), ("int8", None), ("int4", None),
    # awq/gptq on bf16 weights are refused by the can-start policy; the flag alone would crash vLLM.
    ("fp8", "fp8"), ("awq", None), ("gptq", None), ("mxfp4", "mxfp4"),
])  # fmt: skip
def test_quantization_flag(quantization: str | None, expected: str | None) -> None:
    args = vllm_args(restack(dev().stack, quantization=quantization))
    assert flag(args, "--quantization") == expected


@pytest.mark.parametrize(("model", "quantization"), [
    ("Qwen/Qwen2.5-7B-Instruct-AWQ", "awq"), ("Qwen/Qwen2.5-7B-Instruct-AWQ", None),
    ("Qwen/Qwen1.5-7B-Chat-GPTQ-Int4", "gptq"), ("RedHatAI/Qwen2.5-7B-Instruct-FP8-dynamic", "fp8"),
])  # fmt: skip
def test_a_pre_quantized_checkpoint_gets_no_quantization_flag(model: str, quantization: str | None) -> None:
    """vLLM reads the checkpoint's quantization_config and picks awq_marlin / gptq_marlin itself; an explicit
    --quantization awq would force the slow kernel (and fp8 on a compressed-tensors checkpoint is refused)."""
    args = vllm_args(restack(dev().stack, model=model, quantization=quantization))
    assert "--quantization" not in args


def test_a_pre_quantized_repo_named_by_model_repo_gets_no_flag() -> None:
    args = vllm_args(restack(dev().stack, model_repo="Qwen/Qwen3-8B-AWQ", quantization="awq"))
    assert flag(args, "--model") == "Qwen/Qwen3-8B-AWQ"
    assert "--quantization" not in args


def test_no_secret_in_args_or_unit() -> None:
    s = prod()
    text = " ".join(vllm_args(s.stack)) + vllm_unit(s.stack)
    assert "--api-key" not in text
    assert API_KEY not in text and HF_TOKEN not in text


def test_vllm_unit_runs_the_pinned_container() -> None:
    unit = vllm_unit(dev().stack)
    for needle in [
        "Restart=always", "RestartSec=10", "Requires=docker.service", "After=docker.service",
        "ExecStartPre=-/usr/bin/docker stop vllm", "ExecStartPre=-/usr/bin/docker rm vllm",
        "--ipc=host", "--gpus all", "--env-file /etc/vllm/vllm.env",
        "-v /opt/models:/root/.cache/huggingface", "-p 127.0.0.1:8000:8000",
        "-p ${GPU_INFERENCE_PRIVATE_IP}:8000:8000", "vllm/vllm-openai:v0.19.0",
        "WantedBy=multi-user.target",
    ]:  # fmt: skip
        assert needle in unit, needle
    timeout = int(re.search(r"TimeoutStartSec=(\d+)", unit).group(1))  # type: ignore[union-attr]
    assert timeout >= 900, "the image pull of ~10 GB needs minutes"


@pytest.mark.parametrize("unit_file", ["vllm.service", "dcgm-exporter.service", "node-exporter.service"])
def test_container_logs_are_bounded(unit_file: str) -> None:
    """Docker's default json-file log never rotates; vLLM logs a line per request and per scrape."""
    unit = dev().render()[f"nodes/node-0/{unit_file}"]
    run_args = unit.split("ExecStart=/usr/bin/docker run", 1)[1].split("ExecStop=", 1)[0]
    assert re.search(r"--log-driver json-file\b", run_args), run_args
    assert re.search(r"--log-opt max-size=\d+m\b", run_args), run_args
    assert re.search(r"--log-opt max-file=\d+\b", run_args), run_args


def test_vllm_unit_uses_a_pinned_override_image() -> None:
    unit = vllm_unit(restack(dev().stack, vllm_image="vllm/vllm-openai:v0.11.0"))
    assert "vllm/vllm-openai:v0.11.0" in unit and "v0.19.0" not in unit


def test_env_file() -> None:
    text = vllm_env_file("k-1", "hf_2")
    assert "VLLM_API_KEY=k-1\n" in text and "HF_TOKEN=hf_2\n" in text
    assert "VLLM_API_KEY" not in vllm_env_file(None, None)
    with pytest.raises(ValueError):
        vllm_env_file("a\nEVIL=1", None)
    with pytest.raises(ValueError):
        vllm_env_file("", None)


def test_systemd_quote_escapes_specifiers() -> None:
    assert systemd_quote("a%b") == "a%%b"
    assert systemd_quote("my model") == '"my model"'
    assert systemd_quote("$HOME") == '"$$HOME"'


# ---------------------------------------------------------------------------------------------
# Health check: the script's behaviour, with systemctl and curl stubbed
# ---------------------------------------------------------------------------------------------


def test_grace_period_grows_with_the_weights() -> None:
    small, big = grace_seconds(dev().stack), grace_seconds(prod().stack)
    assert BASE_GRACE_SECONDS <= small < big
    assert small % 60 == 0 and big % 60 == 0


def test_healthcheck_units() -> None:
    service, timer = healthcheck_units(dev().stack)
    assert "Type=oneshot" in service and "ExecStart=/usr/local/bin/vllm-healthcheck" in service
    assert "OnUnitActiveSec=1min" in timer and "Unit=vllm-healthcheck.service" in timer
    assert "WantedBy=timers.target" in timer


@pytest.fixture
def healthcheck(tmp_path: Path):
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    script = tmp_path / "vllm-healthcheck"
    script.write_text(healthcheck_script(dev().stack))
    script.chmod(0o755)
    stubs = tmp_path / "bin"
    stubs.mkdir()
    log = tmp_path / "systemctl.log"
    (stubs / "systemctl").write_text(f"""#!/usr/bin/env bash
echo "$*" >> {log}
case "$1" in
  is-active) echo "$FAKE_STATE"; [[ "$FAKE_STATE" == active ]] ;;
  show) echo "$FAKE_ACTIVE_SINCE_US" ;;
  restart) exit 0 ;;
esac
""")
    (stubs / "curl").write_text('#!/usr/bin/env bash\nprintf "%s" "$FAKE_HTTP_CODE"\n[[ "$FAKE_HTTP_CODE" != 000 ]]\n')
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()

    def run(*, state_name: str = "active", up_seconds: int, code: str) -> tuple[int, str, list[str]]:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        # Negative on a freshly booted machine; the script only subtracts, so that still fakes the age.
        since_us = int((uptime - up_seconds) * 1_000_000)
        env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "STATE_DIRECTORY": str(state),
               "FAKE_STATE": state_name, "FAKE_ACTIVE_SINCE_US": str(since_us), "FAKE_HTTP_CODE": code}  # fmt: skip
        log.write_text("")
        done = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=30, check=False)
        return done.returncode, done.stdout, [line for line in log.read_text().splitlines() if line.startswith("restart")]

    return run


def test_healthcheck_restarts_only_after_consecutive_failures_past_the_grace_period(healthcheck) -> None:
    run = healthcheck
    grace = grace_seconds(dev().stack)
    # Within the grace period a dead /health is expected (the model is loading).
    assert run(up_seconds=60, code="000")[0] == 0
    assert run(up_seconds=60, code="000")[2] == []
    # Still activating: skipped.
    assert run(state_name="activating", up_seconds=grace + 60, code="000")[0] == 0
    # Healthy.
    assert run(up_seconds=grace + 60, code="200") == (0, "", [])
    # Failures count up; the Nth restarts vllm.service and resets the count.
    for _ in range(MAX_CONSECUTIVE_FAILURES - 1):
        rc, out, restarts = run(up_seconds=grace + 60, code="503")
        assert rc == 1 and restarts == [], out
    rc, out, restarts = run(up_seconds=grace + 60, code="503")
    assert rc == 1 and restarts == ["restart --no-block vllm.service"], out
    # A success in between resets the count.
    run(up_seconds=grace + 60, code="000")
    run(up_seconds=grace + 60, code="200")
    for _ in range(MAX_CONSECUTIVE_FAILURES - 1):
        assert run(up_seconds=grace + 60, code="000")[2] == []


# ---------------------------------------------------------------------------------------------
# nginx
# ---------------------------------------------------------------------------------------------


def test_nginx_upstream_and_proxy_settings_follow_config() -> None:
    s = prod()
    lb = s.stack.config.load_balancer
    conf = nginx_conf(s.stack, ["10.0.1.2:8000", "10.0.1.3"])
    assert "least_conn;" in conf
    assert f"server 10.0.1.2:8000 max_fails={lb.max_fails} fail_timeout={lb.fail_timeout_seconds}s;" in conf
    assert f"server 10.0.1.3:8000 max_fails={lb.max_fails}" in conf  # default port added
    for needle in [
        "keepalive 32;", "proxy_http_version 1.1;", 'proxy_set_header Connection "";',
        "proxy_next_upstream error timeout http_500 http_502 http_503 http_504 non_idempotent;",
        f"proxy_next_upstream_tries {lb.proxy_next_upstream_tries};",
        "proxy_next_upstream_timeout", "proxy_buffering off;", "proxy_cache off;", "proxy_request_buffering on;",
        f"proxy_read_timeout {lb.read_timeout_seconds}s;", "proxy_send_timeout",
        f"client_max_body_size {lb.client_max_body_size_mb}m;",
        "location = /health", "X-Accel-Buffering no", "$upstream_addr", "$upstream_response_time",
    ]:  # fmt: skip
        assert needle in conf, needle


def test_nginx_exposes_only_the_api() -> None:
    conf = nginx_conf(dev().stack, ["10.0.0.2:8000"])
    assert conf.count("proxy_pass") == 1
    assert re.search(r"location /v1/ \{[^}]*proxy_pass http://vllm_backend;", conf)
    assert "/metrics" not in conf.replace("(/metrics,", "")  # only the comment names it


def test_nginx_tls_and_auth_only_when_configured() -> None:
    plain = nginx_conf(dev().stack, ["10.0.0.2:8000"])
    assert "ssl" not in plain and "gpu_inference_authorized" not in plain
    tls = nginx_conf(prod().stack, ["10.0.1.2:8000"])
    assert "listen 0.0.0.0:443 ssl" in tls and "server_name llm.example.com;" in tls
    assert "ssl_certificate /etc/nginx/tls/llm.example.com/fullchain.pem;" in tls
    assert "return 308 https://" in tls
    assert "include /etc/nginx/gpu-inference-auth.conf;" in tls and "return 401" in tls
    assert API_KEY not in tls  # the key lives in the 0600 include, never in nginx.conf


def test_auth_map_refuses_keys_that_would_break_the_config() -> None:
    assert '"~^\\QBearer abc-123\\E$" 1;' in auth_map("abc-123")
    for bad in ['a"b', "a b", "a\\b", "a\nb", ""]:
        with pytest.raises(ValueError):
            auth_map(bad)


def test_nginx_needs_a_backend() -> None:
    with pytest.raises(ValueError):
        nginx_conf(dev().stack, [])


# ---------------------------------------------------------------------------------------------
# Prometheus
# ---------------------------------------------------------------------------------------------

# The metric names of vLLM v0.19 (vllm/v1/metrics/loggers.py) the rules may use, and the removed ones.
V019_METRICS = {"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                "vllm:time_to_first_token_seconds_bucket"}  # fmt: skip
REMOVED_METRICS = {"vllm:gpu_cache_usage_perc", "vllm:time_per_output_token_seconds", "vllm:num_requests_swapped"}


@pytest.mark.parametrize("make", [dev, prod, amd])
def test_alert_rules_shape(make) -> None:
    s: Scenario = make()
    doc = yaml.safe_load(alert_rules(s.stack))
    rules = doc["groups"][0]["rules"]
    names = [r["alert"] for r in rules]
    # The GPU hardware-error alert is the vendor's: XIDs from DCGM, uncorrectable ECC from AMD's exporter.
    gpu_error = "GpuEccUncorrectable" if s.stack.gpu.vendor == "amd" else "GpuXidErrors"
    assert names == [
        "VllmQueueDepthHigh", "VllmKvCachePressure", "VllmTtftP95High", "TargetDown", "VllmMetricsAbsent",
        "GpuMemoryNearlyFull", "GpuTemperatureHigh", gpu_error, "DiskFillingUp", "DiskFillingUpPredicted",
        # Scale advice on fixed machines (issue 16); no ScaleIn below two nodes.
        "ScaleOut", *(["ScaleIn"] if s.stack.config.node_count > 1 else []),
    ]  # fmt: skip
    runbooks = (ROOT / "docs" / "runbooks.md").read_text()
    anchors = {h.strip().lower() for h in re.findall(r"^## (.+)$", runbooks, flags=re.MULTILINE)}
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical", "info"}
        ann = rule["annotations"]
        assert ann["summary"] and ann["description"]
        assert ann["runbook_url"] == f"docs/runbooks.md#{rule['alert'].lower()}"
        assert rule["alert"].lower() in anchors, f"docs/runbooks.md has no section for {rule['alert']}"
        duration_seconds(rule["for"])
    used = set(re.findall(r"vllm:[a-z_]+", alert_rules(s.stack)))
    assert used <= V019_METRICS, used - V019_METRICS
    assert not used & REMOVED_METRICS


# Fields of ROCm/device-metrics-exporter docs/configuration/metricslist.md the AMD alerts read (exported in lower
# case behind the MetricsFieldPrefix the rendered config.json sets).
AMD_EXPORTER_FIELDS = {"GPU_USED_VRAM", "GPU_TOTAL_VRAM", "GPU_JUNCTION_TEMPERATURE", "GPU_ECC_UNCORRECT_TOTAL"}


def test_amd_alerts_read_the_device_metrics_exporter_fields_under_the_prefix_its_config_sets() -> None:
    s = amd()
    files = s.render()
    config = json.loads(files["nodes/node-0/amd-metrics-exporter-config.json"])
    prefix = config["CommonConfig"]["MetricsFieldPrefix"]
    assert prefix == "amd_" and config["ServerPort"] == 5000
    rules = alert_rules(s.stack)
    used = set(re.findall(rf"\b{prefix}[a-z_]+", rules))
    assert used == {prefix + f.lower() for f in AMD_EXPORTER_FIELDS}
    assert "DCGM" not in rules and "DCGM" not in files["monitoring/prometheus.yml"]
    # the exporter reads that config: mounted where it looks (/etc/metrics/config.json)
    unit = files["nodes/node-0/amd-metrics-exporter.service"]
    assert "-v /etc/gpu-inference/device-metrics-exporter:/etc/metrics" in unit
    cloud_init = yaml.safe_load(files["nodes/node-0/cloud-init.yaml"])
    paths = {f["path"]: f["content"] for f in cloud_init["write_files"]}
    assert json.loads(paths["/etc/gpu-inference/device-metrics-exporter/config.json"]) == config


def test_amd_ecc_alert_resolves_although_the_count_stays() -> None:
    s = amd().stack
    tests = yaml.safe_load(alert_rule_tests(s))["tests"]
    [case] = [t for t in tests if t["name"].startswith("GpuEccUncorrectable")]
    steps = case["alert_rule_test"]
    assert steps[0]["exp_alerts"] == [] and steps[1]["exp_alerts"] and steps[-1]["exp_alerts"] == []
    assert case["input_series"][0]["series"].startswith("amd_gpu_ecc_uncorrect_total{")
    assert case["input_series"][0]["values"].endswith("2x115")  # still 2 when the alert must be gone


def test_xid_alert_resolves_although_dcgm_keeps_the_last_code() -> None:
    """DCGM_FI_DEV_XID_ERRORS is sticky (the last code, until the exporter restarts): `!= 0` alone would
    fire forever after one application fault. The promtool case must check that it resolves."""
    s = prod().stack
    rules = {r["alert"]: r for r in yaml.safe_load(alert_rules(s))["groups"][0]["rules"]}
    assert "changes(DCGM_FI_DEV_XID_ERRORS[" in rules["GpuXidErrors"]["expr"]
    tests = yaml.safe_load(alert_rule_tests(s))["tests"]
    [case] = [t for t in tests if t["name"].startswith("GpuXidErrors")]
    steps = case["alert_rule_test"]
    assert steps[-1]["exp_alerts"] == [] and duration_seconds(steps[-1]["eval_time"]) > duration_seconds(
        steps[1]["eval_time"]
    )
    assert case["input_series"][0]["values"].endswith("79x115")  # still 79 when the alert must be gone


def test_alert_thresholds_follow_config() -> None:
    s = prod().stack
    mon = s.config.monitoring
    rules = {r["alert"]: r for r in yaml.safe_load(alert_rules(s))["groups"][0]["rules"]}
    assert rules["VllmQueueDepthHigh"]["expr"].endswith(f"> {mon.queue_depth_threshold}")
    assert rules["VllmQueueDepthHigh"]["for"] == mon.queue_depth_for
    assert rules["VllmKvCachePressure"]["expr"].endswith("> 0.95") and rules["VllmKvCachePressure"]["for"] == "10m"
    assert "histogram_quantile(0.95" in rules["VllmTtftP95High"]["expr"]
    assert rules["VllmTtftP95High"]["expr"].endswith("> 1.5") and rules["VllmTtftP95High"]["for"] == "5m"
    assert rules["TargetDown"]["expr"].startswith("up == 0 unless on (job, instance, node)")
    assert rules["TargetDown"]["for"] == "2m"
    assert rules["GpuMemoryNearlyFull"]["expr"].endswith("> 0.97")
    assert rules["GpuTemperatureHigh"]["expr"].endswith("> 83")
    assert rules["DiskFillingUp"]["expr"].endswith("< 0.15")
    assert 'mountpoint="/"' in rules["DiskFillingUp"]["expr"]
    assert rules["DiskFillingUpPredicted"]["expr"].startswith("predict_linear(")


@pytest.mark.parametrize("make", [dev, prod])
def test_every_alert_has_a_quiet_then_firing_case(make) -> None:
    s: Scenario = make()
    doc = yaml.safe_load(alert_rule_tests(s.stack))
    assert doc["rule_files"] == ["gpu-inference.yml"]
    tested: set[str] = set()
    for case in doc["tests"]:
        assert case["name"]
        steps = case["alert_rule_test"]
        if case["name"] == "Nothing fires under normal load":
            assert all(step["exp_alerts"] == [] for step in steps)
            assert {step["alertname"] for step in steps} == {a.name for a in alerts(s.stack)}
            continue
        if case["name"].startswith(LOADING_CASE_PREFIX):
            continue  # several alerts and quiet stretches per case: tests/test_alert_loading.py
        # The last firing step (a case may go on to check that the alert resolves, as GpuXidErrors does).
        first, last = steps[0], next(step for step in reversed(steps) if step["exp_alerts"])
        assert first["exp_alerts"] == [] and first["alertname"] == last["alertname"]
        assert duration_seconds(first["eval_time"]) < duration_seconds(last["eval_time"])
        (fired,) = last["exp_alerts"]
        assert fired["exp_labels"]["severity"] and set(fired["exp_annotations"]) == {"summary", "description", "runbook_url"}
        tested.add(last["alertname"])
    assert tested == {a.name for a in alerts(s.stack)}


def test_prometheus_config() -> None:
    s = prod()
    text = prometheus_config(s.stack, ["10.0.1.2:8000"], {"node-0": "10.0.1.2:9100", "loadbalancer": "10.0.1.10:9100"},
                             ["10.0.1.2:9400"])  # fmt: skip
    doc = yaml.safe_load(text)
    assert doc["global"]["scrape_interval"] == "15s"
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
    assert set(jobs) == {"vllm", "node", "dcgm", "prometheus"}
    assert jobs["vllm"]["metrics_path"] == "/metrics"
    assert jobs["vllm"]["static_configs"] == [{"targets": ["10.0.1.2:8000"], "labels": {"node": "node-0"}}]
    assert {sc["labels"]["node"] for sc in jobs["node"]["static_configs"]} == {"node-0", "loadbalancer"}
    # vLLM's /metrics is outside --api-key's /v1 scope: no credentials in the scrape config.
    assert "authorization" not in text and "bearer" not in text.lower() and API_KEY not in text
    assert doc["rule_files"] == ["/etc/prometheus/rules/gpu-inference.yml"]


# ---------------------------------------------------------------------------------------------
# cloud-init and render_all
# ---------------------------------------------------------------------------------------------


def write_files(text: str) -> dict[str, dict]:
    assert text.startswith("#cloud-config\n")
    return {f["path"]: f for f in yaml.safe_load(text)["write_files"]}


def test_gpu_node_cloud_init_files() -> None:
    s = prod()
    text = gpu_node_cloud_init(s.stack, 1, API_KEY, HF_TOKEN)
    files = write_files(text)
    env = files["/etc/vllm/vllm.env"]
    assert env["permissions"] == "0600" and env["owner"] == "root:root"
    assert f"VLLM_API_KEY={API_KEY}" in env["content"]
    assert files["/etc/systemd/system/vllm.service"]["content"] == vllm_unit(s.stack)
    assert files["/usr/local/bin/vllm-healthcheck"]["permissions"] == "0755"
    assert {"/etc/systemd/system/dcgm-exporter.service", "/etc/systemd/system/node-exporter.service",
            "/etc/systemd/system/vllm-healthcheck.timer"} <= set(files)  # fmt: skip
    doc = yaml.safe_load(text)
    assert doc["hostname"] == "prod-node-1"
    bootstrap = files[doc["runcmd"][0][0]]["content"]
    # Install only when missing: every install is behind a check.
    assert "command -v docker" in bootstrap and "nvidia-ctk" in bootstrap
    assert re.search(r"docker info .*nvidia", bootstrap)
    assert "dcgm-exporter" in files["/etc/systemd/system/dcgm-exporter.service"]["content"]
    assert "--gpus all" in files["/etc/systemd/system/dcgm-exporter.service"]["content"]
    assert "systemctl enable --now" in bootstrap and "vllm.service" in bootstrap


def test_secrets_appear_only_in_their_root_only_files() -> None:
    s = prod()
    key, token = "sk-UNIQUE-key-7f3a", "hf_UNIQUE_token_91b2"
    stack = restack(s.stack, api_key=SecretValue(plaintext=key))
    files = render_all(stack, s.node_addresses, s.lb_address, key, token)
    for rel, text in files.items():
        if rel.endswith("cloud-init.yaml"):
            for path, entry in write_files(text).items():
                if key in entry["content"] or token in entry["content"]:
                    assert path in {"/etc/vllm/vllm.env", "/etc/nginx/gpu-inference-auth.conf"}, (rel, path)
                    assert entry["permissions"] == "0600"
        else:
            assert key not in text and token not in text, rel
    lb = write_files(files["loadbalancer/cloud-init.yaml"])
    assert key in lb["/etc/nginx/gpu-inference-auth.conf"]["content"]
    assert token not in files["loadbalancer/cloud-init.yaml"]


def test_lb_cloud_init_requires_the_key_when_the_stack_has_one() -> None:
    with pytest.raises(ValueError):
        load_balancer_cloud_init(prod().stack, ["10.0.1.2:8000"], None)


def test_lb_and_monitoring_cloud_init() -> None:
    s = prod()
    lb = yaml.safe_load(load_balancer_cloud_init(s.stack, ["10.0.1.2:8000"], API_KEY))
    assert {"nginx", "prometheus-node-exporter"} <= set(lb["packages"])
    assert all(f.get("defer") for f in lb["write_files"])  # after the nginx package, not before
    devices = cloud_for("digitalocean").volume_devices("gpu-inference-prod-prometheus-data")
    mon = yaml.safe_load(monitoring_cloud_init(s.stack, ["10.0.1.2:8000"], ["10.0.1.2:9100"], ["10.0.1.2:9400"],
                                               devices, lb_address="10.0.1.9"))
    assert {"prometheus", "prometheus-node-exporter"} <= set(mon["packages"])
    paths = {f["path"]: f for f in mon["write_files"]}
    assert "--storage.tsdb.retention.time=30d" in paths["/etc/default/prometheus"]["content"]
    assert "--storage.tsdb.path=/var/lib/prometheus/metrics2" in paths["/etc/default/prometheus"]["content"]
    # 80% of the default 20 GB volume: the oldest blocks go before the volume fills.
    assert "--storage.tsdb.retention.size=16GB" in paths["/etc/default/prometheus"]["content"]
    bootstrap = paths[mon["runcmd"][0][0]]["content"]
    assert "promtool check config" in bootstrap and "promtool check rules" in bootstrap


def test_monitoring_cloud_init_mounts_the_tsdb_volume_before_prometheus_starts() -> None:
    s = prod()
    devices = cloud_for("digitalocean").volume_devices("gpu-inference-prod-prometheus-data")
    assert devices == ["/dev/disk/by-id/scsi-0DO_Volume_gpu-inference-prod-prometheus-data"]
    mon = yaml.safe_load(monitoring_cloud_init(s.stack, ["10.0.1.2:8000"], ["10.0.1.2:9100"], ["10.0.1.2:9400"],
                                               devices, lb_address="10.0.1.9"))
    paths = {f["path"]: f for f in mon["write_files"]}
    # The drop-in is written before the packages (not deferred): the package's own start of Prometheus, and
    # any boot where the volume is missing, cannot put a TSDB on the root disk.
    dropin = paths["/etc/systemd/system/prometheus.service.d/gpu-inference-data-volume.conf"]
    assert not dropin.get("defer")
    assert "ConditionPathIsMountPoint=/var/lib/prometheus/metrics2" in dropin["content"]
    assert "RequiresMountsFor=/var/lib/prometheus/metrics2" in dropin["content"]
    script = paths[mon["runcmd"][0][0]]["content"]
    lines = script.splitlines()

    def at(fragment: str) -> int:
        return next(i for i, line in enumerate(lines) if fragment in line)

    assert f"candidates=({devices[0]})" in script
    # Bounded wait, format only a blank device, fstab by UUID with nofail, mount, own it, then start.
    assert at("wait_seconds=") < at("for ((waited = 0; waited <= wait_seconds") < at('[[ -n "$device" ]] || die')
    assert at('[[ "$probe" -eq 2 ]]') < at("mkfs.ext4") < at('entry="UUID=$uuid $data_dir $fstype defaults,nofail')
    assert at("entry=") < at('mount "$data_dir"') < at("chown -h prometheus:prometheus") < at(
        "systemctl restart prometheus.service")
    assert script.count("mkfs") == 1 and "blkid -p" in script  # never formats a volume that holds anything
    assert at("systemctl stop prometheus.service") < at('mount "$data_dir"')


def test_monitoring_cloud_init_needs_the_volume() -> None:
    with pytest.raises(ValueError):
        monitoring_cloud_init(prod().stack, ["10.0.1.2:8000"], ["10.0.1.2:9100"], ["10.0.1.2:9400"], [])


def test_aws_volume_devices_by_ebs_volume_id() -> None:
    assert cloud_for("aws").volume_devices("vol-0123456789abcdef0") == [
        "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0",  # Nitro: serial = id without '-'
        "/dev/xvdf",  # Xen instance types keep the attachment's name
    ]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_render_all_is_deterministic_and_complete(name: str) -> None:
    s = SCENARIOS[name]()
    first, second = s.render(), s.render()
    assert first == second
    for i in range(len(s.node_addresses)):
        for leaf in ("cloud-init.yaml", "vllm.service", "vllm-healthcheck.sh"):
            assert f"nodes/node-{i}/{leaf}" in first
    assert {"loadbalancer/nginx.conf", "loadbalancer/cloud-init.yaml", "monitoring/prometheus.yml",
            "monitoring/rules/gpu-inference.yml", "monitoring/rules/gpu-inference.test.yml",
            "monitoring/cloud-init.yaml"} <= set(first)  # fmt: skip
    assert not any(re.search(r"20\d\d-\d\d-\d\dT", t) for t in first.values()), "timestamps break golden files"


def test_render_all_without_monitoring() -> None:
    s = dev()
    stack = restack(s.stack, monitoring=s.stack.config.monitoring.model_copy(update={"enabled": False}))
    files = render_all(stack, s.node_addresses, s.lb_address, None, None)
    assert not any(p.startswith("monitoring/") for p in files)


def test_user_data_fits_ec2_limits() -> None:
    """EC2 caps user data at 16 KB: a GPU node fits as text; the LB (health-check daemon) and the Prometheus host
    (Grafana's dashboards included) fit gzipped, for every pool size the config allows (nodeCount <= 64)."""
    import base64
    import gzip

    from gpu_inference.clouds.aws import USER_DATA_LIMIT_BYTES as AWS_USER_DATA_LIMIT_BYTES
    from gpu_inference.clouds.aws import fits_user_data as fits_aws_user_data
    from gpu_inference.clouds.aws import user_data_base64_gzip

    # The limit is on the bytes EC2 stores, i.e. the gzip stream the program sends as user_data_base64
    # (pulumi_aws 7.51.1 Instance.user_data_base64: "gzip-encoded user data must be base64-encoded and passed
    # via this argument"; EC2 User Guide, "Work with instance user data": "limited to 16 KB, in raw form, before
    # it is base64-encoded"). Below that there is no hard line; the margin asked of the LB is that its largest
    # pool leaves a quarter of the limit free for what later releases add to its cloud-init.
    margin = AWS_USER_DATA_LIMIT_BYTES * 3 // 4

    def packed_size(text: str) -> int:
        return len(base64.b64decode(user_data_base64_gzip(text)))

    s = prod()
    files = s.render()
    assert fits_aws_user_data(files["nodes/node-0/cloud-init.yaml"])
    # The LB ships its health-check daemon (Python source) too: over 16 KB as text, so it relies, like a
    # big Prometheus host, on the program always sending user data gzipped (components/clouds/aws.py).
    assert not fits_aws_user_data(files["loadbalancer/cloud-init.yaml"])  # why the gzip path matters here
    assert packed_size(files["loadbalancer/cloud-init.yaml"]) <= margin
    # Grafana's dashboards make the Prometheus host's text bigger than 16 KB too; gzipped it keeps the margin.
    assert packed_size(files["monitoring/cloud-init.yaml"]) <= margin
    # The LB (an upstream server and a health-check target per node) and Prometheus (a target per node) grow
    # with the pool: the biggest pool the config accepts must still fit.
    addresses = [f"10.0.{i // 200}.{i % 200 + 2}" for i in range(64)]
    rendered = render_all(s.stack, addresses, "10.0.9.10", API_KEY, HF_TOKEN)
    assert packed_size(rendered["loadbalancer/cloud-init.yaml"]) <= margin
    big = rendered["monitoring/cloud-init.yaml"]
    packed = user_data_base64_gzip(big)
    assert len(base64.b64decode(packed)) <= AWS_USER_DATA_LIMIT_BYTES
    assert gzip.decompress(base64.b64decode(packed)).decode() == big
    assert packed == user_data_base64_gzip(big)  # deterministic: no mtime in the gzip header


# ---------------------------------------------------------------------------------------------
# Kubernetes: the same nginx.conf / prometheus.yml renderers with in-cluster names
# ---------------------------------------------------------------------------------------------


def kube_stack(**overrides: object) -> ResolvedStack:
    if not overrides:
        return kube()
    base = kube().config.model_dump(by_alias=True, exclude_none=True)
    return resolve_stack(StackConfig.model_validate({**base, **overrides}), name="kube")


def test_droplet_nginx_conf_neither_resolves_nor_names_a_resolver() -> None:
    for scenario in SCENARIOS.values():
        text = scenario().render()["loadbalancer/nginx.conf"]
        assert "resolver" not in text and " resolve" not in text


def test_nginx_resolver_option_marks_every_server_resolve() -> None:
    s = dev()
    text = nginx_conf(s.stack, ["a.example:8000", "b.example:8000"], resolver="10.245.0.10")
    assert "    resolver 10.245.0.10 valid=10s ipv6=off;\n" in text
    servers = [line.strip() for line in text.splitlines() if line.strip().startswith("server ") and "{" not in line]
    assert servers == [
        "server a.example:8000 resolve max_fails=2 fail_timeout=10s;",
        "server b.example:8000 resolve max_fails=2 fail_timeout=10s;",
        "server 127.0.0.1:8079 backup max_fails=0;",  # the JSON-503 fallback: a fixed IP, never resolved
    ]
    # `resolve` keeps its peers in shared memory: the upstream must have a zone.
    assert "zone vllm_backend 64k;" in text
    assert text.index("resolver 10.245.0.10") < text.index("upstream vllm_backend")


def test_kubernetes_files_name_the_stateful_pods() -> None:
    from gpu_inference.render.kubernetes import KUBE_DNS, render_kubernetes, vllm_pod_targets

    stack = kube_stack()
    assert vllm_pod_targets(stack) == {
        f"vllm-{i}": f"vllm-{i}.vllm-pods.llm.svc.cluster.local:8000" for i in range(3)
    }
    files = render_kubernetes(stack)
    assert sorted(files) == ["kubernetes/vllm-network-policy.yaml", "loadbalancer/nginx.conf",
                             "monitoring/prometheus.yml", "monitoring/rules/gpu-inference.test.yml",
                             "monitoring/rules/gpu-inference.yml"]
    conf = files["loadbalancer/nginx.conf"]
    assert f"resolver {KUBE_DNS} valid=10s ipv6=off;" in conf
    for i in range(3):
        assert f"server vllm-{i}.vllm-pods.llm.svc.cluster.local:8000 resolve " in conf
    # Official nginx image layout; the API-key include comes from a mounted Secret, never the ConfigMap.
    assert "user nginx;" in conf and "client_body_temp_path /var/cache/nginx/body;" in conf
    assert "include /etc/nginx/gpu-inference-auth/auth.conf;" in conf and API_KEY not in conf
    prom = yaml.safe_load(files["monitoring/prometheus.yml"])
    jobs = {job["job_name"]: job for job in prom["scrape_configs"]}
    assert [c["labels"]["node"] for c in jobs["vllm"]["static_configs"]] == ["vllm-0", "vllm-1", "vllm-2"]
    assert jobs["node"]["static_configs"] == [] and jobs["dcgm"]["static_configs"] == []
    assert files["monitoring/rules/gpu-inference.yml"] == alert_rules(stack)


def test_kubernetes_without_monitoring_renders_only_nginx() -> None:
    from gpu_inference.render.kubernetes import render_kubernetes

    assert list(render_kubernetes(kube_stack(monitoring={"enabled": False}))) == [
        "loadbalancer/nginx.conf", "kubernetes/vllm-network-policy.yaml"]
