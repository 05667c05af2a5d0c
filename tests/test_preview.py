"""`python -m gpu_inference preview`: exit codes, the JSON report, files written, bad configs refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gpu_inference.constants import PROJECT_DIR
from gpu_inference.preview_runner import PreviewReport, run_preview

STACKS = Path(__file__).parent / "stacks"
REPORT_KEYS = {"stack", "resources", "monthly_cost_usd", "budget_usd", "policies", "files", "cost_lines", "sizing",
               "outputs"}  # fmt: skip


def preview(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_CONFIG")}
    return subprocess.run(
        [sys.executable, "-m", "gpu_inference", "preview", *args],
        cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module", params=["dev", "prod"])
def report(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp(request.param)
    proc = preview(request.param, "--json", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return request.param, out, json.loads(proc.stdout)


def test_json_report_has_the_contract_keys(report: tuple[str, Path, dict[str, Any]]) -> None:
    stack, _out, data = report
    assert set(data) >= REPORT_KEYS
    assert data["stack"] == stack
    types = {r["type"] for r in data["resources"]}
    assert "digitalocean:index/droplet:Droplet" in types and "digitalocean:index/firewall:Firewall" in types
    assert all({"type", "name"} <= set(r) for r in data["resources"])
    assert all({"name", "passed", "level", "message"} <= set(p) for p in data["policies"])
    assert data["monthly_cost_usd"] <= data["budget_usd"]
    assert data["monthly_cost_usd"] == pytest.approx(sum(line["monthly_usd"] for line in data["cost_lines"]), abs=0.01)
    assert data["outputs"]["monthlyCostUsd"] == pytest.approx(data["monthly_cost_usd"])
    assert all(p["passed"] or p["level"] != "mandatory" for p in data["policies"])
    assert {p["name"] for p in data["policies"]} >= {"vram-fit", "budget", "security", "gpu-availability"}
    assert len(data["sizing"]) == sum(r["type"] == "gpu-inference:index:VllmService" for r in data["resources"])
    assert all(s["fits"] and s["kv_cache_tokens"] > 0 and s["max_concurrency"] > 0 for s in data["sizing"])


def test_costs_of_dev_and_prod(report: tuple[str, Path, dict[str, Any]]) -> None:
    stack, _out, data = report
    # dev: 1 x L40S $1.57/h x 730 + $12 Nginx + $24 Prometheus + its 20 GB volume at $0.10/GB-month;
    # prod: 3 x H100 $3.39/h x 730 + the same three.
    expected = {"dev": 1.57 * 730 + 36 + 2, "prod": 3 * 3.39 * 730 + 36 + 2}[stack]
    assert data["monthly_cost_usd"] == pytest.approx(expected, abs=0.01)


def test_secrets_never_in_the_report(report: tuple[str, Path, dict[str, Any]]) -> None:
    _stack, _out, data = report
    text = json.dumps(data)
    assert "PLACEHOLDER-encrypted" not in text
    assert data["outputs"]["apiKey"] == "[secret]"
    gpu = [r for r in data["resources"] if r["name"].endswith("-node") and r["type"].endswith("droplet:Droplet")]
    assert gpu and all(r["inputs"]["userData"] == "[secret]" and "userData" in r["secret_inputs"] for r in gpu)


def test_files_are_written_and_listed(report: tuple[str, Path, dict[str, Any]]) -> None:
    _stack, out, data = report
    files = [Path(f) for f in data["files"]]
    assert files and all(f.is_file() and out in f.parents for f in files)
    names = {f.relative_to(out).as_posix() for f in files}
    assert {"loadbalancer/nginx.conf", "monitoring/prometheus.yml", "nodes/node-0/cloud-init.yaml"} <= names
    # The node list is the upstream include nginx.conf reads (the LB's health checker rewrites it).
    assert "include /etc/nginx/gpu-inference-upstream.conf;" in (out / "loadbalancer/nginx.conf").read_text()
    upstream = (out / "loadbalancer/gpu-inference-upstream.conf").read_text()
    for address in data["outputs"]["nodeAddresses"]:
        assert f"server {address}:8000 " in upstream


def test_text_output_lists_tree_cost_policies_and_files(tmp_path: Path) -> None:
    proc = preview("dev", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    for needle in ("digitalocean:index/droplet:Droplet", "gpu-inference:index:VllmService", "Monthly cost",
                   "budget", "vram-fit", "KV cache", "max concurrency", "Files written",
                   "userData=[secret]"):  # fmt: skip
        assert needle in text, needle
    assert "PLACEHOLDER" not in text


@pytest.mark.parametrize(
    ("stack_file", "key"),
    [
        ("bad-node-count.yaml", "gpu-inference:nodeCount"),
        ("bad-gpu-slug.yaml", "gpu-inference:gpu"),
        ("bad-gpu-memory-utilization.yaml", "gpu-inference:gpuMemoryUtilization"),
        ("bad-provider.yaml", "gpu-inference:provider"),
        ("bad-misspelt-key.yaml", "gpu-inference:maxModelLength"),
        ("bad-amd-cuda-image.yaml", "gpu-inference:vllmImage"),
    ],
)
def test_bad_config_exits_2_with_one_message_and_lists_nothing(stack_file: str, key: str, tmp_path: Path) -> None:
    proc = preview(str(STACKS / stack_file), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: invalid stack config") and key in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_kubernetes_stack_previews_its_objects_bill_and_files(tmp_path: Path) -> None:
    proc = preview(str(STACKS / "kubernetes.yaml"), "--json", "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    types = {(r["type"], r["name"]) for r in data["resources"]}
    assert types >= {
        ("digitalocean:index/kubernetesNodePool:KubernetesNodePool", "gpu-inference-gpu-pool"),
        ("kubernetes:apps/v1:StatefulSet", "gpu-inference-vllm"),
        ("kubernetes:core/v1:Service", "gpu-inference-vllm-pods"),
        ("kubernetes:apps/v1:Deployment", "gpu-inference-nginx"),
        ("kubernetes:core/v1:ConfigMap", "gpu-inference-nginx-conf"),
        ("kubernetes:core/v1:Secret", "gpu-inference-nginx-auth"),
        ("kubernetes:core/v1:Service", "gpu-inference-lb"),
        ("kubernetes:apps/v1:Deployment", "gpu-inference-prometheus"),
        ("kubernetes:core/v1:ConfigMap", "gpu-inference-prometheus-conf"),
        ("kubernetes:core/v1:Service", "gpu-inference-prometheus"),
    }
    assert ("kubernetes:apps/v1:Deployment", "gpu-inference-vllm") not in types  # a StatefulSet now
    # The GPU pool, the DigitalOcean load balancer behind the LoadBalancer Service and the DigitalOcean volume
    # behind Prometheus' claim; nothing else is billed.
    lines = {line["resource_name"]: line for line in data["cost_lines"]}
    assert set(lines) == {"gpu-inference-gpu-pool", "gpu-inference-lb", "gpu-inference-prometheus-data"}
    assert lines["gpu-inference-lb"]["monthly_usd"] == pytest.approx(12.0)
    assert lines["gpu-inference-lb"]["price_source"] and lines["gpu-inference-lb"]["price_date"]
    assert lines["gpu-inference-prometheus-data"]["monthly_usd"] == pytest.approx(2.0)
    assert data["monthly_cost_usd"] == pytest.approx(2 * 1.57 * 730 + 12.0 + 2.0, abs=0.01)
    assert data["outputs"]["prometheusUrl"] == "http://prometheus.llm.svc.cluster.local:9090"

    out = tmp_path / "out"
    written = sorted(str(Path(f).relative_to(out)) for f in data["files"])
    assert written == ["kubernetes/vllm-network-policy.yaml", "loadbalancer/nginx.conf",
                       "monitoring/dashboards/gpu-nodes.json", "monitoring/dashboards/serving.json",
                       "monitoring/prometheus.yml",
                       "monitoring/rules/gpu-inference.test.yml", "monitoring/rules/gpu-inference.yml"]
    # The files on disk are exactly what the ConfigMaps carry.
    recorded = {r["name"]: r for r in data["resources"]}
    nginx_conf = recorded["gpu-inference-nginx-conf"]["inputs"]["data"]["nginx.conf"]
    assert (out / "loadbalancer/nginx.conf").read_text() == nginx_conf
    prom = recorded["gpu-inference-prometheus-conf"]["inputs"]["data"]
    assert (out / "monitoring/prometheus.yml").read_text() == prom["prometheus.yml"]
    assert (out / "monitoring/rules/gpu-inference.yml").read_text() == prom["gpu-inference.rules.yml"]
    for uid, file_name in (("gpu-inference-serving", "serving.json"), ("gpu-inference-gpu-nodes", "gpu-nodes.json")):
        dashboard = recorded[f"gpu-inference-dashboard-{uid}"]["inputs"]["data"][file_name]
        assert (out / "monitoring/dashboards" / file_name).read_text() == dashboard
    assert "server vllm-1.vllm-pods.llm.svc.cluster.local:8000 resolve" in nginx_conf
    assert "Bearer" not in nginx_conf  # the key is only in the nginx-auth Secret


def test_over_budget_exits_1(tmp_path: Path) -> None:
    text = (PROJECT_DIR / "Pulumi.dev.yaml").read_text().replace("monthlyBudgetUsd: 1250", "monthlyBudgetUsd: 900")
    stack = tmp_path / "Pulumi.tight.yaml"
    stack.write_text(text)
    proc = preview(str(stack), "--json", "--no-files")
    assert proc.returncode == 1, proc.stderr
    budget = [p for p in json.loads(proc.stdout)["policies"] if p["name"] == "budget"]
    assert budget and not budget[0]["passed"] and budget[0]["level"] == "mandatory"


def test_run_preview_twice_in_one_process() -> None:
    first = run_preview("dev", None)
    second = run_preview("prod", None)
    third = run_preview("dev", None)
    assert isinstance(first, PreviewReport) and first.files == []
    assert len(second.resources) > len(first.resources)
    assert first.model_dump() == third.model_dump()


def test_run_preview_of_another_checkout_runs_that_checkout(tmp_path: Path) -> None:
    """A git worktree at HEAD: previewed in a subprocess with its own code, same answer as here."""
    if subprocess.run(["git", "-C", str(PROJECT_DIR), "cat-file", "-e", "HEAD:__main__.py"], check=False).returncode:
        pytest.skip("the program is not committed yet")
    tree = tmp_path / "wt"
    subprocess.run(["git", "-C", str(PROJECT_DIR), "worktree", "add", "--detach", str(tree), "HEAD"],
                   check=True, capture_output=True)  # fmt: skip
    try:
        other = run_preview("dev", None, project_dir=tree)
        assert other.stack_file == str(tree.resolve() / "Pulumi.dev.yaml")
        assert other.monthly_cost_usd > 0 and other.resources and other.files == []
    finally:
        subprocess.run(["git", "-C", str(PROJECT_DIR), "worktree", "remove", "--force", str(tree)],
                       check=False, capture_output=True)  # fmt: skip


def test_a_preview_closes_every_event_loop_it_caused() -> None:
    """The runtime's executor threads got a loop each from pulumi's MockMonitor and nobody closed them: at exit
    their ``__del__`` printed "Exception ignored ... Invalid file descriptor: -1" now and then. After a run,
    the only loop left open is the main thread's own (closed at exit by preview_runner's atexit hook). A fresh
    process: in this one, earlier tests' executor threads may already hold loops."""
    code = (
        "import asyncio, gc\n"
        "from gpu_inference.preview_runner import run_preview\n"
        "run_preview('dev', None)\n"
        "gc.collect()\n"
        "main = asyncio.get_event_loop()\n"
        "print(sum(isinstance(o, asyncio.AbstractEventLoop) and not o.is_closed() and o is not main\n"
        "          for o in gc.get_objects()))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_CONFIG")}
    env["PYTHONPATH"] = str(PROJECT_DIR)
    proc = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_DIR, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0"
    assert "Exception ignored" not in proc.stderr


def test_amd_stack_previews_the_rocm_path(tmp_path: Path) -> None:
    """An MI300X stack passes and renders what ROCm runs: vLLM's ROCm image with the GPU device nodes, amd-smi
    in the first boot, AMD's device metrics exporter scraped on :5000 and alerted on by its metric names."""
    out = tmp_path / "out"
    proc = preview(str(STACKS / "amd-mi300x.yaml"), "--json", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert all(p["passed"] for p in data["policies"] if p["level"] == "mandatory")
    (node,) = [r for r in data["resources"] if r["type"] == "digitalocean:index/droplet:Droplet"
               and r["inputs"]["size"] == "gpu-mi300x1-192gb"]
    assert node["inputs"]["image"] == "gpu-amd-base"  # DigitalOcean's AMD AI/ML-ready (ROCm) image
    unit = (out / "nodes/node-0/vllm.service").read_text()
    assert "vllm/vllm-openai-rocm:v0.19.0" in unit and "vllm/vllm-openai:" not in unit
    for flag in ("--device /dev/kfd", "--device /dev/dri", "--group-add video", "--security-opt seccomp=unconfined",
                 "--ipc=host"):
        assert flag in unit
    assert "--gpus" not in unit
    bootstrap = (out / "nodes/node-0/bootstrap.sh").read_text()
    assert "amd-smi static --asic --vram" in bootstrap and "nvidia" not in bootstrap.lower()
    assert (out / "nodes/node-0/amd-metrics-exporter.service").exists()
    assert not (out / "nodes/node-0/dcgm-exporter.service").exists()
    prom = (out / "monitoring/prometheus.yml").read_text()
    assert "job_name: amd-metrics" in prom and ":5000" in prom and "dcgm" not in prom
    rules = (out / "monitoring/rules/gpu-inference.yml").read_text()
    assert "amd_gpu_junction_temperature" in rules and "amd_gpu_used_vram" in rules and "DCGM" not in rules


@pytest.mark.parametrize(("change", "needle"), [
    ({"gpu-inference:quantization": "awq"}, "Cannot find the config file for awq"),
    ({"gpu-inference:quantization": "int4"}, "would serve the weights in 16 bits"),
    ({"gpu-inference:model": "meta-llama/Llama-3.1-8B-Instruct"}, "gpu-inference:hfToken is not set"),
])  # fmt: skip
def test_stacks_vllm_cannot_start_exit_1(change: dict[str, str], needle: str, tmp_path: Path) -> None:
    import yaml

    doc = yaml.safe_load((PROJECT_DIR / "Pulumi.dev.yaml").read_text())
    doc["config"].update(change)
    stack = tmp_path / "Pulumi.broken.yaml"
    stack.write_text(yaml.safe_dump(doc))
    proc = preview(str(stack), "--json", "--no-files")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    failed = [p for p in json.loads(proc.stdout)["policies"] if not p["passed"]]
    assert [p["name"] for p in failed] == ["can-start"] and needle in failed[0]["message"]
    assert failed[0]["level"] == "mandatory"


def test_amd_on_the_kubernetes_layout_is_refused_naming_the_missing_piece(tmp_path: Path) -> None:
    """The Kubernetes layout has no ROCm path yet (device plugin resource, taint, ROCm image): refused, exit 1."""
    text = (STACKS / "kubernetes.yaml").read_text()
    assert "gpu-inference:gpu: gpu-l40sx1-48gb" in text and "gpu-inference:region: tor1" in text
    text = text.replace("gpu-l40sx1-48gb", "gpu-mi300x1-192gb").replace("region: tor1", "region: atl1")
    text = text.replace("monthlyBudgetUsd: 2400", "monthlyBudgetUsd: 4000")
    stack = tmp_path / "Pulumi.k8s-amd.yaml"
    stack.write_text(text)
    proc = preview(str(stack), "--json", "--no-files")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    failed = [p for p in json.loads(proc.stdout)["policies"] if not p["passed"] and p["level"] == "mandatory"]
    assert [p["name"] for p in failed] == ["can-start"]
    assert "amd.com/gpu" in failed[0]["message"] and "use provider digitalocean" in failed[0]["message"]
