"""certbot's deploy hook, run for real against files on disk: a pair nginx refuses never stays in place."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from render_fixtures import prod

from gpu_inference.render.acme import deploy_hook_script
from gpu_inference.render.nginx import NginxPaths, tls_paths


@pytest.mark.parametrize("nginx_accepts", [True, False])
def test_the_deploy_hook_keeps_the_served_pair_when_nginx_refuses_the_new_one(tmp_path: Path, nginx_accepts: bool) -> None:
    stack = prod().stack
    paths = NginxPaths.inside(tmp_path / "nginx")
    domain = stack.config.load_balancer.tls_domain
    assert domain
    cert, key = map(Path, tls_paths(domain, paths))
    cert.parent.mkdir(parents=True)
    cert.write_text("PLACEHOLDER CERT\n")
    key.write_text("PLACEHOLDER KEY\n")
    lineage = tmp_path / "live"
    lineage.mkdir()
    (lineage / "fullchain.pem").write_text("NEW CERT\n")
    (lineage / "privkey.pem").write_text("NEW KEY\n")
    reloads = tmp_path / "reloads"
    # `nginx -t` stands in as true/false; the reload records that it ran.
    script = deploy_hook_script(stack, paths, check=("true",) if nginx_accepts else ("false",),
                                reload=("touch", str(reloads)))  # fmt: skip
    proc = subprocess.run(["bash", "-c", script], env={**os.environ, "RENEWED_LINEAGE": str(lineage)},
                          capture_output=True, text=True, check=False, timeout=30)  # fmt: skip
    if nginx_accepts:
        assert proc.returncode == 0, proc.stderr
        assert (cert.read_text(), key.read_text()) == ("NEW CERT\n", "NEW KEY\n") and reloads.exists()
    else:
        assert proc.returncode == 1
        assert (cert.read_text(), key.read_text()) == ("PLACEHOLDER CERT\n", "PLACEHOLDER KEY\n")
        assert not reloads.exists() and "previous one is back" in proc.stdout
    assert not list(cert.parent.glob("*.old")) or not nginx_accepts
