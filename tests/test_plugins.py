"""The plugin manager: discovery, pinning, validation, and ``blis plugins list``."""

from __future__ import annotations

import inspect
import json
import logging
import types
from importlib import metadata

import pytest

from blis_core import hookspecs, plugins
from _shared import run_cli
from blis_core.hookspecs import hookimpl
from blis_core.plugins import KINDS, PIN_ENV, PluginError, build_manager, collect

# Hooks that no built-in plugin implements yet. When a built-in appears, remove it from here
# (test_not_yet_implemented_list_is_honest fails until you do).
NOT_YET_IMPLEMENTED: set = set()

BUILTINS = [("admission", "always-admit"), ("admission", "token-bucket"),
            ("admission", "tier-shed"), ("admission", "gaie-legacy"), ("admission", "reject-all"),
            ("routing", "round-robin"), ("routing", "least-loaded"),
            ("priority", "constant"), ("priority", "slo-based"), ("priority", "inverted-slo"),
            ("scheduler", "fcfs"), ("scheduler", "priority-fcfs"), ("scheduler", "sjf"),
            ("scheduler", "reverse-priority"),
            ("workload", "distribution"), ("workload", "chatbot")]
# The seed's pathological templates; nothing else is marked pathological.
PATHOLOGICAL = {("admission", "reject-all"), ("routing", "always-busiest"),
                ("priority", "inverted-slo"), ("scheduler", "reverse-priority")}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    """No pin from the caller's environment, and logging kept off the captured stderr."""
    monkeypatch.delenv(PIN_ENV, raising=False)
    root = logging.getLogger()
    handler = logging.NullHandler()
    root.addHandler(handler)
    yield
    root.removeHandler(handler)


def registry(extra=()):
    manager, provenance = build_manager(extra_plugins=list(extra))
    return collect(manager, provenance)


def blis_version() -> str:
    return metadata.version("blis")


# -- blis plugins list --------------------------------------------------------------------------
def test_plugins_list_table_shows_kind_name_distribution_version(capsys):
    code, out, err = run_cli(["plugins", "list"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["KIND", "NAME", "DISTRIBUTION", "VERSION"]
    rows = {}
    for parts in (line.split() for line in lines[1:]):
        if parts[2] == "(pathological)":
            parts = [parts[0], parts[1], *parts[3:]]
        rows[(parts[0], parts[1])] = parts
    for kind, name in BUILTINS:
        assert (kind, name) in rows, f"{kind}/{name} missing from:\n{out}"
        parts = rows[(kind, name)]
        assert parts[2] == "blis"
        assert parts[3] == blis_version()
    # The pathological template is marked as such.
    assert any("always-busiest (pathological)" in line for line in lines)


def test_plugins_list_json_has_the_documented_keys(capsys):
    code, out, err = run_cli(["plugins", "list", "--json"], capsys)
    assert code == 0, err
    rows = json.loads(out)
    assert isinstance(rows, list) and rows
    for row in rows:
        assert {"kind", "name", "distribution", "version", "summary",
                "pathological"} <= set(row)
        assert row["kind"] in set(KINDS.values())
    by_key = {(r["kind"], r["name"]): r for r in rows}
    for kind, name in BUILTINS:
        row = by_key[(kind, name)]
        assert row["distribution"] == "blis"
        assert row["version"] == blis_version()
        assert row["summary"], f"{name} has no summary"
    assert by_key[("routing", "always-busiest")]["pathological"] is True
    assert by_key[("routing", "round-robin")]["pathological"] is False
    builtin = {key for key, row in by_key.items() if row["distribution"] == "blis"}
    assert {key for key in builtin if by_key[key]["pathological"]} == PATHOLOGICAL


def test_plugins_list_kind_filters(capsys):
    code, out, err = run_cli(["plugins", "list", "--kind", "routing", "--json"], capsys)
    assert code == 0, err
    rows = json.loads(out)
    assert {r["kind"] for r in rows} == {"routing"}
    names = {r["name"] for r in rows}
    assert {"round-robin", "least-loaded"} <= names
    assert "always-admit" not in names and "chatbot" not in names

    code, out, err = run_cli(["plugins", "list", "--kind", "routing"], capsys)
    assert code == 0, err
    kinds = {line.split()[0] for line in out.splitlines()[1:]}
    assert kinds == {"routing"}


# -- registry building --------------------------------------------------------------------------
def test_builtin_registry_resolves_the_default_policies():
    reg = registry()
    assert reg.get("admission", "always-admit").name == "always-admit"
    assert reg.get("routing", "round-robin").name == "round-robin"
    entry = next(e for e in reg.entries("routing") if e.name == "round-robin")
    assert (entry.distribution, entry.version) == ("blis", blis_version())


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(PluginError) as info:
        registry().get("routing", "nope")
    message = str(info.value)
    assert "'nope'" in message and "round-robin" in message and "least-loaded" in message


class _Impostor:
    """A third-party routing policy that reuses a built-in name."""

    name = "round-robin"

    def route(self, request, state):  # pragma: no cover - never run
        raise AssertionError


class _DuplicatePlugin:
    @hookimpl
    def blis_routing_policies(self):
        return [_Impostor]


def test_duplicate_names_are_refused_naming_both_distributions():
    manager, provenance = build_manager(extra_plugins=[(_DuplicatePlugin(), "impostor-dist",
                                                        "1.0")])
    with pytest.raises(PluginError) as info:
        collect(manager, provenance)
    message = str(info.value)
    assert "duplicate" in message and "'round-robin'" in message
    assert "blis" in message and "impostor-dist" in message
    assert "\n" not in message


def test_third_party_plugin_is_registered_with_its_distribution():
    class Custom:
        """Send everything to instance 0."""

        name = "first-instance"

    class Plugin:
        @hookimpl
        def blis_routing_policies(self):
            return [Custom]

    reg = registry([(Plugin(), "acme-policies", "2.3")])
    assert reg.get("routing", "first-instance") is Custom
    entry = next(e for e in reg.entries("routing") if e.name == "first-instance")
    assert (entry.distribution, entry.version) == ("acme-policies", "2.3")
    assert entry.summary == "Send everything to instance 0."
    assert "round-robin" in reg.names("routing")      # built-ins still there


class _UnknownHookPlugin:
    @hookimpl
    def blis_unknown_hook(self):
        return []


def test_hook_without_a_spec_is_refused():
    with pytest.raises(PluginError) as info:
        build_manager(extra_plugins=[(_UnknownHookPlugin(), "typo-dist", "0.1")])
    message = str(info.value)
    assert "blis_unknown_hook" in message
    assert "does not define" in message


@pytest.mark.parametrize("bad_name", [None, "", 42], ids=["missing", "empty", "not-a-string"])
def test_class_without_a_name_is_refused(bad_name):
    attrs_ = {"__doc__": "A nameless policy."}
    if bad_name is not None:
        attrs_["name"] = bad_name
    nameless = type("Nameless", (), attrs_)

    class Plugin:
        @hookimpl
        def blis_admission_policies(self):
            return [nameless]

    manager, provenance = build_manager(extra_plugins=[(Plugin(), "nameless-dist", "0.1")])
    with pytest.raises(PluginError) as info:
        collect(manager, provenance)
    message = str(info.value)
    assert "no name" in message and "nameless-dist" in message and "Nameless" in message


def test_plugin_that_fails_to_import_is_reported_with_its_distribution(monkeypatch):
    class BrokenEntryPoint:
        name = "broken"
        dist = types.SimpleNamespace(name="broken-dist", version="9.9")

        def load(self):
            raise ImportError("No module named 'missing_dependency'")

    monkeypatch.setattr(plugins.metadata, "entry_points",
                        lambda group: [BrokenEntryPoint()] if group == "blis" else [])
    with pytest.raises(PluginError) as info:
        build_manager()
    message = str(info.value)
    assert "'broken'" in message and "broken-dist" in message
    assert "missing_dependency" in message


# -- BLIS_LOAD_PLUGINS --------------------------------------------------------------------------
def test_empty_pin_loads_no_distribution(monkeypatch):
    monkeypatch.setenv(PIN_ENV, "")
    reg = registry()
    assert reg.entries() == []
    assert "round-robin" not in reg.names("routing")
    with pytest.raises(PluginError) as info:
        reg.get("routing", "round-robin")
    assert "none installed" in str(info.value)


@pytest.mark.parametrize("pin", ["blis", " blis , someone-else ", "someone-else,blis"])
def test_pinning_blis_loads_the_builtins(monkeypatch, pin):
    monkeypatch.setenv(PIN_ENV, pin)
    reg = registry()
    for kind, name in BUILTINS:
        assert name in reg.names(kind)


def test_pinning_another_distribution_excludes_blis(monkeypatch):
    monkeypatch.setenv(PIN_ENV, "someone-else")
    reg = registry()
    assert reg.names("routing") == [] and reg.names("workload") == []


def test_pin_does_not_apply_to_explicit_extra_plugins(monkeypatch):
    monkeypatch.setenv(PIN_ENV, "")

    class Plugin:
        @hookimpl
        def blis_routing_policies(self):
            return [_Impostor]

    reg = registry([(Plugin(), "impostor-dist", "1.0")])
    assert reg.names("routing") == ["round-robin"]       # no clash: blis is not loaded
    assert reg.get("routing", "round-robin") is _Impostor


# -- hook specifications ------------------------------------------------------------------------
def _hookspec_names() -> list[str]:
    return sorted(name for name, func in inspect.getmembers(hookspecs, inspect.isfunction)
                  if hasattr(func, "blis_spec"))


def test_every_hookspec_is_documented_and_has_a_kind():
    names = _hookspec_names()
    assert names, "no hook specifications found"
    assert set(names) == set(KINDS), "plugins.KINDS and the hookspecs disagree"
    for name in names:
        doc = inspect.getdoc(getattr(hookspecs, name))
        assert doc and len(doc.splitlines()[0]) > 10, f"{name} has no docstring"
        assert inspect.signature(getattr(hookspecs, name)).parameters == {}, \
            f"{name}: discovery hooks take no arguments"


def test_every_hookspec_is_implemented_by_a_builtin_or_listed(monkeypatch):
    monkeypatch.setenv(PIN_ENV, "blis")
    manager, _ = build_manager()
    for name in _hookspec_names():
        implemented = bool(getattr(manager.hook, name).get_hookimpls())
        if name in NOT_YET_IMPLEMENTED:
            continue
        assert implemented, f"no built-in plugin implements {name}"


def test_not_yet_implemented_list_is_honest(monkeypatch):
    monkeypatch.setenv(PIN_ENV, "blis")
    manager, _ = build_manager()
    assert NOT_YET_IMPLEMENTED <= set(_hookspec_names())
    for name in NOT_YET_IMPLEMENTED:
        assert not getattr(manager.hook, name).get_hookimpls(), \
            f"{name} now has a built-in implementation: remove it from NOT_YET_IMPLEMENTED"


def test_builtin_classes_follow_the_hookspec_contract(monkeypatch):
    monkeypatch.setenv(PIN_ENV, "blis")
    reg = registry()
    entries = reg.entries()
    assert entries
    for entry in entries:
        assert entry.cls.name == entry.name
        assert entry.summary, f"{entry.kind}/{entry.name} has no docstring summary"
