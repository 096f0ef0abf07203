"""Step-time models: the blackbox alpha/beta regression and the analytical roofline.

Both reproduce upstream BLIS (4e179804) to the microsecond: every float expression is evaluated
in upstream's operand order, and the result is truncated with ``clamp64`` and floored at 1.

How the engine calls a model, once per step, with only the requests scheduled this step
(``num_new_tokens > 0``), in batch order::

    prefill = [(progress, num_new_tokens) for requests with progress < input length]
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
from blis_core.modelconfig import HardwareConfig, ModelConfig, validate_roofline

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
                  prefill: Sequence[tuple[int, int]] | None = None,
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
                  prefill: Sequence[tuple[int, int]] | None,
                  decode_positions: Sequence[int] | None) -> int:
        if not prefill and not decode_positions:
            return 1
        tpf = self._tpf
        comp = 0.0
        dyn = 0.0
        if prefill:
            for pi, n in prefill:
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


def _check_coefficients(name: str, coeffs: Sequence[float]) -> None:
    for i, c in enumerate(coeffs):
        if math.isnan(c):
            raise LatencyConfigError(f"latency model: {name}[{i}] is NaN")
        if math.isinf(c):
            raise LatencyConfigError(f"latency model: {name}[{i}] is Inf")
        if c < 0:
            raise LatencyConfigError(f"latency model: {name}[{i}] must be non-negative, got {c:f}")


def build_latency_model(backend: str, alpha: Sequence[float], beta: Sequence[float],
                        model_config: ModelConfig | None = None,
                        hardware: HardwareConfig | None = None, tp: int = 0,
                        warn: Callable[[str], None] | None = None,
                        ) -> BlackboxLatency | RooflineLatency:
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
        raise LatencyConfigError("latency model: the trained-physics backend is not supported by blis; "
                                 "use roofline or blackbox")
    raise LatencyConfigError(f"latency model: unknown backend {json.dumps(backend)}; "
                             f"valid options: {', '.join(VALID_BACKENDS)}")
