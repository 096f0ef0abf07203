"""The model/GPU catalog: per-model deployment defaults, architectures, GPU specs, the blackbox
coefficient table and the trained-physics coefficients.

blis ships its own catalog (``blis_core/catalog/*.yaml``, generated from upstream BLIS 4e179804 by
``tools/build_catalog.py``). :meth:`Catalog.from_upstream` reads upstream's own files instead, so
``--defaults-filepath``, ``--hardware-config`` and a ``model_configs/`` tree work as upstream's do.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import cattrs
import yaml

from blis_core.modelconfig import (
    HardwareConfig, ModelConfig, gpu_not_found_message, parse_hardware_table, parse_hf_config,
    read_json_object,
)

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class CatalogError(ValueError):
    """A catalog file is malformed, or it lacks the GPU or model asked for."""


@attrs.frozen
class ModelEntry:
    """One model's deployment defaults ("" / 0 when the catalog has none) and architecture."""

    id: str
    default_gpu: str = ""
    default_tp: int = 0
    default_vllm_version: str = ""
    hf_repo: str = ""
    architecture: ModelConfig | None = None


@attrs.frozen
class CoefficientEntry:
    """Trained blackbox coefficients for one (model, GPU, TP, vLLM version)."""

    model: str
    gpu: str
    tp: int
    vllm_version: str
    alpha: tuple[float, ...]
    beta: tuple[float, ...]


@attrs.frozen
class TrainedPhysicsCoefficients:
    """The trained-physics model's learned coefficients; upstream ships one set for every model."""

    alpha: tuple[float, ...] = ()
    beta: tuple[float, ...] = ()


_converter = cattrs.Converter(forbid_extra_keys=True)


def short_model_name(model_id: str) -> str:
    """The part after the organisation: upstream's ``model_configs/<name>`` directory name."""
    return model_id.split("/", 1)[1] if "/" in model_id else model_id


def _is_hf_config(data: Mapping[str, Any]) -> bool:
    """Upstream's sanity check that a JSON object is a transformer config.json."""
    text_config = data.get("text_config")
    inner = text_config if isinstance(text_config, Mapping) else {}
    return any(key in data or key in inner for key in ("num_hidden_layers", "hidden_size"))


class Catalog:
    """Lookups over one catalog; build it with :meth:`shipped` or :meth:`from_upstream`."""

    def __init__(self, models: Mapping[str, ModelEntry], coefficients: Sequence[CoefficientEntry],
                 gpus: Mapping[str, HardwareConfig] | None = None, *,
                 trained_physics: TrainedPhysicsCoefficients | None = None,
                 hardware_path: Path | None = None, model_config_dir: Path | None = None,
                 description: str = "catalog") -> None:
        self._models = dict(models)
        self._coefficients = tuple(coefficients)
        self.trained_physics = trained_physics  # None when the catalog has none
        self._gpus = dict(gpus) if gpus is not None else None
        self._hardware_path = hardware_path  # upstream hardware_config.json, read on first use
        self._model_config_dir = model_config_dir  # upstream model_configs/ tree, if any
        self.description = description

    # -- construction -----------------------------------------------------------------------

    @classmethod
    @functools.cache
    def shipped(cls) -> Catalog:
        """The catalog bundled with blis."""
        root = importlib.resources.files("blis_core") / "catalog"

        def load(name: str) -> Any:
            return yaml.load(root.joinpath(name).read_text(encoding="utf-8"), Loader=_YAML_LOADER)

        try:
            models = _converter.structure(load("models.yaml")["models"], dict[str, dict[str, Any]])
            entries = {model_id: _converter.structure({"id": model_id, **fields}, ModelEntry)
                       for model_id, fields in models.items()}
            coefficient_file = load("coefficients.yaml")
            coefficients = _converter.structure(coefficient_file["coefficients"], list[CoefficientEntry])
            trained = _converter.structure(coefficient_file["trained_physics"], TrainedPhysicsCoefficients)
            gpus = _converter.structure(load("gpus.yaml")["gpus"], dict[str, HardwareConfig])
        except (KeyError, cattrs.BaseValidationError) as exc:
            raise CatalogError(f"the shipped catalog is malformed: {exc!r}") from exc
        return cls(entries, coefficients, gpus, trained_physics=trained,
                   description="the shipped blis catalog")

    @classmethod
    def from_upstream(cls, defaults_path: str | Path, hardware_path: str | Path | None = None,
                      model_config_dir: str | Path | None = None) -> Catalog:
        """A catalog read from upstream BLIS's files.

        ``defaults_path`` is a ``defaults.yaml`` (parsed strictly, as upstream does; a missing
        file gives empty defaults and coefficients, as upstream skips it). The hardware file
        and the ``model_configs/`` tree default to siblings of it.
        """
        defaults_path = Path(defaults_path)
        base = defaults_path.parent
        models: dict[str, ModelEntry] = {}
        coefficients: list[CoefficientEntry] = []
        trained = None
        if defaults_path.is_file():
            try:
                data = yaml.load(defaults_path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
            except (OSError, yaml.YAMLError) as exc:
                raise CatalogError(f"Failed to parse defaults YAML: {exc}") from exc
            models, coefficients, trained = _parse_upstream_defaults(data)
        return cls(models, coefficients, trained_physics=trained,
                   hardware_path=Path(hardware_path) if hardware_path else base / "hardware_config.json",
                   model_config_dir=Path(model_config_dir) if model_config_dir else base / "model_configs",
                   description=str(defaults_path))

    # -- lookups ----------------------------------------------------------------------------

    def model(self, model_id: str) -> ModelEntry | None:
        return self._models.get(model_id)

    def model_ids(self) -> list[str]:
        """Every model with an entry, in catalog order."""
        return list(self._models)

    def coefficient_table(self) -> tuple[CoefficientEntry, ...]:
        """Every coefficient entry, in lookup order."""
        return self._coefficients

    def defaults_for(self, model_id: str) -> tuple[str, int, str]:
        """(GPU, TP, vLLM version) defaults of a model; ("", 0, "") when it has none."""
        entry = self._models.get(model_id)
        if entry is None:
            return "", 0, ""
        return entry.default_gpu, entry.default_tp, entry.default_vllm_version

    def coefficients(self, model_id: str, gpu: str, tp: int, vllm_version: str) -> CoefficientEntry | None:
        """The first coefficient entry matching all four keys exactly, as upstream picks it."""
        for entry in self._coefficients:
            if (entry.model == model_id and entry.tp == tp and entry.gpu == gpu
                    and entry.vllm_version == vllm_version):
                return entry
        return None

    def gpu_names(self) -> list[str]:
        return sorted(self._gpu_table())

    def gpu(self, name: str) -> HardwareConfig:
        table = self._gpu_table()
        if name not in table:
            raise CatalogError(gpu_not_found_message(name, list(table)))
        return table[name]

    def model_config(self, model_id: str) -> ModelConfig:
        """The architecture of a model, found by id or, like upstream, by its short name."""
        if self._model_config_dir is not None:
            return self._upstream_model_config(model_id)
        entry = self._models.get(model_id)
        if entry is not None and entry.architecture is not None:
            return entry.architecture
        short = short_model_name(model_id)
        for candidate in self._models.values():
            if candidate.architecture is not None and short_model_name(candidate.id) == short:
                return candidate.architecture
        raise CatalogError(f"{self.description} has no architecture for model {json.dumps(model_id)}")

    def _upstream_model_config(self, model_id: str) -> ModelConfig:
        path = self._model_config_dir / short_model_name(model_id) / "config.json"
        try:
            data = read_json_object(path, "HF config")
        except ValueError as exc:
            raise CatalogError(str(exc)) from None
        if not _is_hf_config(data):
            raise CatalogError(f"config at {path} exists but lacks expected HuggingFace fields "
                               "(num_hidden_layers, hidden_size)")
        return parse_hf_config(data)

    def _gpu_table(self) -> dict[str, HardwareConfig]:
        if self._gpus is None:
            path = self._hardware_path
            if path is None or not path.is_file():
                raise CatalogError(f'--latency-model: bundled hardware config not found at "{path}". '
                                   "Provide --hardware-config explicitly")
            try:
                self._gpus = parse_hardware_table(read_json_object(path, "hardware config"))
            except ValueError as exc:
                raise CatalogError(f"get hardware config: {exc}") from None
        return self._gpus


# --------------------------------------------------------------------------------------------
# upstream defaults.yaml (strict, like upstream's KnownFields(true) decoding)

_TOP_LEVEL_KEYS = {"defaults", "workloads", "models", "trained_physics_coefficients", "version"}
_DEFAULTS_KEYS = {"GPU", "tensor_parallelism", "vllm_version", "hf_repo"}
_MODEL_KEYS = {"GPU", "alpha_coeffs", "beta_coeffs", "best_loss", "id", "tensor_parallelism",
               "vllm_version"}
_WORKLOAD_KEYS = {"prefix_tokens", "prompt_tokens", "prompt_tokens_stdev", "prompt_tokens_min",
                  "prompt_tokens_max", "output_tokens", "output_tokens_stdev", "output_tokens_min",
                  "output_tokens_max"}
_TRAINED_PHYSICS_KEYS = {"alpha_coeffs", "beta_coeffs"}


def _defaults_error(message: str) -> CatalogError:
    return CatalogError(f"Failed to parse defaults YAML: {message}")


def _mapping(value: Any, where: str, allowed: set[str] | None = None) -> Mapping[str, Any]:
    """``value`` as a mapping (None = empty); with ``allowed``, any other key is an error."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _defaults_error(f"{where}: expected a mapping")
    for key in value:
        if allowed is not None and key not in allowed:
            raise _defaults_error(f"field {key} not found in {where}")
    return value


def _string(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _defaults_error(f"{where}: expected a string, got {value!r}")
    return value


def _integer(value: Any, where: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise _defaults_error(f"{where}: expected an integer, got {value!r}")
    return value


def _floats(value: Any, where: str) -> tuple[float, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, (int, float))
                                          for v in value):
        raise _defaults_error(f"{where}: expected a list of numbers, got {value!r}")
    return tuple(float(v) for v in value)


def _parse_upstream_defaults(data: Any) -> tuple[dict[str, ModelEntry], list[CoefficientEntry],
                                                TrainedPhysicsCoefficients | None]:
    top = _mapping(data, "defaults.yaml", _TOP_LEVEL_KEYS)
    models = {}
    for model_id, fields in _mapping(top.get("defaults"), "defaults").items():
        where = f"defaults[{model_id}]"
        fields = _mapping(fields, where, _DEFAULTS_KEYS)
        models[str(model_id)] = ModelEntry(
            id=str(model_id),
            default_gpu=_string(fields.get("GPU"), f"{where}.GPU"),
            default_tp=_integer(fields.get("tensor_parallelism"), f"{where}.tensor_parallelism"),
            default_vllm_version=_string(fields.get("vllm_version"), f"{where}.vllm_version"),
            hf_repo=_string(fields.get("hf_repo"), f"{where}.hf_repo"),
        )
    for name, preset in _mapping(top.get("workloads"), "workloads").items():
        for key, value in _mapping(preset, f"workloads[{name}]", _WORKLOAD_KEYS).items():
            _integer(value, f"workloads[{name}].{key}")
    trained = None
    if top.get("trained_physics_coefficients") is not None:  # absent or null: none, as upstream
        fields = _mapping(top["trained_physics_coefficients"], "trained_physics_coefficients",
                          _TRAINED_PHYSICS_KEYS)
        trained = TrainedPhysicsCoefficients(
            alpha=_floats(fields.get("alpha_coeffs"), "trained_physics_coefficients.alpha_coeffs"),
            beta=_floats(fields.get("beta_coeffs"), "trained_physics_coefficients.beta_coeffs"))
    _string(top.get("version"), "version")

    raw_models = top.get("models") or []
    if not isinstance(raw_models, list):
        raise _defaults_error("models: expected a list")
    coefficients = []
    for i, fields in enumerate(raw_models):
        where = f"models[{i}]"
        fields = _mapping(fields, where, _MODEL_KEYS)
        best_loss = fields.get("best_loss")
        if best_loss is not None and (isinstance(best_loss, bool) or not isinstance(best_loss, (int, float))):
            raise _defaults_error(f"{where}.best_loss: expected a number, got {best_loss!r}")
        coefficients.append(CoefficientEntry(
            model=_string(fields.get("id"), f"{where}.id"),
            gpu=_string(fields.get("GPU"), f"{where}.GPU"),
            tp=_integer(fields.get("tensor_parallelism"), f"{where}.tensor_parallelism"),
            vllm_version=_string(fields.get("vllm_version"), f"{where}.vllm_version"),
            alpha=_floats(fields.get("alpha_coeffs"), f"{where}.alpha_coeffs"),
            beta=_floats(fields.get("beta_coeffs"), f"{where}.beta_coeffs"),
        ))
    return models, coefficients, trained
