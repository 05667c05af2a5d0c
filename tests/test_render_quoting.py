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
from gpu_inference.render.acme import CertbotPaths, obtain_script
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


@pytest.mark.parametrize("domain", [
    "a.com;$(touch${IFS}pwned)`touch pwned2`'\"",  # the attack: it ran as root at first boot
    "a.com; location ~ ^/metrics { proxy_pass http://vllm_backend; } #",
    "a.com\nlocation", "../../etc/x", "a b", "..", "a..b.com",
])  # fmt: skip
def test_every_renderer_of_the_tls_domain_refuses_one_that_is_not_a_dns_name(domain: str) -> None:
    """nginx has no quoting that neutralises `;`, `{` or `$`, and the domain names a directory: the renderers
    (LB bootstrap, nginx.conf, the certbot script) refuse anything but DNS-name characters rather than escape it."""
    lb = prod().stack.config.load_balancer.model_copy(update={"tls_domain": domain})
    stack = unvalidated(prod().stack, load_balancer=lb)
    for render in (lambda: lb_bootstrap(stack, NginxPaths()), lambda: nginx_conf(stack, ["10.0.0.2"]),
                   lambda: obtain_script(stack)):
        with pytest.raises(ValueError, match="is not a DNS name"):
            render()


def test_the_certbot_script_keeps_unvalidated_acme_values_literal(tmp_path: Path) -> None:
    """acmeServer / acmeEmail past their validators: the comment naming the server stays one line and certbot
    gets each value as one argument (a certbot stub records them); nothing the values spell runs."""
    server = "https://acme.test/dir\ntouch pwned\n$(touch pwned2)"
    email = "ops@example.com'; touch pwned3; '"
    lb = prod().stack.config.load_balancer.model_copy(update={"acme_server": server, "acme_email": email})
    paths, certbot = NginxPaths.inside(tmp_path), CertbotPaths.inside(tmp_path / "le")
    script = obtain_script(unvalidated(prod().stack, load_balancer=lb), paths, certbot)
    # SC2016 ("expressions don't expand in single quotes") is the point here: the value is literal.
    check = run([tool("shellcheck"), "--shell=bash", "--severity=style", "--exclude=SC2016",
                 str(write(tmp_path / "obtain.sh", script))])
    assert check.returncode == 0, check.stdout
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "certbot").write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\0" "$a"; done > "$CERTBOT_ARGS"\n')
    (stub / "certbot").chmod(0o755)
    env = {**os.environ, "PATH": f"{stub}:{os.environ['PATH']}", "CERTBOT_ARGS": str(tmp_path / "args")}
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    args = (tmp_path / "args").read_text().split("\0")
    assert args[args.index("--server") + 1] == server and args[args.index("-m") + 1] == email
    assert not any((tmp_path / name).exists() for name in ("pwned", "pwned2", "pwned3"))


def test_yaml_files_keep_a_hostile_stack_name_in_its_comment() -> None:
    stack = dataclasses.replace(dev().stack, name="x\nruncmd: [[touch, /tmp/pwned]]")
    doc = yaml.safe_load(load_balancer_cloud_init(stack, ["10.0.0.2"], None))
    # The runcmd is the renderer's own (the bootstrap, then mtail's unit): the name did not add a command.
    assert doc["runcmd"][0] == ["/usr/local/sbin/gpu-inference-lb-bootstrap"]
    assert ["touch", "/tmp/pwned"] not in doc["runcmd"]
    assert doc["runcmd"] == yaml.safe_load(load_balancer_cloud_init(dev().stack, ["10.0.0.2"], None))["runcmd"]
    with pytest.raises(ValueError, match="comment lines only"):  # a header that would break out is refused
        prometheus_config(stack, ["10.0.0.2:8000"], ["10.0.0.2:9100"], ["10.0.0.2:9400"])


def test_systemd_text_doubles_specifiers_and_refuses_line_breaks() -> None:
    from gpu_inference.render._common import systemd_text

    assert systemd_text("model %n 100%") == "model %%n 100%%"
    with pytest.raises(ValueError):
        systemd_text("a\nExecStart=/bin/sh")


def test_an_expanded_argument_reaches_systemd_verbatim_and_nothing_else_does() -> None:
    """private_ip_publish's ``${GPU_INFERENCE_PRIVATE_IP}`` must stay a variable systemd expands (an Expanded
    argument); the same text as a plain str is escaped ($$), and Expanded refuses anything but ${VAR} and
    address characters, so it cannot smuggle a quote, a space or a line break past systemd_quote."""
    from gpu_inference.render._common import Expanded, private_ip_publish

    published = private_ip_publish(8000)[-1]
    assert isinstance(published, Expanded) and systemd_quote(published) == "${GPU_INFERENCE_PRIVATE_IP}:8000:8000"
    plain = systemd_quote("${GPU_INFERENCE_PRIVATE_IP}:8000:8000")
    assert "$${" in plain and systemd_words(plain) == ["${GPU_INFERENCE_PRIVATE_IP}:8000:8000"]  # literal
    for value in [*HOSTILE, "${X} -v /:/host", "${X}\n", "${x}"]:
        with pytest.raises(ValueError):
            Expanded(value)
