"""Turn the latency-related CLI flags into a complete latency configuration.

This is upstream's ``resolveLatencyConfig`` (4e179804): fill GPU/TP/vLLM version from the
model's defaults, pick blackbox or trained-physics coefficients, load the architecture and GPU
for the analytical backends (roofline, trained-physics), and auto-derive ``--total-kv-blocks``
and ``--max-model-len`` when they were not given. Where
upstream would download a ``config.json`` from HuggingFace, blis uses its catalog instead and
fails with a clear message if the model is not in it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import attrs

from blis_core.catalog import Catalog, CatalogError
from blis_core.latency import VALID_BACKENDS
from blis_core.modelconfig import (
    HardwareConfig, ModelConfig, apply_rope_scaling, apply_weight_name_fallback,
    calculate_kv_blocks, cap_max_model_len, format_go_v, kv_capacity_params_error,
    load_hardware, load_hf_config,
)

# Go's %T of the JSON values a malformed rope_scaling can hold.
_GO_JSON_TYPES = {"string": "string", "number": "float64", "bool": "bool", "array": "[]interface {}"}


class ResolveError(ValueError):
    """A fatal configuration error; ``warnings`` are those upstream would have printed before it."""

    def __init__(self, message: str, warnings: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.warnings = tuple(warnings)


@attrs.frozen
class LatencyOptions:
    """The latency flags of ``blis run``, with whether each optional one was given explicitly."""

    model: str
    latency_model: str = "roofline"
    latency_model_given: bool = False
    alpha: tuple[float, ...] = (0.0, 0.0, 0.0)
    alpha_given: bool = False
    beta: tuple[float, ...] = (0.0, 0.0, 0.0)
    beta_given: bool = False
    hardware: str = ""
    tp: int = 0
    vllm_version: str = ""
    total_kv_blocks: int = 1_000_000
    total_kv_blocks_given: bool = False
    block_size: int = 16
    gpu_memory_utilization: float = 0.9
    max_model_len: int = 0
    max_model_len_given: bool = False
    model_config_folder: str = ""
    hardware_config: str = ""
    defaults_filepath: str = "defaults.yaml"
    defaults_filepath_given: bool = False  # False: use blis's shipped catalog


@attrs.frozen
class ResolvedLatency:
    """Everything needed to build the latency model and size the KV cache."""

    backend: str
    alpha: tuple[float, ...]
    beta: tuple[float, ...]
    model: str  # lowercased
    hardware: str
    tp: int
    vllm_version: str
    model_config: ModelConfig | None  # roofline and trained-physics only
    hardware_config: HardwareConfig | None  # roofline and trained-physics only
    total_kv_blocks: int
    max_model_len: int
    warnings: tuple[str, ...]


def _go_f(x: float) -> str:
    """Go's ``%f``."""
    if math.isnan(x) or math.isinf(x):
        return format_go_v(x)
    return f"{x:f}"


def _all_zeros(values: Sequence[float]) -> bool:
    return all(v == 0 for v in values)


class _Resolver:
    """One resolution; collects warnings in the order upstream prints them."""

    def __init__(self, options: LatencyOptions) -> None:
        self.o = options
        self.warnings: list[str] = []
        self.model = options.model.lower()

    def fail(self, message: str) -> ResolveError:
        return ResolveError(message, self.warnings)

    def catalog(self) -> Catalog:
        if not self.o.defaults_filepath_given:
            return Catalog.shipped()
        try:
            return Catalog.from_upstream(self.o.defaults_filepath)
        except CatalogError as exc:
            raise self.fail(str(exc)) from None

    def model_config(self, catalog: Catalog) -> ModelConfig:
        """The architecture: ``--model-config-folder``, else the catalog (never a download)."""
        if self.o.model_config_folder:
            path = Path(self.o.model_config_folder) / "config.json"
            try:
                mc = load_hf_config(path)
            except ValueError as exc:
                raise self.fail(f"Failed to parse HuggingFace config: {exc}") from None
        else:
            try:
                mc = catalog.model_config(self.model)
            except CatalogError as exc:
                raise self.fail(
                    f"--latency-model: could not find config.json for model {json.dumps(self.model)}.\n"
                    f"  Tried: {exc}.\n"
                    "  blis does not download configs from HuggingFace; "
                    "provide --model-config-folder explicitly") from None
        return apply_weight_name_fallback(mc, self.model)

    def hardware(self, catalog: Catalog, gpu: str) -> HardwareConfig:
        try:
            if self.o.hardware_config:
                return load_hardware(self.o.hardware_config, gpu)
            return catalog.gpu(gpu)
        except ValueError as exc:
            raise self.fail(f"Failed to load hardware config: {exc}") from None

    def auto_kv_blocks(self, mc: ModelConfig, hw: HardwareConfig, tp: int, current: int) -> int:
        """``calculate_kv_blocks``, or ``current`` with a warning when it cannot be estimated."""
        params_error = kv_capacity_params_error(mc)
        if params_error:
            self.warnings.append(f"--latency-model: could not extract KV capacity params: {params_error}. "
                                 f"Using total-kv-blocks={current}. Set --total-kv-blocks explicitly to override")
            return current
        if not hw.memory_gib > 0:
            self.warnings.append("--latency-model: GPU memory capacity not available in hardware config; "
                                 f"using current total-kv-blocks={current}. Add MemoryGiB to the hardware "
                                 "config or pass --total-kv-blocks explicitly")
            return current
        try:
            return calculate_kv_blocks(mc, hw, tp, self.o.block_size, self.o.gpu_memory_utilization)
        except ValueError as exc:
            self.warnings.append(f"--latency-model: KV capacity auto-calculation failed: {exc}. "
                                 f"Using total-kv-blocks={current}. Set --total-kv-blocks explicitly to override")
            return current

    def auto_max_model_len(self, mc: ModelConfig, current: int) -> int:
        if mc.max_position_embeddings <= 0:
            return current
        value, applied = apply_rope_scaling(mc)
        rope = mc.rope_scaling
        if not applied and "gemma3" not in mc.model_type and rope is not None:
            if rope.json_type != "object":
                self.warnings.append("--latency-model: rope_scaling present but not a JSON object "
                                     f"(type {_GO_JSON_TYPES[rope.json_type]}); ignoring")
            elif rope.has_factor:
                self.warnings.append("--latency-model: rope_scaling.factor present but not applied "
                                     "(excluded type, invalid value, or overflow); "
                                     "using max_position_embeddings as-is")
        return value

    def resolve(self) -> ResolvedLatency:
        o = self.o
        if o.latency_model not in VALID_BACKENDS:
            raise self.fail(f"unknown --latency-model {json.dumps(o.latency_model)}; "
                            f"valid options: {', '.join(VALID_BACKENDS)}")
        if o.alpha_given != o.beta_given:
            given, missing = ("alpha", "beta") if o.alpha_given else ("beta", "alpha")
            raise self.fail(f"--{given}-coeffs requires --{missing}-coeffs. "
                            "Both coefficient sets are needed for blackbox mode")
        for name, values in (("alpha", o.alpha), ("beta", o.beta)):
            for i, c in enumerate(values):
                if math.isnan(c) or math.isinf(c) or c < 0:
                    raise self.fail(f"--{name}-coeffs[{i}] must be a finite non-negative number, "
                                    f"got {format_go_v(c)}")
        backend = o.latency_model
        if not o.latency_model_given and o.alpha_given and o.beta_given:
            backend = "blackbox"  # both coefficient sets are a clear request for the regression
        util = o.gpu_memory_utilization
        if not (0 < util <= 1.0):
            raise self.fail(f"--gpu-memory-utilization must be a finite value in (0, 1.0], got {_go_f(util)}")
        if o.block_size <= 0:
            raise self.fail(f"--block-size-in-tokens must be > 0, got {o.block_size}")

        catalog = self.catalog()
        gpu, tp, vllm_version = o.hardware, o.tp, o.vllm_version
        default_gpu, default_tp, default_version = catalog.defaults_for(self.model)
        if tp == 0 and default_tp > 0:
            self.warnings += [f"Finding default values of TP for model={self.model}",
                              f"Using default tp={default_tp}"]
            tp = default_tp
        if gpu == "" and default_gpu:
            self.warnings += [f"Finding default values of hardware for model={self.model}",
                              f"Using default GPU={default_gpu}"]
            gpu = default_gpu
        if vllm_version == "" and default_version:
            self.warnings += [f"Finding default values of vLLM version for model={self.model}",
                              f"Using default vLLM version={default_version}"]
            vllm_version = default_version

        alpha, beta = tuple(o.alpha), tuple(o.beta)
        total_kv_blocks, max_model_len = o.total_kv_blocks, o.max_model_len
        mc = hw = None
        if backend in ("roofline", "trained-physics"):
            missing = [flag for flag, absent in (("--hardware (GPU type)", gpu == ""),
                                                 ("--tp (tensor parallelism)", tp <= 0)) if absent]
            if missing and backend == "roofline":
                raise self.fail(
                    f"Roofline mode (the default) requires {' and '.join(missing)}. No defaults found in "
                    f"defaults.yaml for model={self.model}. Provide these flags explicitly, or use "
                    "--latency-model blackbox for offline coefficient-based estimation")
            if missing:
                raise self.fail(f"--latency-model trained-physics requires {' and '.join(missing)}. "
                                f"No defaults found in defaults.yaml for model={self.model}. "
                                "Provide these flags explicitly")
            if backend == "roofline" and o.latency_model_given and o.beta_given:
                raise self.fail("--alpha-coeffs/--beta-coeffs cannot be used with --latency-model roofline. "
                                "Roofline computes step time analytically. Use --latency-model blackbox "
                                "if you want coefficient-based estimation")
            mc = self.model_config(catalog)
            if backend == "trained-physics":
                alpha, beta = self.trained_physics_coefficients(catalog, alpha, beta)
            hw = self.hardware(catalog, gpu)
            if not o.total_kv_blocks_given:
                total_kv_blocks = self.auto_kv_blocks(mc, hw, tp, total_kv_blocks)
            if not o.max_model_len_given:
                max_model_len = self.auto_max_model_len(mc, max_model_len)
            capped = cap_max_model_len(max_model_len, total_kv_blocks, o.block_size)
            if capped != max_model_len:
                self.warnings.append(
                    f"--latency-model: max-model-len {max_model_len} exceeds KV capacity "
                    f"({total_kv_blocks} blocks × {o.block_size} tokens); capping to {capped} tokens")
                max_model_len = capped
        else:  # blackbox
            if not o.alpha_given and not o.beta_given:
                entry = catalog.coefficients(self.model, gpu, tp, vllm_version)
                alpha, beta = (entry.alpha, entry.beta) if entry is not None else ((), ())
            if _all_zeros(alpha) and _all_zeros(beta):
                raise self.fail(f"No trained coefficients found for model={self.model}, GPU={gpu}, TP={tp}. "
                                "Provide --alpha-coeffs/--beta-coeffs, use --latency-model roofline "
                                "or trained-physics")
            if not o.total_kv_blocks_given:
                total_kv_blocks = self.blackbox_kv_blocks(catalog, gpu, tp, total_kv_blocks)

        if max_model_len < 0:
            raise self.fail(f"--max-model-len must be >= 0, got {max_model_len}")
        return ResolvedLatency(
            backend=backend, alpha=alpha, beta=beta, model=self.model, hardware=gpu, tp=tp,
            vllm_version=vllm_version, model_config=mc, hardware_config=hw,
            total_kv_blocks=total_kv_blocks, max_model_len=max_model_len, warnings=tuple(self.warnings))

    def trained_physics_coefficients(self, catalog: Catalog, alpha: tuple[float, ...],
                                     beta: tuple[float, ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The coefficient flags where given, else the catalog's trained-physics set."""
        o = self.o
        trained = catalog.trained_physics
        if trained is not None:
            beta = beta if o.beta_given else trained.beta
            alpha = alpha if o.alpha_given else trained.alpha
        if not o.beta_given and (len(beta) < 7 or _all_zeros(beta)):
            raise self.fail(f"--latency-model trained-physics: no trained_physics_coefficients found in "
                            f"{o.defaults_filepath} and no --beta-coeffs provided. Add "
                            "trained_physics_coefficients to defaults.yaml or provide --beta-coeffs explicitly")
        if not o.alpha_given and _all_zeros(alpha):
            self.warnings.append("--latency-model trained-physics: no trained-physics alpha coefficients "
                                 "found; QueueingTime, PostDecodeFixedOverhead, and OutputTokenProcessingTime "
                                 "will use zero alpha (may underestimate TTFT/E2E)")
        return alpha, beta

    def blackbox_kv_blocks(self, catalog: Catalog, gpu: str, tp: int, current: int) -> int:
        """Best effort for blackbox: any missing config is a warning, never an error."""
        try:
            mc = self.model_config(catalog)
            hw = self.hardware(catalog, gpu)
        except ResolveError as exc:
            self.warnings.append(f"--latency-model blackbox: cannot auto-calculate total-kv-blocks: {exc}. "
                                 f"Using total-kv-blocks={current}. Set --total-kv-blocks explicitly to override")
            return current
        return self.auto_kv_blocks(mc, hw, tp, current)


def resolve_model_config(options: LatencyOptions) -> ModelConfig:
    """The model architecture alone (P/D sizes KV transfers from it whatever the backend)."""
    resolver = _Resolver(options)
    return resolver.model_config(resolver.catalog())


def resolve_hardware(options: LatencyOptions, gpu: str) -> HardwareConfig:
    """One GPU's specification, from ``--hardware-config`` or the catalog."""
    resolver = _Resolver(options)
    return resolver.hardware(resolver.catalog(), gpu)


def resolve_latency(options: LatencyOptions) -> ResolvedLatency:
    """Resolve the latency flags (upstream's resolveLatencyConfig); raises :class:`ResolveError`."""
    return _Resolver(options).resolve()
