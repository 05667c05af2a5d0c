"""Renderers quote for their target even when validation is bypassed (issue 11's second line of defence).

Each test builds the config with ``model_copy(update=...)`` (no validation), so the hostile value reaches the
renderer as it would if a validator were missing, and shows the rendered file is still safe: its consumer
parses it, the value stays literal, and nothing it spells out runs.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from render_fixtures import dev, prod
from test_validators import run, systemd_root, systemd_verify, tool, write

from gpu_inference.render import load_balancer_cloud_init, nginx_conf, prometheus_config, vllm_unit
from gpu_inference.render._common import shell_quote, systemd_quote
from gpu_inference.render.cloud_init import lb_bootstrap
from gpu_inference.render.nginx import NginxPaths
from gpu_inference.stack import ResolvedStack

HOSTILE = [
    "$(touch${IFS}pwned)",
    "`touch pwned`",
    "a; touch pwned #",
    "%n%i%%",
    "x\ny=1",
    "it's \"quoted\" \\ back",
    "tab\there",
]


def unvalidated(stack: ResolvedStack, **config: object) -> ResolvedStack:
    """The stack with config values set past every validator."""
    return dataclasses.replace(stack, config=stack.config.model_copy(update=config))


def systemd_words(line: str) -> list[str]:
    """Split an Exec= value as systemd.syntax describes (whitespace outside quotes; in double quotes C escapes
    \\\\ \\" \\xNN), then undo the specifier/variable doubling: an independent reading of what systemd runs."""
    words, i = [], 0
    while i < len(line):
        if line[i].isspace():
            i += 1
            continue
        word = ""
        if line[i] == '"':
            i += 1
            while line[i] != '"':
                if line[i] == "\\":
                    nxt = line[i + 1]
                    if nxt == "x":
                        word += chr(int(line[i + 2:i + 4], 16))
                        i += 4
                        continue
                    word += {"n": "\n", "t": "\t"}.get(nxt, nxt)
                    i += 2
                    continue
                word += line[i]
                i += 1
            i += 1
        else:
            while i < len(line) and not line[i].isspace():
                word += line[i]
                i += 1
        words.append(word.replace("%%", "%").replace("$$", "$"))
    return words


@pytest.mark.parametrize("value", HOSTILE)
def test_systemd_quote_keeps_one_literal_argument(value: str) -> None:
    quoted = systemd_quote(value)
    assert "\n" not in quoted
    assert systemd_words(f"/bin/echo {quoted}") == ["/bin/echo", value]


@pytest.mark.parametrize("value", HOSTILE)
def test_shell_quote_keeps_one_literal_word(value: str, tmp_path: Path) -> None:
    out = subprocess.run(["bash", "-c", f"printf %s {shell_quote(value)}"], cwd=tmp_path, capture_output=True,
                         text=True, check=True, timeout=10)
    assert out.stdout == value and not (tmp_path / "pwned").exists()


def test_vllm_unit_with_unvalidated_values_still_verifies_and_stays_literal(tmp_path: Path) -> None:
    served, repo = "evil %n $(touch pwned)", "org/x\nExecStartPost=/bin/touch /tmp/pwned"
    image = "vllm/vllm-openai:v0.19.0 $(touch pwned)"
    stack = unvalidated(dev().stack, served_model_name=served, model_repo=repo, vllm_image=image)
    with pytest.raises(ValueError, match="control character"):  # Description= has no quoting: refused
        vllm_unit(stack)
    stack = unvalidated(dev().stack, served_model_name=served, model_repo="org/x %n", vllm_image=image)
    unit = vllm_unit(stack)
    root = systemd_root(tmp_path, {"vllm.service": unit}, {})
    result = systemd_verify(root, ["vllm.service"])
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
    assert "Description=vLLM OpenAI-compatible server (org/x %%n, TP=1)" in unit
    exec_start = re.search(r"^ExecStart=(.*?)\n(?=\S)", unit, re.S | re.M)
    assert exec_start is not None
    argv = systemd_words(exec_start.group(1).replace("\\\n", " "))
    assert argv[argv.index("--served-model-name") + 1] == served
    assert argv[argv.index("--model") + 1] == "org/x %n"
    assert image in argv
    # The pull script systemd hands to /bin/sh -c: run it with a docker stub that records its arguments.
    pull_line = next(line for line in unit.splitlines() if line.startswith("ExecStartPre=/bin/sh -c "))
    [sh, dash_c, script] = systemd_words(pull_line.removeprefix("ExecStartPre="))
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "docker").write_text('#!/bin/sh\nprintf "%s|" "$@" >> "$DOCKER_LOG"; exit 1\n')
    (stub / "docker").chmod(0o755)
    env = {**os.environ, "PATH": f"{stub}:{os.environ['PATH']}", "DOCKER_LOG": str(tmp_path / "docker.log")}
    subprocess.run([sh, dash_c, script], cwd=tmp_path, env=env, check=False, timeout=10)
    assert (tmp_path / "docker.log").read_text() == f"image|inspect|{image}|pull|{image}|"
    assert not (tmp_path / "pwned").exists()


def test_lb_bootstrap_with_an_unvalidated_domain_runs_nothing_it_spells(tmp_path: Path) -> None:
    """The issue's attack: `$(touch${IFS}/tmp/x)` as loadBalancer.tlsDomain ran as root at first boot."""
    domain = "a.com;$(touch${IFS}pwned)`touch pwned2`'\""
    stack = unvalidated(prod().stack, api_key=None,
                        load_balancer=prod().stack.config.load_balancer.model_copy(update={"tls_domain": domain}))
    paths = NginxPaths.inside(tmp_path)
    script = lb_bootstrap(stack, paths)
    # SC2016 ("expressions don't expand in single quotes") is exactly the point here: the value is literal.
    check = run([tool("shellcheck"), "--shell=bash", "--severity=style", "--exclude=SC2016",
                 str(write(tmp_path / "lb-bootstrap.sh", script))])
    assert check.returncode == 0, check.stdout
    stub = tmp_path / "bin"
    stub.mkdir()
    for name in ("nginx", "systemctl", "openssl"):
        (stub / name).write_text('#!/bin/sh\nwhile [ $# -gt 0 ]; do [ "$1" = -subj ] && printf %s "$2" > "$OPENSSL_SUBJ"; '
                                 'shift; done; exit 0\n')
        (stub / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{stub}:{os.environ['PATH']}", "OPENSSL_SUBJ": str(tmp_path / "subj")}
    result = subprocess.run(["bash", "-c", script.replace("chmod 0600", ": chmod")], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()
    assert (tmp_path / "tls" / domain).is_dir()  # the domain arrived as one literal directory name
    assert (tmp_path / "subj").read_text() == f"/CN={domain}"


@pytest.mark.parametrize("domain", ["a.com; location ~ ^/metrics { proxy_pass http://vllm_backend; } #",
                                    "a.com\nlocation", "../../etc/x", "a b"])
def test_nginx_refuses_a_domain_that_is_not_one_token(domain: str) -> None:
    lb = prod().stack.config.load_balancer.model_copy(update={"tls_domain": domain})
    with pytest.raises(ValueError, match="cannot"):
        nginx_conf(unvalidated(prod().stack, load_balancer=lb), ["10.0.0.2"])
    from gpu_inference.render._common import nginx_token

    if "/" not in domain:  # a path is one nginx token; tls_paths refuses it (no traversal out of tls_dir)
        with pytest.raises(ValueError, match=r"nginx\.conf"):
            nginx_token(domain, "loadBalancer.tlsDomain")


def test_yaml_files_keep_a_hostile_stack_name_in_its_comment() -> None:
    stack = dataclasses.replace(dev().stack, name="x\nruncmd: [[touch, /tmp/pwned]]")
    doc = yaml.safe_load(load_balancer_cloud_init(stack, ["10.0.0.2"], None))
    assert doc["runcmd"] == [["/usr/local/sbin/gpu-inference-lb-bootstrap"]]
    with pytest.raises(ValueError, match="comment lines only"):  # a header that would break out is refused
        prometheus_config(stack, ["10.0.0.2:8000"], ["10.0.0.2:9100"], ["10.0.0.2:9400"])


def test_systemd_text_doubles_specifiers_and_refuses_line_breaks() -> None:
    from gpu_inference.render._common import systemd_text

    assert systemd_text("model %n 100%") == "model %%n 100%%"
    with pytest.raises(ValueError):
        systemd_text("a\nExecStart=/bin/sh")
