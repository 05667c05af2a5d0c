"""First-boot paths run for real with their side effects stubbed: the Prometheus host's bootstrap when the
data volume does not mount, and scripts/install-validators.sh on a machine without the validators.

The stubs are small shell scripts first on PATH that record their arguments; everything else in the scripts
(bash itself, `mountpoint`, `install`, `sed`, `grep`, the traps) is the real thing.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from gpu_inference.render.cloud_init import PROMETHEUS_DATA_DIR, monitoring_bootstrap
from tests.render_fixtures import dev

REPO = Path(__file__).resolve().parents[1]
BASH = shutil.which("bash") or "/bin/bash"


def _stub(bin_dir: Path, name: str, body: str, log: Path) -> None:
    """A stub that appends `name arg...` to ``log`` and then runs ``body``."""
    path = bin_dir / name
    path.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\n{body}\n')
    path.chmod(0o755)


def _any_block_device() -> Path:
    """The bootstrap only checks `[[ -b ]]` and resolves the path; blkid/mkfs/mount are stubbed, so any
    block device of this machine stands in for the volume without being touched."""
    for entry in sorted(Path("/dev").iterdir()):
        try:
            if stat.S_ISBLK(entry.lstat().st_mode):
                return entry
        except OSError:
            continue
    pytest.skip("no block device under /dev to stand in for the data volume")


# ---------------------------------------------------------------------------------------------
# The Prometheus host when the volume does not mount
# ---------------------------------------------------------------------------------------------


def _run_monitoring_bootstrap(tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], str]:
    device = _any_block_device()
    data_dir = tmp_path / "metrics2"
    fstab = tmp_path / "fstab"
    fstab.write_text("# empty\n")
    log = tmp_path / "calls.log"
    log.touch()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # The rendered script with its two host paths moved into tmp_path (nothing else changes).
    script = monitoring_bootstrap(dev().stack, [str(device)])
    assert script.count(f"data_dir={PROMETHEUS_DATA_DIR}\n") == 1 and "/etc/fstab" in script
    script = script.replace(f"data_dir={PROMETHEUS_DATA_DIR}\n", f"data_dir={data_dir}\n").replace("/etc/fstab", str(fstab))
    (tmp_path / "bootstrap").write_text(script)
    # blkid: an ext4 filesystem with a UUID is there (probe exit 0).
    _stub(bin_dir, "blkid", """case "$*" in
  *TYPE*) echo ext4 ;;
  *UUID*) echo 0b1c2d3e-0000-4000-8000-000000000000 ;;
esac
exit 0""", log)
    # mount: what util-linux does for a `nofail` entry whose UUID it cannot resolve: nothing, exit 0.
    _stub(bin_dir, "mount", "exit 0", log)
    for name in ("systemctl", "udevadm", "mkfs.ext4", "resize2fs", "promtool", "chown"):
        _stub(bin_dir, name, "exit 0", log)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    result = subprocess.run([BASH, str(tmp_path / "bootstrap")], env=env, capture_output=True, text=True, timeout=60)
    return result, log.read_text()


@pytest.mark.skipif(shutil.which("mountpoint") is None, reason="mountpoint (util-linux) not installed")
def test_monitoring_bootstrap_fails_loudly_when_the_volume_does_not_mount(tmp_path: Path) -> None:
    result, calls = _run_monitoring_bootstrap(tmp_path)
    out = result.stdout + result.stderr
    # The mount was attempted (so this is the "mount exited 0 but mounted nothing" case, not a missing device).
    assert f"mount {tmp_path / 'metrics2'}" in calls, calls
    # Non-zero: runcmd fails, and `cloud-init status` says error.
    assert result.returncode == 1, out
    assert "ERROR:" in out and "is not mounted at" in out, out
    assert "scraping" not in out, out
    # Prometheus was never (re)started onto the root disk.
    assert "systemctl restart prometheus.service" not in calls, calls
    assert "systemctl enable" not in calls, calls


# ---------------------------------------------------------------------------------------------
# scripts/install-validators.sh on a machine that has none of the validators
# ---------------------------------------------------------------------------------------------

INSTALL_VALIDATORS = REPO / "scripts" / "install-validators.sh"
POLICY = "/usr/sbin/policy-rc.d"
# What the script itself runs besides the validators it looks for and apt-get (stubbed).
_SCRIPT_TOOLS = ("id", "tee", "chmod", "rm", "cat")


def _validator_packages() -> list[str]:
    return [line.strip() for line in (REPO / ".ci" / "validators.txt").read_text().splitlines() if line.strip()]


def _run_install_validators(
    tmp_path: Path, script: Path, policy_exists: bool
) -> tuple[subprocess.CompletedProcess[str], str, Path]:
    """Run the script as root in a private mount namespace whose /usr/sbin is an empty temporary directory
    (so the policy-rc.d it creates or finds is not this machine's), with a PATH that holds only the tools it
    uses and an apt-get stub: every validator looks missing, so this is the first-run path."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in _SCRIPT_TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    log = tmp_path / "apt.log"
    log.touch()
    # The stub records its arguments and what policy-rc.d held while it ran (postinst scripts must see it).
    (bin_dir / "apt-get").write_text(
        f'#!{BASH}\necho "apt-get $* | policy: $(cat {POLICY} 2>/dev/null | tr "\\n" " ")" >> "{log}"\n'
    )
    (bin_dir / "apt-get").chmod(0o755)
    tr = shutil.which("tr")
    assert tr
    (bin_dir / "tr").symlink_to(tr)
    sbin = tmp_path / "sbin"
    sbin.mkdir()
    inner = tmp_path / "inner.sh"
    setup = f"printf '#!/bin/sh\\n# shipped by the image\\nexit 101\\n' > {POLICY}; chmod 755 {POLICY}; " if policy_exists else ""
    inner.write_text(
        f"set -e\nmount --bind {sbin} /usr/sbin\n{setup}"
        f"rc=0; PATH={bin_dir} {BASH} {script} || rc=$?\n"
        f'echo "exit=$rc"\n'
        f'if [ -e {POLICY} ]; then echo "policy-after:"; cat {POLICY}; else echo "policy-after: absent"; fi\n'
    )
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", BASH, str(inner)],
                            capture_output=True, text=True, timeout=60)
    return result, log.read_text(), sbin


needs_root_unshare = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare (a private mount namespace hides /usr/sbin/policy-rc.d); CI runs as root",
)


@needs_root_unshare
@pytest.mark.parametrize("policy_exists", [True, False], ids=["image-ships-policy-rc.d", "no-policy-rc.d"])
def test_install_validators_first_run(tmp_path: Path, policy_exists: bool) -> None:
    result, apt_calls, _ = _run_install_validators(tmp_path, INSTALL_VALIDATORS, policy_exists)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "exit=0" in result.stdout, out
    lines = apt_calls.splitlines()
    assert [line.split(" | ")[0] for line in lines] == [
        "apt-get update -qq",
        "apt-get install -y -qq --no-install-recommends " + " ".join(_install_order()),
    ], apt_calls
    # While apt-get ran, a policy-rc.d refusing every service start (exit 101) was in place.
    assert all("exit 101" in line for line in lines), apt_calls
    if policy_exists:
        # The image's own file is left exactly as it was.
        assert "policy-after:\n#!/bin/sh\n# shipped by the image\nexit 101" in result.stdout, out
    else:
        # The script's own file is gone again: services start normally afterwards.
        assert "policy-after: absent" in result.stdout, out
    assert "installed:" in result.stdout, out


def _install_order() -> list[str]:
    """The packages in the order the script installs them (its `cmd:package` list), every one of .ci/validators.txt
    that the script is responsible for."""
    text = INSTALL_VALIDATORS.read_text()
    # The list continues over lines (`\` at a line's end): those are no pairs.
    pairs = [p for p in text.split("for cmd_pkg in ", 1)[1].split(";", 1)[0].split() if p != "\\"]
    return [pair.split(":", 1)[1] for pair in pairs]


def test_install_validators_covers_the_ci_list() -> None:
    # Every package the script installs is declared for CI, so the two lists cannot drift apart silently.
    assert set(_install_order()) <= set(_validator_packages())


@needs_root_unshare
def test_install_validators_test_catches_the_old_exit_trap(tmp_path: Path) -> None:
    """The trap the script had before: `[ ... ] && rm` returns 1 when nothing was created, and an EXIT trap's
    last status becomes the script's. The first-run test above must see that as a failure."""
    text = INSTALL_VALIDATORS.read_text()
    fixed = 'cleanup() {\n  if [ "$created_policy" -eq 1 ]; then $SUDO rm -f "$policy"; fi\n}'
    assert fixed in text
    old = tmp_path / "old-install-validators.sh"
    old.write_text(text.replace(fixed, 'cleanup() { [ "$created_policy" -eq 1 ] && $SUDO rm -f "$policy"; }'))
    result, _, _ = _run_install_validators(tmp_path, old, policy_exists=True)
    assert "exit=1" in result.stdout, result.stdout + result.stderr
