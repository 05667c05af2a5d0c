"""The stack config as the Pulumi engine hands it to the program, parsed by the shared validator.

The engine passes config two ways depending on the CLI version: the runtime's config map
(``pulumi.runtime.config.CONFIG``, set by the language host or by ``set_all_config`` in tests and the
preview) and the ``PULUMI_CONFIG`` / ``PULUMI_CONFIG_SECRET_KEYS`` environment variables. Both are
merged, the in-process map winning. Scalars arrive as strings and structured values as JSON text;
``parse_stack_config`` decodes them, and secret values arrive decrypted, listed in the secret keys.
"""

from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from gpu_inference.config import NAMESPACE, StackConfig, namespace_problems, parse_stack_config, split_namespaced
from gpu_inference.errors import ConfigError


def engine_config() -> tuple[dict[str, Any], set[str]]:
    """All config the engine gave this run (namespaced keys) and the keys it marked secret."""
    merged: dict[str, Any] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_keys = set(runtime_config.get_config_secret_keys_env()) | set(runtime_config._SECRET_KEYS.get())
    # Old CLIs spell keys `project:config:key`; normalise so both spellings validate alike.
    return {_normalise(k): v for k, v in merged.items()}, {_normalise(k) for k in secret_keys}


def _normalise(key: str) -> str:
    namespace, _, rest = key.partition(":")
    return f"{namespace}:{rest.removeprefix('config:')}" if rest else key


def read_stack_config() -> StackConfig:
    """Validate this stack's ``gpu-inference:*`` config; a bad value raises ConfigError with one message per key."""
    config, secret_keys = engine_config()
    # A misspelt namespace (`gpu-inferenc:nodeCount`) reaches `pulumi up` too: refuse it as the preview does.
    problems = namespace_problems(list(config))
    if problems:
        raise ConfigError(problems, source=f"stack {pulumi.get_stack()}")
    ours, _ = split_namespaced(config)
    secret = {key.partition(":")[2] for key in secret_keys if key.startswith(f"{NAMESPACE}:")}
    return parse_stack_config(ours, secret_keys=secret, source=f"stack {pulumi.get_stack()}")
