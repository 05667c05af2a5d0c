"""Run the real Pulumi program offline under recording mocks: what it would register, cost, and the policies.

The only module of ``gpu_inference`` that imports Pulumi. It reads ``Pulumi.<stack>.yaml`` with the
shared validator (a bad value stops here, nothing registered), hands the values to the Pulumi runtime
exactly as the engine would (strings, JSON for structures, secret keys listed), runs ``__main__.py``
with ``runpy`` under ``pulumi.runtime.set_mocks``, and records every registration. The recording is then
priced with ``pricing.bill_for_resources`` and checked with ``policy_rules.evaluate_policies`` — the
same functions the CrossGuard pack and ``cost-diff`` use — and every machine file is rendered.

Secrets: values Pulumi marks secret are recorded as ``[secret]``. The stack file only holds ciphertext,
so the program sees a placeholder for each secret (never a real key), and nothing prints it.
"""

from __future__ import annotations

import asyncio
import atexit
import ipaddress
import json
import logging
import os
import runpy
import subprocess
import sys
import tempfile
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks, rpc, settings
from pulumi.runtime.config import set_all_config
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await
from pydantic import BaseModel, Field

from gpu_inference.config import load_stack_config, read_stack_file, stack_file_path
from gpu_inference.constants import PROJECT_DIR, PROJECT_NAME
from gpu_inference.errors import ConfigError
from gpu_inference.secrets import REDACTED, SecretValue
from gpu_inference.stack import ResolvedStack, resolve_stack

# Deterministic fake addresses: documentation ranges (RFC 5737) for public IPs, the VPC ranges the
# providers would hand out for private ones, so rendered files look real and never point anywhere.
PUBLIC_NET = ipaddress.ip_network("203.0.113.0/24")
PRIVATE_NET = {"digitalocean": ipaddress.ip_network("10.10.0.0/24"), "aws": ipaddress.ip_network("10.42.1.0/24")}
FAKE_AMI = "ami-0abc1234def567890"
# Root snapshot of the mocked AMI lookup, in GiB (Ubuntu's is 8): below every root disk the program asks for.
FAKE_AMI_ROOT_GB = 8
PREVIEW_TIMEOUT_SECONDS = 300


class RecordedResource(BaseModel):
    """One registration as the engine would see it (inputs with wire names, secrets redacted)."""

    type: str
    name: str
    urn: str
    parent: str | None = None
    custom: bool = True
    inputs: dict[str, Any] = Field(default_factory=dict)
    secret_inputs: list[str] = Field(default_factory=list)
    id: str | None = None
    addresses: dict[str, str] = Field(default_factory=dict)
    """Machines only: the mocked ``public`` and ``private`` IPv4 addresses."""
    additional_secret_outputs: list[str] = Field(default_factory=list)
    """``ResourceOptions.additional_secret_outputs`` as registered (wire names): all CrossGuard learns of secrecy."""
    delete_before_replace: bool = False
    ignore_changes: list[str] = Field(default_factory=list)
    """``ResourceOptions.ignore_changes`` as registered (wire names)."""
    dependencies: list[str] = Field(default_factory=list)
    """URNs of explicit ``depends_on`` resources (and of resources whose Outputs the inputs use)."""
    outputs: dict[str, Any] | None = None
    """Components only: what ``register_outputs`` registered (secrets redacted), as AnalyzeStack sees it."""


class PreviewReport(BaseModel):
    """Everything `preview` prints; `cost`, `cost-diff` and the tests read it."""

    stack: str
    stack_file: str
    description: str
    provider: str
    resources: list[RecordedResource]
    cost_lines: list[dict[str, Any]]
    monthly_cost_usd: float
    budget_usd: float
    within_budget: bool
    policies: list[dict[str, Any]]
    sizing: list[dict[str, Any]]
    outputs: dict[str, Any]
    files: list[str]
    exit_code: int
    """0 when every mandatory policy passes, 1 when one fails."""


def _close_event_loop() -> None:
    """Close the event loop Pulumi's runtime left open before the interpreter tears down, so its
    ``__del__`` never complains about already-closed file descriptors on stderr at exit."""
    try:
        loop = asyncio.get_event_loop()
    except RuntimeError:
        return
    if not loop.is_running() and not loop.is_closed():
        loop.close()


atexit.register(_close_event_loop)


def _ensure_event_loop() -> None:
    """Pulumi's runtime creates Futures on the current event loop. Code that ran ``asyncio.run`` earlier
    in this process (a caller, a test) leaves none set, or a closed one: give the program a fresh loop."""
    try:
        loop = asyncio.get_event_loop()
    except RuntimeError:
        loop = None
    if loop is None or loop.is_closed():
        asyncio.set_event_loop(asyncio.new_event_loop())


class PreviewError(RuntimeError):
    """The program itself failed under the mocks (a bug, not a config problem)."""


# ---------------------------------------------------------------------------------------------
# Config as the engine hands it over
# ---------------------------------------------------------------------------------------------


def engine_value(value: Any) -> str:
    """A config value the way the Pulumi engine passes it to a program: text, with JSON for structures."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def engine_config(raw: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The stack file's ``config:`` as the engine's config map and secret-key list.

    A ``{secure: ...}`` value cannot be decrypted offline; the program gets the same placeholder
    ``SecretValue.reveal`` gives for ciphertext, and the key is listed as secret like the engine does.
    """
    config: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in raw.items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            config[key] = SecretValue(ciphertext=str(value["secure"])).reveal()
            secret_keys.append(key)
        else:
            config[key] = engine_value(value)
    return config, secret_keys


def stack_name_of(stack: str) -> str:
    """`dev` → dev; `path/Pulumi.dev.yaml` → dev; `tests/stacks/bad.yaml` → bad."""
    return stack_file_path(stack).stem.removeprefix("Pulumi.")


# ---------------------------------------------------------------------------------------------
# Recording mocks
# ---------------------------------------------------------------------------------------------


def redact(value: Any) -> tuple[Any, bool]:
    """(value with Pulumi secrets replaced by ``[secret]``, whether any was found); unknowns become None."""
    if rpc.is_rpc_secret(value):
        return REDACTED, True
    if isinstance(value, str) and value == rpc.UNKNOWN:
        return None, False
    if isinstance(value, SecretValue):
        return REDACTED, True
    if isinstance(value, dict):
        found = False
        out: dict[str, Any] = {}
        for k, v in value.items():
            out[k], secret = redact(v)
            found |= secret
        return out, found
    if isinstance(value, list):
        pairs = [redact(v) for v in value]
        return [p[0] for p in pairs], any(p[1] for p in pairs)
    if isinstance(value, float) and value.is_integer():
        return int(value), False  # protobuf carries every number as a double: ports read 8000, not 8000.0
    return value, False


class _Addresses:
    """Deterministic ids and host numbers: from a hash of the resource name, not registration order
    (registrations arrive from several threads), so rendered files are identical run after run."""

    def __init__(self, provider: str) -> None:
        self.private_net = PRIVATE_NET.get(provider, PRIVATE_NET["digitalocean"])
        self.lock = threading.Lock()
        self.taken: dict[int, str] = {}

    def index(self, name: str) -> int:
        with self.lock:
            for n, owner in self.taken.items():
                if owner == name:
                    return n
            n = zlib.crc32(name.encode()) % 200
            while n in self.taken:  # a collision: probe on (rare; only the colliding pair depends on order)
                n = (n + 1) % 200
            self.taken[n] = name
            return n


class RecordingMocks(mocks.Mocks):
    """Plausible outputs per resource type, and a record of every invoke (registrations: the monitor)."""

    def __init__(self, provider: str, region: str, ami_root_gb: int = FAKE_AMI_ROOT_GB) -> None:
        self.addresses = _Addresses(provider)
        self.ami_root_gb = ami_root_gb
        self.region = region
        self.calls: list[tuple[str, dict[str, Any]]] = []
        # What EC2 would report for an instance launched on a pre-created interface: that interface's
        # private address, and the Elastic IP associated with it.
        self.eni_private: dict[str, str] = {}
        self.eip_public: dict[str, str] = {}
        self.eni_public: dict[str, str] = {}

    def new_resource(self, args: Any) -> tuple[str | None, dict[str, Any]]:
        region = self.region
        n = self.addresses.index(f"{args.typ}::{args.name}")
        state = dict(args.inputs)
        private = str(self.addresses.private_net.network_address + 10 + n)
        public = str(PUBLIC_NET.network_address + 10 + n)
        typ = args.typ
        if typ == "digitalocean:index/droplet:Droplet":
            rid = str(500_000_000 + n)
            state.update(ipv4Address=public, ipv4AddressPrivate=private, status="active",
                         urn=f"do:droplet:{rid}")
        elif typ == "aws:ec2/instance:Instance":
            rid = f"i-0{n:016x}"
            eni = str((args.inputs.get("primaryNetworkInterface") or {}).get("networkInterfaceId") or "")
            if eni:
                # No address of its own: EC2 assigns none to an interface it did not create at launch.
                public, private = self.eni_public.get(eni, ""), self.eni_private.get(eni, private)
            state.update(publicIp=public, privateIp=private, arn=f"arn:aws:ec2:{region}:000000000000:instance/{rid}")
        elif typ == "digitalocean:index/reservedIp:ReservedIp":
            rid = public
            state.update(ipAddress=public, urn=f"do:reservedip:{public}")
        elif typ == "digitalocean:index/reservedIpAssignment:ReservedIpAssignment":
            rid = f"{args.inputs.get('dropletId')}-{args.inputs.get('ipAddress')}-preview"
        elif typ == "digitalocean:index/volume:Volume":
            rid = f"00000000-0000-4000-9000-{n:012d}"
            state.update(filesystemType="", dropletIds=[], urn=f"do:volume:{rid}")
        elif typ == "digitalocean:index/volumeAttachment:VolumeAttachment":
            rid = f"{args.inputs.get('dropletId')}-{args.inputs.get('volumeId')}-preview"
        elif typ == "aws:ebs/volume:Volume":
            rid = f"vol-0{n:016x}"
            state.update(arn=f"arn:aws:ec2:{region}:000000000000:volume/{rid}", iops=3000, throughput=125)
        elif typ == "digitalocean:index/vpc:Vpc":
            rid = f"00000000-0000-4000-8000-{n:012d}"
            state.setdefault("ipRange", str(self.addresses.private_net.supernet(new_prefix=20)))
        elif typ == "kubernetes:core/v1:Service":
            rid = f"{args.name}-id"
            if (args.inputs.get("spec") or {}).get("type") == "LoadBalancer":
                state["status"] = {"loadBalancer": {"ingress": [{"ip": public}]}}
        elif typ == "digitalocean:index/kubernetesCluster:KubernetesCluster":
            rid = str(args.resource_id or args.name)
            state["kubeConfigs"] = [{"rawConfig": "apiVersion: v1\nkind: Config\n# preview placeholder\n"}]
        elif typ == "digitalocean:index/tag:Tag":
            rid = str(args.inputs.get("name") or args.name)
        elif typ.startswith("aws:ec2/"):
            kind = typ.rsplit(":", 1)[-1]
            prefix = {"SecurityGroup": "sg", "Vpc": "vpc", "Subnet": "subnet", "InternetGateway": "igw",
                      "RouteTable": "rtb", "RouteTableAssociation": "rtbassoc", "NetworkInterface": "eni",
                      "Eip": "eipalloc", "EipAssociation": "eipassoc",
                      "VolumeAttachment": "vai"}.get(kind, kind.lower())
            rid = f"{prefix}-0{n:016x}"
            if kind == "NetworkInterface":
                self.eni_private[rid] = private
                state.update(privateIp=private, privateIps=[private])
            elif kind == "Eip":
                self.eip_public[rid] = public
                state.update(allocationId=rid, publicIp=public, domain=args.inputs.get("domain") or "vpc")
            elif kind == "EipAssociation":
                eip = str(args.inputs.get("allocationId") or "")
                eni = str(args.inputs.get("networkInterfaceId") or "")
                if eip in self.eip_public and eni:
                    self.eni_public[eni] = self.eip_public[eip]
                state.update(publicIp=self.eip_public.get(eip, ""))
        else:
            rid = f"{args.name}-id"
        return rid, state

    # The SDK's MockMonitor accepts a plain dict as well as (dict, failures); its annotation names only the tuple.
    def call(self, args: Any) -> dict[str, Any]:  # type: ignore[override]
        region = self.region
        self.calls.append((args.token, redact(dict(args.args))[0]))
        if args.token == "aws:ec2/getAmi:getAmi":
            return {"id": FAKE_AMI, "imageId": FAKE_AMI, "architecture": "x86_64",
                    "name": "preview-ami", "ownerId": "000000000000", "rootDeviceName": "/dev/sda1",
                    "blockDeviceMappings": [{"deviceName": "/dev/sda1", "ebs": {"volume_size": str(self.ami_root_gb)},
                                             "noDevice": "", "virtualName": ""}]}
        if args.token == "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings":
            return {"id": region, "locations": [f"{region}a", f"{region}b"],
                    "locationTypes": ["availability-zone"] * 2, "instanceTypes": ["preview"] * 2}
        return {}

class RecordingMonitor(mocks.MockMonitor):
    """The mock monitor, plus a record of every registration with its parent."""

    def __init__(self, m: RecordingMocks) -> None:
        super().__init__(m)
        self.recorded: list[RecordedResource] = []
        self.outputs: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def RegisterResource(self, request: Any) -> Any:  # the gRPC method's name
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            inputs = rpc.deserialize_properties(request.object)
            clean: dict[str, Any] = {}
            secret: list[str] = []
            for key, value in inputs.items():
                clean[key], is_secret = redact(value)
                if is_secret:
                    secret.append(key)
            state = self.resources[response.urn].state
            addresses = {
                role: str(state[key]) for role, keys in (("public", ("ipv4Address", "publicIp")),
                                                         ("private", ("ipv4AddressPrivate", "privateIp")))
                for key in keys if state.get(key)
            }
            parent = request.parent or None
            if parent and "::pulumi:pulumi:Stack::" in parent:
                parent = None
            with self.lock:
                self.recorded.append(RecordedResource(
                    type=request.type, name=request.name, urn=response.urn, parent=parent,
                    custom=bool(request.custom), inputs=clean, secret_inputs=sorted(secret),
                    id=response.id or None, addresses=addresses,
                    additional_secret_outputs=sorted(request.additionalSecretOutputs),
                    delete_before_replace=bool(request.deleteBeforeReplace),
                    ignore_changes=sorted(request.ignoreChanges),
                    dependencies=sorted(request.dependencies),
                ))
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:  # the gRPC method's name
        outputs, _ = redact(rpc.deserialize_properties(request.outputs))
        with self.lock:
            self.outputs[request.urn] = outputs
        return super().RegisterResourceOutputs(request)


@dataclass
class ProgramRun:
    """One run of the program under the mocks."""

    recorded: list[RecordedResource]
    """Every registration, sorted by URN."""
    outputs: dict[str, Any]
    """Stack exports, awaited; secret ones as ``[secret]``."""
    namespace: dict[str, Any]
    """The program module's globals (its components), for tests that inspect Outputs."""
    calls: list[tuple[str, dict[str, Any]]]
    """Every invoke (token, args), e.g. the AMI lookup."""
    log: list[str]
    """What the program logged through ``pulumi.log`` (level: message)."""


class _ProgramLog(logging.Handler):
    """Collects the program's ``pulumi.log`` lines instead of printing them: a config error the program
    logs is reported once, by the CLI, not twice."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []
        self.logger = logging.getLogger("gpu_inference.preview.program")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        self.logger.handlers = [self]  # one run at a time: the previous run's collector goes

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.levelname.lower()}: {record.getMessage()}")


def run_program(project_dir: Path, stack_name: str, config: dict[str, str], secret_keys: list[str],
                provider: str, region: str, ami_root_gb: int = FAKE_AMI_ROOT_GB) -> ProgramRun:
    """Run ``project_dir/__main__.py`` under recording mocks until every Output has settled."""
    _ensure_event_loop()
    # A second run in one process must not inherit the first one's stack, outputs or config.
    settings.ROOT.set(None)
    settings.SETTINGS.outputs.clear()
    mock = RecordingMocks(provider, region, ami_root_gb)
    monitor = RecordingMonitor(mock)
    log = _ProgramLog()
    mocks.set_mocks(mock, project=PROJECT_NAME, stack=stack_name, preview=True, monitor=monitor, logger=log.logger)
    set_all_config(config, secret_keys=secret_keys)
    main = project_dir / "__main__.py"
    error: BaseException | None = None
    namespace: dict[str, Any] = {}
    try:
        namespace = runpy.run_path(str(main), run_name="__main__")
    except BaseException as exc:  # re-raised once the runtime has drained
        error = exc
    results: dict[str, Any] = {}

    async def collect() -> None:
        """Await every stack export; secrets come back as ``[secret]``."""
        for key, value in dict(getattr(settings.get_root_resource(), "outputs", {})).items():
            out = pulumi.Output.from_input(value)
            resolved = await out.future()
            results[key] = REDACTED if await out.is_secret() else resolved

    try:
        _sync_await(run_pulumi_func(collect))
    except Exception as exc:
        error = error or exc
    if error is not None:
        cause = error.__cause__ if isinstance(error, pulumi.RunError) else error
        if isinstance(cause, ConfigError):
            if monitor.recorded:
                # The program must validate before it creates anything; a config error after the
                # first registration would leave a half-built stack in a real run.
                raise PreviewError(f"config error after {len(monitor.recorded)} registrations: {cause}") from cause
            raise cause
        raise PreviewError(f"the Pulumi program failed under the preview mocks: {error}") from error
    recorded = [r.model_copy(update={"outputs": monitor.outputs[r.urn]}) if r.urn in monitor.outputs else r
                for r in monitor.recorded]
    return ProgramRun(sorted(recorded, key=lambda r: r.urn), results, namespace, list(mock.calls), log.messages)


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


def _policy_views(recorded: list[RecordedResource]) -> list[Any]:
    from gpu_inference.policy_rules import ResourceView

    return [
        ResourceView(type=r.type, name=r.name, urn=r.urn, props=r.inputs, parent=r.parent,
                     secret_props=sorted({*r.secret_inputs, *r.additional_secret_outputs}))
        for r in recorded
    ]


def _sizing(stack: ResolvedStack) -> list[dict[str, Any]]:
    s = stack.sizing
    per_node = {
        "fits": s.fits,
        "gpu": stack.gpu.name,
        "gpus_per_node": stack.gpus_per_node,
        "tensor_parallel_size": stack.tensor_parallel_size,
        "weights_gib": round(s.weights_gib, 2),
        "kv_cache_gib": round(s.kv_cache_gib, 2),
        "kv_cache_tokens": s.kv_cache_tokens,
        "max_concurrency": round(s.max_concurrency, 2),
        "max_model_len": s.max_model_len,
        "max_num_seqs": s.max_num_seqs,
        "problems": list(s.problems),
        "warnings": list(s.warnings),
    }
    return [{"node": i, **per_node} for i in range(stack.config.node_count)]


def _monitoring_volume(recorded: list[RecordedResource]) -> str | None:
    """What the Prometheus volume's device is found by: its DigitalOcean name, or its (mocked) EBS id."""
    for r in recorded:
        if r.type == "digitalocean:index/volume:Volume" and r.inputs.get("name"):
            return str(r.inputs["name"])
        if r.type == "aws:ebs/volume:Volume" and r.id:
            return r.id
    return None


def _addresses(recorded: list[RecordedResource], outputs: Mapping[str, Any]) -> tuple[list[str], str, str]:
    """Node, load-balancer and Prometheus private addresses as the mocks handed them out."""
    nodes = [str(a) for a in outputs.get("nodeAddresses") or []]
    lb = next((r.addresses.get("private", "") for r in recorded if r.name.endswith("-lb") and r.addresses), "")
    mon = next((r.addresses.get("private", "") for r in recorded if r.name.endswith("-prometheus") and r.addresses), "")
    return nodes, lb, mon


def write_files(stack: ResolvedStack, out_dir: Path, nodes: list[str], lb: str, mon: str,
                monitoring_volume: str | None = None) -> list[str]:
    from gpu_inference.render import render_all
    from gpu_inference.render.kubernetes import render_kubernetes

    cfg = stack.config
    if cfg.provider == "kubernetes":
        # Pods, not machines: no cloud-init or units, only the files the ConfigMaps carry.
        files = render_kubernetes(stack)
    else:
        files = render_all(
            stack, nodes, lb, mon,
            cfg.api_key.reveal() if cfg.api_key else None,
            cfg.hf_token.reveal() if cfg.hf_token else None,
            monitoring_volume,
        )
    written: list[str] = []
    for rel, content in sorted(files.items()):
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(str(path))
    return written


def run_preview(stack: str, out_dir: Path | None, project_dir: Path = PROJECT_DIR) -> PreviewReport:
    """Preview ``stack`` (a name or a stack file path) of the checkout at ``project_dir``.

    ``out_dir`` None writes no files. Another checkout (a git worktree) runs in a subprocess with that
    checkout's own code, so two revisions never share imported modules.
    """
    project_dir = project_dir.resolve()
    if project_dir != PROJECT_DIR.resolve():
        return _run_in_subprocess(stack, out_dir, project_dir)
    from gpu_inference.policy_rules import PolicySettings, evaluate_policies
    from gpu_inference.pricing import bill_for_resources

    path = stack_file_path(stack, project_dir)
    cfg = load_stack_config(path, project_dir)
    name = stack_name_of(stack)
    resolved = resolve_stack(cfg, name=name)
    config, secret_keys = engine_config(read_stack_file(path))
    program = run_program(project_dir, name, config, secret_keys, cfg.provider, cfg.region)
    recorded, outputs = program.recorded, program.outputs
    bill = bill_for_resources((r.type, r.name, r.inputs) for r in recorded if r.custom)
    verdicts = evaluate_policies(_policy_views(recorded), cfg.monthly_budget_usd, PolicySettings.for_stack(name))
    files: list[str] = []
    if out_dir is not None:
        files = write_files(resolved, out_dir, *_addresses(recorded, outputs), _monitoring_volume(recorded))
    return PreviewReport(
        stack=name,
        stack_file=str(path),
        description=cfg.describe(),
        provider=cfg.provider,
        resources=recorded,
        cost_lines=[line.model_dump(mode="json") for line in bill.lines],
        monthly_cost_usd=round(bill.total_monthly_usd, 2),
        budget_usd=cfg.monthly_budget_usd,
        within_budget=bill.total_monthly_usd <= cfg.monthly_budget_usd,
        policies=[v.model_dump(mode="json") for v in verdicts],
        sizing=_sizing(resolved),
        outputs=outputs,
        files=files,
        exit_code=1 if any(v.blocks for v in verdicts) else 0,
    )


def _run_in_subprocess(stack: str, out_dir: Path | None, project_dir: Path) -> PreviewReport:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_CONFIG")}
    env["PYTHONPATH"] = str(project_dir)
    with tempfile.TemporaryDirectory(prefix="gpu-inference-preview-") as scratch:
        # Always --out (every revision with a preview has it); files into a scratch dir when none was asked.
        target = out_dir if out_dir is not None else Path(scratch)
        cmd = [sys.executable, "-m", "gpu_inference", "preview", stack, "--json", "--out", str(target)]
        proc = subprocess.run(cmd, cwd=project_dir, env=env, capture_output=True, text=True,
                              timeout=PREVIEW_TIMEOUT_SECONDS, check=False)
    if proc.returncode == 2:
        raise ConfigError([proc.stderr.strip().removeprefix("error: ")], source=str(project_dir))
    if proc.returncode not in (0, 1):
        raise PreviewError(f"preview in {project_dir} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    report = PreviewReport.model_validate_json(proc.stdout)
    return report if out_dir is not None else report.model_copy(update={"files": []})


__all__ = ["PreviewError", "PreviewReport", "RecordedResource", "run_preview"]
