"""Boot test: the rendered cloud-init of the load balancer, the Prometheus host and a GPU node, run for real.

Once (cached): `debootstrap` a minimal Debian root with cloud-init, from the Debian mirror this machine's apt
uses, and download (not install) the packages the hosts' cloud-init installs. Then per host, in a private
mount/UTS/PID namespace (nothing leaks onto this machine; every process dies with the namespace):

(The Prometheus host boots twice: once as it should, once with a `mount` that mounts nothing and exits 0,
as util-linux does for a `nofail` entry whose UUID it cannot resolve; that boot must end in
`cloud-init status` error with the bootstrap's ERROR line, and no Prometheus.)

1. an overlay over the cached root (the cache stays pristine), a private /dev (tmpfs with only the nodes
   needed), /proc, /sys, /run;
2. a NoCloud seed (/var/lib/cloud/seed/nocloud/{user-data,meta-data}) holding the rendered user data;
3. cloud-init's four stages in the chroot: `init --local`, `init`, `modules --mode config`,
   `modules --mode final` (the last runs the rendered bootstrap from runcmd); then `cloud-init status`
   must say done and /run/cloud-init/result.json must list no error;
4. in a private network namespace (loopback only, so the hosts' real ports 80/9090/9100 are free and
   nothing can leave the machine): the services the bootstrap asked systemctl for, started from what
   cloud-init left in the root, and checked over HTTP.

What stands in for what, and why:
- No systemd runs as PID 1 in a chroot: /usr/local/bin/systemctl is bench/boot_stubs/systemctl, which
  records every call during cloud-init and afterwards starts those units from their unit files (see its
  docstring for exactly which directives it honours). /usr/sbin/policy-rc.d (exit 101) keeps the packages'
  postinst scripts from starting daemons during `apt-get install`, as on a machine without an init.
- The Prometheus data volume is a loop device over a sparse file (blank: the bootstrap formats it ext4),
  reached through the same /dev/disk/by-id path the DigitalOcean volume has.
- The GPU node: docker, nvidia-smi, nvidia-ctk are bench/boot_stubs/recorder (they record argv); the
  recorded `docker run` of vllm.service must equal the vLLM command the offline preview rendered, with the
  private address the bootstrap wrote to network.env in its `-p` flag. The cloud's metadata service is curl
  as the same recorder: it answers the lookup the stack's cloud renders (`Cloud.private_ipv4_lookup`) with
  METADATA_PRIVATE_IPV4 and fails every other URL (nothing leaves the machine). With
  them present the bootstrap takes its "already installed" branches (as on the providers' GPU images), so
  its fallbacks (apt's docker.io, NVIDIA's container-toolkit repository, which this machine cannot reach)
  are not run; docker.service is not started (there is no daemon).
- Grafana: its bootstrap installs from Grafana's apt repository, which this machine cannot reach, so the
  Prometheus host's user data is rendered with `monitoring.grafana: false` (everything else as in the dev
  stack); tests/test_grafana.py checks Grafana's files and bootstrap with their own validators.
- The hosts are Ubuntu images in production; the packages they install (nginx, prometheus,
  prometheus-node-exporter) have the same names and paths on Debian bookworm, which this root is. No
  Ubuntu repository is used and nothing is mapped.
- The LB and Prometheus user data are rendered for one node at 127.0.0.1 (a fake vLLM,
  tests/dataplane/fake_vllm.py, listens on its real port 8000 in the namespace); the GPU node's is the
  preview's own file for the dev stack, unchanged.

Run as root: `.venv/bin/python bench/boot.py` (needs debootstrap, unshare, losetup, mount). Prints a
line per step with its time, and `boot: ok cold=<0|1> total_s=<s>` last. `--cache DIR` moves the cached
root (default ~/.cache/gpu-inference/boot-root); `--rebuild` rebuilds it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STUBS = REPO / "bench" / "boot_stubs"
SUITE = "bookworm"
# What a Debian/Ubuntu cloud image has before user data runs: cloud-init (and python3 for it), the tools the
# Prometheus bootstrap uses on the volume (blkid/mount/mountpoint, mkfs.ext4/resize2fs), CA certificates, and
# locales (cloud-init's locale module runs locale-gen).
# Installed with apt inside the new root, not with debootstrap --include: debootstrap's resolver does not follow
# virtual packages (python3-cryptography needs python3-cffi-backend-api-min, provided by python3-cffi-backend).
INCLUDE = ("cloud-init", "python3", "e2fsprogs", "util-linux", "mount", "ca-certificates", "iproute2", "locales")
# Downloaded into the root's apt cache when it is built, so a cached run installs them without fetching.
PREFETCH = ("nginx", "prometheus", "prometheus-node-exporter")
ROOT_KEY = f"debian-{SUITE}-minbase-v3"
DEFAULT_CACHE = Path(os.environ.get("GPU_INFERENCE_BOOT_CACHE", "~/.cache/gpu-inference/boot-root")).expanduser()
STAGES = (["init", "--local"], ["init"], ["modules", "--mode", "config"], ["modules", "--mode", "final"])
STAGE_TIMEOUT_S = 600
LOG = "/var/log/gpu-inference-boot"
VOLUME_BYTES = 512 * 1024 * 1024
API_KEY = "boot-test-key"
NODE_ADDRESS = "127.0.0.1"
# What the stand-in metadata service answers for the GPU node's private IPv4 (a VPC address; nothing binds it).
METADATA_PRIVATE_IPV4 = "10.118.0.7"
METADATA_ANSWERS = "/etc/gpu-inference-boot/metadata.json"


def say(msg: str) -> None:
    print(f"boot: {msg}", flush=True)


def run(argv: list[str], timeout: float = 600, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and result.returncode != 0:
        raise SystemExit(f"boot: FAILED {shlex.join(argv)} (exit {result.returncode})\n{result.stdout}\n{result.stderr}")
    return result


# ---------------------------------------------------------------------------------------------
# The cached root
# ---------------------------------------------------------------------------------------------


def debian_mirror() -> str:
    """The Debian archive this machine's apt uses (deb822 `URIs:` or one-line `deb URL SUITE`), not security."""
    files = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text()
        uris = re.findall(r"^URIs:\s*(\S+)", text, re.M) + re.findall(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", text, re.M)
        for uri in uris:
            if uri.rstrip("/").endswith("/debian"):
                return uri.rstrip("/")
    raise SystemExit("boot: no Debian mirror in /etc/apt/sources.list*")


def ensure_root(cache: Path, rebuild: bool) -> tuple[Path, bool]:
    """The cached root (built when missing); True when it was built now (a cold run)."""
    root = cache / ROOT_KEY
    ready = root / ".gpu-inference-boot-ready"
    if ready.exists() and not rebuild:
        return root, False
    mirror = debian_mirror()
    tmp = cache / f"{ROOT_KEY}.building"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    tmp.mkdir(parents=True)
    t0 = time.monotonic()
    run(["debootstrap", "--variant=minbase", SUITE, str(tmp), mirror], timeout=1800)
    say(f"debootstrap {SUITE} from {mirror}: {time.monotonic() - t0:.0f}s")
    t0 = time.monotonic()
    shutil.copy("/etc/resolv.conf", tmp / "etc/resolv.conf")
    # No init in a chroot: keep the packages' postinst scripts from starting daemons (invoke-rc.d asks this).
    policy = tmp / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    apt = f"chroot {tmp} env DEBIAN_FRONTEND=noninteractive apt-get"
    inner = (f"mount -t proc proc {tmp}/proc && {apt} update -qq && "
             f"{apt} install -y -qq --no-install-recommends {' '.join(INCLUDE)} && "
             f"{apt} install -y -qq --download-only --no-install-recommends {' '.join(PREFETCH)}")
    run(["unshare", "--mount", "--uts", "--propagation", "private", "sh", "-c", inner], timeout=1800)
    policy.unlink()
    say(f"installed {', '.join(INCLUDE)}; downloaded {', '.join(PREFETCH)}: {time.monotonic() - t0:.0f}s")
    # cloud-init's locale module sets en_US.UTF-8 (its default) and runs locale-gen, which on Debian builds what
    # /etc/locale.gen lists rather than its argument: list it, as a cloud image built with that locale has it.
    gen = tmp / "etc/locale.gen"
    gen.write_text(gen.read_text().replace("# en_US.UTF-8 UTF-8", "en_US.UTF-8 UTF-8"))
    # NoCloud only: no network datasource is probed (there is none here), and None keeps cloud-init going.
    (tmp / "etc/cloud/cloud.cfg.d/90-gpu-inference-boot.cfg").write_text(
        "# bench/boot.py: the seed in /var/lib/cloud/seed/nocloud is the only datasource.\n"
        "datasource_list: [NoCloud, None]\n"
        "# A chroot has no interfaces of its own to configure (it shares this machine's network while apt runs).\n"
        "network: {config: disabled}\n"
    )
    ready_tmp = tmp / ready.name
    ready_tmp.write_text(f"{SUITE} {mirror} {' '.join(INCLUDE)} | {' '.join(PREFETCH)}\n")
    tmp.rename(root)
    return root, True


# ---------------------------------------------------------------------------------------------
# Inside the namespace: one host
# ---------------------------------------------------------------------------------------------


def _mknod(path: Path, kind: str, major: int, minor: int, mode: int = 0o666) -> None:
    run(["mknod", "-m", oct(mode)[2:], str(path), kind, str(major), str(minor)])


def prepare_root(lower: Path, work: Path, loop_device: str | None, by_id: str | None,
                 metadata: dict[str, str] | None = None) -> Path:
    """Overlay over the cached root, a private /dev, /proc, /sys, /run, the stubs; returns the root."""
    root, upper, ovl_work = work / "root", work / "upper", work / "ovl-work"
    for d in (root, upper, ovl_work):
        d.mkdir(parents=True)
    run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower},upperdir={upper},workdir={ovl_work}", str(root)])
    run(["mount", "-t", "tmpfs", "-o", "mode=755", "dev", str(root / "dev")])
    dev = root / "dev"
    for name, minor in (("null", 3), ("zero", 5), ("full", 7), ("random", 8), ("urandom", 9)):
        _mknod(dev / name, "c", 1, minor)
    _mknod(dev / "tty", "c", 5, 0)
    (dev / "pts").mkdir()
    (dev / "shm").mkdir()
    for link, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        (dev / link).symlink_to(target)
    if loop_device and by_id:
        st = os.stat(loop_device)
        _mknod(dev / Path(loop_device).name, "b", os.major(st.st_rdev), os.minor(st.st_rdev), 0o660)
        by_id_link = dev / by_id.removeprefix("/dev/")
        by_id_link.parent.mkdir(parents=True)
        by_id_link.symlink_to(f"../../{Path(loop_device).name}")
    run(["mount", "-t", "proc", "proc", str(root / "proc")])
    run(["mount", "-t", "sysfs", "-o", "ro", "sys", str(root / "sys")])
    for tmpfs in ("run", "tmp"):
        run(["mount", "-t", "tmpfs", "-o", "mode=1777" if tmpfs == "tmp" else "mode=755", tmpfs, str(root / tmpfs)])
    # The stubs (see the module docstring): systemctl first on PATH; the GPU tools where the units call them.
    shutil.copy(STUBS / "systemctl", root / "usr/local/bin/systemctl")
    for name in ("docker", "nvidia-smi", "nvidia-ctk", "curl"):
        shutil.copy(STUBS / "recorder", root / "usr/bin" / name)
    answers = root / METADATA_ANSWERS.lstrip("/")
    answers.parent.mkdir(parents=True, exist_ok=True)
    answers.write_text(json.dumps(metadata or {}))
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\n# bench/boot.py: no init in a chroot; services start in the service phase.\nexit 101\n")
    policy.chmod(0o755)
    return root


def seed(root: Path, role: str, user_data: str) -> None:
    nocloud = root / "var/lib/cloud/seed/nocloud"
    nocloud.mkdir(parents=True)
    (nocloud / "user-data").write_text(user_data)
    (nocloud / "meta-data").write_text(f"instance-id: boot-{role}\nlocal-hostname: boot-{role}\n")


def cloud_init(root: Path, role: str, expect_error: bool = False) -> dict[str, Any]:
    """The four stages, then status and result.json; raises on any error (or, with ``expect_error``, unless the
    final stage failed and `cloud-init status` says error)."""
    log = root / LOG.lstrip("/")
    log.mkdir(parents=True, exist_ok=True)
    timings = {}
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}
    for stage in STAGES:
        t0 = time.monotonic()
        result = run(["chroot", str(root), "cloud-init", *stage], timeout=STAGE_TIMEOUT_S, check=False, env=env)
        timings[" ".join(stage)] = round(time.monotonic() - t0, 1)
        (log / f"cloud-init-{'-'.join(s.lstrip('-') for s in stage)}.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0 and not (expect_error and stage[-1] == "final"):
            output = (root / "var/log/cloud-init-output.log")
            tail = output.read_text()[-4000:] if output.exists() else ""
            raise SystemExit(f"boot: {role}: cloud-init {' '.join(stage)} exited {result.returncode}\n"
                             f"{result.stderr[-3000:]}\n--- cloud-init-output.log ---\n{tail}")
    status = run(["chroot", str(root), "cloud-init", "status", "--long"], check=False, env=env)
    result_json = json.loads((root / "run/cloud-init/result.json").read_text())
    errors = result_json["v1"]["errors"]
    datasource = result_json["v1"]["datasource"]
    if expect_error:
        output_text = (root / "var/log/cloud-init-output.log").read_text()
        failed = [line for line in output_text.splitlines() if "ERROR:" in line]
        if status.returncode == 0 or not errors or "error" not in status.stdout:
            raise SystemExit(f"boot: {role}: expected cloud-init to report an error; status exit "
                             f"{status.returncode}, errors {errors}\n{status.stdout}")
        say(f"{role}: cloud-init status exit {status.returncode}, {status.stdout.splitlines()[0]}; "
            f"bootstrap: {failed[-1].strip() if failed else '(no ERROR line)'}")
        return {"stages_s": timings, "status_exit": status.returncode, "errors": errors, "error_lines": failed}
    if status.returncode != 0 or errors or "NoCloud" not in (datasource or ""):
        raise SystemExit(f"boot: {role}: cloud-init status exit {status.returncode}, errors {errors}, "
                         f"datasource {datasource}\n{status.stdout}")
    say(f"{role}: cloud-init stages {timings}; status: {status.stdout.splitlines()[0]}; datasource: {datasource}")
    return {"stages_s": timings, "datasource": datasource}


def systemctl_calls(root: Path) -> list[list[str]]:
    path = root / LOG.lstrip("/") / "systemctl.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def units_to_start(calls: list[list[str]]) -> list[str]:
    """What the bootstrap asked to run: `restart`/`start` and `enable --now`, in order, each once."""
    units: list[str] = []
    for argv in calls:
        words = [a for a in argv if not a.startswith("-")]
        if words and (words[0] in ("start", "restart") or (words[0] == "enable" and "--now" in argv)):
            units += [u for u in words[1:] if u not in units]
    return units


def recorded(root: Path, tool: str) -> list[list[str]]:
    path = root / LOG.lstrip("/") / f"{tool}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _http(url: str, headers: dict[str, str] | None = None, body: bytes | None = None) -> tuple[int, str]:
    assert url.startswith(("http://127.0.0.1", "http://localhost")), url
    req = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _wait(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except OSError as err:
            last = err
        time.sleep(0.5)
    raise SystemExit(f"boot: timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def start_units(root: Path, units: list[str]) -> dict[str, int]:
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "GPU_INFERENCE_BOOT_START": "1"}
    codes = {}
    for unit in units:
        result = run(["chroot", str(root), "systemctl", "start", unit], check=False, env=env, timeout=120)
        codes[unit] = result.returncode
        if result.returncode != 0:
            raise SystemExit(f"boot: starting {unit} failed: {result.stdout}{result.stderr}")
    return codes


def fake_vllm(model: str, api_key: str | None) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "tests.dataplane.fake_vllm", "--host", NODE_ADDRESS, "--port", "8000",
            "--model", model, "--lifetime", "300"]
    if api_key:
        argv += ["--api-key", api_key]
    return subprocess.Popen(argv, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def serve(role: str, root: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """Runs in the private network namespace: start what cloud-init left, check it over loopback."""
    run(["ip", "link", "set", "lo", "up"])
    units = units_to_start(systemctl_calls(root))
    out: dict[str, Any] = {"units": units}
    if role == "gpu":
        # docker is the recorder stub: there is no daemon, so no docker.service to (re)start.
        out["not_started"] = [u for u in units if u == "docker.service"]
        start_units(root, [u for u in units if u != "docker.service"])
        out["docker"] = recorded(root, "docker")
        out["nvidia-smi"] = recorded(root, "nvidia-smi")
        out["nvidia-ctk"] = recorded(root, "nvidia-ctk")
        out["curl"] = recorded(root, "curl")
        env_file = root / spec["network_env_file"].lstrip("/")
        out["network_env"] = env_file.read_text() if env_file.exists() else None
        return out
    backend = fake_vllm(spec["model"], spec.get("api_key"))
    try:
        _wait("fake vLLM on :8000", lambda: _http("http://127.0.0.1:8000/health")[0] == 200, 20)
        t0 = time.monotonic()
        start_units(root, units)
        if role == "lb":
            status, body = _wait("nginx /health", lambda: (r := _http("http://127.0.0.1/health"))[0] == 200 and r, 20)
            out["health"] = [status, body.strip()]
            payload = json.dumps({"model": spec["model"], "messages": [{"role": "user", "content": "hi"}],
                                  "max_tokens": 4}).encode()
            headers = {"content-type": "application/json", "authorization": f"Bearer {spec['api_key']}"}
            status, body = _http("http://127.0.0.1/v1/chat/completions", headers, payload)
            out["chat"] = [status, json.loads(body).get("object") if status == 200 else body[:200]]
            out["chat_without_key"] = _http("http://127.0.0.1/v1/chat/completions",
                                            {"content-type": "application/json"}, payload)[0]
        else:
            _wait("Prometheus ready", lambda: _http("http://127.0.0.1:9090/-/ready")[0] == 200, 60)
            rules = json.loads(_http("http://127.0.0.1:9090/api/v1/rules")[1])["data"]["groups"]
            out["rules_loaded"] = sorted(r["name"] for g in rules for r in g["rules"])
            out["rule_health"] = sorted({r.get("health", "?") for g in rules for r in g["rules"]})

            def scraped() -> Any:
                targets = json.loads(_http("http://127.0.0.1:9090/api/v1/targets")[1])["data"]["activeTargets"]
                health = {f"{t['labels']['job']}/{t['labels'].get('node')}": t["health"] for t in targets}
                wanted = ("vllm/node-0", "prometheus/monitoring", "node/monitoring")
                return health if all(health.get(k) == "up" for k in wanted) else None

            out["targets"] = _wait("vllm, prometheus and node targets up", scraped, 60)
            query = urllib.parse.quote('vllm:num_requests_running{job="vllm"}')
            result = json.loads(_http(f"http://127.0.0.1:9090/api/v1/query?query={query}")[1])["data"]["result"]
            out["vllm_series"] = len(result)
            # The TSDB is on the data volume: the WAL directory on the loop device's filesystem.
            data = root / spec["data_dir"].lstrip("/")
            out["tsdb_source"] = run(["findmnt", "-n", "-o", "SOURCE,FSTYPE", "--target", str(data / "wal")]).stdout.split()
            out["tsdb_wal_files"] = len(list((data / "wal").iterdir()))
        out["service_start_s"] = round(time.monotonic() - t0, 1)
    finally:
        backend.terminate()
        backend.wait(10)
    return out


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def render(work: Path) -> dict[str, Any]:
    """User data per host: the LB and Prometheus host for one node at 127.0.0.1, the GPU node from the preview."""
    from gpu_inference.config import load_stack_config
    from gpu_inference.render import render_all
    from gpu_inference.render._common import NETWORK_ENV_FILE, PRIVATE_IP_VAR
    from gpu_inference.render.cloud_init import PROMETHEUS_DATA_DIR
    from gpu_inference.render.vllm import docker_run_argv
    from gpu_inference.stack import resolve_stack

    stack = resolve_stack(load_stack_config("dev"), "dev")
    api_key = API_KEY if stack.config.api_key is not None else None
    files = render_all(stack, [NODE_ADDRESS], NODE_ADDRESS, api_key, None)
    preview = work / "preview"
    result = run([sys.executable, "-m", "gpu_inference", "preview", "dev", "--out", str(preview)], cwd=REPO,
                 check=False, timeout=300)
    if result.returncode != 0:
        raise SystemExit(f"boot: the preview of dev exited {result.returncode}:\n{result.stdout[-2000:]}")
    devices = stack.cloud.volume_devices(stack.cloud.placeholder_volume(stack.name))
    lookup = stack.cloud.private_ipv4_lookup
    assert lookup is not None, f"{stack.cloud.name} renders no private IPv4 lookup"
    [metadata_url] = [w for w in shlex.split(lookup) if w.startswith("http://")]
    # Grafana's bootstrap installs from Grafana's apt repository (apt.grafana.com), which this machine cannot
    # reach: the Prometheus host boots without Grafana (monitoring.grafana false). Grafana's files, unit drop-in
    # and bootstrap are checked by tests/test_grafana.py (provisioning schema, systemd-analyze, shellcheck).
    cfg = stack.config
    no_grafana = resolve_stack(cfg.model_copy(update={"monitoring": cfg.monitoring.model_copy(update={"grafana": False})}),
                               "dev")
    monitoring_user_data = render_all(no_grafana, [NODE_ADDRESS], NODE_ADDRESS, api_key, None)["monitoring/cloud-init.yaml"]
    return {
        "lb": {"user_data": files["loadbalancer/cloud-init.yaml"], "api_key": api_key, "model": stack.config.name_for_clients},
        "monitoring": {"user_data": monitoring_user_data, "model": stack.config.name_for_clients,
                       "data_dir": PROMETHEUS_DATA_DIR, "by_id": devices[0]},
        "gpu": {"network_env_file": NETWORK_ENV_FILE, "user_data": (preview / "nodes/node-0/cloud-init.yaml").read_text(),
                # systemd expands ${GPU_INFERENCE_PRIVATE_IP} from network.env (so does the systemctl stub).
                "expected_docker_run": [a.replace(f"${{{PRIVATE_IP_VAR}}}", METADATA_PRIVATE_IPV4)
                                        for a in docker_run_argv(stack)[1:]],
                "metadata": {metadata_url: METADATA_PRIVATE_IPV4},
                "network_env": f"{PRIVATE_IP_VAR}={METADATA_PRIVATE_IPV4}\n"},
    }


# ---------------------------------------------------------------------------------------------
# Orchestration
# ---------------------------------------------------------------------------------------------


def inside(lower: Path, work: Path, specs_path: Path) -> int:
    """PID 1 of the private namespaces: boot each host in turn; its services die with this process."""
    specs = json.loads(specs_path.read_text())
    report: dict[str, Any] = {}
    run(["mount", "--make-rprivate", "/"])
    for role in ("lb", "monitoring", "monitoring-unmounted", "gpu"):
        spec = specs[role.removesuffix("-unmounted")]
        t0 = time.monotonic()
        loop = None
        if role.startswith("monitoring"):
            image = work / "prometheus-data.img"
            with open(image, "wb") as f:
                f.truncate(VOLUME_BYTES)
            loop = run(["losetup", "--find", "--show", str(image)]).stdout.strip()
            spec["loop"] = loop
        try:
            root = prepare_root(lower, work / role, loop, spec.get("by_id"), spec.get("metadata"))
            seed(root, role, spec["user_data"])
            if role == "monitoring-unmounted":
                # The same host, with a `mount` that does what util-linux does for a nofail entry whose UUID it
                # cannot resolve: nothing, exit 0. The boot must fail loudly and start no Prometheus.
                fake = root / "usr/local/sbin/mount"
                fake.write_text("#!/bin/sh\n# bench/boot.py: a nofail mount that found nothing\nexit 0\n")
                fake.chmod(0o755)
                ci = cloud_init(root, role, expect_error=True)
                started = units_to_start(systemctl_calls(root))
                if "prometheus.service" in started or not any("is not mounted at" in x for x in ci["error_lines"]):
                    raise SystemExit(f"boot: {role}: FAILED expected the bootstrap to stop before Prometheus "
                                     f"with 'is not mounted at'; started {started}, errors {ci['error_lines']}")
                say(f"{role}: Prometheus not started (units asked for: {started or 'none'})")
                report[role] = {**ci, "units": started, "seconds": round(time.monotonic() - t0, 1)}
                continue
            ci = cloud_init(root, role)
            spec_file = work / f"{role}-serve.json"
            spec_file.write_text(json.dumps(spec))
            served = run(["unshare", "--net", sys.executable, __file__, "_serve", role, str(root), str(spec_file)],
                         timeout=300, check=False)
            if served.returncode != 0:
                raise SystemExit(f"boot: {role}: service phase failed:\n{served.stdout[-3000:]}{served.stderr[-3000:]}")
            result = json.loads(served.stdout.strip().splitlines()[-1])
            result.update(ci)
            result["seconds"] = round(time.monotonic() - t0, 1)
            check(role, spec, result, root)
            report[role] = result
        finally:
            if loop:
                # Unmount everything under this host's root (the volume too) before the loop goes.
                run(["umount", "-R", str(work / role / "root")], check=False)
                run(["losetup", "-d", loop], check=False)
    print(json.dumps(report))
    return 0


def check(role: str, spec: dict[str, Any], r: dict[str, Any], root: Path) -> None:
    """The assertions; each failure names what was expected."""
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise SystemExit(f"boot: {role}: FAILED {what}\n{json.dumps(r, indent=1)[:4000]}")

    if role == "lb":
        need(r["health"] == [200, "ok"], "nginx answers /health with 200 ok")
        need(r["chat"] == [200, "chat.completion"], "nginx proxies /v1/chat/completions to the fake vLLM")
        need(r["chat_without_key"] == 401, "nginx refuses /v1/ without the API key")
        say(f"lb: nginx /health {r['health']}, /v1/chat/completions {r['chat']}, without key "
            f"{r['chat_without_key']}; units {r['units']}")
    elif role == "monitoring":
        from gpu_inference.config import load_stack_config
        from gpu_inference.render.prometheus import alerts
        from gpu_inference.stack import resolve_stack

        expected = sorted(a.name for a in alerts(resolve_stack(load_stack_config("dev"), "dev")))
        need(r["rules_loaded"] == expected, f"Prometheus loaded every rule {expected}")
        need(r["rule_health"] in (["ok"], ["ok", "unknown"], ["unknown"]), "no rule evaluates with an error")
        need(r["vllm_series"] >= 1, "Prometheus scraped vllm:num_requests_running from the fake vLLM")
        need(r["tsdb_source"][:2] == [spec["loop"], "ext4"], f"the TSDB WAL is on {spec['loop']} (ext4)")
        need(r["tsdb_wal_files"] >= 1, "the WAL has segments")
        say(f"monitoring: {len(r['rules_loaded'])} rules loaded, targets {r['targets']}, TSDB on "
            f"{' '.join(r['tsdb_source'])}; units {r['units']}")
    else:
        runs = [a for a in r["docker"] if a[:1] == ["run"] and "vllm" in a[a.index("--name") + 1:][:1]]
        need(len(runs) == 1, "vllm.service ran `docker run --name vllm` once")
        need(runs[0] == spec["expected_docker_run"], "the recorded docker run is exactly the preview's vLLM command")
        need(any(a[:2] == ["runtime", "configure"] for a in r["nvidia-ctk"]), "nvidia-ctk configured the runtime")
        need(bool(r["nvidia-smi"]), "the bootstrap checked the GPU with nvidia-smi")
        need([u for call in r["curl"] for u in call if u in spec["metadata"]] == list(spec["metadata"]),
             "the bootstrap asked the metadata service for the private IPv4 once")
        need(r["network_env"] == spec["network_env"], f"network.env holds the private address: {spec['network_env']!r}")
        say(f"gpu: private IPv4 {METADATA_PRIVATE_IPV4} from the metadata stand-in, in {spec['network_env_file']}")
        say(f"gpu: docker run recorded = preview's ({len(runs[0])} args: {shlex.join(runs[0][:6])} … "
            f"{shlex.join(runs[0][-4:])}); nvidia-ctk {r['nvidia-ctk']}; units {r['units']}")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_inside":
        return inside(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
    if len(sys.argv) > 1 and sys.argv[1] == "_serve":
        spec = json.loads(Path(sys.argv[4]).read_text())
        print(json.dumps(serve(sys.argv[2], Path(sys.argv[3]), spec)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached Debian root")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (printed)")
    args = parser.parse_args()
    missing = [t for t in ("debootstrap", "unshare", "losetup", "mount", "chroot", "ip", "findmnt") if not shutil.which(t)]
    if os.geteuid() != 0 or missing:
        print(f"boot: needs root and {', '.join(missing) or 'nothing else'}", file=sys.stderr)
        return 2
    t_all = time.monotonic()
    lower, cold = ensure_root(args.cache, args.rebuild)
    say(f"root {lower} ({'built now' if cold else 'cached'}): {time.monotonic() - t_all:.0f}s")
    work = Path(tempfile.mkdtemp(prefix="gpu-inference-boot-"))
    try:
        t0 = time.monotonic()
        specs = render(work)
        say(f"rendered the user data (and the dev preview): {time.monotonic() - t0:.1f}s")
        specs_path = work / "specs.json"
        specs_path.write_text(json.dumps(specs))
        result = subprocess.run(
            ["unshare", "--mount", "--uts", "--pid", "--fork", "--mount-proc", "--propagation", "private",
             sys.executable, __file__, "_inside", str(lower), str(work), str(specs_path)],
            capture_output=True, text=True, timeout=1800)
        sys.stdout.write("\n".join(line for line in result.stdout.splitlines() if line.startswith("boot:")) + "\n")
        if result.returncode != 0:
            sys.stderr.write(result.stderr[-6000:])
            say(f"FAILED (exit {result.returncode}); work directory {work}")
            args.keep = True
            return 1
        say(f"ok cold={int(cold)} total_s={time.monotonic() - t_all:.0f}")
        return 0
    finally:
        if args.keep:
            say(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
