"""Policy bundles: ``--policy-config FILE`` (upstream's PolicyBundle at 4e179804).

A bundle is a YAML file that selects the admission, routing, priority and scheduler policies and
their parameters in one place (cluster-policies.md §4). Every key is optional; a key absent from
the file means "not set". Parsing is strict, like upstream's ``yaml.v3`` decoder with
``KnownFields``: an unknown key at any level and a duplicate key are errors, and so is an empty
file. Each problem is reported as one line naming the file and the YAML path of the field::

    policy.yaml: routing.scorers[1].weight: expected a number, got 'x'

``node_pools`` and ``autoscaler`` follow upstream's schema; ``autoscaler.policy``,
``autoscaler.params`` and ``autoscaler.oscillation_window_us`` are blis extensions that select
and configure an autoscaler plugin, and ``autoscaler.provision_nodes`` and
``instance_lifecycle`` are blis extensions of the instance and node lifecycle
(docs/autoscaling.md).

The CLI applies a bundle with :func:`apply_bundle`'s precedence: a flag given explicitly on the
command line overrides the bundle; the bundle overrides the flag defaults.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import attrs
import cattrs

from blis_core.autoscaling import DRAIN_POLICIES
from blis_core.strictyaml import YamlError, strict_yaml

__all__ = ["BundleError", "PolicyBundle", "bundle_problems", "load_bundle", "merge_bundles",
           "parse_bundle", "structure_bundle", "trim_bundle"]


class BundleError(ValueError):
    """A bundle that cannot be used; the message is one line naming the file and field."""


# -- schema -------------------------------------------------------------------------------------
@attrs.frozen
class AdmissionSection:
    policy: str = ""
    token_bucket_capacity: float | None = None
    token_bucket_refill_rate: float | None = None
    tier_shed_threshold: int | None = None
    tier_shed_min_priority: int | None = None
    gaie_qd_threshold: float | None = None
    gaie_kv_threshold: float | None = None
    slo_priorities: dict[str, int] | None = None


@attrs.frozen
class ScorerEntry:
    name: str = ""
    weight: float = 0.0


@attrs.frozen
class RoutingSection:
    policy: str = ""
    scorers: tuple[ScorerEntry, ...] = ()


@attrs.frozen
class PrioritySection:
    policy: str = ""


@attrs.frozen
class DelaySpec:
    """A delay distribution in seconds (parsed; upstream never uses it at 4e179804)."""

    mean: float = 0.0
    stddev: float = 0.0


@attrs.frozen
class NodePool:
    name: str = ""
    gpu_type: str = ""
    gpus_per_node: int = 0
    gpu_memory_gib: float = 0.0
    initial_nodes: int = 0
    min_nodes: int = 0
    max_nodes: int = 0
    provisioning_delay: DelaySpec = DelaySpec()
    cost_per_hour: float = 0.0


@attrs.frozen
class AnalyzerSection:
    """0 means upstream's default (0.8 / 0.8 / 0.4 / 512)."""

    kv_cache_threshold: float = 0.0
    scale_up_threshold: float = 0.0
    scale_down_boundary: float = 0.0
    avg_input_tokens: float = 0.0


@attrs.frozen
class AutoscalerSection:
    interval_us: float = 0.0
    scale_up_stabilization_window_us: float = 0.0
    scale_down_stabilization_window_us: float = 0.0
    hpa_scrape_delay: DelaySpec = DelaySpec()
    analyzer: AnalyzerSection = AnalyzerSection()
    # blis extensions (upstream has no such keys): the autoscaler plugin ("" = wva, upstream's
    # pipeline), its parameters, and the window of the scale-oscillation counter.
    policy: str = ""
    params: dict[str, float] | None = None
    oscillation_window_us: float = 0.0
    # blis extension: a scale-up that finds no free GPU provisions a node of the pool (up to
    # max_nodes), ready after the pool's provisioning_delay.
    provision_nodes: bool = False


@attrs.frozen
class InstanceLifecycleSection:
    """blis extension (upstream's parser refuses the key at 4e179804): how long an instance the
    autoscaler adds takes to load its model before it is routable (seconds; 0: at once), how
    much slower its first steps are, and what a drain does with the requests it holds."""

    loading_delay: DelaySpec = DelaySpec()
    warm_up_steps: int = 0
    warm_up_factor: float = 1.0
    drain_policy: str = ""          # "" = WAIT, upstream's behaviour


@attrs.frozen
class PolicyBundle:
    """The whole bundle; every section defaults to "not set"."""

    admission: AdmissionSection = AdmissionSection()
    routing: RoutingSection = RoutingSection()
    priority: PrioritySection = PrioritySection()
    scheduler: str = ""
    tenant_budgets: dict[str, float] | None = None
    node_pools: tuple[NodePool, ...] = ()
    autoscaler: AutoscalerSection = AutoscalerSection()
    instance_lifecycle: InstanceLifecycleSection = InstanceLifecycleSection()


# -- structuring --------------------------------------------------------------------------------
# What yaml.v3 reads as a float where the YAML 1.1 loader leaves a string (``1e3``, ``.inf``).
_GO_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_GO_SPECIAL = {".inf": math.inf, "+.inf": math.inf, "-.inf": -math.inf, ".nan": math.nan}


def _float(value: Any, _type: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if _GO_FLOAT.fullmatch(text):
            return float(text)
        if text.lower() in _GO_SPECIAL:
            return _GO_SPECIAL[text.lower()]
    raise ValueError(f"expected a number, got {_show(value)}")


def _int(value: Any, _type: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f"expected an integer, got {_show(value)}")


def _bool(value: Any, _type: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"expected true or false, got {_show(value)}")


def _str(value: Any, _type: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)           # yaml.v3 decodes any scalar into a string field
    raise ValueError(f"expected a string, got {_show(value)}")


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return repr(value)


def strict_converter() -> cattrs.Converter:
    """A converter that reads YAML the way yaml.v3 with KnownFields does: unknown keys refused,
    numbers and strings typed strictly (``1e3`` is a float, any scalar fits a string)."""
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook(float, _float)
    converter.register_structure_hook(int, _int)
    converter.register_structure_hook(bool, _bool)    # else bool, an int subclass, takes _int
    converter.register_structure_hook(str, _str)
    return converter


_converter = strict_converter()


def strip_nulls(value: Any) -> Any:
    """yaml.v3 leaves the zero value for an explicit null: drop null mapping values."""
    if isinstance(value, dict):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value]
    return value


def first_error(exc: BaseException, path: str = "") -> tuple[str, str]:
    """(YAML path, problem) of the first leaf error of a cattrs validation error tree."""
    for note in getattr(exc, "__notes__", ()) or ():
        name = getattr(note, "name", None)
        if isinstance(note, cattrs.AttributeValidationNote) and name is not None:
            path = f"{path}.{name}" if path else name
        elif isinstance(note, cattrs.IterableValidationNote):
            index = note.index
            path = f"{path}[{index}]" if isinstance(index, int) else (
                f"{path}.{index}" if path else str(index))
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        key = sorted(map(str, exc.extra_fields))[0]
        return (f"{path}.{key}" if path else key), "unknown field"
    children = getattr(exc, "exceptions", None)
    if children:
        return first_error(children[0], path)
    if isinstance(exc, (TypeError, AttributeError, KeyError)):
        return path, "expected a mapping"
    return path, str(exc)


def structure_bundle(data: Any, source: str) -> PolicyBundle:
    """A bundle from plain data; :class:`BundleError` names ``source`` and the field path."""
    if not isinstance(data, dict):
        raise BundleError(f"{source}: expected a mapping at the top level, got {_show(data)}")
    data = strip_nulls(data)
    for section, key in (("routing", "scorers"), (None, "node_pools")):
        holder = data.get(section) if section else data
        if isinstance(holder, dict) and key in holder and not isinstance(holder[key], list):
            where = f"{section}.{key}" if section else key
            raise BundleError(f"{source}: {where}: expected a list, got {_show(holder[key])}")
    try:
        return _converter.structure(data, PolicyBundle)
    except Exception as exc:  # cattrs validation groups, or a leaf error
        path, problem = first_error(exc)
        raise BundleError(f"{source}: {path}: {problem}" if path else f"{source}: {problem}") \
            from None


# -- validation (upstream's Validate(), plus the plugin registry) ---------------------------------
def _known(kind: str, registry) -> list[str]:
    return sorted(entry.name for entry in registry.entries(kind))


def _check_name(kind: str, value: str, path: str, registry) -> str | None:
    if not value:
        return None
    known = _known(kind, registry)
    if value not in known:
        return f"{path}: unknown {kind} policy {value!r} (known: {', '.join(known)})"
    return None


def bundle_problems(b: PolicyBundle, registry) -> list[str]:
    """Every problem of a structurally valid bundle, as ``path: problem`` lines."""
    # Scorers belong to the weighted routing plugin, which lists the names it accepts.
    from blis_core.plugins import PluginError

    try:
        scorers = getattr(registry.get("routing", "weighted"), "scorer_names_known", ())
    except PluginError:  # no weighted routing installed: no scorer name is known
        scorers = ()
    out: list[str] = []

    def need(ok: bool, path: str, message: str) -> None:
        if not ok:
            out.append(f"{path}: {message}")

    def finite(v: float) -> bool:
        return math.isfinite(v)

    a = b.admission
    for kind, value, path in (("admission", a.policy, "admission.policy"),
                              ("routing", b.routing.policy, "routing.policy"),
                              ("priority", b.priority.policy, "priority.policy"),
                              ("scheduler", b.scheduler, "scheduler")):
        problem = _check_name(kind, value, path, registry)
        if problem:
            out.append(problem)
    for field in ("token_bucket_capacity", "token_bucket_refill_rate"):
        v = getattr(a, field)
        if v is not None:
            need(finite(v) and v >= 0, f"admission.{field}", f"must be a finite value >= 0, got {v:g}")
    if a.tier_shed_threshold is not None:
        need(a.tier_shed_threshold >= 0, "admission.tier_shed_threshold",
             f"must be >= 0, got {a.tier_shed_threshold}")
    if a.gaie_qd_threshold is not None:
        v = a.gaie_qd_threshold
        need(finite(v) and v > 0, "admission.gaie_qd_threshold", f"must be a finite value > 0, got {v:g}")
    if a.gaie_kv_threshold is not None:
        v = a.gaie_kv_threshold
        need(finite(v) and 0 < v <= 1, "admission.gaie_kv_threshold", f"must be in (0, 1], got {v:g}")
    seen: set[str] = set()
    for i, scorer in enumerate(b.routing.scorers):
        path = f"routing.scorers[{i}]"
        if scorer.name not in scorers:
            out.append(f"{path}.name: unknown scorer {scorer.name!r} "
                       f"(known: {', '.join(scorers)})")
        elif scorer.name in seen:
            out.append(f"{path}.name: duplicate scorer {scorer.name!r}")
        seen.add(scorer.name)
        w = scorer.weight
        need(finite(w) and w > 0, f"{path}.weight", f"must be a finite value > 0, got {w:g}")
    for tenant, share in (b.tenant_budgets or {}).items():
        need(finite(share) and 0 <= share <= 1, f"tenant_budgets.{tenant}",
             f"must be in [0, 1], got {share:g}")
    names: set[str] = set()
    for i, pool in enumerate(b.node_pools):
        p = f"node_pools[{i}]"
        need(pool.name != "", f"{p}.name", "must not be empty")
        need(pool.name not in names, f"{p}.name", f"duplicate pool name {pool.name!r}")
        names.add(pool.name)
        need(pool.gpu_type != "", f"{p}.gpu_type", "must not be empty")
        need(pool.gpus_per_node >= 1, f"{p}.gpus_per_node", f"must be >= 1, got {pool.gpus_per_node}")
        need(finite(pool.gpu_memory_gib) and pool.gpu_memory_gib > 0, f"{p}.gpu_memory_gib",
             f"must be > 0, got {pool.gpu_memory_gib:g}")
        need(pool.initial_nodes >= 0, f"{p}.initial_nodes", f"must be >= 0, got {pool.initial_nodes}")
        need(pool.min_nodes >= 0, f"{p}.min_nodes", f"must be >= 0, got {pool.min_nodes}")
        need(pool.max_nodes >= pool.initial_nodes and pool.max_nodes >= pool.min_nodes,
             f"{p}.max_nodes", f"must be >= initial_nodes and >= min_nodes, got {pool.max_nodes}")
        for field in ("mean", "stddev"):
            v = getattr(pool.provisioning_delay, field)
            need(finite(v) and v >= 0, f"{p}.provisioning_delay.{field}", f"must be >= 0, got {v:g}")
        need(finite(pool.cost_per_hour) and pool.cost_per_hour >= 0, f"{p}.cost_per_hour",
             f"must be >= 0, got {pool.cost_per_hour:g}")
    s = b.autoscaler
    for field in ("interval_us", "scale_up_stabilization_window_us",
                  "scale_down_stabilization_window_us"):
        v = getattr(s, field)
        need(finite(v) and v >= 0, f"autoscaler.{field}", f"must be a finite value >= 0, got {v:g}")
    for field in ("mean", "stddev"):
        v = getattr(s.hpa_scrape_delay, field)
        need(finite(v) and v >= 0, f"autoscaler.hpa_scrape_delay.{field}", f"must be >= 0, got {v:g}")
    z = s.analyzer
    need(finite(z.kv_cache_threshold) and 0 <= z.kv_cache_threshold <= 1,
         "autoscaler.analyzer.kv_cache_threshold", f"must be in (0, 1], got {z.kv_cache_threshold:g}")
    for field in ("scale_up_threshold", "scale_down_boundary", "avg_input_tokens"):
        v = getattr(z, field)
        need(finite(v) and v >= 0, f"autoscaler.analyzer.{field}", f"must be > 0, got {v:g}")
    up = z.scale_up_threshold or 0.8
    down = z.scale_down_boundary or 0.4
    need(down < up, "autoscaler.analyzer.scale_down_boundary",
         f"effective scale_down_boundary {down:g} must be < scale_up_threshold {up:g}")
    for field in ("mean", "stddev"):
        v = getattr(b.instance_lifecycle.loading_delay, field)
        need(finite(v) and v >= 0, f"instance_lifecycle.loading_delay.{field}",
             f"must be a finite value >= 0, got {v:g}")
    life = b.instance_lifecycle
    need(life.warm_up_steps >= 0, "instance_lifecycle.warm_up_steps",
         f"must be >= 0, got {life.warm_up_steps}")
    need(finite(life.warm_up_factor) and life.warm_up_factor >= 1,
         "instance_lifecycle.warm_up_factor",
         f"must be a finite value >= 1, got {life.warm_up_factor:g}")
    if life.drain_policy and life.drain_policy not in DRAIN_POLICIES:
        out.append(f"instance_lifecycle.drain_policy: unknown drain policy "
                   f"{life.drain_policy!r} (known: {', '.join(DRAIN_POLICIES)})")
    v = s.oscillation_window_us
    need(finite(v) and v >= 0, "autoscaler.oscillation_window_us",
         f"must be a finite value >= 0, got {v:g}")
    if s.policy:
        known = _known("autoscaler", registry)
        if s.policy not in known:
            out.append(f"autoscaler.policy: unknown autoscaler {s.policy!r} "
                       f"(known: {', '.join(known)})")
        elif s.interval_us > 0 and not b.node_pools and s.policy != "wva":
            out.append(f"autoscaler.policy: the {s.policy} autoscaler needs node_pools to "
                       "place replicas on")
    if not out and s.interval_us > 0:
        name, params = autoscaler_plugin(s)
        try:
            registry.get("autoscaler", name)(**params)
        except (TypeError, ValueError) as exc:
            out.append(f"autoscaler.params: {exc}")
    # Upstream runs such a cluster with no instance at all (every request rejected by
    # routing); blis refuses it as the mistake it almost certainly is.
    if b.node_pools and not any(p.initial_nodes > 0 for p in b.node_pools):
        out.append("node_pools: no pool has initial nodes, so there are no GPUs to place "
                   "instances on")
    return out


def autoscaler_plugin(section: AutoscalerSection) -> tuple[str, dict]:
    """The autoscaler plugin a section selects and its constructor parameters: upstream's
    keys (windows, analyzer, 0 meaning the default) for ``wva``, ``params`` for any other."""
    name = section.policy or "wva"
    params = dict(section.params or {})
    if name == "wva":
        z = section.analyzer
        params = {"scale_up_window_us": section.scale_up_stabilization_window_us,
                  "scale_down_window_us": section.scale_down_stabilization_window_us,
                  "kv_cache_threshold": z.kv_cache_threshold or 0.8,
                  "scale_up_threshold": z.scale_up_threshold or 0.8,
                  "scale_down_boundary": z.scale_down_boundary or 0.4,
                  "avg_input_tokens": z.avg_input_tokens or 512.0, **params}
    return name, params


# -- loading ------------------------------------------------------------------------------------
def parse_bundle(text: str, source: str = "policy config", registry=None) -> PolicyBundle:
    """Parse and validate a bundle's YAML text; :class:`BundleError` names ``source``."""
    from blis_core.plugins import get_registry

    try:
        data = strict_yaml(text)
    except YamlError as exc:
        raise BundleError(f"{source}: parsing policy config: {exc}") from None
    if data is None:
        raise BundleError(f"{source}: parsing policy config: EOF (the file is empty)")
    bundle = structure_bundle(data, source)
    problems = bundle_problems(bundle, registry or get_registry())
    if problems:
        raise BundleError(f"{source}: {problems[0]}")
    return bundle


def load_bundle(path: str | Path, registry=None) -> PolicyBundle:
    """Read, parse and validate the bundle at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BundleError(f"{path}: cannot read policy config: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise BundleError(f"{path}: parsing policy config: not UTF-8 text") from None
    return parse_bundle(text, str(path), registry)


def unstructure(bundle: PolicyBundle) -> dict:
    """The bundle as plain data (sections at their defaults included)."""
    return _converter.unstructure(bundle)


def _merge(base, override):
    """``override``'s set fields over ``base``'s, section by section; a field is set when it
    differs from its default ("", None, an empty list)."""
    changes = {}
    for field in attrs.fields(type(base)):
        mine, theirs = getattr(base, field.name), getattr(override, field.name)
        if attrs.has(type(theirs)):
            merged = _merge(mine, theirs)
        elif theirs != field.default:
            merged = theirs
        else:
            continue
        if merged != mine:
            changes[field.name] = merged
    return attrs.evolve(base, **changes) if changes else base


def merge_bundles(base: PolicyBundle, override: PolicyBundle) -> PolicyBundle:
    """``base`` with every field that ``override`` sets replaced: how ``--policy-config``
    layers over a run description and flags layer over ``--policy-config``."""
    return _merge(base, override)


def trim_bundle(bundle: PolicyBundle) -> dict:
    """The bundle as plain data with only the fields it sets (what a bundle file would say)."""
    def trim(obj) -> dict:
        out = {}
        for field in attrs.fields(type(obj)):
            value = getattr(obj, field.name)
            if attrs.has(type(value)):
                nested = trim(value)
                if nested:
                    out[field.name] = nested
            elif value != field.default:
                out[field.name] = _converter.unstructure(value)
        return out
    return trim(bundle)
