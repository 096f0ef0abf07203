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


# ---------------------------------------------------------------------------------------------
# The example's "on-off" arrival process (plugin kind "arrival").

ON_OFF_SPEC = """
version: "2"
seed: 11
aggregate_rate: 40
clients:
  - id: bursty
    rate_fraction: 1
    arrival: {process: on-off, on_us: 250000, off_us: 750000}
    input_distribution: {type: constant, params: {value: 32}}
    output_distribution: {type: constant, params: {value: 8}}
"""


def test_the_example_arrival_process_is_listed(capsys):
    code, out, _ = run(["plugins", "list", "--json"], capsys)
    assert code == 0
    rows = {(r["kind"], r["name"]): r for r in json.loads(out)}
    assert rows[("arrival", "on-off")]["distribution"] == "blis-example-policies"


def test_a_spec_using_on_off_validates_and_generates_only_in_on_periods():
    from blis_workloads import generate_workload, parse_workload_spec
    spec = parse_workload_spec(ON_OFF_SPEC)
    spec.validate()
    requests = generate_workload(spec, 120_000_000, 3000).requests
    assert len(requests) == 3000
    # Every arrival falls in the first 250 ms of its second; the long-run rate stays 40/s.
    assert all(r.arrival_time % 1_000_000 < 250_000 for r in requests)
    rate = len(requests) / (requests[-1].arrival_time / 1e6)
    assert 36 < rate < 44, rate
    again = generate_workload(parse_workload_spec(ON_OFF_SPEC), 120_000_000, 3000).requests
    assert [r.arrival_time for r in again] == [r.arrival_time for r in requests]


@pytest.mark.parametrize("arrival,message", [
    ("{process: on-off, on_us: 250000}",
     'clients[0].arrival.off_us: missing; required by arrival process "on-off"'),
    ("{process: on-off, on_us: 250000, off_us: 0.5}",
     "clients[0].arrival.off_us: must be a whole number of µs >= 1, got 0.5"),
    ("{process: on-off, on_us: 250000, off_us: 1, duty: 3}",
     'clients[0].arrival.duty: unknown field "duty"'),
    ("{process: poisson, on_us: 250000}", 'clients[0].arrival.on_us: unknown field "on_us"'),
])
def test_on_off_parameters_are_checked_with_their_path(arrival, message):
    from blis_workloads import WorkloadError, parse_workload_spec
    text = ON_OFF_SPEC.replace("{process: on-off, on_us: 250000, off_us: 750000}", arrival)
    with pytest.raises(WorkloadError) as info:
        parse_workload_spec(text).validate()
    assert str(info.value) == message


def test_blis_run_with_the_on_off_spec(tmp_path, capsys):
    spec = tmp_path / "on-off.yaml"
    spec.write_text(ON_OFF_SPEC)
    code, out, err = run(["run", "--model", "meta-llama/llama-3.1-8b-instruct",
                          "--workload-spec", str(spec), "--num-requests", "40"], capsys)
    assert code == 0, err
    clusters = [block for block in out.split("=== Simulation Metrics ===") if '"cluster"' in block]
    assert '"completed_requests": 40' in clusters[0]


def test_pinning_excludes_the_example_arrival_process(tmp_path, monkeypatch, capsys):
    from blis_core import plugins
    spec = tmp_path / "on-off.yaml"
    spec.write_text(ON_OFF_SPEC)
    monkeypatch.setenv("BLIS_LOAD_PLUGINS", "blis")
    monkeypatch.setattr(plugins, "_registry", None)     # rediscover under the pin
    code, out, err = run(["run", "--model", "meta-llama/llama-3.1-8b-instruct",
                          "--workload-spec", str(spec), "--num-requests", "40"], capsys)
    assert code == 2
    assert err.strip().splitlines()[-1] == (
        "blis: error: Failed to generate workload: invalid workload spec: "
        'clients[0].arrival.process: unknown arrival process "on-off"; '
        "valid: constant, gamma, poisson, weibull")
    assert "Simulation Metrics" not in out
