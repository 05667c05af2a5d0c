"""From a component's plain-data args (the stack config's keys) to the resolved stack it serves, and back.

Every component resolves its own stack from its args with the same validator as a stack file, so a program
in any language that creates one gets the same one-line errors (key, value, allowed) and the same sizing.
"""

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, cast

import pulumi
from pydantic.alias_generators import to_camel

from components.args import StackArgs
from gpu_inference.config import NAMESPACE, StackConfig, parse_stack_config
from gpu_inference.errors import ConfigError
from gpu_inference.secrets import SecretValue
from gpu_inference.stack import ResolvedStack, check_stack_name, resolve_stack

SECRET_KEYS = ("api_key", "hf_token", "grafana_admin_password")
# What the config holds for a secret that travels as a Pulumi Output: that there is one, never its value.
_SECRET_MARKER = SecretValue(ciphertext="pulumi-secret-output")


@dataclass(frozen=True)
class Secrets:
    """The stack's secrets as Pulumi secret Outputs (an Output of None when the stack has none)."""

    api_key: pulumi.Output[str | None]
    hf_token: pulumi.Output[str | None]
    grafana_admin_password: pulumi.Output[str | None]


def from_config(cfg: StackConfig, secrets: Secrets) -> StackArgs:
    """A validated stack config as component args (how ``__main__.py`` hands a stack file to the components)."""
    # With autoscaling, nodeCount is derived (minNodes) and refused when given: leave it out.
    derived = {"node_count"} if cfg.autoscaling is not None else set()
    args = cfg.model_dump(exclude_none=True, exclude=set(SECRET_KEYS) | derived)
    if cfg.api_key is not None:
        args["api_key"] = secrets.api_key
    if cfg.hf_token is not None:
        args["hf_token"] = secrets.hf_token
    if cfg.grafana_admin_password is not None:
        args["grafana_admin_password"] = secrets.grafana_admin_password
    return cast(StackArgs, args)


def secrets_of(cfg: StackConfig) -> Secrets:
    """The stack config's secrets as Outputs: the engine encrypts them in state and masks them in logs."""
    return Secrets(
        api_key=pulumi.Output.secret(cfg.api_key.reveal()) if cfg.api_key else pulumi.Output.from_input(None),
        hf_token=pulumi.Output.secret(cfg.hf_token.reveal()) if cfg.hf_token else pulumi.Output.from_input(None),
        grafana_admin_password=pulumi.Output.secret(cfg.grafana_admin_password.reveal())
        if cfg.grafana_admin_password else pulumi.Output.from_input(None),
    )


def _camel(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {to_camel(str(k)): _camel(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_camel(v) for v in value]
    return value


def _plain(key: str, value: Any) -> Any:
    """A config value as the validator takes it; an Output (not known when the component is built) is refused."""
    if isinstance(value, pulumi.Output):
        raise ConfigError([f"{NAMESPACE}:{to_camel(key)} must be a plain value when the component is created "
                           "(it decides which resources exist), not the output of another resource"])
    if isinstance(value, Enum):
        return value.value  # a closed choice from components/args.py: the validator takes its string
    if isinstance(value, Mapping):
        return {k: _plain(f"{key}.{to_camel(str(k))}", v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(key, v) for v in value]
    return value


@functools.lru_cache(maxsize=64)
def _resolve(stack_name: str, raw_json: str, secret_keys: frozenset[str]) -> ResolvedStack:
    raw = json.loads(raw_json)
    for key in secret_keys:
        raw[key] = _SECRET_MARKER
    config = parse_stack_config(raw, secret_keys=set(secret_keys) | {to_camel(k) for k in SECRET_KEYS},
                                source=f"stack {stack_name}")
    stack = resolve_stack(config, name=stack_name)
    check_stack_name(stack)
    return stack


def resolve(args: Mapping[str, Any], own_keys: Iterable[str] = ()) -> tuple[ResolvedStack, Secrets]:
    """The stack a component's args describe (every key but the component's ``own_keys``), and its secrets.

    Raises ConfigError with one message per bad key, like a stack file, before anything is registered.
    """
    own = set(own_keys)
    config = {k: _plain(k, v) for k, v in args.items() if k not in own and k not in SECRET_KEYS and v is not None}
    present = frozenset(to_camel(k) for k in SECRET_KEYS if args.get(k) is not None)
    stack = _resolve(pulumi.get_stack(), json.dumps(_camel(config), sort_keys=True), present)
    secrets = Secrets(
        api_key=pulumi.Output.secret(args["api_key"]) if args.get("api_key") is not None else pulumi.Output.from_input(None),
        hf_token=pulumi.Output.secret(args["hf_token"]) if args.get("hf_token") is not None else pulumi.Output.from_input(None),
        grafana_admin_password=pulumi.Output.secret(args["grafana_admin_password"])
        if args.get("grafana_admin_password") is not None else pulumi.Output.from_input(None),
    )
    return stack, secrets


def plain_int(args: Mapping[str, Any], key: str) -> int:
    """A component's own integer arg (e.g. ``node_index``) as a plain int: numbers may arrive as floats from
    another language's SDK (protobuf numbers are doubles), an Output is refused like a config value."""
    value = _plain(key, args[key])
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ConfigError([f"{key} = {value!r} must be a whole number"])
    return int(value)
