"""The activation peak of vLLM's V1 profile run, term by term as vLLM allocates it (v0.17 and later).

vLLM measures ``torch_peak_increase``: the rise of ``allocated_bytes.all.peak`` while
``GPUModelRunner.profile_run`` runs (vllm/utils/mem_utils.py ``memory_profiling``, v0.19.0). That run, in
vllm/v1/worker/gpu_model_runner.py (v0.19.0):

1. multimodal models: builds one dummy batch of the largest image (``_get_mm_dummy_batch``), runs the encoder
   (``embed_multimodal``) and keeps every output in ``encoder_cache`` until the end of the run;
2. ``_dummy_run(max_num_tokens)``: one forward pass over ``max_num_batched_tokens`` tokens, whose
   ``hidden_states`` stay referenced until the end of ``profile_run``;
3. last pipeline stage: ``_dummy_sampler_run`` on ``min(max_num_seqs, max_num_batched_tokens)`` rows.

So the peak is what stays allocated across the run (MoE workspace, multimodal batch) plus the larger of the
forward pass and the sampler. Every term below is computed from the architecture; three constants per vLLM
version (``ProfileRunTerms``) carry what the code does not pin down exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from gpu_inference.model_arch import ModelArchitecture

GiB = 2**30

# Streaming multiprocessors of the GPU the sampler runs on, when the request does not say: the H100 SXM's 132
# (the GPU of the v0.19 calibration runs). Only the top-k/top-p buffer depends on it (a few tens of MiB).
DEFAULT_MULTIPROCESSORS = 132


class ProfileRunTerms(BaseModel):
    """Per-version constants of the profile-run peak (fitted by bench/sizing_accuracy.py --fit)."""

    model_config = ConfigDict(extra="forbid")
    intercept_gib: float
    """Small allocations of every profile run (attention metadata, sampling metadata, sampled ids)."""
    sampler_fp32_copies: float
    """[rows, vocab] fp32 tensors alive at the sampler's peak. v0.19 code: 3 (Sampler.forward's
    ``logits.to(torch.float32)``, TopKTopPSampler.forward_native's ``softmax``, random_sample's
    ``q = torch.empty_like(probs)``); a float32 model skips the first (``.to`` returns the same tensor)."""
    forward_hidden_units: float
    """[tokens, hidden] tensors alive at the forward pass's peak beside the MLP intermediate (residual,
    normalised input, layer output, rotary/attention scratch)."""
    non_last_stage_output_units: float = 2.0
    """Non-last pipeline stages hand hidden_states + residual to the next stage (IntermediateTensors), and
    later stages receive them into ``make_empty_intermediate_tensors(max_num_tokens)`` buffers."""
    topk_topp_triton_buffer: bool = True
    """apply_top_k_top_p_triton (vllm/v1/sample/ops/topk_topp_triton.py, v0.19.0) caches one fp32 vocab row per
    program, ``min(next_power_of_2(min(SMs, rows)), SMs)`` rows, in ``_TRITON_BUFFER_CACHE``."""


@dataclass(frozen=True)
class ProfilePeak:
    """Components of one stage's profile-run peak, GiB (coefficients applied by ``total``)."""

    persistent_gib: float
    """Allocated before the forward pass and held through the sampler: MoE workspace, multimodal batch."""
    sampler_fixed_gib: float
    """Model-dtype logits, top-k/top-p buffer, retained hidden states (0 when the stage runs no sampler)."""
    sampler_copy_gib: float
    """One [rows, vocab] fp32 tensor."""
    sampler_copies_skipped: int
    """fp32 copies the sampler does not make (1 for float32 models)."""
    forward_fixed_gib: float
    """MLP intermediate of the widest layer on one rank."""
    forward_unit_gib: float
    """One [max_num_batched_tokens, hidden] tensor in the model dtype."""
    runs_sampler: bool

    def total(self, terms: ProfileRunTerms) -> float:
        forward = self.forward_fixed_gib + terms.forward_hidden_units * self.forward_unit_gib
        if not self.runs_sampler:
            forward += terms.non_last_stage_output_units * self.forward_unit_gib
        peak = forward
        if self.runs_sampler:
            copies = max(terms.sampler_fp32_copies - self.sampler_copies_skipped, 0.0)
            peak = max(forward, self.sampler_fixed_gib + copies * self.sampler_copy_gib)
        return self.persistent_gib + peak + terms.intercept_gib


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def moe_workspace_bytes(model: ModelArchitecture, *, tp: int, tokens: int, dtype_bytes: int, quant: str) -> int:
    """FusedMoEKernel._allocate_buffers (fused_moe/modular_kernel.py, v0.19.0): two buffers from the
    WorkspaceManager (vllm/v1/worker/workspace.py), kept for the engine's life, sized by TritonExperts.
    workspace_shapes (fused_moe/fused_moe.py): workspace13 = M × topk × max(N/2, K) (shared with the M × K
    output), workspace2 = M × topk × max(N, K), with M the dummy run's tokens, N = 2 × intermediate per rank
    and K = hidden; each rounded to 256 bytes (``get_simultaneous``).

    mxfp4 experts on Hopper run OAITritonMxfp4ExpertsMonolithic (fused_moe/gpt_oss_triton_kernels_moe.py),
    which allocates inside the kernel: no persistent workspace (gpt-oss-20b v0.19: 2.87 GiB = sampler alone).
    """
    moe = model.moe
    if moe is None or quant == "mxfp4":
        return 0
    per_rank = math.ceil(moe.moe_intermediate_size / tp)
    k, hidden = moe.experts_per_token, model.hidden_size
    common = max(tokens * k * max(per_rank, hidden), tokens * hidden)
    ws2 = tokens * k * max(2 * per_rank, hidden)
    return _round_up(common * dtype_bytes, 256) + _round_up(ws2 * dtype_bytes, 256)


def mm_dummy_items(model: ModelArchitecture, *, batched_tokens: int, max_num_seqs: int, max_model_len: int) -> int:
    """MultiModalBudget._get_max_items (vllm/multimodal/encoder_budget.py, v0.19.0): items of the largest
    size the encoder budget max(max_num_batched_tokens, tokens per item) holds (compute_mm_encoder_budget in
    vllm/v1/core/encoder_cache_manager.py), at least one, at most max_num_seqs × items per prompt."""
    per_item = model.mm_tokens_per_item
    if not per_item:
        return 0
    budget = max(batched_tokens, per_item)
    per_prompt = max(1, max_model_len // per_item)
    return max(1, min(budget // per_item, max_num_seqs * per_prompt))


def mm_dummy_batch_bytes(model: ModelArchitecture, *, batched_tokens: int, max_num_seqs: int,
                         max_model_len: int, dtype_bytes: int) -> int:
    """profile_run's multimodal step: the dummy batch (pixel values of ``items`` largest images, built on the
    GPU by group_and_batch_mm_kwargs) and the encoder outputs stored in ``encoder_cache`` (one embedding of
    the LM's hidden size per image token) both stay referenced until profile_run returns."""
    items = mm_dummy_items(model, batched_tokens=batched_tokens, max_num_seqs=max_num_seqs,
                           max_model_len=max_model_len)
    per_item = model.mm_pixels_per_item + model.mm_tokens_per_item * model.hidden_size
    return items * per_item * dtype_bytes


def _mlp_width_per_rank(model: ModelArchitecture, tp: int) -> float:
    """Elements per token of the widest MLP intermediate on one rank: gate_up output (2·I) + activation (I)
    for gated MLPs, fc1 output + activation (2·I) otherwise. MoE layers count their shared expert; their
    routed experts write into the persistent workspace instead."""
    matrices = 3 if model.mlp_gated else 2
    moe = model.moe
    if moe is None:
        return matrices * model.intermediate_size / tp
    widths = [moe.shared_expert_intermediate_size]
    if moe.first_k_dense_layers:
        widths.append(moe.dense_intermediate_size or model.intermediate_size)
    return matrices * max(widths) / tp


def profile_peak(
    model: ModelArchitecture,
    *,
    tp: int,
    is_first_stage: bool,
    is_last_stage: bool,
    stage_has_moe: bool,
    max_num_seqs: int,
    batched_tokens: int,
    max_model_len: int,
    dtype_bytes: int,
    quant: str,
    multiprocessors: int | None,
    topk_topp_buffer: bool = True,
) -> ProfilePeak:
    b, hidden, tokens = dtype_bytes, model.hidden_size, batched_tokens
    persistent = 0
    if stage_has_moe:
        persistent += moe_workspace_bytes(model, tp=tp, tokens=tokens, dtype_bytes=b, quant=quant)
    if is_first_stage:
        persistent += mm_dummy_batch_bytes(model, batched_tokens=tokens, max_num_seqs=max_num_seqs,
                                           max_model_len=max_model_len, dtype_bytes=b)
    unit = tokens * hidden * b
    forward = tokens * b * _mlp_width_per_rank(model, tp)
    sampler_fixed = 0.0
    copy = 0.0
    if is_last_stage:
        rows = min(max_num_seqs, tokens)  # _dummy_run: num_reqs = min(num_tokens, max_num_seqs)
        vocab = model.vocab_size
        # compute_logits: lm_head output [rows, padded vocab] in the model dtype, all-gathered over TP, held
        # by _dummy_sampler_run while the sampler works on its [:, :vocab] slice (LogitsProcessor._get_logits)
        sampler_fixed = rows * model.padded_vocab_size * b
        if topk_topp_buffer:
            sms = multiprocessors or DEFAULT_MULTIPROCESSORS
            programs = min(sms, rows)
            sampler_fixed += min(1 << (programs - 1).bit_length(), sms) * vocab * 4
        # _dummy_run's hidden_states [tokens, hidden] and hidden_states[logit_indices] [rows, hidden], plus
        # _dummy_sampler_run's torch.rand_like of the latter
        sampler_fixed += unit + 2 * rows * hidden * b
        copy = rows * vocab * 4
    return ProfilePeak(
        persistent_gib=persistent / GiB,
        sampler_fixed_gib=sampler_fixed / GiB,
        sampler_copy_gib=copy / GiB,
        sampler_copies_skipped=1 if b == 4 else 0,
        forward_fixed_gib=forward / GiB,
        forward_unit_gib=unit / GiB,
        runs_sampler=is_last_stage,
    )
