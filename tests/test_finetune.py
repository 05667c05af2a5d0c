"""A user's fine-tune: architecture from its config.json, weights from modelRepo, end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpu_inference.config import parse_stack_config
from gpu_inference.errors import ConfigError
from gpu_inference.render.vllm import vllm_args
from gpu_inference.stack import resolve_stack

FIXTURE = Path(__file__).parent / "fixtures" / "llama31-8b-finetune-config.json"
BASE = {
    "provider": "digitalocean",
    "region": "tor1",
    "gpu": "gpu-l40sx1-48gb",
    "model": str(FIXTURE),
    "monthlyBudgetUsd": 1500,
}


def test_config_json_model_needs_model_repo() -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_stack_config(BASE)
    assert len(excinfo.value.messages) == 1
    assert "gpu-inference:modelRepo is required" in excinfo.value.messages[0]


def test_fine_tune_is_sized_from_its_config_and_served_from_its_repo() -> None:
    cfg = parse_stack_config({**BASE, "modelRepo": "acme/llama-3.1-8b-support-ft"})
    stack = resolve_stack(cfg, name="ft")
    assert stack.model.num_hidden_layers == 32  # read from the fixture's config.json
    assert stack.sizing.fits
    args = vllm_args(stack)
    assert args[args.index("--model") + 1] == "acme/llama-3.1-8b-support-ft"
    # Clients ask for the repo id, not a path on the operator's laptop.
    assert args[args.index("--served-model-name") + 1] == "acme/llama-3.1-8b-support-ft"
    assert str(FIXTURE) not in " ".join(args)
