"""The third-party example package (plugins_example/) is discovered like any plugin.

The README's test command installs it; without it these tests skip with a reason.
"""

from __future__ import annotations

import json
from importlib import metadata

import pytest

from blis_core.cli import main
from blis_core.plugins import build_manager, collect

try:
    metadata.distribution("blis-example-policies")
    INSTALLED = True
except metadata.PackageNotFoundError:
    INSTALLED = False

pytestmark = pytest.mark.skipif(
    not INSTALLED, reason="plugins_example is not installed (pip install ./plugins_example)")


def run(argv, capsys):
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_plugins_list_shows_the_example_with_its_distribution(capsys):
    code, out, _ = run(["plugins", "list", "--json"], capsys)
    assert code == 0
    rows = {(r["kind"], r["name"]): r for r in json.loads(out)}
    for key in (("routing", "shortest-queue"), ("scheduler", "lifo")):
        assert rows[key]["distribution"] == "blis-example-policies"
        assert rows[key]["version"] == "0.1.0"
        assert rows[key]["summary"]


def test_the_example_routing_policy_runs_a_simulation(capsys):
    code, out, err = run(["run", "--model", "meta-llama/llama-3.1-8b-instruct",
                          "--num-instances", "3", "--num-requests", "30", "--rate", "20",
                          "--routing-policy", "shortest-queue"], capsys)
    assert code == 0, err
    clusters = [block for block in out.split("=== Simulation Metrics ===") if '"cluster"' in block]
    assert '"completed_requests": 30' in clusters[0]


def test_pinning_excludes_the_example(monkeypatch):
    monkeypatch.setenv("BLIS_LOAD_PLUGINS", "blis")
    registry = collect(*build_manager())
    assert "shortest-queue" not in registry.names("routing")
    monkeypatch.setenv("BLIS_LOAD_PLUGINS", "blis,blis-example-policies")
    registry = collect(*build_manager())
    assert "shortest-queue" in registry.names("routing")
