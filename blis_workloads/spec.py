"""The v2 workload specification: attrs models, strict YAML loading, v1 upgrade and validation.

The schema is upstream's ``sim/workload/spec.go`` at 4e179804 (cluster-policies.md §6.2). Loading
is strict like upstream's ``yaml.v3`` decoder with ``KnownFields(true)``: an unknown or duplicate
key, or a value of the wrong type, is an error. Every error is one line that starts with the YAML
path of the offending field (``clients[2].arrival.process: ...``).
"""

from __future__ import annotations

import json
import logging
import math
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Union, get_args, get_origin

import attrs

from blis_core.strictyaml import YamlError, strict_yaml as _strict_yaml

__all__ = [
    "ActiveWindow",
    "ArrivalSpec",
    "ClientSpec",
    "CohortSpec",
    "DistSpec",
    "DiurnalSpec",
    "DrainSpec",
    "InferencePerfSpec",
    "LifecycleSpec",
    "MultiTurnSpec",
    "MultimodalSpec",
    "NetworkSpec",
    "ReasoningSpec",
    "ServeGenDataSpec",
    "SharedPrefixSpec",
    "SpikeSpec",
    "StageSpec",
    "WorkloadError",
    "WorkloadSpec",
    "go_quote",
    "go_fmt_f",
    "go_fmt_v",
    "load_workload_spec",
    "parse_workload_spec",
    "strict_yaml",
    "structure",
    "upgrade_v1_to_v2",
]

log = logging.getLogger("blis.workload")


class WorkloadError(ValueError):
    """A workload option, spec or generation error; ``str()`` is the one-line message to print."""


# --------------------------------------------------------------------------------------------
# Go formatting of the values quoted in error messages (upstream formats with %q, %f and %v).

def go_quote(text: str) -> str:
    """Go's ``%q`` for the strings that occur in specs (JSON escaping agrees on them)."""
    return json.dumps(text, ensure_ascii=False)


def go_fmt_f(x: float) -> str:
    """Go's ``%f``: six decimals, with Go's spelling of the non-finite values."""
    if x != x:
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return f"{x:f}"


def go_fmt_v(x: float) -> str:
    """Go's ``%v`` of a float64: shortest digits, exponent form outside [1e-4, 1e6)."""
    if x != x:
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    sign, digits, exponent = Decimal(repr(abs(x))).normalize().as_tuple()
    text = "".join(map(str, digits))
    point = len(text) + exponent          # decimal point position relative to the digits
    exp10 = point - 1
    prefix = "-" if x < 0 else ""
    if exp10 < -4 or exp10 >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    if point <= 0:
        return prefix + "0." + "0" * -point + text
    if point >= len(text):
        return prefix + text + "0" * (point - len(text))
    return prefix + text[:point] + "." + text[point:]


# --------------------------------------------------------------------------------------------
# Models. Field names are the YAML keys; fields with metadata {"yaml": False} are programmatic,
# and a field with {"yaml": "extra"} collects the mapping's other keys (numbers) for validation
# to check against what the selected plugin declares.

def _yaml_key(field: attrs.Attribute) -> str | None:
    return None if field.metadata.get("yaml") in (False, "extra") else field.name


@attrs.define
class DistSpec:
    """A token-length distribution: ``{type, params{}, file}``."""

    type: str = ""
    params: dict[str, float] = attrs.field(factory=dict)
    file: str = ""


@attrs.define
class ArrivalSpec:
    """The inter-arrival process: ``{process, cv}``, plus in ``params`` the other keys of the
    mapping, which only a process that declares them accepts (``ArrivalProcess.params``)."""

    process: str = ""
    cv: float | None = None
    params: dict[str, float] = attrs.field(factory=dict, metadata={"yaml": "extra"})


@attrs.define
class NetworkSpec:
    """Client network characteristics; parsed for compatibility, unused by the simulator."""

    rtt_ms: float = 0.0
    bandwidth_mbps: float = 0.0


@attrs.define
class ActiveWindow:
    start_us: int = 0
    end_us: int = 0


@attrs.define
class LifecycleSpec:
    """On/off activity windows ``[start_us, end_us)``; a client is silent outside them."""

    windows: list[ActiveWindow] = attrs.field(factory=list)


@attrs.define
class MultimodalSpec:
    text_distribution: DistSpec = attrs.field(factory=DistSpec)
    image_distribution: DistSpec = attrs.field(factory=DistSpec)
    image_count_distribution: DistSpec = attrs.field(factory=DistSpec)
    audio_distribution: DistSpec = attrs.field(factory=DistSpec)
    audio_count_distribution: DistSpec = attrs.field(factory=DistSpec)
    video_distribution: DistSpec = attrs.field(factory=DistSpec)
    video_count_distribution: DistSpec = attrs.field(factory=DistSpec)


@attrs.define
class MultiTurnSpec:
    max_rounds: int = 0
    think_time_us: int = 0
    context_growth: str = ""
    single_session: bool = False


@attrs.define
class ReasoningSpec:
    reason_ratio_distribution: DistSpec = attrs.field(factory=DistSpec)
    multi_turn: MultiTurnSpec | None = None


@attrs.define
class ClientSpec:
    """One client. ``arrival_factory`` is programmatic only (inference-perf's custom sampler)."""

    id: str = ""
    tenant_id: str = ""
    slo_class: str = ""
    model: str = ""
    rate_fraction: float = 0.0
    concurrency: int = 0
    think_time_us: int = 0
    arrival: ArrivalSpec = attrs.field(factory=ArrivalSpec)
    input_distribution: DistSpec = attrs.field(factory=DistSpec)
    output_distribution: DistSpec = attrs.field(factory=DistSpec)
    prefix_group: str = ""
    prefix_length: int = 0
    streaming: bool = False
    network: NetworkSpec | None = None
    lifecycle: LifecycleSpec | None = None
    multimodal: MultimodalSpec | None = None
    reasoning: ReasoningSpec | None = None
    timeout: int | None = None
    closed_loop: bool | None = None
    arrival_factory: Callable | None = attrs.field(
        default=None, eq=False, repr=False, metadata={"yaml": False})

    @property
    def multi_turn(self) -> MultiTurnSpec | None:
        return self.reasoning.multi_turn if self.reasoning is not None else None

    @property
    def is_closed_loop(self) -> bool:
        """Upstream ``isClosedLoop``: explicit ``closed_loop``, else true iff multi-turn."""
        if self.closed_loop is not None:
            return self.closed_loop
        return self.multi_turn is not None


@attrs.define
class DiurnalSpec:
    peak_hour: int = 0
    peak_to_trough_ratio: float = 0.0


@attrs.define
class SpikeSpec:
    start_time_us: int = 0
    duration_us: int = 0


@attrs.define
class DrainSpec:
    start_time_us: int = 0
    ramp_duration_us: int = 0


@attrs.define
class CohortSpec:
    """A population of identical clients, expanded into ``<id>-<j>`` members."""

    id: str = ""
    population: int = 0
    tenant_id: str = ""
    slo_class: str = ""
    model: str = ""
    arrival: ArrivalSpec = attrs.field(factory=ArrivalSpec)
    input_distribution: DistSpec = attrs.field(factory=DistSpec)
    output_distribution: DistSpec = attrs.field(factory=DistSpec)
    prefix_group: str = ""
    streaming: bool = False
    rate_fraction: float = 0.0
    diurnal: DiurnalSpec | None = None
    spike: SpikeSpec | None = None
    drain: DrainSpec | None = None
    prefix_length: int = 0
    reasoning: ReasoningSpec | None = None
    closed_loop: bool | None = None
    timeout: int | None = None
    network: NetworkSpec | None = None
    multimodal: MultimodalSpec | None = None


@attrs.define
class ServeGenDataSpec:
    path: str = ""
    span_start: int = 0
    span_end: int = 0


@attrs.define
class StageSpec:
    rate: float = 0.0
    duration: int = 0   # seconds


@attrs.define
class SharedPrefixSpec:
    num_unique_system_prompts: int = 0
    num_users_per_system_prompt: int = 0
    system_prompt_len: int = 0
    question_len: int = 0
    output_len: int = 0
    enable_multi_turn_chat: bool = False


@attrs.define
class InferencePerfSpec:
    stages: list[StageSpec] = attrs.field(factory=list)
    shared_prefix: SharedPrefixSpec | None = None


@attrs.define
class WorkloadSpec:
    version: str = ""
    seed: int = 0
    category: str = ""
    clients: list[ClientSpec] = attrs.field(factory=list)
    cohorts: list[CohortSpec] = attrs.field(factory=list)
    aggregate_rate: float = 0.0
    horizon: int = 0
    num_requests: int = 0
    servegen_data: ServeGenDataSpec | None = None
    inference_perf: InferencePerfSpec | None = None

    def validate(self) -> None:
        """Upstream ``Validate()``; raises ``WorkloadError`` naming the bad field's path."""
        _validate_spec(self)


# --------------------------------------------------------------------------------------------
# Strict structuring of parsed YAML into the models.

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_TYPE_NAMES = {int: "an integer", float: "a number", bool: "a boolean", str: "a string"}


def _type_error(path: str, expected: str, value: Any) -> WorkloadError:
    shown = "null" if value is None else repr(value) if isinstance(value, str) else str(value)
    return WorkloadError(f"{path}: expected {expected}, got {shown}")


def _scalar(kind: type, value: Any, path: str) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if _INT64_MIN <= value <= _INT64_MAX:
                return value
            raise WorkloadError(f"{path}: integer {value} overflows int64")
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is str:
        # yaml.v3 decodes any scalar into a string field, keeping its source text.
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return str(value)
    raise _type_error(path, _TYPE_NAMES[kind], value)


def _convert(hint: Any, value: Any, path: str) -> Any:
    origin = get_origin(hint)
    if origin is Union or (origin is not None and type(None) in get_args(hint)):
        inner = [a for a in get_args(hint) if a is not type(None)][0]
        return None if value is None else _convert(inner, value, path)
    if origin is list:
        if value is None:
            return []
        if not isinstance(value, list):
            raise _type_error(path, "a list", value)
        (item,) = get_args(hint)
        return [_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise _type_error(path, "a mapping", value)
        return {_scalar(str, k, path): _scalar(float, v, f"{path}.{k}") for k, v in value.items()}
    if attrs.has(hint):
        return structure(hint, value, path)
    return _scalar(hint, value, path)


def structure(cls: type, data: Any, path: str = "") -> Any:
    """Build ``cls`` from a parsed YAML mapping, rejecting unknown keys and mistyped values."""
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise _type_error(path or "spec", "a mapping", data)
    # Annotations are strings under postponed evaluation; resolve them once per class.
    all_fields = attrs.fields(attrs.resolve_types(cls))
    fields = {_yaml_key(f): f for f in all_fields if _yaml_key(f)}
    extra = next((f for f in all_fields if f.metadata.get("yaml") == "extra"), None)
    kwargs = {}
    for key, value in data.items():
        name = _scalar(str, key, path or "spec")
        sub = f"{path}.{name}" if path else name
        field = fields.get(name)
        if field is None:
            if extra is None:
                raise WorkloadError(f"{sub}: unknown field {go_quote(name)}")
            kwargs.setdefault(extra.name, {})[name] = _scalar(float, value, sub)
            continue
        if value is None:
            continue            # yaml.v3 leaves the zero value for an explicit null
        kwargs[field.name] = _convert(field.type, value, sub)
    return cls(**kwargs)


def strict_yaml(text: str) -> Any:
    """Strict YAML (``blis_core.strictyaml``) with errors as ``WorkloadError``."""
    try:
        return _strict_yaml(text)
    except YamlError as exc:
        raise WorkloadError(str(exc)) from None


def parse_workload_spec(text: str) -> WorkloadSpec:
    """Parse a YAML (or JSON) spec strictly and upgrade a v1 spec in place."""
    spec = structure(WorkloadSpec, strict_yaml(text))
    upgrade_v1_to_v2(spec)
    return spec


def load_workload_spec(path: str | Path) -> WorkloadSpec:
    """Upstream ``LoadWorkloadSpec``: read, parse strictly, upgrade v1 → v2."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise WorkloadError(f"reading workload spec: {exc}") from None
    return parse_workload_spec(text)


_V1_SLO_NAMES = {"realtime": "critical", "interactive": "standard"}


def upgrade_v1_to_v2(spec: WorkloadSpec) -> None:
    """Version "" or "1" becomes "2" and client SLO names are renamed (cohorts are not)."""
    if spec.version not in ("", "1"):
        return
    spec.version = "2"
    for client in spec.clients:
        new = _V1_SLO_NAMES.get(client.slo_class)
        if new is not None:
            log.warning("deprecated SLO class %s auto-mapped to %s; update your spec to use "
                        "v2 tier names", go_quote(client.slo_class), go_quote(new))
            client.slo_class = new


# --------------------------------------------------------------------------------------------
# Validation (upstream Validate, with YAML paths instead of upstream's "client[i]" prefixes).

_CATEGORIES = ("", "language", "multimodal", "reasoning")
_SLO_CLASSES = ("", "critical", "standard", "sheddable", "batch", "background")
MAX_COHORT_POPULATION = 100_000


def _finite_positive(name: str, value: float) -> None:
    if value != value or math.isinf(value):
        raise WorkloadError(f"{name} must be a finite number, got {go_fmt_f(value)}")
    if value <= 0:
        raise WorkloadError(f"{name} must be positive, got {go_fmt_f(value)}")


def _validate_slo(path: str, slo: str) -> None:
    if slo not in _SLO_CLASSES:
        raise WorkloadError(f"{path}.slo_class: unknown slo_class {go_quote(slo)}; valid: "
                            "critical, standard, sheddable, batch, background, or empty")


def _plugin_class(kind: str, name: str, path: str, what: str) -> type:
    """The registered class of ``kind`` called ``name``, or a one-line error at ``path``."""
    from blis_core.plugins import PluginError, get_registry   # discovery imports this package

    registry = get_registry()
    try:
        return registry.get(kind, name)
    except PluginError:
        known = ", ".join(registry.names(kind)) or "none installed"
        raise WorkloadError(f"{path}: unknown {what} {go_quote(name)}; valid: {known}") from None


def _declared_params(cls: type, given: dict[str, float], path: str, what: str
                     ) -> dict[str, float]:
    """``given`` checked against ``cls.params`` (key -> default, None = required), with the
    defaults filled in; ``cls.params`` None accepts anything and fills nothing."""
    declared = getattr(cls, "params", None)
    if declared is None:
        return dict(given)
    for key in given:
        if key not in declared:
            raise WorkloadError(f"{path}.{key}: unknown field {go_quote(key)}")
    complete = {}
    for key, default in declared.items():
        if key in given:
            complete[key] = given[key]
        elif default is None:
            raise WorkloadError(f"{path}.{key}: missing; required by {what} "
                                f"{go_quote(cls.name)}")
        else:
            complete[key] = default
    return complete


def _run_check(path: str, check: Callable, *args: Any) -> None:
    try:
        check(*args)
    except ValueError as exc:
        raise WorkloadError(f"{path}.{exc}") from None


def _finite_params(path: str, params: dict[str, float]) -> None:
    for name, value in params.items():
        if value != value or math.isinf(value):
            raise WorkloadError(f"{path}.{name} must be a finite number, got {go_fmt_f(value)}")


def _validate_arrival(path: str, arrival: ArrivalSpec) -> None:
    cls = _plugin_class("arrival", arrival.process, f"{path}.arrival.process", "arrival process")
    complete = _declared_params(cls, arrival.params, f"{path}.arrival", "arrival process")
    _finite_params(f"{path}.arrival", arrival.params)
    check = getattr(cls, "check", None)
    if check is not None:
        _run_check(f"{path}.arrival", check, arrival.cv, complete)


def _validate_dist(path: str, dist: DistSpec) -> None:
    cls = _plugin_class("length", dist.type, f"{path}.type", "distribution type")
    _finite_params(f"{path}.params", dist.params)
    complete = _declared_params(cls, dist.params, f"{path}.params", "length distribution")
    check = getattr(cls, "check", None)
    if check is not None:
        _run_check(f"{path}.params", check, complete)


def _validate_prefix_length(path: str, c: ClientSpec | CohortSpec) -> None:
    if c.prefix_length < 0:
        raise WorkloadError(f"{path}.prefix_length: must be non-negative, got {c.prefix_length}")


def _validate_dists(path: str, c: ClientSpec | CohortSpec) -> None:
    _validate_dist(f"{path}.input_distribution", c.input_distribution)
    _validate_dist(f"{path}.output_distribution", c.output_distribution)


def _validate_timeout_and_rounds(path: str, c: ClientSpec | CohortSpec) -> None:
    if c.timeout is not None and c.timeout < 0:
        raise WorkloadError(f"{path}.timeout: must be non-negative, got {c.timeout}")
    mt = c.reasoning.multi_turn if c.reasoning is not None else None
    if mt is not None and mt.max_rounds < 1:
        raise WorkloadError(f"{path}.reasoning.multi_turn.max_rounds: must be >= 1, "
                            f"got {mt.max_rounds}")


def _validate_client(path: str, c: ClientSpec) -> None:
    _validate_slo(path, c.slo_class)
    if c.concurrency < 0:
        raise WorkloadError(f"{path}.concurrency: must be non-negative, got {c.concurrency}")
    if c.think_time_us < 0:
        raise WorkloadError(f"{path}.think_time_us: must be non-negative, got {c.think_time_us}")
    if c.concurrency > 0 and c.rate_fraction > 0:
        raise WorkloadError(f"{path}: concurrency and rate_fraction are mutually exclusive")
    if c.concurrency == 0:
        _finite_positive(f"{path}.rate_fraction", c.rate_fraction)
        if c.arrival_factory is None:
            _validate_arrival(path, c.arrival)
        if c.arrival.cv is not None:
            _finite_positive(f"{path}.arrival.cv", c.arrival.cv)
    elif c.arrival.params:
        # Unused by a concurrency client, but an undeclared key is still a mistake to report.
        _validate_arrival(path, c.arrival)
    if c.lifecycle is not None:
        windows = c.lifecycle.windows
        if not windows:
            raise WorkloadError(f"{path}.lifecycle.windows: at least one window required")
        for j, w in enumerate(windows):
            wpath = f"{path}.lifecycle.windows[{j}]"
            if w.start_us < 0:
                raise WorkloadError(f"{wpath}.start_us: must be non-negative, got {w.start_us}")
            if w.end_us <= w.start_us:
                raise WorkloadError(f"{wpath}.end_us: must be > start_us ({w.start_us}), "
                                    f"got {w.end_us}")
    _validate_prefix_length(path, c)
    _validate_dists(path, c)
    _validate_timeout_and_rounds(path, c)


def _validate_cohort(path: str, c: CohortSpec) -> None:
    if c.population <= 0:
        raise WorkloadError(f"{path}.population: must be positive, got {c.population}")
    if c.population > MAX_COHORT_POPULATION:
        raise WorkloadError(f"{path}.population: {c.population} exceeds maximum "
                            f"{MAX_COHORT_POPULATION}")
    _finite_positive(f"{path}.rate_fraction", c.rate_fraction)
    _validate_slo(path, c.slo_class)
    _validate_arrival(path, c.arrival)
    if c.arrival.cv is not None:
        _finite_positive(f"{path}.arrival.cv", c.arrival.cv)
    _validate_dists(path, c)
    if c.diurnal is not None:
        ratio = c.diurnal.peak_to_trough_ratio
        if ratio != ratio or math.isinf(ratio) or ratio < 1.0:
            raise WorkloadError(f"{path}.diurnal.peak_to_trough_ratio: must be a finite number "
                                f">= 1.0, got {go_fmt_f(ratio)}")
        if not 0 <= c.diurnal.peak_hour <= 23:
            raise WorkloadError(f"{path}.diurnal.peak_hour: must be 0-23, "
                                f"got {c.diurnal.peak_hour}")
    if c.spike is not None:
        if c.spike.start_time_us < 0:
            raise WorkloadError(f"{path}.spike.start_time_us: must be non-negative, "
                                f"got {c.spike.start_time_us}")
        if c.spike.duration_us <= 0:
            raise WorkloadError(f"{path}.spike.duration_us: must be > 0, "
                                f"got {c.spike.duration_us}")
    if c.drain is not None:
        if c.drain.start_time_us < 0:
            raise WorkloadError(f"{path}.drain.start_time_us: must be non-negative, "
                                f"got {c.drain.start_time_us}")
        if c.drain.ramp_duration_us <= 0:
            raise WorkloadError(f"{path}.drain.ramp_duration_us: must be > 0, "
                                f"got {c.drain.ramp_duration_us}")
    _validate_prefix_length(path, c)
    _validate_timeout_and_rounds(path, c)


def _validate_spec(s: WorkloadSpec) -> None:
    if s.category not in _CATEGORIES:
        raise WorkloadError(f"category: unknown category {go_quote(s.category)}; valid: "
                            "language, multimodal, reasoning")
    # aggregate_rate matters only if something is rate-based (cohorts always are).
    if any(c.concurrency == 0 for c in s.clients) or s.cohorts:
        _finite_positive("aggregate_rate", s.aggregate_rate)
    if not s.clients and s.servegen_data is None and not s.cohorts:
        raise WorkloadError("at least one client, cohort, or servegen_data path required")
    for i, c in enumerate(s.clients):
        _validate_client(f"clients[{i}]", c)
    has_concurrency = any(c.concurrency > 0 for c in s.clients)
    has_multi_turn = any(c.multi_turn is not None for c in s.clients) or any(
        c.reasoning is not None and c.reasoning.multi_turn is not None for c in s.cohorts)
    if has_concurrency and has_multi_turn:
        raise WorkloadError("concurrency clients and multi-turn clients cannot be mixed in the "
                            "same spec: follow-up budget accounting does not support this "
                            "combination")
    for i, c in enumerate(s.cohorts):
        _validate_cohort(f"cohorts[{i}]", c)

