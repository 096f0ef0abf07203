"""The latency models (engine.md §4.1-4.3): exact step times, memo tables, construction errors."""

from __future__ import annotations

import math
import random

import attrs
import numpy as np

import pytest

from _shared import requires_shared, shared_dir
from blis_core.catalog import Catalog
from blis_core.gomath import clamp64, go_pow_int
from blis_core.latency import (
    BLACKBOX_DEPRECATION_WARNING, BlackboxLatency, LatencyConfigError, RooflineLatency,
    TrainedPhysicsLatency, build_latency_model,
)
from blis_core.modelconfig import HardwareConfig, ModelConfig, load_hardware, load_hf_config

INT64_MAX = (1 << 63) - 1
H100 = HardwareConfig(tflops_peak=989.5, tflops_fp8=1979.0, bw_peak_tbs=3.35, mfu_prefill=0.45,
                      mfu_decode=0.30, memory_gib=80.0)
LLAMA_8B = "meta-llama/llama-3.1-8b-instruct"
SCOUT_FP8 = "redhatai/llama-4-scout-17b-16e-instruct-fp8-dynamic"


def _upstream_model(folder: str) -> ModelConfig:
    return load_hf_config(shared_dir() / "reference" / "upstream" / "model_configs" / folder / "config.json")


# -- blackbox ---------------------------------------------------------------------------------


def test_blackbox_step_time_is_the_linear_formula_truncated():
    model = BlackboxLatency([0.0, 0.0, 0.0], [1000.5, 2.25, 3.75])
    assert model.step_time(100, 4, None, None) == math.trunc(((0.0 + 1000.5) + 2.25 * 100.0) + 3.75 * 4.0)
    assert model.step_time(0, 0, None, None) == 1000


def test_blackbox_step_time_is_floored_at_one_and_saturates():
    assert BlackboxLatency([0, 0, 0], [0.0, 0.0, 0.0]).step_time(10, 10) == 1
    assert BlackboxLatency([0, 0, 0], [0.4, 0.0, 0.0]).step_time(0, 0) == 1
    assert BlackboxLatency([0, 0, 0], [1e300, 1e300, 0.0]).step_time(5, 0) == INT64_MAX


def test_blackbox_ignores_positions_and_extra_betas():
    model = BlackboxLatency([0, 0, 0], [10.0, 1.0, 2.0, 99.0])
    assert model.needs_positions is False
    assert model.step_time(3, 2, [(0, 3, 3)], [7, 9]) == 17


def test_alpha_overheads():
    model = BlackboxLatency([232.46191091038054, 1.752360364195244, 3357.4400353290152], [0, 0, 0])
    assert model.queueing_time(512) == math.trunc((0.0 + 232.46191091038054) + 1.752360364195244 * 512.0)
    assert model.output_token_processing_time() == 3357
    assert model.post_decode_fixed_overhead() == 0


# -- roofline ---------------------------------------------------------------------------------

# engine.md §4.3 sanity table: H100 step times in µs for
# (prefill 1034 tokens at PI 0, one decode at PI 1034, that prefill + decodes at PI 1034 and 1500).
SANITY = [
    ("llama-2-7b-hf", 1, (24011, 3166, 24083)),
    ("llama-4-scout-17b-16e-instruct-fp8-dynamic", 2, (10816, 1382, 10849)),
    ("mistral-nemo-instruct-2407", 2, (20218, 2567, 20279)),
    ("llama-3.1-70b-instruct", 4, (58454, 7437, 58627)),
]


@requires_shared
@pytest.mark.parametrize(("folder", "tp", "expected"), SANITY, ids=[s[0] for s in SANITY])
def test_roofline_sanity_table(folder, tp, expected):
    hardware = load_hardware(shared_dir() / "reference" / "upstream" / "hardware_config.json", "H100")
    model = RooflineLatency(_upstream_model(folder), hardware, tp, [0.0, 0.0, 0.0])
    prefill_only = model.step_time(1034, 0, [(0, 1034, 1034)], [])
    decode_only = model.step_time(0, 1, [], [1034])
    mixed = model.step_time(1034, 2, [(0, 1034, 1034)], [1034, 1500])
    assert (prefill_only, decode_only, mixed) == expected


def test_roofline_sanity_with_shipped_catalog():
    catalog = Catalog.shipped()
    scout = RooflineLatency(catalog.model_config(SCOUT_FP8), catalog.gpu("H100"), 2, [0, 0, 0])
    assert scout.step_time(1034, 2, [(0, 1034, 1034)], [1034, 1500]) == 10849
    llama2 = RooflineLatency(catalog.model_config("meta-llama/llama-2-7b-hf"), catalog.gpu("H100"), 1,
                             [0, 0, 0])
    assert llama2.step_time(0, 1, [], [1034]) == 3166


def test_empty_step_takes_one_tick():
    model = RooflineLatency(Catalog.shipped().model_config(LLAMA_8B), H100, 1, [0, 0, 0])
    assert model.needs_positions is True
    assert model.step_time(0, 0, [], []) == 1


def _peak(mc: ModelConfig, hw: HardwareConfig) -> float:
    weight_bytes = mc.weight_bytes_per_param if mc.weight_bytes_per_param > 0 else mc.bytes_per_param
    if weight_bytes == 1.0 and hw.tflops_fp8 > 0:
        return hw.tflops_fp8 * 1e12
    return hw.tflops_peak * 1e12


@pytest.mark.parametrize("model_id", [LLAMA_8B, SCOUT_FP8])
@pytest.mark.parametrize("tp", [1, 2])
def test_decode_tables_equal_the_scalar_formula_bit_for_bit(model_id, tp):
    mc = Catalog.shipped().model_config(model_id)
    model = RooflineLatency(mc, H100, tp, [0, 0, 0])
    peak_decode = _peak(mc, H100) * H100.mfu_decode
    for pi in range(5001):
        weights, total = model.memory(pi, 1, True)
        expected = (model.flops(pi, 1) / float(tp) / peak_decode, (total - weights) / float(tp))
        assert model.decode_terms(pi) == expected, pi


def test_decode_tables_grow_on_demand():
    mc = Catalog.shipped().model_config(LLAMA_8B)
    model = RooflineLatency(mc, H100, 1, [0, 0, 0])
    peak_decode = _peak(mc, H100) * H100.mfu_decode
    for pi in (4095, 4096, 20000, 131071):
        weights, total = model.memory(pi, 1, True)
        assert model.decode_terms(pi) == (model.flops(pi, 1) / 1.0 / peak_decode, (total - weights) / 1.0)
    assert model.step_time(0, 2, [], [200000, 3]) == _reference_step_time(mc, H100, 1, [], [200000, 3])


# A GPU a thousand times slower at compute: decode steps are then compute-bound, and the
# compute terms, unlike the (integral) byte counts, round differently when added pairwise.
COMPUTE_BOUND = attrs.evolve(H100, tflops_peak=H100.tflops_peak / 1000, tflops_fp8=0.0)


@pytest.mark.parametrize("gpu", [H100, COMPUTE_BOUND], ids=["H100", "compute-bound"])
@pytest.mark.parametrize("model_id", [LLAMA_8B, SCOUT_FP8, "meta-llama/llama-2-7b-hf"])
def test_decode_step_times_equal_step_time_per_step(model_id, gpu):
    # Run-ahead (Instance._cruise_ahead) takes blocks of decode-only steps from this; every one
    # must be the step time the step would have had, to the tick.
    rng = random.Random(model_id)
    mc = Catalog.shipped().model_config(model_id)
    roofline = RooflineLatency(mc, gpu, 1, [0, 0, 0])
    trained = TrainedPhysicsLatency(mc, gpu, 1, [0, 0, 0], [1.1, 0.9, 1.3, 0.7, 2.0, 5.0, 40.0,
                                                             0.5, 1.2, 0.8])
    for _ in range(40):
        n = rng.choice([1, 2, 7, 64, 300])
        bases = np.array([rng.randrange(0, 6000) for _ in range(n)])
        first, count = rng.randrange(0, 3000), rng.choice([1, 8, 32, 256])
        for model in (roofline, trained):
            expected = [model.step_time(0, n, [], (bases + step).tolist())
                        for step in range(first, first + count)]
            assert model.decode_step_times(bases, first, count) == expected
        # Before truncation, too: the terms are added left to right, not pairwise.
        seconds = []
        for step in range(first, first + count):
            comp = dyn = 0.0
            for pi in (bases + step).tolist():
                c, d = roofline.decode_terms(pi)
                comp += c
                dyn += d
            mem = (roofline.weight_bytes(n) / 1.0 + dyn) / (gpu.bw_peak_tbs * 1e12)
            seconds.append(max(comp, mem) * 1e6)
        assert roofline.decode_step_seconds(bases, first, count).tolist() == seconds


def _reference_flops(mc: ModelConfig, seq: int, n: int) -> float:
    """engine.md §4.3 flops(seq, n), transcribed without any precomputation."""
    d, n_heads, n_layers = float(mc.hidden_dim), float(mc.num_heads), float(mc.num_layers)
    n_kv = float(mc.num_kv_heads or mc.num_heads)
    dh = d / n_heads
    d_kv = n_kv * dh
    d_ff = float(mc.intermediate_dim) if mc.intermediate_dim > 0 else 4.0 * d
    moe_layers, dense_layers = _layer_split(mc)
    d_ff_moe = float(mc.moe_expert_ffn_dim) if mc.moe_expert_ffn_dim > 0 else d_ff
    d_ff_dense = float(mc.dense_intermediate_dim) if mc.dense_intermediate_dim > 0 else d_ff
    s, t = float(seq), float(n)
    qkv = (2 * t) * ((d * d) + ((2 * d) * d_kv))
    proj = ((2 * t) * d) * d
    gemm = (qkv + proj) * n_layers
    ctx = s + (t - 1) / 2.0 if t > 1 else s
    attn = (((4 * n_heads) * t) * ctx) * dh
    vec = (((5 * n_heads) * t) * ctx) + ((2 * t) * d)
    gemm = gemm + attn * n_layers
    sram = vec * n_layers
    if moe_layers > 0:
        gemm = gemm + (((2 * t) * ((2.0 * d) * d_ff_moe)) * float(mc.num_experts_per_tok)) * float(moe_layers)
    if dense_layers > 0:
        gemm = gemm + ((2 * t) * ((2.0 * d) * d_ff_dense)) * float(dense_layers)
    return gemm + sram


def _layer_split(mc: ModelConfig) -> tuple[int, int]:
    if mc.interleave_moe_layer_step > 0 and mc.num_local_experts > 1:
        moe = mc.num_layers // (mc.interleave_moe_layer_step + 1)
        return moe, mc.num_layers - moe
    if mc.num_local_experts > 1:
        return mc.num_layers, 0
    return 0, mc.num_layers


def _reference_memory(mc: ModelConfig, seq: int, n: int, include_kv: bool) -> tuple[float, float]:
    """engine.md §4.3 mem(seq, n, includeKV) -> (weights, total)."""
    d, n_layers = float(mc.hidden_dim), float(mc.num_layers)
    n_kv = float(mc.num_kv_heads or mc.num_heads)
    dh = d / float(mc.num_heads)
    d_kv = n_kv * dh
    d_ff = float(mc.intermediate_dim) if mc.intermediate_dim > 0 else 4.0 * d
    moe_layers, dense_layers = _layer_split(mc)
    d_ff_moe = float(mc.moe_expert_ffn_dim) if mc.moe_expert_ffn_dim > 0 else d_ff
    d_ff_dense = float(mc.dense_intermediate_dim) if mc.dense_intermediate_dim > 0 else d_ff
    ewb = mc.weight_bytes_per_param if mc.weight_bytes_per_param > 0 else mc.bytes_per_param
    s, t, b = float(seq), float(n), mc.bytes_per_param
    attn_w = (d * (d + (2 * d_kv))) + (d * d)
    moe_w = 0.0
    if moe_layers > 0:
        e, k = float(mc.num_local_experts), float(mc.num_experts_per_tok)
        n_eff = e * (1.0 - go_pow_int((e - k) / e, n))
        moe_w = (((2.0 * d) * d_ff_moe) * n_eff) * float(moe_layers)
    dense_w = ((2.0 * d) * d_ff_dense) * float(dense_layers) if dense_layers > 0 else 0.0
    weights = ((attn_w * n_layers) + (moe_w + dense_w)) * ewb
    growth = access = 0.0
    if include_kv:
        kvw = (((2 * n_layers) * n_kv) * dh) * b
        growth = kvw * t
        access = kvw * s
    act = ((n_layers * d) * b) * t
    return weights, ((weights + growth) + access) + act


def _reference_step_time(mc, hw, tp, prefill, decode) -> int:
    """engine.md §4.3 StepTime, straight from the spec."""
    peak = _peak(mc, hw)
    tpf = float(tp)
    if not prefill and not decode:
        return 1
    comp = dyn = 0.0
    for pi, n, _ in prefill:
        comp += _reference_flops(mc, pi, n) / tpf / (peak * hw.mfu_prefill)
        weights, total = _reference_memory(mc, pi, n, True)
        dyn += (total - weights) / tpf
    for pi in decode:
        comp += _reference_flops(mc, pi, 1) / tpf / (peak * hw.mfu_decode)
        weights, total = _reference_memory(mc, pi, 1, True)
        dyn += (total - weights) / tpf
    tokens = sum(n for _, n, _ in prefill) + len(decode)
    memory_time = (_reference_memory(mc, 0, tokens, False)[0] / tpf + dyn) / (hw.bw_peak_tbs * 1e12)
    return max(1, clamp64(max(comp, memory_time) * 1e6))


@pytest.mark.parametrize("model_id", [LLAMA_8B, SCOUT_FP8, "mistralai/mistral-nemo-instruct-2407"])
def test_step_time_matches_the_spec_transcription_on_random_batches(model_id):
    mc = Catalog.shipped().model_config(model_id)
    rng = random.Random(7)
    for tp in (1, 2, 4):
        model = RooflineLatency(mc, H100, tp, [0, 0, 0])
        for _ in range(300):
            prefill = []
            for _ in range(rng.randrange(0, 3)):
                pi, n = rng.randrange(0, 8000), rng.randrange(1, 2049)
                prefill.append((pi, n, pi + n + rng.randrange(0, 100)))
            decode = [rng.randrange(0, 9000) for _ in range(rng.randrange(0, 129))]
            tokens = sum(n for _, n, _ in prefill)
            assert model.step_time(tokens, len(decode), prefill, decode) == \
                _reference_step_time(mc, H100, tp, prefill, decode)


def test_reference_formulas_match_the_spec_transcription():
    for model_id in (LLAMA_8B, SCOUT_FP8):
        mc = Catalog.shipped().model_config(model_id)
        model = RooflineLatency(mc, H100, 1, [0, 0, 0])
        for seq, n in ((0, 1), (0, 1034), (1034, 1), (5000, 37), (0, 2048)):
            assert model.flops(seq, n) == _reference_flops(mc, seq, n)
            assert model.memory(seq, n, True) == _reference_memory(mc, seq, n, True)
            assert model.memory(seq, n, False) == _reference_memory(mc, seq, n, False)


def test_fp8_peak_applies_only_to_one_byte_weights():
    catalog = Catalog.shipped()
    scout = catalog.model_config(SCOUT_FP8)
    assert scout.weight_bytes_per_param == 1.0
    no_fp8 = HardwareConfig(989.5, 0.0, 3.35, 0.45, 0.30, 80.0)
    fp8 = RooflineLatency(scout, H100, 2, [0, 0, 0]).step_time(1034, 0, [(0, 1034, 1034)], [])
    plain = RooflineLatency(scout, no_fp8, 2, [0, 0, 0]).step_time(1034, 0, [(0, 1034, 1034)], [])
    assert fp8 == 10816 and plain > fp8


# -- construction -----------------------------------------------------------------------------


@pytest.mark.parametrize(("backend", "alpha", "beta", "message"), [
    ("blackbox", [1, 2], [1, 2, 3], "latency model: AlphaCoeffs requires at least 3 elements, got 2"),
    ("blackbox", [1, 2, 3], [1, 2], "latency model: BetaCoeffs requires at least 3 elements, got 2"),
    ("blackbox", [1, math.nan, 3], [1, 2, 3], "latency model: AlphaCoeffs[1] is NaN"),
    ("blackbox", [1, 2, 3], [1, 2, math.inf], "latency model: BetaCoeffs[2] is Inf"),
    ("blackbox", [1, 2, 3], [-1.5, 2, 3], "latency model: BetaCoeffs[0] must be non-negative, got -1.500000"),
    ("roofline", [0, 0, 0], [], "latency model: roofline requires TP > 0, got 0"),
    ("mystery", [0, 0, 0], [0, 0, 0],
     'latency model: unknown backend "mystery"; valid options: blackbox, roofline, trained-physics'),
])
def test_construction_errors(backend, alpha, beta, message):
    mc = Catalog.shipped().model_config(LLAMA_8B)
    with pytest.raises(LatencyConfigError) as info:
        build_latency_model(backend, alpha, beta, mc, H100, 0)
    assert str(info.value) == message


def test_roofline_construction_validates_the_configs():
    mc = Catalog.shipped().model_config(LLAMA_8B)
    broken = HardwareConfig(989.5, 0.0, 0.0, 0.45, 0.30, 80.0)
    with pytest.raises(LatencyConfigError) as info:
        build_latency_model("roofline", [0, 0, 0], [], mc, broken, 1)
    assert str(info.value) == ("latency model: invalid roofline config: "
                               "HardwareCalib.BwPeakTBs must be a valid positive number, got 0")


def test_build_dispatches_and_warns_once_per_blackbox_build():
    notices = []
    blackbox = build_latency_model("blackbox", [1, 2, 3], [4, 5, 6], warn=notices.append)
    assert isinstance(blackbox, BlackboxLatency)
    assert notices == [BLACKBOX_DEPRECATION_WARNING]
    mc = Catalog.shipped().model_config(LLAMA_8B)
    for backend in ("roofline", ""):
        assert isinstance(build_latency_model(backend, [0, 0, 0], [], mc, H100, 1, warn=notices.append),
                          RooflineLatency)
    assert len(notices) == 1


# -- trained-physics --------------------------------------------------------------------------

# A toy dense model whose basis terms are small integers worked out by hand:
# L = 2 layers, d = 8, 2 heads of width 4, 1 KV head (d_kv = 4), d_ff = 16, on a GPU doing
# 1000 FLOP/µs and 1000 bytes/µs (0.001 TFLOP/s, 0.001 TB/s).
TOY = ModelConfig(num_layers=2, hidden_dim=8, num_heads=2, num_kv_heads=1, intermediate_dim=16,
                  vocab_size=32, bytes_per_param=2.0)
TOY_GPU = HardwareConfig(tflops_peak=0.001, tflops_fp8=0.0, bw_peak_tbs=0.001, mfu_prefill=0.5,
                         mfu_decode=0.5, memory_gib=1.0)
# One step: the first 4-token chunk of a 6-token prompt, and decodes at positions 10 and 20.
TOY_PREFILL = [(0, 4, 6)]
TOY_DECODE = [10, 20]
# Prefill FLOPs: projections L·2·4·d·(2d + 2d_kv) = 3072; attention L·4·heads·4·(6 + 4/2)·4
# = 2048 (the whole prompt is the causal context, not just the tokens computed so far);
# FFN L·4·6·d·d_ff = 6144; in all 11264 -> 11.264 µs. Prefill KV writes L·2·d_kv·4·2 = 128 B.
# Decode FLOPs: projections 1536, attention L·4·heads·(10 + 20)·4 = 1920, FFN 3072 -> 6.528 µs;
# decode KV traffic L·2·d_kv·2·(30 + 2) = 1024 B. Weights L·d·(2d + 2d_kv)·2 + L·3·d·d_ff·2
# = 768 + 1536 = 2304 B. TP 1 has no all-reduce.
TOY_BASIS = (11.264, 0.128, 6.528, 1.024, 2.304, 0.0)


def test_trained_physics_basis_terms_of_a_toy_model():
    model = TrainedPhysicsLatency(TOY, TOY_GPU, 1, [0, 0, 0], [1.0] * 10)
    assert model.basis(TOY_PREFILL, TOY_DECODE) == pytest.approx(TOY_BASIS, rel=1e-15)
    # A chunk's attention depends on the prompt length, not on what is already computed.
    assert model.basis([(2, 4, 6)], []) == model.basis([(0, 4, 6)], [])


@pytest.mark.parametrize(("beta", "expected"), [
    # 10 betas: every prefill and decode term has its own coefficient.
    ([1, 1, 1, 1, 10, 100, 1000, 0, 1, 1], 11.264 + 0.128 + 6.528 + 1.024 + 2.304 + 20 + 300 + 1000),
    ([3, 0, 0, 0, 0, 0, 0, 0, 5, 0], 3 * 11.264 + 5 * 0.128),
    ([0, 2, 0, 0, 0, 0, 0, 0, 0, 7], 2 * 6.528 + 7 * 1.024),  # b1 decode compute, b9 decode KV
    # 9 betas: prefill split, decode takes b1·max(compute, KV).
    ([3, 2, 1, 0, 0, 0, 0, 0, 5], 3 * 11.264 + 5 * 0.128 + 2 * 6.528 + 2.304),
    # 8 and 7 betas: b0·max and b1·max.
    ([1, 1, 1, 1, 10, 100, 1000, 0], 11.264 + 6.528 + 2.304 + 20 + 300 + 1000),
    ([2, 3, 0, 0, 0, 0, 0], 2 * 11.264 + 3 * 6.528),
])
def test_trained_physics_step_time_of_a_toy_model(beta, expected):
    model = TrainedPhysicsLatency(TOY, TOY_GPU, 1, [0, 0, 0], beta)
    assert model.step_time(4, 2, TOY_PREFILL, TOY_DECODE) == math.trunc(expected)


def test_trained_physics_counts_the_batch_and_floors_at_one():
    model = TrainedPhysicsLatency(TOY, TOY_GPU, 1, [0, 0, 0], [0, 0, 0, 0, 0, 100, 0])
    assert model.step_time(4, 2, TOY_PREFILL, TOY_DECODE) == 300
    assert model.step_time(0, 1, [], [5]) == 100
    assert model.step_time(0, 0, [], []) == 1
    assert model.step_time(0, 0, None, None) == 1
    assert TrainedPhysicsLatency(TOY, TOY_GPU, 1, [0, 0, 0], [0] * 7).step_time(4, 2, TOY_PREFILL,
                                                                                 TOY_DECODE) == 1


def test_trained_physics_tensor_parallel_terms():
    mha = attrs.evolve(TOY, num_kv_heads=2)  # d_kv = 8, so KV heads split over TP 2
    one = TrainedPhysicsLatency(mha, TOY_GPU, 1, [0, 0, 0], [1.0] * 10).basis(TOY_PREFILL, TOY_DECODE)
    two = TrainedPhysicsLatency(mha, TOY_GPU, 2, [0, 0, 0], [1.0] * 10).basis(TOY_PREFILL, TOY_DECODE)
    # Compute, KV and weights halve; attention per GPU halves through heads per GPU.
    assert two[:5] == pytest.approx([x / 2 for x in one[:5]], rel=1e-15)
    # All-reduce: 2 units per dense layer × 6 tokens × d × 2 bytes × 2 phases × (2-1)/2 = 384 B.
    assert (one[5], two[5]) == (0.0, pytest.approx(0.384, rel=1e-15))


def test_trained_physics_moe_terms():
    scout_like = attrs.evolve(TOY, num_layers=4, num_local_experts=4, num_experts_per_tok=2,
                              moe_expert_ffn_dim=8, interleave_moe_layer_step=1,
                              dense_intermediate_dim=16)
    model = TrainedPhysicsLatency(scout_like, TOY_GPU, 1, [0, 0, 0], [0] * 7 + [5])
    # 2 of 4 layers are MoE; only interleaved models pay b7 per MoE layer.
    assert model.step_time(0, 1, [], [3]) == 10
    uniform = attrs.evolve(scout_like, interleave_moe_layer_step=0)
    assert TrainedPhysicsLatency(uniform, TOY_GPU, 1, [0, 0, 0], [0] * 7 + [5]).step_time(0, 1, [], [3]) == 1
    # Weights: attention L·d·24·2 = 1536 B; MoE FFN 2 layers × min(4, max(2, 2·tokens)) experts
    # × 3·d·8·2 B; dense FFN 2 × 3·d·16·2 = 1536 B.
    one_token = model.basis([], [3])[4]
    many = model.basis([(0, 9, 9)], [3])[4]
    assert one_token == pytest.approx((1536 + 2 * 2 * 384 + 1536) / 1000, rel=1e-15)
    assert many == pytest.approx((1536 + 2 * 4 * 384 + 1536) / 1000, rel=1e-15)


def test_trained_physics_alpha_overheads_are_fixed_per_request():
    model = TrainedPhysicsLatency(TOY, TOY_GPU, 1, [15563.9, 777.3, 45.9], [0] * 10)
    assert model.queueing_time(1) == model.queueing_time(100_000) == 15563
    assert model.post_decode_fixed_overhead() == 777
    assert model.output_token_processing_time() == 45


def test_trained_physics_uses_the_fp8_peak_for_one_byte_weights():
    fp8 = attrs.evolve(TOY, weight_bytes_per_param=1.0)
    gpu = attrs.evolve(TOY_GPU, tflops_fp8=0.002)
    basis = TrainedPhysicsLatency(fp8, gpu, 1, [0, 0, 0], [1.0] * 10).basis(TOY_PREFILL, TOY_DECODE)
    assert basis[0] == pytest.approx(11.264 / 2, rel=1e-15)
    assert basis[4] == pytest.approx(2.304 / 2, rel=1e-15)  # and one byte per weight


@pytest.mark.parametrize(("change", "gpu", "tp", "beta", "message"), [
    ({}, {}, 1, [1] * 6, "BetaCoeffs requires at least 7 elements, got 6 (expected β₁-β₇, optionally β₈)"),
    ({}, {}, 0, [1] * 7, "TP must be > 0, got 0"),
    ({"intermediate_dim": 0}, {}, 1, [1] * 7, "IntermediateDim must be > 0, got 0"),
    ({}, {}, 3, [1] * 7, "NumHeads (2) must be divisible by TP (3)"),
    ({}, {}, 2, [1] * 7, "NumKVHeads (1) must be divisible by TP (2)"),
    ({}, {"tflops_peak": math.inf}, 1, [1] * 7, "TFlopsPeak must be valid positive, got +Inf"),
    ({}, {"bw_peak_tbs": 0.0}, 1, [1] * 7, "BwPeakTBs must be valid positive, got 0"),
    ({"num_local_experts": 8}, {}, 1, [1] * 7,
     "MoE config invalid - NumLocalExperts=8 but NumExpertsPerTok must be > 0"),
])
def test_trained_physics_construction_errors(change, gpu, tp, beta, message):
    with pytest.raises(LatencyConfigError) as info:
        build_latency_model("trained-physics", [1, 2, 3], beta, attrs.evolve(TOY, **change),
                            attrs.evolve(TOY_GPU, **gpu), tp)
    assert str(info.value) == f"trained-physics model: {message}"


def test_trained_physics_build_checks_alpha_first_and_does_not_warn():
    notices = []
    with pytest.raises(LatencyConfigError, match="AlphaCoeffs requires at least 3 elements, got 0"):
        build_latency_model("trained-physics", [], [1] * 10, TOY, TOY_GPU, 1)
    model = build_latency_model("trained-physics", [1, 2, 3], [1] * 10, TOY, TOY_GPU, 1, warn=notices.append)
    assert isinstance(model, TrainedPhysicsLatency) and notices == []


@requires_shared
def test_trained_physics_on_the_shipped_coefficients():
    """qwen3-14b on an H100 (the x_trained_physics corpus case): one 512-token prefill."""
    catalog = Catalog.shipped()
    coefficients = catalog.trained_physics
    model = TrainedPhysicsLatency(catalog.model_config("qwen/qwen3-14b"), catalog.gpu("H100"), 1,
                                  coefficients.alpha, coefficients.beta)
    pf_compute, pf_kv, dc_compute, dc_kv, weight, _ = model.basis([(0, 512, 512)], [])
    b = coefficients.beta
    expected = (b[0] * pf_compute + b[8] * pf_kv) + b[2] * weight + b[4] * 40 + b[5] + b[6]
    assert model.step_time(512, 0, [(0, 512, 512)], []) == math.trunc(expected)
    # 40 layers of 5120 wide, 8 KV heads of 128: weights 40·5120·(2·5120 + 2·1024)·2
    # + 40·3·5120·17408·2 bytes at 3.35e6 bytes/µs.
    assert weight == pytest.approx((40 * 5120 * 12288 * 2 + 40 * 3 * 5120 * 17408 * 2) / 3.35e6, rel=1e-12)
