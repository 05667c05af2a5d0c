"""The post-deploy smoke check (issue 14): `pulumi up` ends only when the endpoint really answers.

A ``pulumi_command.local.Command`` runs ``python -m gpu_inference smoke`` (the CLI, exactly) on the machine that
runs ``pulumi up``, after the load balancer and every node exist. A non-zero exit fails the resource, and
pulumi-command puts the command line and its output (the smoke's one line) in the error
(pulumi-command provider/pkg/provider/local/commandOutputs.go: ``"%w: running %q:\\n%s"``). The key is
therefore never on the command line: it reaches the process as the secret environment variable
``GPU_INFERENCE_API_KEY``.

It re-runs when a node or the load balancer is replaced (their ids), when what vLLM serves changes (model,
image, flags) or when the key changes (``triggers``: pulumi-command replaces the resource, i.e. runs ``create``
again, when one changes); a change of the command itself (a new endpoint, another timeout) runs it again too
(no ``update`` command: ``create`` runs on every input change).

Kubernetes stacks check the LoadBalancer Service's address (the stack output ``endpoint``) after the node pool,
the vLLM StatefulSet (pulumi-kubernetes awaits its pods' readiness) and Nginx exist.
"""

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pulumi
from pulumi_command import local

from gpu_inference import naming
from gpu_inference.constants import PROJECT_DIR
from gpu_inference.gpu_vendor import vllm_image
from gpu_inference.render.vllm import vllm_args
from gpu_inference.smoke import API_KEY_ENV, reachability, smoke_command
from gpu_inference.stack import ResolvedStack


def smoke_python() -> str:
    """The interpreter that runs this program (it has gpu_inference), as the command provider will find it.

    The engine starts providers in the project directory (pulumi pkg/resource/plugin/provider_plugin.go starts
    the plugin with ``ctx.Pwd``; engine getPwdMain: the Pulumi.yaml directory), so inside it the path is
    written relative (Pulumi.yaml's ``.venv/bin/python``): the same text on every checkout, so moving the
    checkout does not re-run the check. Elsewhere (a component package's plugin) it is absolute."""
    exe = Path(os.path.abspath(sys.executable))  # the venv's own path, symlinks kept
    if Path.cwd().resolve() == PROJECT_DIR.resolve():
        try:
            return str(exe.relative_to(PROJECT_DIR))
        except ValueError:
            pass
    return str(exe)


def smoke_check(
    name: str,
    stack: ResolvedStack,
    endpoint: pulumi.Output[str],
    api_key: pulumi.Output[str | None],
    after: list[pulumi.Resource],
    replaced_with: Sequence[pulumi.Input[str]],
    opts: pulumi.ResourceOptions | None = None,
) -> local.Command | None:
    """The smoke Command for ``stack`` (None when ``smokeTest`` is false or nothing outside can reach the endpoint).

    ``after``: what must exist first (the pool: its load balancer and every node); ``replaced_with``: the ids whose
    change re-runs the check (every node, the load balancer)."""
    cfg = stack.config
    run, note = reachability(cfg)
    if note:
        pulumi.log.warn(note)
    if not run:
        return None
    model = cfg.name_for_clients
    create = endpoint.apply(lambda url: smoke_command(smoke_python(), url, model, cfg.smoke_timeout_seconds))
    # Only when the stack has a key: without one the endpoint needs none (and the runner's own
    # GPU_INFERENCE_API_KEY, if any, is what the check would use).
    environment: pulumi.Input[dict[str, str]] | None = api_key.apply(
        lambda key: {API_KEY_ENV: key} if key else {}
    ) if cfg.api_key is not None else None
    triggers: list[Any] = [
        f"model={model}",
        f"vllm={vllm_image(stack)} {' '.join(vllm_args(stack))}",
        *replaced_with,
    ]
    if cfg.api_key is not None:
        triggers.append(pulumi.Output.secret(api_key))
    # pulumi-command 1.2.1 (pulumi_command/local/command.py): `triggers` is registered with
    # replace_on_changes=["triggers[*]"], and with no `update` command `create` runs on any input change.
    return local.Command(
        naming.smoke(name),
        create=create,
        # mypy cannot solve Output.secret's T against environment's Mapping[str, Input[str]] (invariance).
        environment=pulumi.Output.secret(environment) if environment is not None else None,  # type: ignore[arg-type]
        triggers=triggers,
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=after)),
    )
