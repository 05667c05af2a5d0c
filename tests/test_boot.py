"""The boot test (bench/boot.py): the rendered cloud-init of the load balancer, the Prometheus host and a GPU
node, run by cloud-init itself in a Debian root, and the services it leaves checked over loopback.

About 2 minutes with the cached root, 3-4 minutes on a machine that builds it first (debootstrap from the
Debian mirror apt uses); see bench/boot.py for what stands in for what.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NEEDS = ("debootstrap", "unshare", "losetup", "mount", "chroot", "ip", "findmnt")


@pytest.mark.skipif(os.geteuid() != 0 or any(shutil.which(t) is None for t in NEEDS),
                    reason=f"needs root and {', '.join(NEEDS)} (scripts/install-validators.sh installs debootstrap)")
def test_rendered_hosts_boot_and_serve() -> None:
    result = subprocess.run([sys.executable, str(REPO / "bench" / "boot.py")], capture_output=True, text=True,
                            timeout=1800, cwd=REPO)
    out = result.stdout + result.stderr[-6000:]
    print(result.stdout)  # the per-step figures, visible with -s or on failure
    assert result.returncode == 0, out
    lines = result.stdout.splitlines()
    assert any(line.startswith("boot: lb: nginx /health [200, 'ok'], /v1/chat/completions [200, 'chat.completion']")
               for line in lines), out
    assert any(line.startswith("boot: monitoring:") and "TSDB on /dev/loop" in line for line in lines), out
    assert any(line.startswith("boot: gpu: docker run recorded = preview's") for line in lines), out
    assert lines[-1].startswith("boot: ok "), out
