"""Step-time models: the blackbox alpha/beta regression, the analytical roofline and the
trained-physics model (roofline basis functions weighted by learned coefficients).

All three reproduce upstream BLIS (4e179804) to the microsecond: every float expression is evaluated
in upstream's operand order, and the result is truncated with ``clamp64`` and floored at 1.

How the engine calls a model, once per step, with only the requests scheduled this step
(``num_new_tokens > 0``), in batch order::

    prefill = [(progress, num_new_tokens, input length) for requests with progress < input length]
    decode  = [progress for requests with progress >= input length and output length > 0]
    step_time(sum of prefill num_new_tokens, len(decode), prefill, decode)

A model whose ``needs_positions`` is False only reads the two sums; the engine may pass None for
the lists. A model is stateless apart from its caches, so one object can serve every instance.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence

import numpy as np

from blis_core.gomath import clamp64, go_pow_int
from blis_core.modelconfig import HardwareConfig, ModelConfig, format_go_v, validate_roofline

BLACKBOX_DEPRECATION_WARNING = (
    'latency model "blackbox" is deprecated and will be removed in a future version. '
    "Use --latency-model trained-physics instead.")

VALID_BACKENDS = ("blackbox", "roofline", "trained-physics")


class LatencyConfigError(ValueError):
    """A latency model cannot be built from the given coefficients or configs."""


class _AlphaOverheads:
    """The alpha-coefficient overheads both backends share."""

    def __init__(self, alpha: Sequence[float]) -> None:
        self._queue_base = 0.0 + alpha[0]
        self._queue_per_token = alpha[1]
        self._output_token_time = clamp64(alpha[2])

    def queueing_time(self, input_len: int) -> int:
        """Arrival-to-queued delay of a request with ``input_len`` prompt tokens."""
        return clamp64(self._queue_base + self._queue_per_token * float(input_len))

    def output_token_processing_time(self) -> int:
        return self._output_token_time

    def post_decode_fixed_overhead(self) -> int:
        return 0


class BlackboxLatency(_AlphaOverheads):
    """Linear regression: beta0 + beta1 * prefill (cache-miss) tokens + beta2 * decode tokens."""

    needs_positions = False

    def __init__(self, alpha: Sequence[float], beta: Sequence[float]) -> None:
        super().__init__(alpha)
        self._base = 0.0 + beta[0]
        self._per_prefill_token = beta[1]
        self._per_decode_token = beta[2]

    def step_time(self, prefill_tokens: int, decode_count: int,
                  prefill: Sequence[tuple[int, int, int]] | None = None,
                  decode_positions: Sequence[int] | None = None) -> int:
        t = (self._base + self._per_prefill_token * float(prefill_tokens)) \
            + self._per_decode_token * float(decode_count)
        ticks = clamp64(t)
        return ticks if ticks > 1 else 1


class RooflineLatency(_AlphaOverheads):
    """Analytical roofline: max(compute time, memory time) of one step.

    Compute is summed per request with the phase's MFU; memory is the weights, loaded once for
    the batch, plus every request's KV and activation traffic. ``flops`` and ``memory`` are the
    reference per-request formulas; decode terms are served from per-position tables built with
    the same operations, and weight bytes are memoized per token count.
    """

    needs_positions = True

    def __init__(self, model_config: ModelConfig, hardware: HardwareConfig, tp: int,
                 alpha: Sequence[float]) -> None:
        super().__init__(alpha)
        mc = model_config
        d = float(mc.hidden_dim)
        n_heads = float(mc.num_heads)
        n_kv = float(mc.num_kv_heads if mc.num_kv_heads > 0 else mc.num_heads)
        n_layers = float(mc.num_layers)
        bytes_per_param = mc.bytes_per_param
        head_dim = d / n_heads
        d_ff = float(mc.intermediate_dim) if mc.intermediate_dim > 0 else 4.0 * d
        n_mat = 2.0  # upstream's roofline counts two MLP matrices
        weight_bytes = mc.weight_bytes_per_param if mc.weight_bytes_per_param > 0 else bytes_per_param

        layers = int(n_layers)
        experts = mc.num_local_experts
        if mc.interleave_moe_layer_step > 0 and experts > 1:
            self._moe_layers = layers // (mc.interleave_moe_layer_step + 1)
            self._dense_layers = layers - self._moe_layers
        elif experts > 1:
            self._moe_layers, self._dense_layers = layers, 0
        else:
            self._moe_layers, self._dense_layers = 0, layers
        d_ff_moe = float(mc.moe_expert_ffn_dim) if mc.moe_expert_ffn_dim > 0 else d_ff
        d_ff_dense = float(mc.dense_intermediate_dim) if mc.dense_intermediate_dim > 0 else d_ff

        d_kv = n_kv * head_dim
        self._d = d
        self._n_heads = n_heads
        self._n_layers = n_layers
        self._head_dim = head_dim
        self._weight_bytes = weight_bytes
        self._experts = float(experts)
        self._active_experts = float(mc.num_experts_per_tok)
        # Sub-expressions shared by every evaluation (same operands, same order).
        self._qkv_width = (d * d) + ((2 * d) * d_kv)
        self._moe_ffn_weights = (n_mat * d) * d_ff_moe
        self._dense_ffn_weights = (n_mat * d) * d_ff_dense
        self._attention_weights = (d * (d + (2 * d_kv))) + (d * d)
        self._dense_weights = self._dense_ffn_weights * float(self._dense_layers) if self._dense_layers > 0 else 0.0
        self._kv_bytes_per_token = (((2 * n_layers) * n_kv) * head_dim) * bytes_per_param
        self._act_bytes_per_token = (n_layers * d) * bytes_per_param

        peak = hardware.tflops_peak * 1e12
        if weight_bytes == 1.0 and hardware.tflops_fp8 > 0:
            peak = hardware.tflops_fp8 * 1e12
        self._tpf = float(tp)
        self._bw = hardware.bw_peak_tbs * 1e12
        self._peak_prefill = peak * hardware.mfu_prefill
        self._peak_decode = peak * hardware.mfu_decode

        self._decode_comp: list[float] = []  # flops(pi, 1) / tpf / (peak * mfuDecode), by pi
        self._decode_dyn: list[float] = []  # (mem(pi, 1).total - mem(pi, 1).weights) / tpf, by pi
        self._decode_pairs = np.empty((0, 2))  # both tables, row pi = (comp, dyn) (decode_step_seconds)
        self._weights_by_tokens: dict[int, float] = {}  # weight_bytes(n), by n
        self._grow_decode_tables(4096)

    # -- reference formulas -----------------------------------------------------------------

    def flops(self, seq: int, n: int) -> float:
        """FLOPs of computing ``n`` new tokens after ``seq`` already-computed ones (all GPUs)."""
        s, t = float(seq), float(n)
        d, n_heads, n_layers = self._d, self._n_heads, self._n_layers
        qkv = (2 * t) * self._qkv_width
        proj = ((2 * t) * d) * d
        gemm = (qkv + proj) * n_layers
        ctx = s + (t - 1) / 2.0 if t > 1 else s
        attn = (((4 * n_heads) * t) * ctx) * self._head_dim
        vec = (((5 * n_heads) * t) * ctx) + ((2 * t) * d)
        gemm = gemm + attn * n_layers
        sram = vec * n_layers
        if self._moe_layers > 0:
            gemm = gemm + (((2 * t) * self._moe_ffn_weights) * self._active_experts) * float(self._moe_layers)
        if self._dense_layers > 0:
            gemm = gemm + ((2 * t) * self._dense_ffn_weights) * float(self._dense_layers)
        return gemm + sram

    def weight_bytes(self, n: int) -> float:
        """Weight bytes a step touches; for MoE, the experts ``n`` tokens activate on average."""
        moe = 0.0
        if self._moe_layers > 0:
            e = self._experts
            active = e * (1.0 - go_pow_int((e - self._active_experts) / e, n))
            moe = (self._moe_ffn_weights * active) * float(self._moe_layers)
        return ((self._attention_weights * self._n_layers) + (moe + self._dense_weights)) * self._weight_bytes

    def memory(self, seq: int, n: int, include_kv: bool) -> tuple[float, float]:
        """(weight bytes, total bytes) moved for ``n`` new tokens after ``seq`` computed ones."""
        t = float(n)
        weights = self._cached_weight_bytes(n)
        growth = access = 0.0
        if include_kv:
            growth = self._kv_bytes_per_token * t
            access = self._kv_bytes_per_token * float(seq)
        act = self._act_bytes_per_token * t
        return weights, ((weights + growth) + access) + act

    # -- memoized per-step terms ------------------------------------------------------------

    def _grow_decode_tables(self, size: int) -> None:
        """Extend the decode tables to cover positions below ``size``.

        Elementwise numpy float64 operations round exactly like the scalar formulas, as long as
        each operation (and its operand order) is the same; ``flops(pi, 1)`` and
        ``memory(pi, 1, True)`` are spelled out here with t = 1.
        """
        start = len(self._decode_comp)
        s = np.arange(start, size, dtype=np.float64)
        d, n_heads, n_layers, t = self._d, self._n_heads, self._n_layers, 1.0
        gemm = (((2 * t) * self._qkv_width) + (((2 * t) * d) * d)) * n_layers
        attn = (((4 * n_heads) * t) * s) * self._head_dim
        vec = (((5 * n_heads) * t) * s) + ((2 * t) * d)
        gemm = gemm + attn * n_layers
        sram = vec * n_layers
        if self._moe_layers > 0:
            gemm = gemm + (((2 * t) * self._moe_ffn_weights) * self._active_experts) * float(self._moe_layers)
        if self._dense_layers > 0:
            gemm = gemm + ((2 * t) * self._dense_ffn_weights) * float(self._dense_layers)
        comp = ((gemm + sram) / self._tpf) / self._peak_decode

        weights = self._cached_weight_bytes(1)
        kv = self._kv_bytes_per_token
        total = ((weights + kv * t) + kv * s) + self._act_bytes_per_token * t
        dyn = (total - weights) / self._tpf

        self._decode_comp.extend(comp.tolist())
        self._decode_dyn.extend(dyn.tolist())
        self._decode_pairs = np.concatenate((self._decode_pairs, np.column_stack((comp, dyn))))

    def decode_terms(self, pi: int) -> tuple[float, float]:
        """The memoized (compute seconds, dynamic bytes / tp) of one decode at position ``pi``."""
        if pi >= len(self._decode_comp):
            self._grow_decode_tables(max(pi + 1, 2 * len(self._decode_comp)))
        return self._decode_comp[pi], self._decode_dyn[pi]

    def _cached_weight_bytes(self, n: int) -> float:
        weights = self._weights_by_tokens.get(n)
        if weights is None:
            weights = self._weights_by_tokens[n] = self.weight_bytes(n)
        return weights

    def _add_decode_terms(self, comp: float, dyn: float, positions: Sequence[int]) -> tuple[float, float]:
        """Add the decode terms left to right, as upstream's loop does (a plain loop is fastest)."""
        comp_table, dyn_table = self._decode_comp, self._decode_dyn
        for pi in positions:
            comp += comp_table[pi]
            dyn += dyn_table[pi]
        return comp, dyn

    def step_time(self, prefill_tokens: int, decode_count: int,
                  prefill: Sequence[tuple[int, int, int]] | None,
                  decode_positions: Sequence[int] | None) -> int:
        if not prefill and not decode_positions:
            return 1
        tpf = self._tpf
        comp = 0.0
        dyn = 0.0
        if prefill:
            for pi, n, _ in prefill:
                comp += self.flops(pi, n) / tpf / self._peak_prefill
                weights, total = self.memory(pi, n, True)
                dyn += (total - weights) / tpf
        if decode_positions:
            try:
                comp, dyn = self._add_decode_terms(comp, dyn, decode_positions)
            except IndexError:
                self._grow_decode_tables(max(max(decode_positions) + 1, 2 * len(self._decode_comp)))
                comp, dyn = self._add_decode_terms(comp, dyn, decode_positions)
        weights = self._cached_weight_bytes(prefill_tokens + decode_count) / tpf
        mem_time = (weights + dyn) / self._bw
        ticks = clamp64((comp if comp > mem_time else mem_time) * 1e6)
        return ticks if ticks > 1 else 1

    def decode_step_times(self, bases: np.ndarray, first: int, count: int) -> list[int]:
        """The times of ``count`` successive decode-only steps of the same requests: step
        ``first + i`` decodes them at positions ``bases + first + i``, in batch order. Each
        equals ``step_time(0, len(bases), [], positions)``, which a few steps are computed with
        (arrays pay off from about ten)."""
        n = len(bases)
        if count <= 8 or n == 0:
            base_list = bases.tolist()
            return [self.step_time(0, n, [], [base + step for base in base_list])
                    for step in range(first, first + count)]
        seconds = self.decode_step_seconds(bases, first, count)
        if not (seconds < 9223372036854775808.0).all():   # NaN or past int64: clamp64 saturates
            return [max(clamp64(x), 1) for x in seconds.tolist()]
        return np.maximum(seconds.astype(np.int64), 1).tolist()   # truncates, as clamp64

    def decode_step_seconds(self, bases: np.ndarray, first: int, count: int) -> np.ndarray:
        """``decode_step_times`` before the conversion to ticks (µs as float64; len(bases) > 0).

        A request's positions over the steps are consecutive, so its terms are a slice of the
        tables. The requests' slices are added one after another, in batch order, as
        ``step_time``'s loop adds its terms (``sum`` over them would add pairwise and round
        differently). Every later operation is the scalar one, elementwise.
        """
        top = int(bases.max()) + first + count
        if top > len(self._decode_comp):
            self._grow_decode_tables(max(top, 2 * len(self._decode_comp)))
        pairs = self._decode_pairs
        starts = (bases + first).tolist()
        start = starts[0]
        sums = pairs[start:start + count].copy()
        for start in starts[1:]:
            sums += pairs[start:start + count]
        comp, dyn = sums.T
        mem_time = (self._cached_weight_bytes(len(starts)) / self._tpf + dyn) / self._bw
        return np.where(comp > mem_time, comp, mem_time) * 1e6


class TrainedPhysicsLatency:
    """Roofline basis functions, each scaled by a learned beta, plus learned fixed overheads.

    Unlike the roofline, no MFU is applied and the terms are added, not maxed::

        step = prefill + decode + b2*T_weight + b3*T_tp + b4*layers + b5*batch + b6
               + b7*MoE layers (interleaved MoE/dense models only)
        prefill = b0*T_pf_compute + b8*T_pf_kv    (b0*max(T_pf_compute, T_pf_kv) below 9 betas)
        decode  = b1*T_dc_compute + b9*T_dc_kv    (b1*max(T_dc_compute, T_dc_kv) below 10 betas)

    Times are in µs; compute is divided by peak FLOP/µs (FP8 peak for 1-byte weights when the
    GPU has one), bytes by peak bytes/µs, and every per-GPU term by TP. The alphas are fixed
    per-request overheads: alpha[0] queueing, alpha[1] after the last decode, alpha[2] per
    output token.
    """

    needs_positions = True

    def __init__(self, model_config: ModelConfig, hardware: HardwareConfig, tp: int,
                 alpha: Sequence[float], beta: Sequence[float]) -> None:
        mc = model_config
        self._queueing = clamp64(alpha[0])
        self._post_decode = clamp64(alpha[1])
        self._output_token = clamp64(alpha[2])
        # Missing betas are zero: 7 leave out the MoE term; 9 split prefill, 10 split decode.
        self._beta = ([float(b) for b in beta[:10]] + [0.0] * 10)[:10]
        self._prefill_split = len(beta) >= 9
        self._decode_split = len(beta) >= 10

        layers = mc.num_layers
        moe = mc.num_local_experts > 1
        if moe and mc.interleave_moe_layer_step > 0:
            moe_layers = layers // (mc.interleave_moe_layer_step + 1)
        else:
            moe_layers = layers if moe else 0
        kv_heads = mc.num_kv_heads if mc.num_kv_heads > 0 else mc.num_heads
        head_dim = mc.hidden_dim // mc.num_heads
        self._moe = moe
        self._moe_layers = float(moe_layers)
        self._dense_layers = float(layers - moe_layers)
        # The per-MoE-layer overhead applies to interleaved MoE/dense models only.
        self._moe_scaling = 1.0 if moe and mc.interleave_moe_layer_step > 0 else 0.0
        self._layers = float(layers)
        self._d = float(mc.hidden_dim)
        self._d_kv = float(kv_heads * head_dim)
        self._head_dim = float(head_dim)
        self._tp = float(tp)
        self._tp_int = tp
        self._heads_per_gpu = float(mc.num_heads) / float(tp)
        self._experts = float(mc.num_local_experts)
        self._k_eff = float(max(1, mc.num_experts_per_tok))
        self._d_ff_moe = float(mc.moe_expert_ffn_dim if mc.moe_expert_ffn_dim > 0 else mc.intermediate_dim)
        self._d_ff_dense = float(mc.dense_intermediate_dim if mc.dense_intermediate_dim > 0
                                 else mc.intermediate_dim)
        self._weight_bytes = mc.effective_weight_bytes
        peak = hardware.tflops_peak * 1e6
        if self._weight_bytes == 1.0 and hardware.tflops_fp8 > 0:
            peak = hardware.tflops_fp8 * 1e6
        self._flops_per_us = peak
        self._bytes_per_us = hardware.bw_peak_tbs * 1e6

    def queueing_time(self, input_len: int) -> int:
        return self._queueing

    def output_token_processing_time(self) -> int:
        return self._output_token

    def post_decode_fixed_overhead(self) -> int:
        return self._post_decode

    def _compute_time(self, tokens: float, attention_flops: float) -> float:
        """Projection, attention and FFN FLOPs of ``tokens`` tokens, in µs (upstream's order)."""
        L, d, tp = self._layers, self._d, self._tp
        proj = L * 2 * tokens * d * (2 * d + 2 * self._d_kv) / tp
        ffn = 0.0
        if self._moe_layers > 0:
            ffn += self._moe_layers * tokens * self._k_eff * 6 * d * self._d_ff_moe / tp
        if self._dense_layers > 0:
            ffn += self._dense_layers * tokens * 1 * 6 * d * self._d_ff_dense / tp
        return (proj + attention_flops + ffn) / self._flops_per_us

    def basis(self, prefill: Sequence[tuple[int, int, int]], decode_positions: Sequence[int],
              ) -> tuple[float, float, float, float, float, float]:
        """(T_pf_compute, T_pf_kv, T_dc_compute, T_dc_kv, T_weight, T_tp) of one step, in µs."""
        L, d, tp, d_kv, head_dim = self._layers, self._d, self._tp, self._d_kv, self._head_dim
        heads = self._heads_per_gpu
        prefill_tokens = 0.0
        attention = 0.0
        for _, n, input_len in prefill:
            t = float(n)
            prefill_tokens += t
            # Upstream's causal context is the whole prompt, even for a later chunk.
            attention += 4 * heads * t * (float(input_len) + t / 2) * head_dim
        decode_tokens = float(len(decode_positions))
        context = float(sum(decode_positions))  # an integer sum: exact in any order

        pf_compute = pf_kv = dc_compute = dc_kv = 0.0
        if prefill_tokens > 0:
            pf_compute = self._compute_time(prefill_tokens, L * attention)
            pf_kv = L * 2 * (d_kv / tp) * prefill_tokens * 2.0 / self._bytes_per_us
        if decode_tokens > 0:
            dc_compute = self._compute_time(decode_tokens, L * 4 * heads * context * head_dim)
            dc_kv = L * 2 * (d_kv / tp) * 2.0 * (context + decode_tokens) / self._bytes_per_us

        tokens = prefill_tokens + decode_tokens
        experts = 1.0
        if self._moe:
            experts = min(self._experts, max(self._k_eff, tokens * self._k_eff))
        wb = self._weight_bytes
        weights = L * d * (2 * d + 2 * d_kv) * wb / tp
        ffn = 0.0
        if self._moe_layers > 0:
            ffn += self._moe_layers * experts * 3 * d * self._d_ff_moe * wb / tp
        if self._dense_layers > 0:
            ffn += self._dense_layers * 1 * 3 * d * self._d_ff_dense * wb / tp
        weight = (weights + ffn) / self._bytes_per_us

        all_reduce = 0.0
        if self._tp_int > 1:
            units = 2 * self._dense_layers + self._moe_layers  # attention + FFN; MoE FFN is not reduced
            share = float(self._tp_int - 1) / tp
            all_reduce = units * tokens * d * 2.0 * 2.0 * share / self._bytes_per_us
        return pf_compute, pf_kv, dc_compute, dc_kv, weight, all_reduce

    def step_time(self, prefill_tokens: int, decode_count: int,
                  prefill: Sequence[tuple[int, int, int]] | None,
                  decode_positions: Sequence[int] | None) -> int:
        prefill = prefill or ()
        decode_positions = decode_positions or ()
        batch = len(prefill) + len(decode_positions)
        if batch == 0:
            return 1
        pf_compute, pf_kv, dc_compute, dc_kv, weight, all_reduce = self.basis(prefill, decode_positions)
        b = self._beta
        if self._prefill_split:
            prefill_term = b[0] * pf_compute + b[8] * pf_kv
        else:
            prefill_term = b[0] * (pf_compute if pf_compute > pf_kv else pf_kv)
        if self._decode_split:
            decode_term = b[1] * dc_compute + b[9] * dc_kv
        else:
            decode_term = b[1] * (dc_compute if dc_compute > dc_kv else dc_kv)
        t = (prefill_term + decode_term + b[2] * weight + b[3] * all_reduce + b[4] * self._layers
             + b[5] * float(batch) + b[6] + b[7] * self._moe_scaling * self._moe_layers)
        ticks = clamp64(t)
        return ticks if ticks > 1 else 1

    def decode_step_times(self, bases: np.ndarray, first: int, count: int) -> list[int]:
        """The times of ``count`` successive decode-only steps (see RooflineLatency's)."""
        n = len(bases)
        return [self.step_time(0, n, [], (bases + step).tolist())
                for step in range(first, first + count)]


# Models whose step time is a function of its arguments alone: a run of identical decode-only
# steps may call them once (Instance._cruise_ahead). A wrapper such as the autoscaler's warm-up
# model counts its calls and swaps itself out, and a plugin model may keep state, so neither is.
BUILTIN_MODELS = (BlackboxLatency, RooflineLatency, TrainedPhysicsLatency)


def _check_coefficients(name: str, coeffs: Sequence[float]) -> None:
    for i, c in enumerate(coeffs):
        if math.isnan(c):
            raise LatencyConfigError(f"latency model: {name}[{i}] is NaN")
        if math.isinf(c):
            raise LatencyConfigError(f"latency model: {name}[{i}] is Inf")
        if c < 0:
            raise LatencyConfigError(f"latency model: {name}[{i}] must be non-negative, got {c:f}")


def _trained_physics_problem(mc: ModelConfig, hw: HardwareConfig, tp: int) -> str | None:
    """The first architecture or GPU check of upstream's NewTrainedPhysicsModel that fails."""
    if tp <= 0:
        return f"TP must be > 0, got {tp}"
    for name, value in (("NumLayers", mc.num_layers), ("NumHeads", mc.num_heads),
                        ("HiddenDim", mc.hidden_dim), ("IntermediateDim", mc.intermediate_dim)):
        if value <= 0:
            return f"{name} must be > 0, got {value}"
    kv_heads = mc.num_kv_heads if mc.num_kv_heads > 0 else mc.num_heads
    for name, heads in (("NumHeads", mc.num_heads), ("NumKVHeads", kv_heads)):
        if heads % tp != 0:
            return f"{name} ({heads}) must be divisible by TP ({tp})"
    for name, value in (("TFlopsPeak", hw.tflops_peak), ("BwPeakTBs", hw.bw_peak_tbs)):
        if not value > 0 or math.isinf(value):
            return f"{name} must be valid positive, got {format_go_v(value)}"
    if mc.num_local_experts > 1 and mc.num_experts_per_tok <= 0:
        return (f"MoE config invalid - NumLocalExperts={mc.num_local_experts} "
                "but NumExpertsPerTok must be > 0")
    return None


def _trained_physics(mc: ModelConfig, hw: HardwareConfig, tp: int, alpha: Sequence[float],
                     beta: Sequence[float]) -> TrainedPhysicsLatency:
    """Upstream's NewTrainedPhysicsModel: its checks, in its order, then the model."""
    if len(beta) < 7:
        raise LatencyConfigError(f"trained-physics model: BetaCoeffs requires at least 7 elements, "
                                 f"got {len(beta)} (expected β₁-β₇, optionally β₈)")
    problem = _trained_physics_problem(mc, hw, tp)
    if problem:
        raise LatencyConfigError(f"trained-physics model: {problem}")
    _check_coefficients("AlphaCoeffs", alpha)
    _check_coefficients("BetaCoeffs", beta)
    return TrainedPhysicsLatency(mc, hw, tp, alpha, beta)


def build_latency_model(backend: str, alpha: Sequence[float], beta: Sequence[float],
                        model_config: ModelConfig | None = None,
                        hardware: HardwareConfig | None = None, tp: int = 0,
                        warn: Callable[[str], None] | None = None,
                        ) -> BlackboxLatency | RooflineLatency | TrainedPhysicsLatency:
    """Upstream's NewLatencyModel: validate, then build the backend's model.

    ``warn`` receives the blackbox deprecation notice; build one model per run and share it
    across instances so the notice appears once, as upstream prints it once per process.
    """
    if len(alpha) < 3:
        raise LatencyConfigError(f"latency model: AlphaCoeffs requires at least 3 elements, got {len(alpha)}")
    _check_coefficients("AlphaCoeffs", alpha)
    if backend in ("", "roofline"):
        if tp <= 0:
            raise LatencyConfigError(f"latency model: roofline requires TP > 0, got {tp}")
        if model_config is None or hardware is None:
            raise LatencyConfigError("latency model: roofline requires a model config and a hardware config")
        try:
            validate_roofline(model_config, hardware)
        except ValueError as exc:
            raise LatencyConfigError(f"latency model: {exc}") from None
        return RooflineLatency(model_config, hardware, tp, alpha)
    if backend == "blackbox":
        if warn is not None:
            warn(BLACKBOX_DEPRECATION_WARNING)
        if len(beta) < 3:
            raise LatencyConfigError(f"latency model: BetaCoeffs requires at least 3 elements, got {len(beta)}")
        _check_coefficients("BetaCoeffs", beta)
        return BlackboxLatency(alpha, beta)
    if backend == "trained-physics":
        if model_config is None or hardware is None:
            raise LatencyConfigError("latency model: trained-physics requires a model config and a hardware config")
        return _trained_physics(model_config, hardware, tp, alpha, beta)
    raise LatencyConfigError(f"latency model: unknown backend {json.dumps(backend)}; "
                             f"valid options: {', '.join(VALID_BACKENDS)}")
