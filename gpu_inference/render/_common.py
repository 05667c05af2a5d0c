"""Small helpers and fixed facts the renderers share (paths on the machines, pinned exporter images)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import yaml

# The GPU exporters' images (DCGM, AMD's device metrics exporter) are the vendor's: gpu_inference/gpu_vendor.py.
# node_exporter on GPU nodes runs as a container too: the clouds' GPU images (gpu_inference/clouds) differ
# in distro and package manager, Docker is the one thing they share.
NODE_EXPORTER_IMAGE = "quay.io/prometheus/node-exporter:v1.9.1"

# Containers run attached under systemd, so their output already lands in the (size-capped) journal.
# Docker also keeps its own copy; its default json-file driver never rotates, and vLLM writes an access-log
# line per request and per /metrics scrape. Bounded explicitly (an explicit driver, because a daemon
# default of journald or syslog would reject the max-size option).
DOCKER_LOG_ARGS = ["--log-driver", "json-file", "--log-opt", "max-size=50m", "--log-opt", "max-file=2"]

VLLM_CONTAINER = "vllm"
VLLM_UNIT = "vllm.service"
VLLM_ENV_FILE = "/etc/vllm/vllm.env"
# Hugging Face's cache inside the vLLM image is /root/.cache/huggingface; keeping it on the host disk
# means a restart (or a new container) does not download the weights again.
MODEL_CACHE_DIR = "/opt/models"
CONTAINER_HF_CACHE = "/root/.cache/huggingface"
# The model cache lives on the root filesystem of every GPU node (disk_gb sizes that disk).
MODEL_CACHE_MOUNTPOINT = "/"

HEALTHCHECK_PATH = "/usr/local/bin/vllm-healthcheck"
HEALTHCHECK_UNIT = "vllm-healthcheck.service"
HEALTHCHECK_TIMER = "vllm-healthcheck.timer"
BOOTSTRAP_PATH = "/usr/local/sbin/gpu-inference-bootstrap"

RENDERED_BY = "Rendered by gpu-inference (gpu_inference/render); do not edit on the machine."

# A GPU node's private IPv4, which its containers publish their ports on (never 0.0.0.0: the cloud firewall
# stays the first line, this is the second). The first-boot script asks the cloud's metadata service
# (``Cloud.private_ipv4_lookup``) and writes it here; the units read it with EnvironmentFile=.
NETWORK_ENV_FILE = "/etc/gpu-inference/network.env"
PRIVATE_IP_VAR = "GPU_INFERENCE_PRIVATE_IP"


class Expanded(str):
    """An Exec= argument systemd must expand (``${VAR}`` from an EnvironmentFile): written unescaped.

    systemd replaces ``${VAR}`` inside a word with the variable's exact value and keeps it one argument
    (systemd.service(5), "Command lines"); only variable references and address characters are allowed.
    """

    def __new__(cls, value: str) -> Expanded:
        if not re.fullmatch(r"(\$\{[A-Z_]+\}|[A-Za-z0-9_.:/=-])+", value):
            raise ValueError(f"{value!r} is not a plain ${{VAR}} reference with address characters")
        return super().__new__(cls, value)


def private_ip_publish(port: int) -> list[str]:
    """docker -p flags for a GPU node container: the node's private address, plus loopback for local probes."""
    return ["-p", f"127.0.0.1:{port}:{port}", "-p", Expanded(f"${{{PRIVATE_IP_VAR}}}:{port}:{port}")]

_SYSTEMD_SAFE = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


def systemd_quote(arg: str) -> str:
    """One argument for an Exec= line: specifiers (%) and variables ($) escaped, quoted when needed."""
    if isinstance(arg, Expanded):
        return str(arg)
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if _SYSTEMD_SAFE.match(arg):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def shell_quote(arg: str) -> str:
    """POSIX single-quoting (shlex.quote, but always quoting odd strings the same way)."""
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", arg):
        return arg
    return "'" + arg.replace("'", "'\"'\"'") + "'"


def exec_line(key: str, argv: Iterable[str], indent: str = "    ", own_line: Iterable[str] = ()) -> str:
    """``Key=arg arg \\`` continued one flag per line, so a unit diff shows which flag changed."""
    alone = {systemd_quote(a) for a in own_line}
    args = [systemd_quote(a) for a in argv]
    lines: list[str] = []
    current = f"{key}={args[0]}"
    for arg in args[1:]:
        if arg.startswith("-") or arg in alone:
            lines.append(current)
            current = f"{indent}{arg}"
        else:
            current = f"{current} {arg}"
    lines.append(current)
    return " \\\n".join(lines)


def node_name(index: int) -> str:
    return f"node-{index}"


def check_secret(name: str, value: str | None) -> None:
    """Secrets go into KEY=value files: a newline would end the line and inject another variable."""
    if value is not None and (not value or any(c in value for c in "\r\n\0")):
        raise ValueError(f"{name} must be a non-empty single line")


class _Dumper(yaml.SafeDumper):
    """safe_dump with block-style multi-line strings: rules, units and scripts stay readable in YAML."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def dump_yaml(doc: Any, header: str = "") -> str:
    """YAML with keys in insertion order (deterministic, and in the order a reader expects)."""
    return header + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=2**20, allow_unicode=True)
