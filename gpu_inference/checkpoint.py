"""The checkpoint vLLM downloads: how its weights are stored, whether its repository is gated, and what vLLM
can start from it as configured. One place for the rules the `can-start` policy, the vLLM flags and the docs use.

Why these are refusals, not warnings: vLLM exits at startup on each of them, and systemd (``Restart=always``) or
Kubernetes restarts it forever on a billed GPU:

- ``--quantization awq``/``gptq`` on unquantized weights: "Cannot find the config file for awq" (vLLM reads the
  method's parameters from the checkpoint's quantization_config; it quantizes only fp8 at load);
- ``int8``/``int4`` on a bf16 checkpoint: no flag exists for them, so vLLM would serve bf16 (twice or four times the
  memory the sizing assumed);
- a gated repository without a token: Hugging Face answers 401/403 and the download fails.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpu_inference.config import NAMESPACE
from gpu_inference.model_arch import load_model_catalog

if TYPE_CHECKING:
    from gpu_inference.stack import ResolvedStack

# Config quantizations that name a checkpoint format, not a method vLLM applies at load: the weights must
# already be stored so (vLLM detects the format from config.json's quantization_config).
PRE_QUANTIZED_ONLY = frozenset({"awq", "gptq", "int8", "int4"})
# What each of them is stored as on the Hub, for the messages.
_FORMAT = {"awq": "AWQ", "gptq": "GPTQ", "int8": "INT8 (W8A8)", "int4": "4-bit (AWQ/GPTQ/W4A16)"}
# Runtime --quantization values vLLM applies to 16-bit weights at load.
RUNTIME_FLAG = {"fp8": "fp8", "mxfp4": "mxfp4"}


def repo(stack: ResolvedStack) -> str:
    """The Hugging Face repo (or node path) vLLM loads: modelRepo, else the catalog's canonical id."""
    return stack.config.model_repo or stack.model.id


def is_catalog_model(stack: ResolvedStack) -> bool:
    """The model is a catalog entry (not a fine-tune's config.json)."""
    return load_model_catalog().get(stack.model.id) is stack.model


def repo_is_the_catalog_entry(stack: ResolvedStack) -> bool:
    """True when the weights come from the catalog model's own repo (what the catalog records is about it)."""
    named = stack.config.model_repo
    return is_catalog_model(stack) and (
        named is None or named.lower() in (k.lower() for k in (stack.model.id, *stack.model.aliases)))


def stored_quantization(stack: ResolvedStack) -> str:
    """How the downloaded weights are stored: the catalog's (or config.json's) quantization, or, for another
    modelRepo of a catalog model, the format the config's `quantization` declares it has."""
    method = stack.model.quantization.method
    wanted = stack.config.quantization
    if method == "none" and is_catalog_model(stack) and not repo_is_the_catalog_entry(stack) \
            and wanted in PRE_QUANTIZED_ONLY:
        return wanted  # a pre-quantized repo of the model, named by modelRepo
    return method


def quantization_flag(stack: ResolvedStack) -> str | None:
    """vLLM's --quantization, or None to leave it out.

    Out for every pre-quantized checkpoint, even when the config repeats its method: vLLM reads
    quantization_config and picks its fastest kernel (awq_marlin / gptq_marlin on CUDA); an explicit
    ``--quantization awq`` forces the slow AWQ kernel. Only a method vLLM applies at load is sent, and only to
    16-bit weights.
    """
    wanted = stack.config.quantization
    if wanted is None or stored_quantization(stack) != "none":
        return None
    return RUNTIME_FLAG.get(wanted)


def gated(stack: ResolvedStack) -> tuple[bool, str]:
    """(is the downloaded repo gated, why we think so)."""
    explicit = stack.config.model_gated
    if explicit is not None:
        return explicit, f"{NAMESPACE}:modelGated = {str(explicit).lower()}"
    if repo_is_the_catalog_entry(stack) and stack.model.gated:
        return True, f"the model catalog: {stack.model.gated_source or 'gated on Hugging Face'}"
    return False, "not gated per the model catalog" if repo_is_the_catalog_entry(stack) else (
        f"{NAMESPACE}:modelGated unset for a repo outside the catalog")


def start_problems(stack: ResolvedStack, hf_token_set: bool) -> list[str]:
    """Why vLLM would not start from this checkpoint as configured (empty: it can)."""
    cfg = stack.config
    problems: list[str] = []
    wanted = cfg.quantization
    if wanted in PRE_QUANTIZED_ONLY and stored_quantization(stack) == "none":
        fp8 = (f", or set {NAMESPACE}:quantization = fp8 (vLLM quantizes the 16-bit weights at load on "
               f"{stack.gpu.id})") if stack.gpu.fp8 else (
               f" ({stack.gpu.id} has no FP8, so fp8 at load is not an option)")
        consequence = (f"vLLM exits with 'Cannot find the config file for {wanted}'" if wanted in ("awq", "gptq")
                       else f"vLLM has no --quantization {wanted}: it would serve the weights in 16 bits, "
                            "not the size the fit assumed")
        problems.append(
            f"{NAMESPACE}:quantization = {wanted} needs {_FORMAT[wanted]} weights, but {repo(stack)} is unquantized "
            f"({'per the model catalog' if is_catalog_model(stack) else 'its config.json has no quantization_config'}): "
            f"{consequence}, and the service restarts forever. Fix: set {NAMESPACE}:modelRepo to a pre-quantized "
            f"{_FORMAT[wanted]} repo of {stack.model.id}{fp8}."
        )
    is_gated, why = gated(stack)
    if is_gated and not hf_token_set:
        problems.append(
            f"{repo(stack)} is a gated Hugging Face repository ({why}) and {NAMESPACE}:hfToken is not set: the "
            f"download gets 401 and vLLM restarts forever. Fix: accept the license on huggingface.co/{repo(stack)} "
            f"with an account, then `pulumi config set --secret {NAMESPACE}:hfToken <its read token>`"
            f" (or set {NAMESPACE}:modelGated = false if the repo is not gated)."
        )
    return problems
