"""config.json parsing, hardware configs and the CLI auto-derivations (engine.md §4.4, §4.6)."""

from __future__ import annotations

import math

import attrs
import pytest

from _shared import requires_shared, shared_dir
from blis_core.catalog import Catalog
from blis_core.latency import RooflineLatency
from blis_core.modelconfig import (
    HardwareConfig, ModelConfig, RopeScaling, apply_rope_scaling, calculate_kv_blocks,
    cap_max_model_len, derive_max_model_len, format_go_v, infer_weight_bytes_from_name,
    load_hardware, load_hf_config, parse_hf_config, validate_roofline,
)

H100 = HardwareConfig(tflops_peak=989.5, tflops_fp8=1979.0, bw_peak_tbs=3.35, mfu_prefill=0.45,
                      mfu_decode=0.30, memory_gib=80.0)

LLAMA_LIKE = {
    "num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32,
    "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 128256,
    "torch_dtype": "bfloat16", "hidden_act": "silu", "max_position_embeddings": 131072,
}


def _upstream(*parts: str):
    return shared_dir().joinpath("reference", "upstream", *parts)


def _upstream_model(folder: str) -> ModelConfig:
    return load_hf_config(_upstream("model_configs", folder, "config.json"))


# -- parse_hf_config --------------------------------------------------------------------------

# engine.md §4.4 table of the bundled configs: nL, d, nH, nKV, I, bytes per parameter.
BUNDLED = [
    ("codellama-34b-instruct-hf", 48, 8192, 64, 8, 22016, 2.0),
    ("llama-2-7b-hf", 32, 4096, 32, 32, 11008, 2.0),
    ("llama-3.1-70b-instruct", 80, 8192, 64, 8, 28672, 2.0),
    ("llama-4-scout-17b-16e-instruct-fp8-dynamic", 48, 5120, 40, 8, 8192, 2.0),
    ("mistral-nemo-instruct-2407", 40, 5120, 32, 8, 14336, 2.0),
    ("qwen2.5-7b-instruct", 28, 3584, 28, 4, 18944, 2.0),
    ("qwen3-14b", 40, 5120, 40, 8, 17408, 2.0),
    ("yi-34b", 60, 7168, 56, 8, 20480, 2.0),
]


@requires_shared
@pytest.mark.parametrize("row", BUNDLED, ids=[r[0] for r in BUNDLED])
def test_bundled_configs_parse_as_the_spec_table(row):
    folder, layers, hidden, heads, kv_heads, intermediate, bytes_per_param = row
    mc = _upstream_model(folder)
    assert (mc.num_layers, mc.hidden_dim, mc.num_heads, mc.num_kv_heads, mc.intermediate_dim,
            mc.bytes_per_param) == (layers, hidden, heads, kv_heads, intermediate, bytes_per_param)


@requires_shared
def test_scout_text_config_overlay_and_compressed_tensors_weight_bytes():
    mc = _upstream_model("llama-4-scout-17b-16e-instruct-fp8-dynamic")
    assert (mc.num_local_experts, mc.num_experts_per_tok, mc.interleave_moe_layer_step) == (16, 1, 1)
    assert mc.dense_intermediate_dim == 16384
    assert mc.weight_bytes_per_param == 1.0  # config_groups.group_0.weights.num_bits = 8
    assert mc.model_type == "llama4_text"  # text_config's model_type wins over "llama4"
    assert mc.max_position_embeddings == 10485760
    assert mc.vocab_size == 202048


def test_text_config_keys_win_and_top_level_keys_survive():
    data = {"hidden_size": 1, "model_type": "outer", "torch_dtype": "float32",
            "quantization_config": {"quant_method": "FP8"},
            "text_config": {**LLAMA_LIKE, "model_type": "inner"}}
    mc = parse_hf_config(data)
    assert mc.hidden_dim == 4096 and mc.model_type == "inner"
    assert mc.bytes_per_param == 2.0  # text_config's torch_dtype
    assert mc.weight_bytes_per_param == 1.0  # quantization_config only exists at the top level
    assert "text_config" in data and data["hidden_size"] == 1  # the caller's dict is untouched


def test_mistral_nemo_head_dim_field_is_ignored():
    mc = Catalog.shipped().model_config("mistralai/mistral-nemo-instruct-2407")
    model = RooflineLatency(mc, H100, 1, [0, 0, 0])
    per_token = model.memory(101, 1, True)[1] - model.memory(100, 1, True)[1]
    # K and V of 8 heads of width 5120/32 = 160 (not config.json's head_dim 128), in bf16.
    assert per_token == 2 * 40 * 8 * 160 * 2.0


def test_integer_fields_come_only_from_json_numbers():
    mc = parse_hf_config({**LLAMA_LIKE, "num_hidden_layers": "32", "vocab_size": 1.9e3,
                          "num_key_value_heads": None})
    assert mc.num_layers == 0
    assert mc.vocab_size == 1900
    assert mc.num_kv_heads == 32  # no KV-head field: falls back to num_attention_heads


def test_integer_fallback_chains():
    mc = parse_hf_config({"num_attention_heads": 16, "num_kv_heads": 0, "multi_query_group_num": 2,
                          "ffn_hidden_size": 1000, "num_local_experts": 1, "n_routed_experts": 64,
                          "num_experts": 128})
    assert mc.num_kv_heads == 2
    assert mc.intermediate_dim == 1000
    assert mc.num_local_experts == 64  # first of the fallbacks that is > 1


@pytest.mark.parametrize(("fields", "expected"), [
    ({"torch_dtype": "float32"}, 4.0),
    ({"torch_dtype": "float16"}, 2.0),
    ({"torch_dtype": "int4"}, 1.0),
    ({"dtype": "bfloat16"}, 2.0),
    ({"torch_dtype": "float8_e4m3fn", "dtype": "bfloat16"}, 0.0),  # a string torch_dtype wins
    ({"torch_dtype": None, "dtype": "uint8"}, 1.0),
    ({}, 0.0),
])
def test_bytes_per_param(fields, expected):
    assert parse_hf_config(fields).bytes_per_param == expected


@pytest.mark.parametrize(("qc", "expected"), [
    ({"bits": 4}, 0.5),
    ({"bits": "8", "quant_method": "gptq"}, 1.0),
    ({"bits": "eight", "quant_method": "Fp8"}, 1.0),
    ({"bits": 0, "quant_method": "FP8"}, 1.0),
    ({"quant_method": "compressed-tensors", "config_groups": {
        "group_b": {"weights": {"num_bits": 8}}, "group_a": {"weights": {"num_bits": 4}}}}, 0.5),
    ({"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": {"num_bits": 0}}}}, 0.0),
    ({"quant_method": "awq"}, 0.0),
])
def test_quantization_config_weight_bytes(qc, expected):
    assert parse_hf_config({**LLAMA_LIKE, "quantization_config": qc}).weight_bytes_per_param == expected


@pytest.mark.parametrize(("name", "expected"), [
    ("redhatai/llama-3.3-70b-instruct-quantized.w4a16", 0.5),
    ("redhatai/qwen2.5-7b-instruct-quantized.w8a8", 1.0),
    ("RedHatAI/phi-4-FP8-dynamic", 1.0),
    ("org/model-fp8", 1.0),
    ("w4a16/model", 0.0),  # the trailing delimiter of wXaY may not be "/"
    ("org/model-w4a16x", 0.0),
    ("org/fp8model", 0.0),
    ("meta-llama/llama-3.1-8b-instruct", 0.0),
])
def test_weight_bytes_from_model_name(name, expected):
    assert infer_weight_bytes_from_name(name) == expected


def test_name_fallback_only_fills_a_missing_weight_width():
    assert parse_hf_config(LLAMA_LIKE, "org/x-w4a16").weight_bytes_per_param == 0.5
    assert parse_hf_config(LLAMA_LIKE).weight_bytes_per_param == 0.0
    quantized = {**LLAMA_LIKE, "quantization_config": {"bits": 8}}
    assert parse_hf_config(quantized, "org/x-w4a16").weight_bytes_per_param == 1.0


def test_kv_capacity_fields():
    mc = parse_hf_config({**LLAMA_LIKE, "num_local_experts": 8, "moe_intermediate_size": 512,
                          "n_shared_experts": 2, "tie_word_embeddings": True, "hidden_act": 7})
    assert mc.shared_expert_ffn_dim == 1024
    assert mc.tie_word_embeddings is True
    assert mc.hidden_act == ""
    explicit = parse_hf_config({**LLAMA_LIKE, "shared_expert_intermediate_size": 333, "n_shared_experts": 2})
    assert explicit.shared_expert_ffn_dim == 333


def test_rope_scaling_parsing():
    mc = parse_hf_config({**LLAMA_LIKE, "rope_scaling": {"type": "", "rope_type": "yarn", "factor": 4,
                                                         "original_max_position_embeddings": 32768}})
    assert mc.rope_scaling == RopeScaling(rope_type="yarn", factor=4.0, has_factor=True,
                                          original_max_position_embeddings=32768.0)
    assert parse_hf_config({**LLAMA_LIKE, "rope_scaling": None}).rope_scaling is None
    assert parse_hf_config({**LLAMA_LIKE, "rope_scaling": "linear"}).rope_scaling.json_type == "string"


def test_load_hf_config_errors(tmp_path):
    with pytest.raises(ValueError, match='read HF config ".*missing.json"'):
        load_hf_config(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"hidden_size": NaN}')
    with pytest.raises(ValueError, match="parse HF config JSON"):
        load_hf_config(bad)


# -- hardware ---------------------------------------------------------------------------------


@requires_shared
def test_load_hardware_from_upstream_file():
    path = _upstream("hardware_config.json")
    assert load_hardware(path, "H100") == H100
    assert load_hardware(path, "A100-80") == HardwareConfig(312.0, 0.0, 2.039, 0.38, 0.18, 80.0)
    with pytest.raises(ValueError) as info:
        load_hardware(path, "B200")
    assert str(info.value) == 'GPU "B200" not found in hardware config (available: [A100-80 A100-SXM H100 L40S])'


def test_load_hardware_matches_keys_case_insensitively_and_rejects_bad_values():
    table = {"X": {"tflopspeak": 1.5, "BwPeakTBs": 2, "_comment": "ignored"}}
    assert load_hardware(table, "X") == HardwareConfig(1.5, 0.0, 2.0, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="get hardware config: parse hardware config JSON"):
        load_hardware({"X": {"TFlopsPeak": "fast"}}, "X")


# -- validation -------------------------------------------------------------------------------


def test_validate_roofline_accepts_the_catalog_models():
    catalog = Catalog.shipped()
    for model_id in catalog.model_ids():
        entry = catalog.model(model_id)
        if entry.architecture is not None:
            validate_roofline(entry.architecture, H100)


def test_validate_roofline_lists_every_problem():
    mc = ModelConfig(num_layers=0, hidden_dim=64, num_heads=4, num_kv_heads=4, intermediate_dim=0,
                     vocab_size=0, bytes_per_param=0.0, num_local_experts=8, num_experts_per_tok=9)
    hw = attrs.evolve(H100, mfu_decode=math.nan, tflops_fp8=-1.0)
    with pytest.raises(ValueError) as info:
        validate_roofline(mc, hw)
    assert str(info.value) == (
        "invalid roofline config: ModelConfig.NumLayers must be > 0, got 0; "
        "ModelConfig.BytesPerParam must be a valid positive number, got 0; "
        "HardwareCalib.MfuDecode must be a valid positive number, got NaN; "
        "MoE: NumExpertsPerTok (9) cannot exceed NumLocalExperts (8); "
        "HardwareCalib.TFlopsFP8 must be > 0 and finite when set, got -1")


def test_validate_roofline_moe_consistency():
    base = parse_hf_config(LLAMA_LIKE)
    with pytest.raises(ValueError, match=r"NumLocalExperts=8 but active experts per token"):
        validate_roofline(attrs.evolve(base, num_local_experts=8), H100)
    with pytest.raises(ValueError, match=r"NumExpertsPerTok=2 but NumLocalExperts=0"):
        validate_roofline(attrs.evolve(base, num_experts_per_tok=2), H100)


def test_format_go_v():
    assert [format_go_v(x) for x in (0.0, -0.0, 1.0, 0.5, 123456.0, 1e6, 1234567.0, 1e-4, 1e-5,
                                     -2.5, math.inf, 0.1 + 0.2)] == [
        "0", "-0", "1", "0.5", "123456", "1e+06", "1.234567e+06", "0.0001", "1e-05",
        "-2.5", "+Inf", "0.30000000000000004"]


# -- KV blocks (§4.6) -------------------------------------------------------------------------

KV_SANITY = [
    ("llama-2-7b-hf", 1, 6886),
    ("qwen2.5-7b-instruct", 1, 61048),
    ("llama-3.1-70b-instruct", 4, 121801),
    ("llama-4-scout-17b-16e-instruct-fp8-dynamic", 2, 27345),
]


@requires_shared
@pytest.mark.parametrize(("folder", "tp", "blocks"), KV_SANITY, ids=[k[0] for k in KV_SANITY])
def test_kv_blocks_sanity_table(folder, tp, blocks):
    assert calculate_kv_blocks(_upstream_model(folder), H100, tp, 16, 0.9) == blocks


def test_kv_blocks_from_the_shipped_catalog():
    catalog = Catalog.shipped()
    assert calculate_kv_blocks(catalog.model_config("meta-llama/llama-2-7b-hf"), H100, 1, 16, 0.9) == 6886
    scout = catalog.model_config("redhatai/llama-4-scout-17b-16e-instruct-fp8-dynamic")
    assert calculate_kv_blocks(scout, H100, 2, 16, 0.9) == 27345


def test_kv_blocks_formula_by_hand():
    """Llama-3.1-8B on one H100: every step of §4.6 written out."""
    d, layers, vocab, inter = 4096, 32, 128256, 14336
    attn = d * (d + 2 * 8 * (d // 32)) + d * d
    params = vocab * d + layers * (attn + 3 * d * inter + 2 * d) + vocab * d + d
    weights_gib = float(math.trunc(float(params) * 2.0)) / 2**30
    alloc = 80.0 * 0.9 * 1.0 - ((weights_gib + 5.5) + 0.15 * 1.0)
    per_block = math.trunc(32 * 2.0 * 128.0 * 8.0 * 2.0 / 1.0 * 16.0)
    expected = math.trunc(alloc * 2**30) // per_block
    mc = Catalog.shipped().model_config("meta-llama/llama-3.1-8b-instruct")
    assert calculate_kv_blocks(mc, H100, 1, 16, 0.9) == expected == 26312


@pytest.mark.parametrize(("change", "tp", "message"), [
    ({"hidden_act": "gelu"}, 1, 'unsupported activation "gelu"'),
    ({"vocab_size": 0}, 1, "vocab_size must be > 0, got 0"),
    ({"intermediate_dim": 0}, 1, "intermediate_dim must be > 0, got 0"),
    ({"num_experts_per_tok": 2}, 1, "model appears to be MoE (num_experts_per_tok=2)"),
    ({"n_shared_experts": 1}, 1, "model appears to be MoE (n_shared_experts=1)"),
    ({"hidden_dim": 4100}, 1, "hidden_dim (4100) must be evenly divisible by num_attention_heads (32)"),
    ({}, 3, "num_kv_heads (8) must be evenly divisible by TP (3)"),
    ({"num_layers": 3200}, 1, "model overhead"),
])
def test_kv_blocks_errors(change, tp, message):
    mc = attrs.evolve(Catalog.shipped().model_config("meta-llama/llama-3.1-8b-instruct"), **change)
    with pytest.raises(ValueError) as info:
        calculate_kv_blocks(mc, H100, tp, 16, 0.9)
    assert message in str(info.value)


def test_kv_heads_fewer_than_tp_are_replicated_not_an_error():
    mc = attrs.evolve(Catalog.shipped().model_config("meta-llama/llama-3.1-8b-instruct"), num_kv_heads=2)
    assert calculate_kv_blocks(mc, H100, 4, 16, 0.9) > 0


def test_kv_blocks_needs_gpu_memory():
    mc = Catalog.shipped().model_config("meta-llama/llama-3.1-8b-instruct")
    with pytest.raises(ValueError, match=r"MemoryGiB\) must be a valid positive number, got 0"):
        calculate_kv_blocks(mc, attrs.evolve(H100, memory_gib=0.0), 1, 16, 0.9)


# -- max-model-len (§4.6) ---------------------------------------------------------------------


@requires_shared
def test_max_model_len_examples():
    assert derive_max_model_len(_upstream_model("llama-2-7b-hf"), 6886, 16) == 4096
    assert derive_max_model_len(_upstream_model("qwen2.5-7b-instruct"), 61048, 16) == 32768
    scout = _upstream_model("llama-4-scout-17b-16e-instruct-fp8-dynamic")
    assert apply_rope_scaling(scout) == (10485760, False)  # llama3 rope is not scaled
    assert derive_max_model_len(scout, 27345, 16) == 437520


def _with_rope(rope: dict | None, **extra) -> ModelConfig:
    return parse_hf_config({**LLAMA_LIKE, "max_position_embeddings": 4096, "rope_scaling": rope, **extra})


@pytest.mark.parametrize(("rope", "extra", "expected"), [
    ({"type": "linear", "factor": 2.0}, {}, (8192, True)),
    ({"rope_type": "dynamic", "factor": 2.5}, {}, (10240, True)),
    ({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1000}, {}, (4000, True)),
    ({"rope_type": "yarn", "factor": 4.0}, {}, (16384, True)),
    ({"rope_type": "llama3", "factor": 8.0}, {}, (4096, False)),
    ({"rope_type": "longrope", "factor": 8.0}, {}, (4096, False)),
    ({"type": "su", "factor": 8.0}, {}, (4096, False)),
    ({"rope_type": "linear", "factor": 1.0}, {}, (4096, False)),
    ({"rope_type": "linear", "factor": "2"}, {}, (4096, False)),
    ({"rope_type": "linear", "factor": 2.0}, {"model_type": "gemma3_text"}, (4096, False)),
    ([1, 2], {}, (4096, False)),
    (None, {}, (4096, False)),
])
def test_rope_scaling_rules(rope, extra, expected):
    assert apply_rope_scaling(_with_rope(rope, **extra)) == expected


def test_max_model_len_cap():
    assert cap_max_model_len(4096, 256, 16) == 4096  # exactly 256 blocks needed
    assert cap_max_model_len(4097, 256, 16) == 4096
    assert cap_max_model_len(0, 1, 16) == 0  # 0 = unlimited is never capped

