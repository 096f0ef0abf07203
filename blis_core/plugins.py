"""Plugin discovery: one pluggy manager, entry points of the ``blis`` group, one registry.

Built-in policies and workloads are found exactly like a third-party package: through the
``blis`` entry-point group. Discovery happens once per process; afterwards the engine holds
plain classes. ``BLIS_LOAD_PLUGINS`` (comma-separated distribution names) pins which
distributions load, so a run can be reproduced regardless of what else is installed.
"""

from __future__ import annotations

import os
from importlib import metadata

import attrs
import pluggy

from blis_core import hookspecs

ENTRY_POINT_GROUP = "blis"
PIN_ENV = "BLIS_LOAD_PLUGINS"

# hook name -> kind shown to users
KINDS = {
    "blis_admission_policies": "admission",
    "blis_routing_policies": "routing",
    "blis_priority_policies": "priority",
    "blis_schedulers": "scheduler",
    "blis_workload_generators": "workload",
    "blis_arrival_processes": "arrival",
    "blis_length_distributions": "length",
    "blis_workload_sources": "source",
    "blis_disaggregation_deciders": "disaggregation",
    "blis_saturation_detectors": "saturation",
    "blis_dispatch_orders": "dispatch",
    "blis_autoscalers": "autoscaler",
    "blis_commands": "command",
}

# kind -> what an unknown name is called in error messages
_WHAT = {
    "admission": "admission policy",
    "routing": "routing policy",
    "priority": "priority policy",
    "scheduler": "scheduler",
    "workload": "workload",
    "arrival": "arrival process",
    "length": "length distribution",
    "source": "workload source",
    "disaggregation": "PD decider",
    "saturation": "saturation detector",
    "dispatch": "dispatch order",
    "autoscaler": "autoscaler",
    "command": "command",
}


class PluginError(Exception):
    """A plugin could not be loaded or registered, or a requested name is unknown."""


@attrs.frozen
class PluginEntry:
    kind: str
    name: str
    cls: type
    distribution: str
    version: str

    @property
    def summary(self) -> str:
        doc = (self.cls.__doc__ or "").strip()
        return doc.splitlines()[0].strip() if doc else ""

    @property
    def pathological(self) -> bool:
        return bool(getattr(self.cls, "pathological", False))


class Registry:
    """Every plugin class by kind and name, with the distribution that provided it."""

    def __init__(self, entries: list[PluginEntry]) -> None:
        self._by_kind: dict[str, dict[str, PluginEntry]] = {kind: {} for kind in KINDS.values()}
        for entry in entries:
            existing = self._by_kind[entry.kind].get(entry.name)
            if existing is not None:
                raise PluginError(
                    f"duplicate {entry.kind} plugin name {entry.name!r}: provided by both "
                    f"{existing.distribution} and {entry.distribution}")
            self._by_kind[entry.kind][entry.name] = entry

    def entries(self, kind: str | None = None) -> list[PluginEntry]:
        kinds = [kind] if kind else sorted(self._by_kind)
        return [self._by_kind[k][n] for k in kinds for n in sorted(self._by_kind[k])]

    def names(self, kind: str) -> list[str]:
        return sorted(self._by_kind[kind])

    def get(self, kind: str, name: str) -> type:
        entry = self._by_kind[kind].get(name)
        if entry is None:
            known = ", ".join(self.names(kind)) or "none installed"
            raise PluginError(f"unknown {_WHAT[kind]} {name!r} (known: {known})")
        return entry.cls


def _pinned() -> set[str] | None:
    value = os.environ.get(PIN_ENV)
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def build_manager(extra_plugins=()) -> tuple[pluggy.PluginManager, dict]:
    """Load every ``blis`` entry point (or only the pinned distributions) into a manager.

    Returns the manager and a map from registered plugin object to (distribution, version).
    """
    manager = pluggy.PluginManager("blis")
    manager.add_hookspecs(hookspecs)
    provenance: dict = {}
    pinned = _pinned()
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist is not None else "unknown"
        version = ep.dist.version if ep.dist is not None else ""
        if pinned is not None and dist not in pinned:
            continue
        try:
            module = ep.load()
        except Exception as exc:  # a broken third-party plugin must stop the run, loudly
            raise PluginError(f"plugin {ep.name!r} from distribution {dist} failed to load: "
                              f"{type(exc).__name__}: {exc}") from None
        if manager.is_registered(module):
            continue
        manager.register(module, name=f"{dist}:{ep.name}")
        provenance[module] = (dist, version)
    for plugin, dist, version in extra_plugins:
        manager.register(plugin)
        provenance[plugin] = (dist, version)
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r} implements a hook blis does not define: "
                          f"{exc}") from None
    return manager, provenance


def collect(manager: pluggy.PluginManager, provenance: dict) -> Registry:
    entries = []
    for hook_name, kind in KINDS.items():
        hook = getattr(manager.hook, hook_name)
        for impl in hook.get_hookimpls():
            dist, version = provenance.get(impl.plugin, ("unknown", ""))
            for cls in impl.function() or []:
                name = getattr(cls, "name", None)
                if not isinstance(name, str) or not name:
                    raise PluginError(f"{kind} plugin class {cls!r} from {dist} has no name")
                entries.append(PluginEntry(kind, name, cls, dist, version))
    return Registry(entries)


_registry: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _registry
    if _registry is None:
        manager, provenance = build_manager()
        _registry = collect(manager, provenance)
    return _registry
