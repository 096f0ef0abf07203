"""Model architecture and GPU configuration, and the sizing rules derived from them.

``parse_hf_config`` turns a HuggingFace ``config.json`` into a :class:`ModelConfig` exactly as
upstream BLIS (4e179804) does; ``load_hardware`` reads upstream's ``hardware_config.json``.
``calculate_kv_blocks`` and ``derive_max_model_len`` are the CLI's auto-derivations of
``--total-kv-blocks`` and ``--max-model-len``. Error messages follow upstream's wording so a user
sees the same diagnostics.
"""

from __future__ import annotations

import decimal
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

# Go's math.MaxInt64 as a float64 rounds up to 2^63; conversions at or above it overflow.
_MAX_INT64_FLOAT = 9223372036854775808.0

_DTYPE_BYTES = {
    "float32": 4, "float16": 2, "bfloat16": 2,
    "int8": 1, "uint8": 1, "fp8": 1, "int4": 1, "nf4": 1,
}

# Rope types whose max_position_embeddings already holds the full (scaled) context.
_UNSCALED_ROPE_TYPES = frozenset({"su", "longrope", "llama3"})

# Activations that use the 3-matrix (gate, up, down) MLP the weight estimate assumes.
_SWIGLU_ACTIVATIONS = frozenset({"silu", "swiglu", "geglu", ""})

_GIB = float(1 << 30)
_ACTIVATION_GIB_DENSE = 5.5
_ACTIVATION_GIB_MOE = 8.0
_NON_TORCH_GIB_TP1 = 0.15
_NON_TORCH_GIB_PER_GPU = 0.6

# Quantization hints in a model id (e.g. ``...-quantized.w4a16``, ``...-FP8-dynamic``), delimited
# by ``. - _ /``. ``\Z`` and ASCII mode reproduce Go RE2's ``$`` and ``\d``.
_NAME_WXAY = re.compile(r"(?:^|[.\-_/])w(\d+)a\d+(?:\Z|[.\-_])", re.IGNORECASE | re.ASCII)
_NAME_FP8 = re.compile(r"(?:^|[.\-_/])fp8(?:\Z|[.\-_])", re.IGNORECASE | re.ASCII)

# strconv.Atoi accepts an optional sign and ASCII digits only.
_GO_ATOI = re.compile(r"[+-]?[0-9]+\Z")


@attrs.frozen
class RopeScaling:
    """The parts of ``rope_scaling`` that decide whether it stretches the context length."""

    json_type: str = "object"  # "object", or "string"/"number"/"bool"/"array" for a malformed value
    rope_type: str = ""  # "type", else "rope_type"
    factor: float | None = None  # None unless "factor" is a JSON number
    has_factor: bool = False  # "factor" key present with any value (drives one warning)
    original_max_position_embeddings: float | None = None  # None unless a JSON number


@attrs.frozen
class ModelConfig:
    """Architecture of one model, as upstream extracts it from ``config.json``.

    The first block feeds the roofline latency model; the rest feeds the KV-capacity and
    max-model-len derivations. ``num_kv_heads`` already has its fallback to ``num_heads``.
    """

    num_layers: int
    hidden_dim: int
    num_heads: int
    num_kv_heads: int
    intermediate_dim: int
    vocab_size: int
    bytes_per_param: float
    weight_bytes_per_param: float = 0.0  # 0 = weights stored at bytes_per_param
    num_local_experts: int = 0
    num_experts_per_tok: int = 0
    moe_expert_ffn_dim: int = 0
    interleave_moe_layer_step: int = 0
    dense_intermediate_dim: int = 0

    hidden_act: str = ""
    tie_word_embeddings: bool = False
    shared_expert_ffn_dim: int = 0  # total shared-expert FFN width (KV weight estimate)
    n_shared_experts: int = 0  # only used to detect "MoE without an expert count"
    max_position_embeddings: int = 0
    model_type: str = ""
    rope_scaling: RopeScaling | None = None  # None when absent or JSON null

    @property
    def effective_weight_bytes(self) -> float:
        """Bytes per stored weight: the quantized width if known, else the compute dtype."""
        return self.weight_bytes_per_param if self.weight_bytes_per_param > 0 else self.bytes_per_param

    @property
    def is_moe(self) -> bool:
        return self.num_local_experts > 1


@attrs.frozen
class HardwareConfig:
    """Peak compute, bandwidth, calibrated MFUs and memory of one GPU."""

    tflops_peak: float
    tflops_fp8: float
    bw_peak_tbs: float
    mfu_prefill: float
    mfu_decode: float
    memory_gib: float


# --------------------------------------------------------------------------------------------
# config.json parsing


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _json_int(raw: Mapping[str, Any], key: str) -> int:
    """Go's ``int(raw[key].(float64))``: JSON numbers truncate toward zero, anything else is 0."""
    value = raw.get(key)
    return math.trunc(value) if _is_number(value) else 0


def _first_nonzero_int(raw: Mapping[str, Any], *keys: str) -> int:
    for key in keys:
        value = _json_int(raw, key)
        if value != 0:
            return value
    return 0


def _json_type(value: Any) -> str:
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        return "array"
    return "object"


def _parse_rope_scaling(value: Any) -> RopeScaling | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        return RopeScaling(json_type=_json_type(value))
    rope_type = value.get("type")
    if not isinstance(rope_type, str) or rope_type == "":
        rope_type = value.get("rope_type")
        if not isinstance(rope_type, str):
            rope_type = ""
    factor = value.get("factor")
    original = value.get("original_max_position_embeddings")
    return RopeScaling(
        rope_type=rope_type,
        factor=float(factor) if _is_number(factor) else None,
        has_factor="factor" in value,
        original_max_position_embeddings=float(original) if _is_number(original) else None,
    )


def _quantized_weight_bytes(qc: Mapping[str, Any]) -> float:
    """Weight bytes per parameter from ``quantization_config``; 0 when it cannot tell."""
    bits = 0
    raw_bits = qc.get("bits")
    if _is_number(raw_bits):
        bits = math.trunc(raw_bits)
    elif isinstance(raw_bits, str) and _GO_ATOI.match(raw_bits):
        bits = int(raw_bits)
    if bits > 0:
        return bits / 8.0

    method = qc.get("quant_method")
    method = method.casefold() if isinstance(method, str) else ""
    if method == "fp8":
        return 1.0
    if method == "compressed-tensors":
        groups = qc.get("config_groups")
        if isinstance(groups, Mapping):
            # Go iterates the groups in sorted key order and takes the first usable width.
            for key in sorted(groups):
                group = groups[key]
                weights = group.get("weights") if isinstance(group, Mapping) else None
                num_bits = weights.get("num_bits") if isinstance(weights, Mapping) else None
                if _is_number(num_bits) and num_bits > 0:
                    return num_bits / 8.0
    return 0.0


def infer_weight_bytes_from_name(model_name: str) -> float:
    """Weight bytes per parameter implied by a model id (``w4a16`` -> 0.5, ``fp8`` -> 1.0), or 0."""
    match = _NAME_WXAY.search(model_name)
    if match:
        bits = int(match.group(1))
        # strconv.Atoi fails beyond int64, and then the wXaY hint is ignored.
        if 0 < bits < (1 << 63):
            return bits / 8.0
    if _NAME_FP8.search(model_name):
        return 1.0
    return 0.0


def apply_weight_name_fallback(mc: ModelConfig, model_name: str) -> ModelConfig:
    """The CLI's fallback: when config.json gave no weight width, infer it from the model id."""
    if mc.weight_bytes_per_param != 0:
        return mc
    return attrs.evolve(mc, weight_bytes_per_param=infer_weight_bytes_from_name(model_name))


def parse_hf_config(data: Mapping[str, Any], model_name: str | None = None) -> ModelConfig:
    """Extract a :class:`ModelConfig` from a parsed HuggingFace ``config.json``.

    ``text_config`` (multimodal wrappers) is laid over the top level first. With ``model_name``
    the CLI-only weight-width fallback from the model id is applied as well.
    """
    raw = dict(data)
    text_config = raw.get("text_config")
    if isinstance(text_config, Mapping):
        raw.update(text_config)

    num_heads = _json_int(raw, "num_attention_heads")
    num_kv_heads = _first_nonzero_int(raw, "num_key_value_heads", "num_kv_heads", "multi_query_group_num")
    if num_kv_heads == 0:
        num_kv_heads = num_heads

    # torch_dtype wins whenever it is a string, even an unknown one.
    dtype = raw.get("torch_dtype")
    if not isinstance(dtype, str):
        dtype = raw.get("dtype")
    bytes_per_param = float(_DTYPE_BYTES.get(dtype, 0)) if isinstance(dtype, str) else 0.0

    num_experts = _json_int(raw, "num_local_experts")
    if num_experts <= 1:
        for key in ("num_routed_experts", "n_routed_experts", "num_experts"):
            value = _json_int(raw, key)
            if value > 1:
                num_experts = value
                break

    moe_expert_ffn_dim = _json_int(raw, "moe_intermediate_size")
    # The shared-expert width follows the KV-capacity extraction, which falls back to the raw
    # intermediate_size (not the ffn_hidden_size chain).
    n_shared_experts = _json_int(raw, "n_shared_experts")
    shared_expert_ffn_dim = _json_int(raw, "shared_expert_intermediate_size")
    if shared_expert_ffn_dim <= 0:
        shared_expert_ffn_dim = 0
        if n_shared_experts > 0:
            per_expert = moe_expert_ffn_dim or _json_int(raw, "intermediate_size")
            shared_expert_ffn_dim = n_shared_experts * per_expert

    qc = raw.get("quantization_config")
    weight_bytes = _quantized_weight_bytes(qc) if isinstance(qc, Mapping) else 0.0

    hidden_act = raw.get("hidden_act")
    tie = raw.get("tie_word_embeddings")
    model_type = raw.get("model_type")
    mc = ModelConfig(
        num_layers=_json_int(raw, "num_hidden_layers"),
        hidden_dim=_json_int(raw, "hidden_size"),
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        intermediate_dim=_first_nonzero_int(raw, "intermediate_size", "ffn_hidden_size"),
        vocab_size=_json_int(raw, "vocab_size"),
        bytes_per_param=bytes_per_param,
        weight_bytes_per_param=weight_bytes,
        num_local_experts=num_experts,
        num_experts_per_tok=_json_int(raw, "num_experts_per_tok"),
        moe_expert_ffn_dim=moe_expert_ffn_dim,
        interleave_moe_layer_step=_json_int(raw, "interleave_moe_layer_step"),
        dense_intermediate_dim=_json_int(raw, "intermediate_size_mlp"),
        hidden_act=hidden_act if isinstance(hidden_act, str) else "",
        tie_word_embeddings=tie if isinstance(tie, bool) else False,
        shared_expert_ffn_dim=shared_expert_ffn_dim,
        n_shared_experts=n_shared_experts,
        max_position_embeddings=_json_int(raw, "max_position_embeddings"),
        model_type=model_type if isinstance(model_type, str) else "",
        rope_scaling=_parse_rope_scaling(raw.get("rope_scaling")),
    )
    if model_name is not None:
        mc = apply_weight_name_fallback(mc, model_name)
    return mc


def _reject_constant(name: str) -> float:
    # Go's encoding/json refuses NaN and Infinity literals, which Python would accept.
    raise ValueError(f"invalid character {name[0]!r} looking for beginning of value")


def read_json_object(path: str | Path, what: str) -> dict[str, Any]:
    """Read a JSON object with Go's strictness; errors are worded as upstream's ("read HF config")."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f'read {what} "{path}": {exc.strerror or exc}') from exc
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise ValueError(f"parse {what} JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"parse {what} JSON: expected a JSON object, got {_json_type(data)}")
    return data


def load_hf_config(path: str | Path, model_name: str | None = None) -> ModelConfig:
    """Read and parse a ``config.json`` file (see :func:`parse_hf_config`)."""
    return parse_hf_config(read_json_object(path, "HF config"), model_name)


# --------------------------------------------------------------------------------------------
# hardware_config.json

_HARDWARE_JSON_FIELDS = {
    "tflops_peak": "TFlopsPeak",
    "tflops_fp8": "TFlopsFP8",
    "bw_peak_tbs": "BwPeakTBs",
    "mfu_prefill": "mfuPrefill",
    "mfu_decode": "mfuDecode",
    "memory_gib": "MemoryGiB",
}


def _hardware_entry(gpu: str, entry: Any) -> HardwareConfig:
    if entry is None:
        entry = {}  # Go decodes null into a zero struct
    if not isinstance(entry, Mapping):
        raise ValueError(f"parse hardware config JSON: entry {json.dumps(gpu)} is not a JSON object")
    values = {}
    for field, json_name in _HARDWARE_JSON_FIELDS.items():
        # encoding/json matches keys case-insensitively, preferring the exact spelling.
        value = entry.get(json_name)
        if value is None:
            value = next((v for k, v in entry.items() if k.casefold() == json_name.casefold()), None)
        if value is not None and not _is_number(value):
            raise ValueError(f"parse hardware config JSON: {gpu}.{json_name} must be a number, got {value!r}")
        values[field] = float(value) if value is not None else 0.0
    return HardwareConfig(**values)


def parse_hardware_table(raw: Mapping[str, Any]) -> dict[str, HardwareConfig]:
    """Every GPU of a parsed upstream ``hardware_config.json``; one bad entry fails the file."""
    return {gpu: _hardware_entry(gpu, entry) for gpu, entry in raw.items()}


def gpu_not_found_message(gpu: str, available: list[str]) -> str:
    """Upstream's unknown-GPU error; Go prints a []string as ``[a b c]``."""
    return (f"GPU {json.dumps(gpu, ensure_ascii=False)} not found in hardware config "
            f"(available: [{' '.join(sorted(available))}])")


def load_hardware(source: str | Path | Mapping[str, Any], gpu: str) -> HardwareConfig:
    """One GPU's entry from upstream's ``hardware_config.json`` (a path or the parsed object)."""
    try:
        raw = source if isinstance(source, Mapping) else read_json_object(source, "hardware config")
        table = parse_hardware_table(raw)
    except ValueError as exc:
        raise ValueError(f"get hardware config: {exc}") from None
    if gpu not in table:
        raise ValueError(gpu_not_found_message(gpu, list(table)))
    return table[gpu]


# --------------------------------------------------------------------------------------------
# Validation and derivations


def format_go_v(x: float) -> str:
    """Go's ``%v`` for a float64: shortest digits, exponent form below 1e-4 and from 1e6 on."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    sign, digit_tuple, exponent = decimal.Decimal(repr(x)).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + exponent  # position of the decimal point within the digits
    prefix = "-" if sign else ""
    exp10 = point - 1
    if exp10 < -4 or exp10 >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return prefix + digits + "0" * (point - len(digits))
    return f"{prefix}{digits[:point]}.{digits[point:]}"


def _invalid_positive(value: float) -> bool:
    return not (value > 0) or math.isinf(value)


def validate_roofline(mc: ModelConfig, hw: HardwareConfig) -> None:
    """Upstream's ValidateRooflineConfig: raise ValueError listing every invalid field."""
    problems = []
    for name, value in (("NumHeads", mc.num_heads), ("NumLayers", mc.num_layers),
                        ("HiddenDim", mc.hidden_dim)):
        if value <= 0:
            problems.append(f"ModelConfig.{name} must be > 0, got {value}")
    for name, value in (("ModelConfig.BytesPerParam", mc.bytes_per_param),
                        ("HardwareCalib.TFlopsPeak", hw.tflops_peak),
                        ("HardwareCalib.BwPeakTBs", hw.bw_peak_tbs),
                        ("HardwareCalib.MfuPrefill", hw.mfu_prefill),
                        ("HardwareCalib.MfuDecode", hw.mfu_decode)):
        if _invalid_positive(value):
            problems.append(f"{name} must be a valid positive number, got {format_go_v(value)}")

    experts, per_token = mc.num_local_experts, mc.num_experts_per_tok
    if experts < 0:
        problems.append(f"MoE: NumLocalExperts must be >= 0, got {experts}")
    if experts > 1 and per_token <= 0:
        problems.append(f"MoE: NumLocalExperts={experts} but active experts per token "
                        "(NumExpertsPerTok) must be > 0")
    if per_token > experts > 1:
        problems.append(f"MoE: NumExpertsPerTok ({per_token}) cannot exceed NumLocalExperts ({experts})")
    if experts == 0 and per_token > 0:
        problems.append(f"MoE: NumExpertsPerTok={per_token} but NumLocalExperts=0 (inconsistent)")
    if mc.moe_expert_ffn_dim < 0:
        problems.append(f"MoE: MoEExpertFFNDim must be >= 0, got {mc.moe_expert_ffn_dim}")
    if mc.shared_expert_ffn_dim < 0:
        problems.append(f"MoE: SharedExpertFFNDim must be >= 0, got {mc.shared_expert_ffn_dim}")

    # Optional fields: 0 means "not set"; anything else must be finite and positive.
    for name, value in (("HardwareCalib.MemoryGiB", hw.memory_gib),
                        ("HardwareCalib.TFlopsFP8", hw.tflops_fp8)):
        if value != 0 and _invalid_positive(value):
            problems.append(f"{name} must be > 0 and finite when set, got {format_go_v(value)}")
    if mc.weight_bytes_per_param != 0 and _invalid_positive(mc.weight_bytes_per_param):
        problems.append("ModelConfig.WeightBytesPerParam must be positive when set, "
                        f"got {format_go_v(mc.weight_bytes_per_param)}")
    if problems:
        raise ValueError("invalid roofline config: " + "; ".join(problems))


def _model_weight_bytes(mc: ModelConfig) -> int:
    """Total weight bytes, the capacity planner's formula (all-integer parameter count)."""
    d, vocab, layers = mc.hidden_dim, mc.vocab_size, mc.num_layers
    kv_heads = mc.num_kv_heads or mc.num_heads
    kv_dim = kv_heads * (d // mc.num_heads)
    attention = d * (d + 2 * kv_dim) + d * d
    if mc.is_moe:
        expert_ffn = mc.moe_expert_ffn_dim if mc.moe_expert_ffn_dim > 0 else mc.intermediate_dim
        mlp = 3 * d * expert_ffn * mc.num_local_experts
        if mc.shared_expert_ffn_dim > 0:
            mlp += 3 * d * mc.shared_expert_ffn_dim
        mlp += mc.num_local_experts * d  # router
    else:
        mlp = 3 * d * mc.intermediate_dim
    lm_head = 0 if mc.tie_word_embeddings else vocab * d
    params = vocab * d + layers * (attention + mlp + 2 * d) + lm_head + d
    return math.trunc(float(params) * mc.effective_weight_bytes)


def _kv_bytes_per_token(mc: ModelConfig, tp: int) -> float:
    if tp <= 0:
        raise ValueError(f"KVBytesPerToken: TP must be > 0, got {tp}")
    if mc.num_heads <= 0:
        raise ValueError(f"KVBytesPerToken: num_attention_heads must be > 0, got {mc.num_heads}")
    if mc.num_layers <= 0:
        raise ValueError(f"KVBytesPerToken: num_layers must be > 0, got {mc.num_layers}")
    if mc.hidden_dim <= 0:
        raise ValueError(f"KVBytesPerToken: hidden_dim must be > 0, got {mc.hidden_dim}")
    if _invalid_positive(mc.bytes_per_param):
        raise ValueError("KVBytesPerToken: precision (BytesPerParam) must be a valid positive number, "
                         f"got {format_go_v(mc.bytes_per_param)}")
    if mc.hidden_dim % mc.num_heads != 0:
        raise ValueError(f"KVBytesPerToken: hidden_dim ({mc.hidden_dim}) must be evenly divisible "
                         f"by num_attention_heads ({mc.num_heads})")
    kv_heads = mc.num_kv_heads
    if kv_heads < 0:
        raise ValueError(f"KVBytesPerToken: num_kv_heads must be >= 0, got {kv_heads}")
    if kv_heads == 0:
        kv_heads = mc.num_heads
    # Fewer KV heads than GPUs means vLLM replicates them; only a ragged split is an error.
    if kv_heads >= tp and kv_heads % tp != 0:
        raise ValueError(f"KVBytesPerToken: num_kv_heads ({kv_heads}) must be evenly divisible by TP ({tp})")
    head_dim = mc.hidden_dim // mc.num_heads
    per_token = float(mc.num_layers) * 2.0 * float(head_dim) * float(kv_heads) * mc.bytes_per_param
    return per_token / float(tp)


kv_bytes_per_token = _kv_bytes_per_token   # the public name, for P/D transfer sizing


def kv_capacity_params_error(mc: ModelConfig) -> str | None:
    """Why the weight estimate cannot be trusted (MoE hints without an expert count), or None."""
    if not mc.is_moe:
        for key, value in (("n_shared_experts", mc.n_shared_experts),
                           ("num_experts_per_tok", mc.num_experts_per_tok)):
            if value > 0:
                return (f"model appears to be MoE ({key}={value}) but num_local_experts is missing; "
                        "cannot estimate weight size accurately. Set --total-kv-blocks explicitly")
    return None


def calculate_kv_blocks(mc: ModelConfig, hw: HardwareConfig, tp: int, block_size: int,
                        gpu_mem_util: float) -> int:
    """KV blocks that fit in GPU memory after weights, activations and runtime overhead.

    Raises ValueError (with upstream's wording) when the inputs do not allow an estimate; the CLI
    then warns and keeps its current block count.
    """
    params_error = kv_capacity_params_error(mc)
    if params_error:
        raise ValueError(params_error)
    if not (0 < gpu_mem_util <= 1.0):
        raise ValueError("CalculateKVBlocks: gpuMemoryUtilization must be in (0, 1.0], "
                         f"got {format_go_v(gpu_mem_util)}")
    if block_size <= 0:
        raise ValueError(f"CalculateKVBlocks: block size must be > 0, got {block_size}")
    if mc.intermediate_dim <= 0:
        raise ValueError(f"CalculateKVBlocks: intermediate_dim must be > 0, got {mc.intermediate_dim}")
    if mc.vocab_size <= 0:
        raise ValueError(f"CalculateKVBlocks: vocab_size must be > 0, got {mc.vocab_size}")
    if _invalid_positive(hw.memory_gib):
        raise ValueError("CalculateKVBlocks: GPU memory (MemoryGiB) must be a valid positive number, "
                         f"got {format_go_v(hw.memory_gib)}")
    if mc.weight_bytes_per_param != 0 and _invalid_positive(mc.weight_bytes_per_param):
        raise ValueError("CalculateKVBlocks: WeightBytesPerParam must be positive when set, "
                         f"got {format_go_v(mc.weight_bytes_per_param)}")
    if mc.hidden_act not in _SWIGLU_ACTIVATIONS:
        raise ValueError(f"CalculateKVBlocks: unsupported activation {json.dumps(mc.hidden_act)}; "
                         "only SwiGLU-family activations (silu, swiglu, geglu) are supported")

    try:
        per_token = _kv_bytes_per_token(mc, tp)
    except ValueError as exc:
        raise ValueError(f"CalculateKVBlocks: {exc}") from None
    # Multiply before truncating so a fractional per-token size is not lost.
    per_block = math.trunc(per_token * float(block_size))
    if per_block <= 0:
        raise ValueError(f"CalculateKVBlocks: per-block KV bytes is {per_block} (expected > 0); "
                         f"perTokenKVBytesPerGPU={per_token:.6f}, blockSize={block_size} "
                         "— check BytesPerParam and TP")

    available_gib = hw.memory_gib * gpu_mem_util * float(tp)
    weights_gib = float(_model_weight_bytes(mc)) / _GIB
    activation_gib = _ACTIVATION_GIB_MOE if mc.is_moe else _ACTIVATION_GIB_DENSE
    non_torch_gib = (_NON_TORCH_GIB_TP1 if tp == 1 else _NON_TORCH_GIB_PER_GPU) * float(tp)
    overhead_gib = weights_gib + activation_gib + non_torch_gib
    if overhead_gib >= available_gib:
        raise ValueError(
            f"CalculateKVBlocks: model overhead ({overhead_gib:.2f} GiB = {weights_gib:.2f} weights + "
            f"{activation_gib:.2f} activation + {non_torch_gib:.2f} non-torch) exceeds available GPU "
            f"memory ({available_gib:.2f} GiB = {hw.memory_gib:.1f} GiB × {gpu_mem_util * 100:.0f}% "
            f"util × {tp} GPUs)")
    allocatable_gib = available_gib - overhead_gib
    blocks = math.trunc(allocatable_gib * _GIB) // per_block
    if blocks <= 0:
        raise ValueError(f"CalculateKVBlocks: computed 0 blocks (allocatable={allocatable_gib:.2f} GiB, "
                         f"per_block={per_block} bytes)")
    return blocks


def apply_rope_scaling(mc: ModelConfig) -> tuple[int, bool]:
    """``max_position_embeddings`` stretched by ``rope_scaling`` where vLLM would; (value, applied)."""
    base = mc.max_position_embeddings
    rope = mc.rope_scaling
    if base <= 0 or "gemma3" in mc.model_type or rope is None or rope.json_type != "object":
        return base, False
    if rope.rope_type in _UNSCALED_ROPE_TYPES:
        return base, False
    factor = rope.factor
    if factor is None or not (factor > 1.0) or math.isinf(factor):
        return base, False
    if rope.rope_type == "yarn":
        original = rope.original_max_position_embeddings
        if original is not None and original > 0:
            if original >= _MAX_INT64_FLOAT:
                return base, False
            base = math.trunc(original)
    product = float(base) * factor
    if product >= _MAX_INT64_FLOAT or product < 0:
        return mc.max_position_embeddings, False
    return math.trunc(product), True


def cap_max_model_len(max_model_len: int, total_kv_blocks: int, block_size: int) -> int:
    """Shrink a context length that needs more KV blocks than exist to what the cache holds."""
    if max_model_len > 0 and block_size > 0:
        blocks_needed = -(-max_model_len // block_size)
        if blocks_needed > total_kv_blocks:
            return total_kv_blocks * block_size
    return max_model_len


def derive_max_model_len(mc: ModelConfig, total_kv_blocks: int, block_size: int) -> int:
    """The roofline CLI's ``--max-model-len`` when the flag is not given (0 = unlimited)."""
    max_model_len, _ = apply_rope_scaling(mc)
    return cap_max_model_len(max_model_len, total_kv_blocks, block_size)
