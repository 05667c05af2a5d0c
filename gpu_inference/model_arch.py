"""Model architectures: the config.json fields vLLM's memory arithmetic needs, and where they came from.

The catalog lives in ``data/models.yaml``; a user's fine-tune can be sized straight from its Hugging Face
``config.json`` (``resolve_model("path/to/config.json")``).
"""

from __future__ import annotations

import difflib
import functools
import json
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gpu_inference.constants import DATA_DIR

AttentionKind = Literal["full", "mla", "sliding_window", "chunked_local"]
LayerType = Literal["full", "sliding", "chunked"]
QuantMethod = Literal[
    "none", "fp8", "awq", "gptq", "mxfp4", "compressed-tensors-fp8", "compressed-tensors-w8a8",
    "compressed-tensors-w4a16", "bitsandbytes",
]

# vLLM pads the vocabulary of VocabParallelEmbedding / ParallelLMHead to a multiple of 64
# (DEFAULT_VOCAB_PADDING_SIZE) before sharding it across tensor-parallel ranks.
VOCAB_PADDING = 64

# Storage bytes per weight element for a quantized linear layer, scales included:
# 4-bit with one fp16 scale + a 4-bit zero point per group of 128 -> 0.5 + 2.5/128;
# mxfp4 stores one e8m0 scale byte per 32 elements.
QUANT_BYTES_PER_PARAM: dict[str, float] = {
    "none": 2.0,
    "fp8": 1.0,
    "compressed-tensors-fp8": 1.0,
    "compressed-tensors-w8a8": 1.0,
    "awq": 0.5 + 2.5 / 128,
    "gptq": 0.5 + 2.5 / 128,
    "compressed-tensors-w4a16": 0.5 + 2.0 / 128,
    "bitsandbytes": 0.5 + 4.0 / 64,
    "mxfp4": 0.5 + 1.0 / 32,
}


class UnknownModel(LookupError):
    """A model reference that is neither a catalog id/alias nor a readable config.json."""

    def __init__(self, value: str, close_matches: list[str]) -> None:
        self.value = value
        self.close_matches = close_matches
        hint = f" Did you mean: {', '.join(close_matches)}?" if close_matches else ""
        super().__init__(
            f"Unknown model {value!r}: not in the model catalog and not a path to a Hugging Face config.json."
            f"{hint}"
        )


class MoE(BaseModel):
    """Mixture-of-experts feed-forward (experts are sharded across TP ranks by vLLM's FusedMoE)."""

    model_config = ConfigDict(extra="forbid")
    num_experts: int = Field(gt=0)
    experts_per_token: int = Field(gt=0)
    moe_intermediate_size: int = Field(gt=0)
    shared_expert_intermediate_size: int = 0
    """Total intermediate width of the always-on shared expert(s) (0 = none)."""
    first_k_dense_layers: int = 0
    """Leading layers that use a dense MLP of ``intermediate_size`` instead (DeepSeek first_k_dense_replace)."""
    dense_intermediate_size: int | None = None
    """Width of the dense MLP of non-MoE layers when it differs from ``intermediate_size``."""


class Quantization(BaseModel):
    """How the checkpoint's linear weights are stored (embeddings and lm_head stay 16-bit)."""

    model_config = ConfigDict(extra="forbid")
    method: QuantMethod = "none"
    bits: int = 16
    group_size: int = 128
    """Elements sharing one scale (AWQ/GPTQ); 32 for checkpoints converted from Q4_0 QAT weights."""
    experts_only: bool = False
    """True when only MoE experts are quantized (gpt-oss: mxfp4 experts, bf16 attention)."""


class ModelArchitecture(BaseModel):
    """The fields of a model's config.json that decide its weights and KV-cache size under vLLM."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    aliases: list[str] = Field(default_factory=list)
    architecture: str
    num_hidden_layers: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    num_key_value_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    tie_word_embeddings: bool = False
    max_position_embeddings: int = Field(gt=0)
    total_params_b: float | None = None
    """Published/actual total parameters in billions; None -> computed from the shapes."""
    mlp_gated: bool = True
    """Gated MLP (gate+up+down, Llama style) vs. two-matrix MLP (fc1+fc2, Phi-2/GPT style)."""

    attention_kind: AttentionKind = "full"
    kv_lora_rank: int | None = None
    qk_rope_head_dim: int | None = None
    qk_nope_head_dim: int | None = None
    v_head_dim: int | None = None
    q_lora_rank: int | None = None
    sliding_window: int | None = None
    attention_chunk_size: int | None = None
    global_every: int | None = None
    """Layer i (0-based) is full/global attention when (i + 1) % global_every == 0; None: all layers alike."""
    layer_types: list[LayerType] | None = None
    """Explicit per-layer attention types (from config.json layer_types); overrides global_every."""

    moe: MoE | None = None
    quantization: Quantization = Field(default_factory=Quantization)
    vision_params_b: float = 0.0
    """Vision tower + projector parameters (billions), loaded in 16-bit beside the text model."""
    mm_tokens_per_item: int = 0
    """Placeholder tokens of the largest image the processor makes (vLLM's max feature size per item); sizes
    the profile run's dummy multimodal batch (0: text-only)."""
    mm_pixels_per_item: int = 0
    """pixel_values elements of that largest image (all tiles/crops/patches), as the processor emits them."""
    rotary_cache_positions: int | None = None
    """Rows of vLLM's rotary cos/sin caches summed over the model's distinct rotary embeddings; None ->
    max_position_embeddings (one default/llama3 rope). Linear and dynamic-NTK scaling cache
    max_position × factor rows, YaRN original_max_position × factor; Gemma 3 adds a local rope."""

    gated: bool = False
    """The Hugging Face repository of this id is gated: downloading it needs a token of an account that accepted
    its license (``gpu-inference:hfToken``)."""
    gated_source: str = ""
    """Which gate (the model card's words), when gated."""

    source: str = ""
    verified: bool = False
    unverified_fields: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_attention_fields(self) -> ModelArchitecture:
        if self.attention_kind == "mla" and (self.kv_lora_rank is None or self.qk_rope_head_dim is None):
            raise ValueError(f"{self.id}: MLA needs kv_lora_rank and qk_rope_head_dim")
        if self.attention_kind == "sliding_window" and not self.sliding_window:
            raise ValueError(f"{self.id}: sliding_window attention needs sliding_window")
        if self.attention_kind == "chunked_local" and not self.attention_chunk_size:
            raise ValueError(f"{self.id}: chunked_local attention needs attention_chunk_size")
        if self.layer_types is not None and len(self.layer_types) != self.num_hidden_layers:
            raise ValueError(
                f"{self.id}: layer_types has {len(self.layer_types)} entries, "
                f"num_hidden_layers is {self.num_hidden_layers}"
            )
        return self

    # ---- attention layout -------------------------------------------------------------------------

    @property
    def is_mla(self) -> bool:
        return self.attention_kind == "mla"

    @property
    def kv_head_size(self) -> int:
        """vLLM's ModelConfig.get_head_size(): the latent width for MLA, head_dim otherwise."""
        if self.is_mla:
            assert self.kv_lora_rank is not None and self.qk_rope_head_dim is not None
            return self.kv_lora_rank + self.qk_rope_head_dim
        return self.head_dim

    def kv_heads_per_gpu(self, tensor_parallel_size: int = 1) -> int:
        """KV heads each rank stores: split by TP, replicated (never below one) when kv_heads < TP; 1 for MLA."""
        if self.is_mla:
            return 1
        return max(1, self.num_key_value_heads // tensor_parallel_size)

    def kv_bytes_per_token_per_layer(self, kv_dtype_bytes: int, tensor_parallel_size: int = 1) -> int:
        """One token's K and V for one layer on one GPU (MLA: one latent vector, no factor 2, not TP-split)."""
        factor = 1 if self.is_mla else 2
        return factor * self.kv_heads_per_gpu(tensor_parallel_size) * self.kv_head_size * kv_dtype_bytes

    def kv_cache_bytes_per_token(self, kv_dtype_bytes: int, tensor_parallel_size: int = 1) -> int:
        """All layers, per GPU, as if every layer kept full attention (the familiar 2·L·kv·hd·bytes)."""
        return self.num_hidden_layers * self.kv_bytes_per_token_per_layer(kv_dtype_bytes, tensor_parallel_size)

    def layer_kinds(self) -> list[LayerType]:
        """Per-layer KV type: "full", "sliding" (window) or "chunked" (Llama 4 local attention)."""
        if self.layer_types is not None:
            return list(self.layer_types)
        local: LayerType
        if self.attention_kind == "sliding_window":
            local = "sliding"
        elif self.attention_kind == "chunked_local":
            local = "chunked"
        else:
            return ["full"] * self.num_hidden_layers
        if self.global_every is None:
            return [local] * self.num_hidden_layers
        return ["full" if (i + 1) % self.global_every == 0 else local for i in range(self.num_hidden_layers)]

    # ---- parameters -------------------------------------------------------------------------------

    @property
    def padded_vocab_size(self) -> int:
        return math.ceil(self.vocab_size / VOCAB_PADDING) * VOCAB_PADDING

    def attention_params_per_layer(self, tensor_parallel_size: int = 1) -> float:
        """Attention projection parameters of one layer held by one TP rank."""
        tp = tensor_parallel_size
        h = self.hidden_size
        if self.is_mla:
            assert self.kv_lora_rank is not None and self.qk_rope_head_dim is not None
            nope = self.qk_nope_head_dim or 128
            v_dim = self.v_head_dim or 128
            qk_dim = nope + self.qk_rope_head_dim
            heads = self.num_attention_heads
            q_rank = self.q_lora_rank
            # q_a (replicated) + q_b when q is low-rank, one q_proj otherwise
            q = h * q_rank + q_rank * heads * qk_dim / tp if q_rank else h * heads * qk_dim / tp
            kv_a = h * (self.kv_lora_rank + self.qk_rope_head_dim)  # replicated on every rank
            kv_b = self.kv_lora_rank * heads * (nope + v_dim) / tp
            o = heads * v_dim * h / tp
            return q + kv_a + kv_b + o
        q = h * self.num_attention_heads * self.head_dim / tp
        kv = 2 * h * self.kv_heads_per_gpu(tp) * self.head_dim
        o = self.num_attention_heads * self.head_dim * h / tp
        return q + kv + o

    def dense_mlp_params(self, intermediate: int, tensor_parallel_size: int = 1) -> float:
        matrices = 3 if self.mlp_gated else 2
        return matrices * self.hidden_size * intermediate / tensor_parallel_size

    def expert_params_per_layer(self, tensor_parallel_size: int = 1, intermediate_pad_to: int = 1) -> float:
        """Routed experts of one MoE layer on one TP rank (FusedMoE shards each expert's intermediate)."""
        if self.moe is None:
            return 0.0
        per_rank = self.moe.moe_intermediate_size / tensor_parallel_size
        per_rank = math.ceil(per_rank / intermediate_pad_to) * intermediate_pad_to
        return self.moe.num_experts * 3 * self.hidden_size * per_rank

    def non_expert_mlp_params_per_layer(self, layer_index: int, tensor_parallel_size: int = 1) -> float:
        """Dense MLP, or router + shared experts of a MoE layer."""
        moe = self.moe
        if moe is None:
            return self.dense_mlp_params(self.intermediate_size, tensor_parallel_size)
        if layer_index < moe.first_k_dense_layers:
            return self.dense_mlp_params(moe.dense_intermediate_size or self.intermediate_size,
                                         tensor_parallel_size)
        router = self.hidden_size * moe.num_experts
        shared = self.dense_mlp_params(moe.shared_expert_intermediate_size, tensor_parallel_size)
        return router + shared

    def is_moe_layer(self, layer_index: int) -> bool:
        return self.moe is not None and layer_index >= self.moe.first_k_dense_layers

    @property
    def computed_params(self) -> float:
        """Parameters computed from the shapes (text model + vision tower), TP=1."""
        layers = 0.0
        for i in range(self.num_hidden_layers):
            layers += self.attention_params_per_layer() + self.non_expert_mlp_params_per_layer(i)
            if self.is_moe_layer(i):
                layers += self.expert_params_per_layer()
            layers += 2 * self.hidden_size  # input + post-attention norms
        embeddings = self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)
        return layers + embeddings + self.hidden_size + self.vision_params_b * 1e9

    @property
    def params_b(self) -> float:
        """Total parameters in billions: the recorded actual count, else computed from the shapes."""
        if self.total_params_b is not None:
            return self.total_params_b
        return round(self.computed_params / 1e9, 2)

    @property
    def active_params_b(self) -> float:
        """Parameters used per token (MoE: only experts_per_token routed experts)."""
        if self.moe is None:
            return self.params_b
        moe_layers = self.num_hidden_layers - self.moe.first_k_dense_layers
        idle = (self.moe.num_experts - self.moe.experts_per_token) / self.moe.num_experts
        return round(self.params_b - moe_layers * self.expert_params_per_layer() * idle / 1e9, 2)


# ---- catalog -----------------------------------------------------------------------------------------


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


@functools.cache
def load_model_catalog(path: Path = DATA_DIR / "models.yaml") -> dict[str, ModelArchitecture]:
    """Every catalog model keyed by its id and by each alias (the same object under several keys).

    An entry may say ``extends: <id>`` to reuse another entry's architecture (quantized checkpoints,
    renamed releases); the own fields override the inherited ones, ids and aliases are never inherited.
    """
    raw = yaml.safe_load(Path(path).read_text())
    entries: dict[str, dict[str, Any]] = {entry["id"]: entry for entry in raw["models"]}

    def expand(entry: dict[str, Any], seen: tuple[str, ...] = ()) -> dict[str, Any]:
        parent_id = entry.get("extends")
        if parent_id is None:
            return entry
        if parent_id in seen or parent_id not in entries:
            raise ValueError(f"{entry['id']}: bad extends {parent_id!r}")
        parent = expand(entries[parent_id], (*seen, entry["id"]))
        # Gating belongs to a repository, not an architecture: a quantized re-upload of a gated model is
        # usually open.
        own_only = {"id", "aliases", "extends", "total_params_b", "gated", "gated_source"}
        inherited = {k: v for k, v in parent.items() if k not in own_only}
        return _merge(inherited, {k: v for k, v in entry.items() if k != "extends"})

    catalog: dict[str, ModelArchitecture] = {}
    for entry in entries.values():
        model = ModelArchitecture.model_validate(expand(entry))
        for key in (model.id, *model.aliases):
            if key in catalog:
                raise ValueError(f"duplicate model id/alias {key!r} in {path}")
            catalog[key] = model
    return catalog


def _lowercase_index(catalog: dict[str, ModelArchitecture]) -> dict[str, ModelArchitecture]:
    return {key.lower(): model for key, model in catalog.items()}


def resolve_model(ref: str) -> ModelArchitecture:
    """A catalog id or alias (case-insensitive), or a path to a Hugging Face config.json (or its folder)."""
    catalog = load_model_catalog()
    by_lower = _lowercase_index(catalog)
    found = by_lower.get(ref.strip().lower())
    if found is not None:
        return found
    path = Path(ref).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        path = path / "config.json"
    if path.is_file():
        return model_from_hf_config(json.loads(path.read_text()), model_id=str(path))
    close = difflib.get_close_matches(ref, list(catalog), n=5, cutoff=0.6)
    if not close:
        close = difflib.get_close_matches(ref.lower(), list(by_lower), n=5, cutoff=0.6)
    raise UnknownModel(ref, close)


# ---- Hugging Face config.json ------------------------------------------------------------------------

_QUANT_METHODS: dict[str, QuantMethod] = {
    "fp8": "fp8",
    "awq": "awq",
    "gptq": "gptq",
    "mxfp4": "mxfp4",
    "bitsandbytes": "bitsandbytes",
}


def _quantization_from_hf(qc: dict[str, Any] | None) -> Quantization:
    if not qc:
        return Quantization()
    method = str(qc.get("quant_method", "")).lower()
    if method in _QUANT_METHODS:
        q: QuantMethod = _QUANT_METHODS[method]
        bits = {"fp8": 8, "mxfp4": 4}.get(method, int(qc.get("bits", 4)))
        group = int(qc.get("group_size") or 128)
        return Quantization(method=q, bits=bits, group_size=group if group > 0 else 128,
                            experts_only=method == "mxfp4")
    if method == "compressed-tensors":
        # config_groups.*.weights.{num_bits,type} says what the linear layers hold.
        groups = qc.get("config_groups") or {}
        first_group: dict[str, Any] = next(iter(groups.values()), {}) if groups else {}
        weights = first_group.get("weights", {})
        bits = int(weights.get("num_bits", 8))
        if bits <= 4:
            return Quantization(method="compressed-tensors-w4a16", bits=bits)
        if weights.get("type") == "float":
            return Quantization(method="compressed-tensors-fp8", bits=8)
        return Quantization(method="compressed-tensors-w8a8", bits=8)
    raise ValueError(f"unsupported quantization_config.quant_method {method!r}")


def _rotary_cache_positions(text: dict[str, Any], max_position: int) -> int | None:
    """Rows of vLLM's cos/sin caches (vllm/model_executor/layers/rotary_embedding/, v0.19.0): get_rope builds
    LinearScalingRotaryEmbedding / DynamicNTKScalingRotaryEmbedding over max_position × factor rows,
    YaRNScalingRotaryEmbedding / DeepseekScalingRotaryEmbedding over original_max_position × factor; Gemma 3
    builds a second, local rope (rope_local_base_freq) over max_position. None: a single max_position cache."""
    scaling = text.get("rope_scaling") or text.get("rope_parameters") or {}
    kind = str(scaling.get("rope_type") or scaling.get("type") or "default")
    factor = float(scaling.get("factor") or 1.0)
    if kind in ("linear", "dynamic"):
        rows = int(max_position * factor)
    elif kind in ("yarn", "deepseek_yarn"):
        rows = int(int(scaling.get("original_max_position_embeddings") or max_position) * factor)
    else:
        rows = max_position
    if text.get("rope_local_base_freq"):
        rows += max_position
    return None if rows == max_position else rows


def model_from_hf_config(config: dict[str, Any], model_id: str) -> ModelArchitecture:
    """Build a ModelArchitecture from a config.json dict (multimodal: the text_config carries the LM)."""
    top = config
    text = {**config, **config.get("text_config", {})} if "text_config" in config else config
    arch = (top.get("architectures") or ["unknown"])[0]
    # transformers omits fields left at their class default; Gemma's default ties the embeddings
    tie_default = str(text.get("model_type", top.get("model_type", ""))).startswith("gemma")
    hidden = int(text["hidden_size"])
    heads = int(text["num_attention_heads"])
    kv_heads = int(text.get("num_key_value_heads") or heads)
    head_dim = int(text.get("head_dim") or hidden // heads)
    layers = int(text["num_hidden_layers"])
    fields: dict[str, Any] = {
        "id": model_id,
        "architecture": arch,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "hidden_size": hidden,
        "intermediate_size": int(text.get("intermediate_size") or 4 * hidden),
        "vocab_size": int(text["vocab_size"]),
        "tie_word_embeddings": bool(top.get("tie_word_embeddings", text.get("tie_word_embeddings", tie_default))),
        "max_position_embeddings": int(text.get("max_position_embeddings") or 2048),
        "quantization": _quantization_from_hf(top.get("quantization_config") or text.get("quantization_config")),
        "source": f"config.json at {model_id}",
        "verified": True,
    }
    if text.get("kv_lora_rank"):
        fields.update(
            attention_kind="mla",
            kv_lora_rank=int(text["kv_lora_rank"]),
            qk_rope_head_dim=int(text["qk_rope_head_dim"]),
            qk_nope_head_dim=text.get("qk_nope_head_dim"),
            v_head_dim=text.get("v_head_dim"),
            q_lora_rank=text.get("q_lora_rank"),
        )
    layer_types = text.get("layer_types")
    if layer_types:
        mapped = ["sliding" if "sliding" in t else "chunked" if "chunk" in t else "full" for t in layer_types]
        fields["layer_types"] = mapped[:layers]
    if text.get("attention_chunk_size"):
        fields.update(attention_kind="chunked_local", attention_chunk_size=int(text["attention_chunk_size"]))
        interval = text.get("no_rope_layer_interval") or 4
        fields.setdefault("global_every", int(interval))
    elif text.get("sliding_window") and text.get("use_sliding_window", True) is not False:
        fields.update(attention_kind="sliding_window", sliding_window=int(text["sliding_window"]))
        pattern = text.get("sliding_window_pattern")
        if pattern:
            fields["global_every"] = int(pattern)
        elif "Gemma2" in arch:
            fields["global_every"] = 2
    rotary_rows = _rotary_cache_positions(text, int(fields["max_position_embeddings"]))
    if rotary_rows is not None:
        fields["rotary_cache_positions"] = rotary_rows
    if text.get("num_local_experts") or text.get("num_experts") or text.get("n_routed_experts"):
        num_experts = int(text.get("num_local_experts") or text.get("num_experts") or text["n_routed_experts"])
        shared = int(text.get("shared_expert_intermediate_size") or 0)
        if text.get("n_shared_experts"):
            shared = int(text["n_shared_experts"]) * int(text["moe_intermediate_size"])
        fields["moe"] = MoE(
            num_experts=num_experts,
            experts_per_token=int(text.get("num_experts_per_tok") or text.get("experts_per_token") or 2),
            moe_intermediate_size=int(text.get("moe_intermediate_size") or text["intermediate_size"]),
            shared_expert_intermediate_size=shared,
            first_k_dense_layers=int(text.get("first_k_dense_replace") or 0),
        )
    return ModelArchitecture.model_validate(fields)
