"""The shipped catalog and the upstream-format catalog reader (engine.md §4.4-4.5)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

from _shared import requires_shared, shared_dir
from blis_core.catalog import Catalog, CatalogError, TrainedPhysicsCoefficients
from blis_core.modelconfig import load_hardware, load_hf_config
from blis_core.resolve import LatencyOptions, resolve_latency

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CATALOG_DIR = PROJECT_ROOT / "blis_core" / "catalog"
LLAMA_8B = "meta-llama/llama-3.1-8b-instruct"


def _upstream(*parts: str) -> Path:
    return shared_dir().joinpath("reference", "upstream", *parts)


def _generator():
    spec = importlib.util.spec_from_file_location("build_catalog", PROJECT_ROOT / "tools" / "build_catalog.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_catalog", module)
    spec.loader.exec_module(module)
    return module


# -- the shipped catalog equals upstream's numbers ------------------------------------------


@requires_shared
def test_shipped_gpus_equal_upstream_hardware_config():
    catalog = Catalog.shipped()
    path = _upstream("hardware_config.json")
    assert catalog.gpu_names() == ["A100-80", "A100-SXM", "H100", "L40S"]
    for name in catalog.gpu_names():
        assert catalog.gpu(name) == load_hardware(path, name)


@requires_shared
def test_shipped_coefficients_equal_upstream_models_in_order():
    upstream = yaml.safe_load(_upstream("defaults.yaml").read_text())["models"]
    shipped = Catalog.shipped().coefficient_table()
    assert len(shipped) == len(upstream) == 111
    for ours, theirs in zip(shipped, upstream):
        assert (ours.model, ours.gpu, ours.tp, ours.vllm_version) == (
            theirs["id"], theirs["GPU"], theirs["tensor_parallelism"], theirs["vllm_version"])
        assert ours.alpha == tuple(float(v) for v in theirs["alpha_coeffs"])
        assert ours.beta == tuple(float(v) for v in theirs["beta_coeffs"])


@requires_shared
def test_shipped_trained_physics_coefficients_equal_upstream():
    upstream = yaml.safe_load(_upstream("defaults.yaml").read_text())["trained_physics_coefficients"]
    shipped = Catalog.shipped().trained_physics
    assert shipped.alpha == tuple(float(v) for v in upstream["alpha_coeffs"])
    assert shipped.beta == tuple(float(v) for v in upstream["beta_coeffs"])
    assert (len(shipped.alpha), len(shipped.beta)) == (3, 10)
    assert Catalog.from_upstream(_upstream("defaults.yaml")).trained_physics == shipped


@requires_shared
def test_shipped_defaults_equal_upstream_defaults():
    upstream = yaml.safe_load(_upstream("defaults.yaml").read_text())["defaults"]
    catalog = Catalog.shipped()
    for model_id, fields in upstream.items():
        entry = catalog.model(model_id)
        assert (entry.default_gpu, entry.default_tp, entry.default_vllm_version, entry.hf_repo) == (
            fields["GPU"], fields["tensor_parallelism"], fields["vllm_version"], fields.get("hf_repo", ""))


@requires_shared
def test_shipped_architectures_equal_upstream_model_configs():
    catalog = Catalog.shipped()
    generator = _generator()
    for folder, model_id in generator.MODEL_CONFIG_IDS.items():
        assert catalog.model_config(model_id) == load_hf_config(_upstream("model_configs", folder, "config.json"))
    assert len(generator.MODEL_CONFIG_IDS) == len(list(_upstream("model_configs").iterdir()))


@requires_shared
def test_generator_reproduces_the_shipped_files(tmp_path):
    _generator().build(_upstream(), tmp_path)
    for name in ("gpus.yaml", "models.yaml", "coefficients.yaml"):
        assert (tmp_path / name).read_text() == (CATALOG_DIR / name).read_text(), name


# -- catalog-only lookups (no reference material needed) ------------------------------------


def test_defaults_lookup():
    catalog = Catalog.shipped()
    assert catalog.defaults_for(LLAMA_8B) == ("H100", 1, "vllm/vllm-openai:v0.11.0")
    assert catalog.defaults_for("nobody/unknown") == ("", 0, "")
    assert catalog.model(LLAMA_8B).hf_repo == "meta-llama/Llama-3.1-8B-Instruct"
    assert catalog.defaults_for("meta-llama/llama-2-7b-hf") == ("", 0, "")  # architecture only


def test_coefficients_take_the_first_exact_match():
    catalog = Catalog.shipped()
    entry = catalog.coefficients(LLAMA_8B, "H100", 1, "vllm/vllm-openai:v0.11.0")
    assert entry.alpha == (10326.268121600151, 0.0, 0.0)
    assert entry.beta == (6472.007648778123, 19.79721387814611, 304.4021040302657)
    assert catalog.coefficients(LLAMA_8B, "H100", 1, "v0.11.0") is None
    assert catalog.coefficients(LLAMA_8B, "h100", 1, "vllm/vllm-openai:v0.11.0") is None


def test_gpu_lookup_error_names_the_available_gpus():
    with pytest.raises(CatalogError) as info:
        Catalog.shipped().gpu("B200")
    assert str(info.value) == 'GPU "B200" not found in hardware config (available: [A100-80 A100-SXM H100 L40S])'


def test_llama_31_8b_architecture_is_shipped():
    mc = Catalog.shipped().model_config(LLAMA_8B)
    assert (mc.num_layers, mc.hidden_dim, mc.num_heads, mc.num_kv_heads, mc.intermediate_dim,
            mc.vocab_size, mc.bytes_per_param) == (32, 4096, 32, 8, 14336, 128256, 2.0)
    assert (mc.max_position_embeddings, mc.rope_scaling.rope_type, mc.rope_scaling.factor) == (131072, "llama3", 8.0)
    assert (mc.hidden_act, mc.tie_word_embeddings, mc.model_type) == ("silu", False, "llama")


def test_model_config_falls_back_to_the_short_name_like_upstream():
    catalog = Catalog.shipped()
    assert catalog.model_config("someone/llama-2-7b-hf") == catalog.model_config("meta-llama/llama-2-7b-hf")
    with pytest.raises(CatalogError, match='no architecture for model "nobody/unknown"'):
        catalog.model_config("nobody/unknown")


def test_llama_31_8b_resolves_with_no_flags():
    resolved = resolve_latency(LatencyOptions(model="meta-llama/Llama-3.1-8B-Instruct"))
    assert (resolved.backend, resolved.hardware, resolved.tp) == ("roofline", "H100", 1)
    assert resolved.total_kv_blocks == 26312  # auto-derived, not the 1,000,000 default
    assert resolved.max_model_len == 131072
    assert resolved.model_config == Catalog.shipped().model_config(LLAMA_8B)


# -- upstream-format files ------------------------------------------------------------------


@requires_shared
def test_from_upstream_reads_upstream_files():
    catalog = Catalog.from_upstream(_upstream("defaults.yaml"))
    shipped = Catalog.shipped()
    assert catalog.defaults_for(LLAMA_8B) == shipped.defaults_for(LLAMA_8B)
    assert catalog.coefficient_table() == shipped.coefficient_table()
    assert catalog.gpu("L40S") == shipped.gpu("L40S")
    assert catalog.model_config("qwen/qwen3-14b") == shipped.model_config("qwen/qwen3-14b")
    # The Scout config has its fields only inside text_config; it still counts as a config.json.
    assert catalog.model_config("redhatai/llama-4-scout-17b-16e-instruct-fp8-dynamic").num_local_experts == 16
    with pytest.raises(CatalogError, match="read HF config"):
        catalog.model_config(LLAMA_8B)  # not in upstream's model_configs/


def _write_defaults(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "defaults.yaml"
    path.write_text(text)
    return path


def test_from_upstream_is_strict_about_unknown_keys(tmp_path):
    with pytest.raises(CatalogError, match="field crossmodel_defaults not found"):
        Catalog.from_upstream(_write_defaults(tmp_path, "version: 1.0\ncrossmodel_defaults: {}\n"))
    with pytest.raises(CatalogError, match="field total_kv_blocks not found"):
        Catalog.from_upstream(_write_defaults(tmp_path, (
            "models:\n- id: a/b\n  GPU: H100\n  tensor_parallelism: 1\n  vllm_version: v\n"
            "  alpha_coeffs: [1, 2, 3]\n  beta_coeffs: [4, 5, 6]\n  total_kv_blocks: 100\n")))


def test_from_upstream_small_file(tmp_path):
    path = _write_defaults(tmp_path, (
        "defaults:\n  a/b:\n    GPU: L40S\n    tensor_parallelism: 2\n    vllm_version: v1\n"
        "models:\n"
        "- {id: a/b, GPU: L40S, tensor_parallelism: 2, vllm_version: v1, alpha_coeffs: [1, 2, 3],"
        " beta_coeffs: [4, 5, 6], best_loss: 1.5}\n"
        "- {id: a/b, GPU: L40S, tensor_parallelism: 2, vllm_version: v1, alpha_coeffs: [9, 9, 9],"
        " beta_coeffs: [9, 9, 9]}\n"))
    catalog = Catalog.from_upstream(path)
    assert catalog.defaults_for("a/b") == ("L40S", 2, "v1")
    assert catalog.coefficients("a/b", "L40S", 2, "v1").alpha == (1.0, 2.0, 3.0)
    with pytest.raises(CatalogError, match="bundled hardware config not found"):
        catalog.gpu("L40S")


def test_from_upstream_missing_defaults_file_is_empty(tmp_path):
    catalog = Catalog.from_upstream(tmp_path / "nowhere.yaml")
    assert catalog.defaults_for(LLAMA_8B) == ("", 0, "")
    assert catalog.coefficient_table() == ()
    assert catalog.trained_physics is None


@pytest.mark.parametrize(("text", "expected"), [
    ("version: 0.0.1\n", None),
    ("trained_physics_coefficients:\n", None),  # null, as upstream's nil pointer
    ("trained_physics_coefficients: {}\n", TrainedPhysicsCoefficients((), ())),
    ("trained_physics_coefficients:\n  beta_coeffs: [1, 2.5, 3, 4, 5, 6, 7]\n",
     TrainedPhysicsCoefficients((), (1.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0))),
    ("trained_physics_coefficients: {alpha_coeffs: [1, 2, 3], beta_coeffs: [0, 0, 0, 0, 0, 0, 1]}\n",
     TrainedPhysicsCoefficients((1.0, 2.0, 3.0), (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0))),
])
def test_from_upstream_reads_trained_physics_coefficients(tmp_path, text, expected):
    assert Catalog.from_upstream(_write_defaults(tmp_path, text)).trained_physics == expected


def test_from_upstream_trained_physics_coefficients_are_strict(tmp_path):
    with pytest.raises(CatalogError, match="field gamma_coeffs not found in trained_physics_coefficients"):
        Catalog.from_upstream(_write_defaults(tmp_path, "trained_physics_coefficients: {gamma_coeffs: [1]}\n"))
    with pytest.raises(CatalogError, match="trained_physics_coefficients.beta_coeffs: expected a list"):
        Catalog.from_upstream(_write_defaults(tmp_path, "trained_physics_coefficients: {beta_coeffs: x}\n"))
