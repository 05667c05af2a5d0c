"""vLLM on a GPU node: the server's flags, its systemd unit (a pinned container) and its env file."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpu_inference import checkpoint
from gpu_inference.constants import VLLM_PORT
from gpu_inference.gpu_vendor import vendor_for, vllm_image
from gpu_inference.render._common import (
    CONTAINER_HF_CACHE,
    DOCKER_LOG_ARGS,
    MODEL_CACHE_DIR,
    NETWORK_ENV_FILE,
    PRIVATE_IP_VAR,
    RENDERED_BY,
    VLLM_CONTAINER,
    VLLM_ENV_FILE,
    check_secret,
    exec_line,
    private_ip_publish,
    systemd_quote,
)

if TYPE_CHECKING:
    from gpu_inference.stack import ResolvedStack

# Pulling vllm/vllm-openai (~10 GB compressed) on a fresh node takes minutes; the pull runs in
# ExecStartPre, which TimeoutStartSec bounds (the model download happens later, inside the running
# container, where the health check's grace period covers it).
START_TIMEOUT_SECONDS = 1800
RESTART_SECONDS = 10
# vLLM finishes in-flight requests on SIGTERM only briefly; give it time before docker kills it.
STOP_TIMEOUT_SECONDS = 30


def served_model(stack: ResolvedStack) -> str:
    """What vLLM loads: modelRepo when set (a fine-tune described by its config.json), else the
    catalog's canonical id (aliases and case resolved)."""
    return stack.config.model_repo or stack.model.id


def vllm_args(stack: ResolvedStack) -> list[str]:
    """The vllm serve flags for this stack; never a secret (the API key and HF token come from the env file)."""
    cfg = stack.config
    # --model rather than the positional form of `vllm serve`: every pinnable image accepts it (older ones
    # run the api_server module, which has no positional argument); v0.19 only logs a deprecation warning.
    args = [
        "--model", served_model(stack),
        "--served-model-name", cfg.name_for_clients,
        "--dtype", cfg.dtype,
    ]
    # Only a method vLLM applies at load (fp8 on 16-bit weights); a pre-quantized checkpoint's own
    # quantization_config picks the kernel (gpu_inference/checkpoint.py).
    flag = checkpoint.quantization_flag(stack)
    if flag is not None:
        args += ["--quantization", flag]
    args += [
        "--max-model-len", str(cfg.max_model_len),
        "--max-num-seqs", str(cfg.max_num_seqs),
        "--gpu-memory-utilization", f"{cfg.gpu_memory_utilization:g}",
        "--tensor-parallel-size", str(stack.tensor_parallel_size),
        "--kv-cache-dtype", cfg.kv_cache_dtype,
        "--host", "0.0.0.0",
        "--port", str(VLLM_PORT),
    ]
    return args


def docker_run_argv(stack: ResolvedStack) -> list[str]:
    return [
        "/usr/bin/docker", "run",
        "--name", VLLM_CONTAINER,
        # NCCL and PyTorch's shared-memory tensors between TP workers need more than Docker's 64 MB /dev/shm.
        "--ipc=host",
        # The GPUs: --gpus all (NVIDIA runtime) or ROCm's device nodes and group (gpu_vendor.py).
        *vendor_for(stack).docker_gpu_args,
        *DOCKER_LOG_ARGS,
        "--env-file", VLLM_ENV_FILE,
        "-v", f"{MODEL_CACHE_DIR}:{CONTAINER_HF_CACHE}",
        *private_ip_publish(VLLM_PORT),
        vllm_image(stack),
        *vllm_args(stack),
    ]


def vllm_unit(stack: ResolvedStack) -> str:
    """vllm.service: the pinned vllm/vllm-openai container, restarted forever by systemd."""
    image = vllm_image(stack)
    pull = f"docker image inspect {image} >/dev/null 2>&1 || docker pull {image}"
    return f"""# {RENDERED_BY}
[Unit]
Description=vLLM OpenAI-compatible server ({served_model(stack)}, TP={stack.tensor_parallel_size})
Documentation=https://docs.vllm.ai/
After=docker.service network-online.target
Wants=network-online.target
Requires=docker.service
# Never stop retrying: a GPU node that gave up restarting serves nothing and still costs money.
StartLimitIntervalSec=0

[Service]
Type=simple
TimeoutStartSec={START_TIMEOUT_SECONDS}
TimeoutStopSec={STOP_TIMEOUT_SECONDS + 15}
Restart=always
RestartSec={RESTART_SECONDS}
# {PRIVATE_IP_VAR}: the address the port is published on (written by the first-boot script).
EnvironmentFile={NETWORK_ENV_FILE}
# A container left over from a crash would hold the name and the port; '-' ignores "no such container".
ExecStartPre=-/usr/bin/docker stop {VLLM_CONTAINER}
ExecStartPre=-/usr/bin/docker rm {VLLM_CONTAINER}
# Pull only when missing: the tag is pinned, and a registry outage must not block a restart.
ExecStartPre=/bin/sh -c {systemd_quote(pull)}
{exec_line("ExecStart", docker_run_argv(stack), own_line=[image])}
ExecStop=/usr/bin/docker stop -t {STOP_TIMEOUT_SECONDS} {VLLM_CONTAINER}

[Install]
WantedBy=multi-user.target
"""


def vllm_env_file(api_key: str | None, hf_token: str | None) -> str:
    """/etc/vllm/vllm.env (root-only 0600): the secrets vLLM reads from its environment."""
    check_secret("api_key", api_key)
    check_secret("hf_token", hf_token)
    lines = [f"# {RENDERED_BY}", "# docker --env-file format: KEY=value, taken literally (no quotes, no expansion)."]
    if api_key is not None:
        # vLLM checks `Authorization: Bearer <key>` on /v1/* when VLLM_API_KEY is set (same as --api-key,
        # which would put the key in `ps` output and in the unit file).
        lines.append(f"VLLM_API_KEY={api_key}")
    if hf_token is not None:
        lines.append(f"HF_TOKEN={hf_token}")
    return "\n".join(lines) + "\n"
