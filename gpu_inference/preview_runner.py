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
import runpy
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

from gpu_inference import naming
from gpu_inference.clouds import CLOUDS, FakeAddress, cloud_for
from gpu_inference.config import load_stack_config, read_stack_file, stack_file_path
from gpu_inference.constants import PROJECT_DIR, PROJECT_NAME
from gpu_inference.errors import ConfigError, OutputError
from gpu_inference.preview_subprocess import preview_checkout
from gpu_inference.secrets import REDACTED, SecretValue
from gpu_inference.stack import ResolvedStack, resolve_stack

# Deterministic fake addresses: a documentation range (RFC 5737) for public IPs, the range the stack's cloud
# would hand out for private ones (``Cloud.private_network``), so rendered files look real and never point
# anywhere.
PUBLIC_NET = ipaddress.ip_network("203.0.113.0/24")


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
    """The month at every autoscaled line's ceiling (maxNodes): what can be charged, what the budget checks."""
    monthly_cost_min_usd: float | None = None
    """With autoscaling: the month at minNodes (the floor of the range); None when nothing scales."""
    budget_usd: float
    within_budget: bool
    policies: list[dict[str, Any]]
    sizing: list[dict[str, Any]]
    outputs: dict[str, Any]
    files: list[str]
    exit_code: int
    """0 when every mandatory policy passes, 1 when one fails."""
    notes: list[str] = Field(default_factory=list)
    """What the program warned about through ``pulumi.log.warn`` (a real `pulumi preview` shows the same), e.g.
    that the post-deploy smoke check reaches a private endpoint only from allowedCidrs."""


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
        self.private_net = cloud_for(provider).private_network
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
    """Plausible outputs per resource type (each cloud module mocks its own), and a record of every invoke."""

    def __init__(self, provider: str, region: str, **cloud_options: Any) -> None:
        self.addresses = _Addresses(provider)
        self.region = region
        self.clouds = [cloud.mocks(**cloud_options) for cloud in CLOUDS.values()]
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def new_resource(self, args: Any) -> tuple[str | None, dict[str, Any]]:
        n = self.addresses.index(f"{args.typ}::{args.name}")
        fake = FakeAddress(n=n, public=str(PUBLIC_NET.network_address + 10 + n),
                           private=str(self.addresses.private_net.network_address + 10 + n))
        for cloud in self.clouds:
            mocked = cloud.new_resource(args.typ, args.name, args.inputs, args.resource_id, fake, self.region)
            if mocked is not None:
                return mocked
        return f"{args.name}-id", dict(args.inputs)

    # The SDK's MockMonitor accepts a plain dict as well as (dict, failures); its annotation names only the tuple.
    def call(self, args: Any) -> dict[str, Any]:  # type: ignore[override]
        self.calls.append((args.token, redact(dict(args.args))[0]))
        for cloud in self.clouds:
            result = cloud.call(args.token, dict(args.args), self.region)
            if result is not None:
                return result
        return {}


class RecordingMonitor(mocks.MockMonitor):
    """The mock monitor, plus a record of every registration with its parent."""

    def __init__(self, m: RecordingMocks) -> None:
        super().__init__(m)
        self.recorded: list[RecordedResource] = []
        self.outputs: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.thread_loops: list[asyncio.AbstractEventLoop] = []

    def _own_thread_loop(self) -> None:
        """Give the calling thread an event loop this monitor owns (and closes in ``close_thread_loops``).

        The runtime calls the monitor from its executor's worker threads, and pulumi's MockMonitor then runs
        ``sync_await._ensure_event_loop()``, which creates a loop for each new worker thread and never closes
        it. Those loops were garbage-collected at interpreter exit in any order; when a loop's self-pipe socket
        went first, ``BaseEventLoop.__del__`` closed it again and printed "Exception ignored ... ValueError:
        Invalid file descriptor: -1" (about one run in ten). Creating the loop here instead (pulumi's helper
        then finds it) lets the run close every loop it caused, while the threads are still alive.
        """
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_event_loop()
        except RuntimeError:  # a worker thread without a loop yet
            loop = None
        if loop is None or loop.is_closed():  # a worker kept from an earlier run holds that run's closed loop
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            with self.lock:
                self.thread_loops.append(loop)

    def close_thread_loops(self) -> None:
        """Close the worker threads' loops once the run has drained (none runs: each ran to completion)."""
        with self.lock:
            loops, self.thread_loops = self.thread_loops, []
        for loop in loops:
            if not loop.is_running() and not loop.is_closed():
                loop.close()

    def Invoke(self, request: Any) -> Any:  # the gRPC method's name
        self._own_thread_loop()
        return super().Invoke(request)

    def ReadResource(self, request: Any) -> Any:  # the gRPC method's name
        self._own_thread_loop()
        return super().ReadResource(request)

    def RegisterResource(self, request: Any) -> Any:  # the gRPC method's name
        self._own_thread_loop()
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
                provider: str, region: str, **cloud_options: Any) -> ProgramRun:
    """Run ``project_dir/__main__.py`` under recording mocks until every Output has settled."""
    _ensure_event_loop()
    # A second run in one process must not inherit the first one's stack, outputs or config.
    settings.ROOT.set(None)
    settings.SETTINGS.outputs.clear()
    mock = RecordingMocks(provider, region, **cloud_options)
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
    finally:
        monitor.close_thread_loops()
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


def _recorded(recorded: list[RecordedResource], name: str) -> RecordedResource | None:
    return next((r for r in recorded if r.name == name and r.custom), None)


def _monitoring_volume(stack: ResolvedStack, recorded: list[RecordedResource]) -> str | None:
    """What the Prometheus volume's device is found by (its cloud-side name or its mocked id), per its cloud."""
    volume = _recorded(recorded, naming.data_volume(naming.prometheus_host(naming.MONITORING)))
    return stack.cloud.volume_ref(volume.inputs, volume.id) if volume else None


def _addresses(recorded: list[RecordedResource], outputs: Mapping[str, Any]) -> tuple[list[str], str]:
    """Node and load-balancer private addresses as the mocks handed them out."""
    nodes = [str(a) for a in outputs.get("nodeAddresses") or []]
    lb = _recorded(recorded, naming.lb_host(naming.POOL))
    return nodes, lb.addresses.get("private", "") if lb else ""


def write_files(stack: ResolvedStack, out_dir: Path, nodes: list[str], lb: str,
                monitoring_volume: str | None = None) -> list[str]:
    from gpu_inference.render import render_stack

    cfg = stack.config
    files = render_stack(
        stack, nodes, lb,
        cfg.api_key.reveal() if cfg.api_key else None,
        cfg.hf_token.reveal() if cfg.hf_token else None,
        monitoring_volume,
        cfg.grafana_admin_password.reveal() if cfg.grafana_admin_password else None,
    )
    written: list[str] = []
    for rel, content in sorted(files.items()):
        path = out_dir / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
        except OSError as exc:  # e.g. --out under /proc, a full disk: one line, exit 2 (cli.py)
            raise OutputError(f"--out {out_dir}: cannot write {rel} ({exc.strerror or exc})") from None
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
    settings = PolicySettings.for_stack(name, monthly_budget_usd=cfg.monthly_budget_usd)
    verdicts = evaluate_policies(_policy_views(recorded), settings)
    files: list[str] = []
    if out_dir is not None:
        files = write_files(resolved, out_dir, *_addresses(recorded, outputs), _monitoring_volume(resolved, recorded))
    return PreviewReport(
        stack=name,
        stack_file=str(path),
        description=cfg.describe(),
        provider=cfg.provider,
        resources=recorded,
        cost_lines=[line.model_dump(mode="json") for line in bill.lines],
        monthly_cost_usd=round(bill.total_monthly_usd, 2),
        monthly_cost_min_usd=(round(bill.min_total_monthly_usd, 2)
                              if any(ln.min_monthly_usd is not None for ln in bill.lines) else None),
        budget_usd=cfg.monthly_budget_usd,
        within_budget=bill.total_monthly_usd <= cfg.monthly_budget_usd,
        policies=[v.model_dump(mode="json") for v in verdicts],
        sizing=_sizing(resolved),
        outputs=outputs,
        files=files,
        exit_code=1 if any(v.blocks for v in verdicts) else 0,
        notes=[line.removeprefix("warning: ") for line in program.log if line.startswith("warning: ")],
    )


def _run_in_subprocess(stack: str, out_dir: Path | None, project_dir: Path) -> PreviewReport:
    with tempfile.TemporaryDirectory(prefix=f"{PROJECT_NAME}-preview-") as scratch:
        # Always --out (every revision with a preview has it); files into a scratch dir when none was asked.
        outcome = preview_checkout(project_dir, stack, out_dir if out_dir is not None else Path(scratch))
    if outcome.status == "invalid":
        raise ConfigError([outcome.message or "invalid stack config"], source=str(project_dir))
    if outcome.report is None:
        raise PreviewError(f"preview in {project_dir} failed: {outcome.message}")
    report = PreviewReport.model_validate(outcome.report)
    return report if out_dir is not None else report.model_copy(update={"files": []})


__all__ = ["PreviewError", "PreviewReport", "RecordedResource", "run_preview"]
