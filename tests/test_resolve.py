"""Latency flag resolution (engine.md §4.5-4.6, §8.2), checked against upstream's messages and the
reference corpus' stderr where a case exercises it."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from _shared import requires_shared, shared_dir
from blis_core.catalog import Catalog
from blis_core.resolve import LatencyOptions, ResolveError, resolve_latency

LLAMA_8B = "meta-llama/llama-3.1-8b-instruct"
SCOUT_FP8 = "redhatai/llama-4-scout-17b-16e-instruct-fp8-dynamic"
VLLM_DEFAULT_WARNINGS = [
    f"Finding default values of vLLM version for model={LLAMA_8B}",
    "Using default vLLM version=vllm/vllm-openai:v0.11.0",
]
ROPE_NOT_APPLIED = ("--latency-model: rope_scaling.factor present but not applied (excluded type, "
                    "invalid value, or overflow); using max_position_embeddings as-is")
CORPUS_ALPHA = (232.46191091038054, 1.752360364195244, 3357.4400353290152)
CORPUS_BETA = (5752.705191348184, 17.25086436834028, 5.999143920128404)


def _upstream(*parts: str) -> Path:
    return shared_dir().joinpath("reference", "upstream", *parts)


def _error(options: LatencyOptions) -> ResolveError:
    with pytest.raises(ResolveError) as info:
        resolve_latency(options)
    return info.value


# -- blackbox -------------------------------------------------------------------------------


def test_both_coefficient_flags_switch_to_blackbox():
    """The corpus' blackbox runs: --latency-model blackbox or not, the flags decide."""
    options = LatencyOptions(model=LLAMA_8B, alpha=CORPUS_ALPHA, alpha_given=True, beta=CORPUS_BETA,
                             beta_given=True, hardware="H100", tp=1, total_kv_blocks=7463,
                             total_kv_blocks_given=True, max_model_len=4096, max_model_len_given=True)
    resolved = resolve_latency(options)
    assert (resolved.backend, resolved.alpha, resolved.beta) == ("blackbox", CORPUS_ALPHA, CORPUS_BETA)
    assert (resolved.total_kv_blocks, resolved.max_model_len) == (7463, 4096)
    assert list(resolved.warnings) == VLLM_DEFAULT_WARNINGS  # as in the corpus' stderr
    assert resolved.model_config is None and resolved.hardware_config is None
    explicit = resolve_latency(attrs.evolve(options, latency_model="blackbox", latency_model_given=True))
    assert explicit == resolved


def test_blackbox_coefficients_come_from_the_table():
    resolved = resolve_latency(LatencyOptions(model=LLAMA_8B, latency_model="blackbox", latency_model_given=True))
    entry = Catalog.shipped().coefficients(LLAMA_8B, "H100", 1, "vllm/vllm-openai:v0.11.0")
    assert (resolved.alpha, resolved.beta) == (entry.alpha, entry.beta)
    assert resolved.total_kv_blocks == 26312  # auto-calculated from the catalog's architecture
    assert resolved.max_model_len == 0  # blackbox keeps the flag value


def test_blackbox_without_matching_coefficients_is_fatal():
    error = _error(LatencyOptions(model=LLAMA_8B, latency_model="blackbox", latency_model_given=True,
                                  hardware="L40S"))
    assert str(error) == (f"No trained coefficients found for model={LLAMA_8B}, GPU=L40S, TP=1. "
                          "Provide --alpha-coeffs/--beta-coeffs, use --latency-model roofline or trained-physics")
    assert list(error.warnings) == [
        f"Finding default values of TP for model={LLAMA_8B}", "Using default tp=1",
        *VLLM_DEFAULT_WARNINGS]


def test_blackbox_kv_auto_calculation_failure_is_a_warning():
    resolved = resolve_latency(LatencyOptions(model="acme/secret-model", alpha=(1.0, 1.0, 1.0), alpha_given=True,
                                              beta=(1.0, 1.0, 1.0), beta_given=True, hardware="H100", tp=1))
    assert resolved.total_kv_blocks == 1_000_000
    assert len(resolved.warnings) == 1
    assert resolved.warnings[0].startswith("--latency-model blackbox: cannot auto-calculate total-kv-blocks: "
                                           '--latency-model: could not find config.json for model "acme/secret-model"')


# -- roofline -------------------------------------------------------------------------------


def test_roofline_defaults_and_auto_derivations():
    resolved = resolve_latency(LatencyOptions(model=LLAMA_8B))
    assert (resolved.backend, resolved.hardware, resolved.tp, resolved.vllm_version) == (
        "roofline", "H100", 1, "vllm/vllm-openai:v0.11.0")
    assert resolved.hardware_config == Catalog.shipped().gpu("H100")
    assert (resolved.alpha, resolved.beta) == ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0))
    assert list(resolved.warnings) == [
        f"Finding default values of TP for model={LLAMA_8B}", "Using default tp=1",
        f"Finding default values of hardware for model={LLAMA_8B}", "Using default GPU=H100",
        *VLLM_DEFAULT_WARNINGS, ROPE_NOT_APPLIED]


def test_roofline_scout_max_model_len_is_capped_to_the_kv_cache():
    resolved = resolve_latency(LatencyOptions(model="RedHatAI/Llama-4-Scout-17B-16E-Instruct-FP8-dynamic",
                                              hardware="H100", tp=2))
    assert resolved.total_kv_blocks == 27345
    assert resolved.max_model_len == 437520
    assert resolved.model_config.weight_bytes_per_param == 1.0
    assert resolved.warnings[-1] == ("--latency-model: max-model-len 10485760 exceeds KV capacity "
                                     "(27345 blocks × 16 tokens); capping to 437520 tokens")


def test_explicit_flags_are_not_derived():
    resolved = resolve_latency(LatencyOptions(model=LLAMA_8B, total_kv_blocks=500, total_kv_blocks_given=True,
                                              max_model_len=0, max_model_len_given=True))
    assert (resolved.total_kv_blocks, resolved.max_model_len) == (500, 0)
    capped = resolve_latency(LatencyOptions(model=LLAMA_8B, total_kv_blocks=100, total_kv_blocks_given=True,
                                            max_model_len=4096, max_model_len_given=True))
    assert capped.max_model_len == 1600


TINY_CONFIG = ('{"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128,'
               ' "vocab_size": 1000, "torch_dtype": "float16", "max_position_embeddings": 2048}')


def test_weight_width_falls_back_to_the_model_name(tmp_path):
    (tmp_path / "config.json").write_text(TINY_CONFIG)
    resolved = resolve_latency(LatencyOptions(model="Org/Tiny-W4A16", hardware="H100", tp=1,
                                              model_config_folder=str(tmp_path)))
    assert resolved.model_config.weight_bytes_per_param == 0.5


def test_catalog_architecture_is_found_by_short_name():
    resolved = resolve_latency(LatencyOptions(model="someone/qwen2.5-7b-instruct", hardware="H100", tp=1))
    assert resolved.total_kv_blocks == 61048
    assert resolved.max_model_len == 32768


@requires_shared
def test_roofline_llama_70b_from_upstream_files_matches_the_corpus():
    """Corpus case m_roofline_llama31_70b_h100_tp4, run from upstream's tree."""
    resolved = resolve_latency(LatencyOptions(
        model="meta-llama/llama-3.1-70b-instruct", latency_model="roofline", latency_model_given=True,
        hardware="H100", tp=4, defaults_filepath=str(_upstream("defaults.yaml")), defaults_filepath_given=True))
    assert (resolved.total_kv_blocks, resolved.max_model_len) == (121801, 131072)
    assert list(resolved.warnings) == [ROPE_NOT_APPLIED]  # the case's whole stderr


@requires_shared
def test_roofline_golden_48_flags():
    """Golden experiment 48: explicit model config folder, KV blocks and max-model-len 0."""
    resolved = resolve_latency(LatencyOptions(
        model="RedHatAI/Llama-4-Scout-17B-16E-Instruct-FP8-dynamic", latency_model="roofline",
        latency_model_given=True, hardware="H100", tp=2,
        model_config_folder=str(_upstream("model_configs", "llama-4-scout-17b-16e-instruct-fp8-dynamic")),
        total_kv_blocks=8253, total_kv_blocks_given=True, max_model_len=0, max_model_len_given=True,
        defaults_filepath=str(_upstream("defaults.yaml")), defaults_filepath_given=True))
    assert (resolved.total_kv_blocks, resolved.max_model_len) == (8253, 0)
    assert list(resolved.warnings) == [
        f"Finding default values of vLLM version for model={SCOUT_FP8}",
        "Using default vLLM version=vllm/vllm-openai:v0.8.4"]


def test_roofline_without_hardware_or_tp_defaults():
    error = _error(LatencyOptions(model="acme/secret-model"))
    assert str(error) == (
        "Roofline mode (the default) requires --hardware (GPU type) and --tp (tensor parallelism). "
        "No defaults found in defaults.yaml for model=acme/secret-model. Provide these flags explicitly, "
        "or use --latency-model blackbox for offline coefficient-based estimation")


def test_roofline_unknown_model_is_not_downloaded():
    error = _error(LatencyOptions(model="acme/secret-model", hardware="H100", tp=1))
    assert str(error).startswith('--latency-model: could not find config.json for model "acme/secret-model".')
    assert "--model-config-folder" in str(error)


def test_roofline_unknown_gpu():
    error = _error(LatencyOptions(model=LLAMA_8B, hardware="B200"))
    assert str(error) == ('Failed to load hardware config: GPU "B200" not found in hardware config '
                          "(available: [A100-80 A100-SXM H100 L40S])")


def test_model_config_folder_and_hardware_config_flags(tmp_path):
    (tmp_path / "config.json").write_text(TINY_CONFIG)
    (tmp_path / "hw.json").write_text('{"Tiny": {"TFlopsPeak": 1, "BwPeakTBs": 1, "mfuPrefill": 0.5,'
                                      ' "mfuDecode": 0.5, "MemoryGiB": 1}}')
    resolved = resolve_latency(LatencyOptions(model="x/tiny", hardware="Tiny", tp=1,
                                              model_config_folder=str(tmp_path),
                                              hardware_config=str(tmp_path / "hw.json")))
    assert resolved.model_config.hidden_dim == 64 and resolved.hardware_config.memory_gib == 1.0
    assert resolved.max_model_len == 2048
    error = _error(LatencyOptions(model="x/tiny", hardware="Tiny", tp=1,
                                  model_config_folder=str(tmp_path / "missing")))
    assert str(error).startswith("Failed to parse HuggingFace config: read HF config")


def test_kv_auto_calculation_failure_keeps_the_current_value(tmp_path):
    (tmp_path / "config.json").write_text(
        '{"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128,'
        ' "vocab_size": 1000, "torch_dtype": "float16", "hidden_act": "gelu"}')
    resolved = resolve_latency(LatencyOptions(model="x/tiny", hardware="H100", tp=1,
                                              model_config_folder=str(tmp_path)))
    assert resolved.total_kv_blocks == 1_000_000
    assert resolved.warnings[-1].startswith("--latency-model: KV capacity auto-calculation failed: "
                                            'CalculateKVBlocks: unsupported activation "gelu"')


# -- flag validation ------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "message"), [
    ({"latency_model": "fast", "latency_model_given": True},
     'unknown --latency-model "fast"; valid options: blackbox, roofline, trained-physics'),
    ({"alpha": (1.0, 2.0, 3.0), "alpha_given": True},
     "--alpha-coeffs requires --beta-coeffs. Both coefficient sets are needed for blackbox mode"),
    ({"beta": (1.0, 2.0, 3.0), "beta_given": True},
     "--beta-coeffs requires --alpha-coeffs. Both coefficient sets are needed for blackbox mode"),
    ({"alpha": (1.0, -1.0, 3.0), "alpha_given": True, "beta": (1.0,), "beta_given": True},
     "--alpha-coeffs[1] must be a finite non-negative number, got -1"),
    ({"alpha": (1.0,), "alpha_given": True, "beta": (1.0, float("inf")), "beta_given": True},
     "--beta-coeffs[1] must be a finite non-negative number, got +Inf"),
    ({"gpu_memory_utilization": 1.5}, "--gpu-memory-utilization must be a finite value in (0, 1.0], got 1.500000"),
    ({"gpu_memory_utilization": 0.0}, "--gpu-memory-utilization must be a finite value in (0, 1.0], got 0.000000"),
    ({"block_size": 0}, "--block-size-in-tokens must be > 0, got 0"),
    ({"latency_model": "roofline", "latency_model_given": True, "alpha": (1.0, 2.0, 3.0), "alpha_given": True,
      "beta": (1.0, 2.0, 3.0), "beta_given": True},
     "--alpha-coeffs/--beta-coeffs cannot be used with --latency-model roofline. Roofline computes step time "
     "analytically. Use --latency-model blackbox if you want coefficient-based estimation"),
    ({"max_model_len": -1, "max_model_len_given": True}, "--max-model-len must be >= 0, got -1"),
])
def test_flag_errors(change, message):
    assert str(_error(attrs.evolve(LatencyOptions(model=LLAMA_8B), **change))) == message


def test_defaults_filepath_that_does_not_exist_fills_nothing(tmp_path):
    error = _error(LatencyOptions(model=LLAMA_8B, defaults_filepath=str(tmp_path / "defaults.yaml"),
                                  defaults_filepath_given=True))
    assert str(error).startswith("Roofline mode (the default) requires --hardware (GPU type) and --tp")
    assert error.warnings == ()


# -- trained-physics --------------------------------------------------------------------------

QWEN3 = "qwen/qwen3-14b"
TRAINED = {"latency_model": "trained-physics", "latency_model_given": True}


def test_trained_physics_takes_the_catalog_coefficients_and_derives_like_roofline():
    """The x_trained_physics_qwen3_14b corpus case's flags; its stderr is the two vLLM lines."""
    resolved = resolve_latency(LatencyOptions(model=QWEN3, hardware="H100", tp=1, **TRAINED))
    trained = Catalog.shipped().trained_physics
    assert (resolved.backend, resolved.alpha, resolved.beta) == ("trained-physics", trained.alpha, trained.beta)
    assert resolved.model_config == Catalog.shipped().model_config(QWEN3)
    assert resolved.hardware_config == Catalog.shipped().gpu("H100")
    assert (resolved.total_kv_blocks, resolved.max_model_len) == (15909, 40960)
    assert list(resolved.warnings) == [f"Finding default values of vLLM version for model={QWEN3}",
                                       "Using default vLLM version=vllm/vllm-openai:v0.11.0"]


def test_trained_physics_coefficient_flags_win_whatever_their_length():
    # Too few betas is the latency model's error (at construction), not resolution's.
    resolved = resolve_latency(LatencyOptions(model=QWEN3, hardware="H100", tp=1, alpha=(1.0, 2.0, 3.0),
                                              alpha_given=True, beta=(4.0, 5.0), beta_given=True, **TRAINED))
    assert (resolved.alpha, resolved.beta) == ((1.0, 2.0, 3.0), (4.0, 5.0))


def test_trained_physics_needs_hardware_and_tp():
    error = _error(LatencyOptions(model="acme/secret-model", tp=2, **TRAINED))
    assert str(error) == ("--latency-model trained-physics requires --hardware (GPU type). No defaults found in "
                          "defaults.yaml for model=acme/secret-model. Provide these flags explicitly")


@requires_shared
@pytest.mark.parametrize(("section", "message", "warning"), [
    ("", "no trained_physics_coefficients found in {path}", None),
    ("trained_physics_coefficients:\n  alpha_coeffs: [1, 2, 3]\n  beta_coeffs: [1, 2, 3, 4, 5, 6]\n",
     "no trained_physics_coefficients found in {path}", None),
    ("trained_physics_coefficients:\n  alpha_coeffs: [1, 2, 3]\n  beta_coeffs: [0, 0, 0, 0, 0, 0, 0]\n",
     "no trained_physics_coefficients found in {path}", None),
    ("trained_physics_coefficients:\n  beta_coeffs: [1, 2, 3, 4, 5, 6, 7]\n", None,
     "--latency-model trained-physics: no trained-physics alpha coefficients found; QueueingTime, "
     "PostDecodeFixedOverhead, and OutputTokenProcessingTime will use zero alpha (may underestimate TTFT/E2E)"),
])
def test_trained_physics_coefficients_from_an_upstream_defaults_file(tmp_path, section, message, warning):
    upstream = _upstream("defaults.yaml").read_text()
    body = upstream[:upstream.index("trained_physics_coefficients:")] + section
    path = tmp_path / "defaults.yaml"
    path.write_text(body)
    (tmp_path / "model_configs").symlink_to(_upstream("model_configs"))
    (tmp_path / "hardware_config.json").symlink_to(_upstream("hardware_config.json"))
    options = LatencyOptions(model=QWEN3, hardware="H100", tp=1, defaults_filepath=str(path),
                             defaults_filepath_given=True, **TRAINED)
    if message:
        assert str(_error(options)) == (
            f"--latency-model trained-physics: {message.format(path=path)} and no --beta-coeffs provided. "
            "Add trained_physics_coefficients to defaults.yaml or provide --beta-coeffs explicitly")
    else:
        resolved = resolve_latency(options)
        assert (resolved.alpha, resolved.beta[:2]) == ((), (1.0, 2.0))
        assert resolved.warnings[-1] == warning
