"""Evaluation: distributions, fitness, anomaly counters, EvaluationResult and ``--format``.

Parity of the printed sections with upstream is checked by the corpus (l_, e_, h_ cases); these
tests pin the definitions themselves, the pathological templates' effect on the counters they
exist to move, and the Python surface ``blis_core.evaluate``.
"""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import blis_core
from _shared import run_cli
from blis_core.config import SimulationConfig
from blis_core.evaluation import (FITNESS_KEYS, AnomalyCounters, Distribution, FitnessError,
                                  _count_inversions, compute_fitness, fitness_components,
                                  parse_fitness_weights, priority_inversions)
from blis_core.latency import BlackboxLatency
from blis_core.metrics import go_json
from blis_core.report import anomaly_section, render_table, render_text
from blis_core.request import Request
from blis_core.runconfig import ConfigurationError, RunConfig
from blis_core.simulation import simulate

ALPHA = [232.46191091038054, 1.752360364195244, 3357.4400353290152]
BETA = [5752.705191348184, 17.25086436834028, 5.999143920128404]
BASE = ("--model meta-llama/llama-3.1-8b-instruct --latency-model blackbox --hardware H100 "
        "--tp 1 --alpha-coeffs 232.46191091038054,1.752360364195244,3357.4400353290152 "
        "--beta-coeffs 5752.705191348184,17.25086436834028,5.999143920128404 "
        "--total-kv-blocks 7463 --prompt-tokens 70 --prompt-tokens-stdev 35 "
        "--prompt-tokens-min 2 --prompt-tokens-max 200 --output-tokens 100 "
        "--output-tokens-stdev 50 --output-tokens-min 1 --output-tokens-max 300 "
        "--rate 400 --num-requests 200 --max-num-running-reqs 4 --log error")


def request(i: int, arrival: int = 0, n_in: int = 1, n_out: int = 1) -> Request:
    return Request(f"request_{i}", arrival, np.zeros(n_in, np.int32), np.zeros(n_out, np.int32),
                   max_output_len=n_out)


# -- distributions ------------------------------------------------------------------------------
@given(st.lists(st.integers(0, 10**9), min_size=1, max_size=200))
def test_distribution_matches_linear_interpolation(values):
    d = Distribution.of(values)
    assert d.count == len(values)
    assert d.min == min(values) and d.max == max(values)
    for p in (50, 90, 95, 99):
        assert math.isclose(getattr(d, f"p{p}"), float(np.percentile(values, p)),
                            rel_tol=1e-12, abs_tol=1e-6)
    assert math.isclose(d.mean, sum(values) / len(values), rel_tol=1e-12)
    assert d.min <= d.p50 <= d.p90 <= d.p95 <= d.p99 <= d.max


def test_empty_distribution_is_zero_inside_and_null_in_json():
    d = Distribution.of([])
    assert (d.count, d.mean, d.p99) == (0, 0.0, 0.0)
    assert d.to_dict() == {"count": 0, "mean": None, "p50": None, "p90": None, "p95": None,
                           "p99": None, "min": None, "max": None}


# -- fitness ------------------------------------------------------------------------------------
def test_fitness_weights_parse_like_upstream():
    assert parse_fitness_weights("") == {}
    assert parse_fitness_weights(" throughput : 0.5 , p99_ttft:0.3") == \
        {"throughput": 0.5, "p99_ttft": 0.3}
    assert parse_fitness_weights("throughput:1,throughput:2") == {"throughput": 2.0}


@pytest.mark.parametrize("text, fragment", [
    ("latency:1", "unknown fitness key 'latency'"),
    ("throughput", "expected key:value"),
    ("throughput:abc", "is not a number"),
    ("throughput:nan", "finite non-negative"),
    ("throughput:inf", "finite non-negative"),
    ("throughput:-1", "finite non-negative"),
    ("throughput:1,", "expected key:value"),
])
def test_bad_fitness_weights_are_refused(text, fragment):
    with pytest.raises(FitnessError, match=fragment):
        parse_fitness_weights(text)


finite = st.floats(0, 1e12, allow_nan=False)


@given(finite, finite, st.integers(0, 10**9), st.integers(0, 10**9),
       st.dictionaries(st.sampled_from(FITNESS_KEYS), st.floats(0, 100), min_size=1))
def test_fitness_components_are_in_unit_interval_and_score_is_the_weighted_sum(
        rps, tps, ttft, e2e, weights):
    metrics = blis_core.evaluation._EMPTY_METRICS
    metrics = type(metrics)(**{**{f.name: getattr(metrics, f.name)
                                  for f in metrics.__attrs_attrs__},
                               "requests_per_sec": rps, "tokens_per_sec": tps,
                               "ttft_us": Distribution.of([ttft]),
                               "e2e_us": Distribution.of([e2e])})
    components = fitness_components(metrics)
    assert all(0.0 <= v <= 1.0 for v in components.values())
    result = compute_fitness(metrics, weights)
    assert math.isclose(result.score, sum(w * components[k] for k, w in weights.items()),
                        rel_tol=1e-12, abs_tol=1e-300)
    assert list(result.components) == sorted(weights)


def test_fitness_section_prints_score_and_sorted_components(capsys):
    code, out, _ = run_cli(["run", *BASE.split(), "--fitness-weights", "throughput:0.5,mean_e2e:0.2",
                                           "--format", "json"], capsys)
    assert code == 0
    lines = out.splitlines()
    start = lines.index("=== Fitness Evaluation ===")
    assert lines[start + 1].startswith("Score: ")
    assert [line.split(":")[0] for line in lines[start + 2:start + 4]] == \
        ["  mean_e2e", "  throughput"]


@pytest.mark.parametrize("weights", ["bogus:1", "throughput:nan", "throughput:-2", "p99_ttft"])
def test_bad_fitness_flag_is_one_line_and_writes_nothing(weights, capsys, tmp_path):
    metrics = tmp_path / "m.json"
    code, out, err = run_cli(["run", *BASE.split(), "--fitness-weights", weights,
                                             "--metrics-path", str(metrics)], capsys)
    assert code == 2
    assert out == ""
    assert err.startswith("blis: error: --fitness-weights: ") and err.count("\n") == 1
    assert not metrics.exists()


# -- anomaly counters and the pathological templates --------------------------------------------
@given(st.lists(st.integers(0, 50), max_size=40))
def test_inversion_count_matches_the_quadratic_definition(values):
    brute = sum(1 for i in range(len(values)) for j in range(i + 1, len(values))
                if values[i] > 2 * values[j])
    assert _count_inversions(values) == brute


def test_priority_inversions_are_zero_for_the_constant_policy():
    config = SimulationConfig(latency=BlackboxLatency(ALPHA, BETA))
    reqs = [request(i, 1000 * (10 - i), 50 * (10 - i), 20 * (10 - i)) for i in range(10)]
    result = simulate(config, sorted(reqs, key=lambda r: r.arrival_time))
    assert priority_inversions(result.instances, "constant") == 0
    assert priority_inversions(result.instances, "") == 0
    manual = priority_inversions(result.instances, "slo-based")
    done = sorted((r for r in result.requests if r.state == "completed"),
                  key=lambda r: (r.arrival_time, r.id))
    assert manual == sum(1 for i, a in enumerate(done) for b in done[i + 1:]
                         if a.e2e > 2 * b.e2e)


def test_priority_inversions_do_not_depend_on_request_ids_of_tied_arrivals():
    # A long and a short request arriving at the same tick: whichever ID sorts first, the pair
    # is not an inversion (a run and the replay of its trace name requests differently).
    config = SimulationConfig(latency=BlackboxLatency(ALPHA, BETA))
    counts = set()
    for long_id, short_id in ((0, 1), (1, 0)):
        reqs = [request(long_id, 5000, 400, 300), request(short_id, 5000, 10, 2)]
        result = simulate(config, reqs)
        e2e = sorted(r.e2e for r in result.requests)
        assert e2e[1] > 2 * e2e[0]  # one order of the pair would count it
        counts.add(priority_inversions(result.instances, "slo-based"))
    assert counts == {0}


def test_anomaly_section_lists_shed_tiers_sorted():
    lines = anomaly_section(AnomalyCounters(rejected_requests=3,
                                            shed_by_tier={"standard": 1, "batch": 2}))
    assert lines[:6] == ["=== Anomaly Counters ===", "Priority Inversions: 0",
                         "HOL Blocking Events: 0", "Rejected Requests (Admission): 3",
                         "  Shed (batch): 2", "  Shed (standard): 1"]
    assert anomaly_section(AnomalyCounters(timed_out_requests=5, preemptions=9)) == []


# Each template against the same overloaded workload under a sane counterpart: the counter the
# template exists to move must move, from the sane run's value to a strictly larger one.
PATHOLOGICAL = [
    ("reject-all", "--admission-policy always-admit", "--admission-policy reject-all",
     "rejected_requests"),
    ("inverted-slo", "--priority-policy slo-based --scheduler priority-fcfs",
     "--priority-policy inverted-slo --scheduler priority-fcfs", "priority_inversions"),
    ("reverse-priority", "--priority-policy slo-based --scheduler priority-fcfs",
     "--priority-policy slo-based --scheduler reverse-priority", "priority_inversions"),
    ("always-busiest", "--num-instances 3 --routing-policy round-robin",
     "--num-instances 3 --routing-policy always-busiest", "hol_blocking_events"),
]


def test_every_pathological_template_is_covered():
    registry = blis_core.get_registry()
    marked = {e.name for e in registry.entries() if e.pathological
              and e.distribution == "blis"}
    assert marked == {name for name, *_ in PATHOLOGICAL}


@pytest.mark.parametrize("name, sane, pathological, counter", PATHOLOGICAL,
                         ids=[p[0] for p in PATHOLOGICAL])
def test_pathological_template_moves_its_counter(name, sane, pathological, counter):
    good = blis_core.evaluate(f"{BASE} {sane}")
    bad = blis_core.evaluate(f"{BASE} {pathological}")
    assert getattr(bad.anomalies, counter) > getattr(good.anomalies, counter)
    if name == "reject-all":
        assert bad.metrics.rejected_requests == bad.metrics.arrived == 200
        assert bad.metrics.completed == 0
        assert bad.anomalies.shed_by_tier == {"standard": 200}
    if name == "always-busiest":
        handled = {r.assigned_instance for r in bad.simulation.requests}
        assert handled == {"instance_0"}


# -- EvaluationResult and evaluate() ------------------------------------------------------------
def test_evaluate_matches_what_the_cli_prints(capsys):
    args = BASE + " --num-instances 2 --fitness-weights throughput:0.5,p99_ttft:0.3"
    result = blis_core.evaluate(args)
    code, out, _ = run_cli(["run", *args.split(), "--format", "json"], capsys)
    assert code == 0
    assert out == render_text(result)
    assert f"Score: {result.score:.6f}" in out
    m = result.metrics
    assert m.injected == m.completed + m.still_queued + m.still_running + \
        m.dropped_unservable + m.timed_out
    assert m.arrived == m.injected + m.rejected_requests + m.routing_rejections == 200
    assert result.summary["completed_requests"] == m.completed
    assert m.e2e_us.count == m.completed


def test_evaluate_is_deterministic_and_fresh_per_call():
    config = RunConfig.from_args(BASE + " --fitness-weights mean_e2e:1")
    first = blis_core.evaluate(config)
    second = blis_core.evaluate(config)
    assert go_json(first.to_dict()) == go_json(second.to_dict())
    assert "NaN" not in json.dumps(first.to_dict())


def test_a_bundle_path_an_object_and_the_flags_agree(tmp_path):
    from blis_core.bundle import load_bundle

    path = tmp_path / "bundle.yaml"
    path.write_text("priority:\n  policy: inverted-slo\nscheduler: priority-fcfs\n")
    by_path = blis_core.evaluate(BASE, str(path))
    by_object = blis_core.evaluate(BASE, load_bundle(str(path)))
    by_flags = blis_core.evaluate(BASE + " --priority-policy inverted-slo --scheduler priority-fcfs")
    assert go_json(by_path.to_dict()) == go_json(by_object.to_dict()) == \
        go_json(by_flags.to_dict())
    assert by_path.anomalies.priority_inversions > 0


def test_evaluate_fitness_override_and_errors():
    result = blis_core.evaluate(BASE, fitness_weights={"throughput": 1.0})
    assert result.fitness is not None and list(result.fitness.components) == ["throughput"]
    assert result.score == result.fitness.components["throughput"]
    assert blis_core.evaluate(BASE).fitness is None
    with pytest.raises(FitnessError):
        blis_core.evaluate(BASE, fitness_weights={"latency": 1.0})
    with pytest.raises(ConfigurationError, match="--num-instances must be >= 1"):
        RunConfig.from_args(BASE + " --num-instances 0")
    with pytest.raises(ConfigurationError, match="--routing-policy"):
        blis_core.evaluate(BASE + " --routing-policy nope")


def test_evaluate_a_hand_built_simulation_config():
    config = SimulationConfig(latency=BlackboxLatency(ALPHA, BETA))
    result = blis_core.evaluate(config, workload=lambda: [request(i, 1000 * i, 20, 5)
                                                          for i in range(5)],
                                fitness_weights="throughput:1")
    assert result.metrics.completed == 5
    with pytest.raises(ConfigurationError, match="workload="):
        blis_core.evaluate(config)


def test_no_completions_warns_that_latency_fitness_is_vacuous():
    # The library logs on the "blis" logger (the CLI is what prints that on stderr); listen
    # there directly, since a CLI run earlier in this process sets its level and stops it
    # propagating.
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("blis")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    try:
        result = blis_core.evaluate(BASE + " --admission-policy reject-all",
                                    fitness_weights="p99_ttft:1")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert result.score == 1.0
    assert result.metrics.ttft_us.to_dict()["p99"] is None
    assert any("fitness: p99_ttft has no samples" in r.getMessage() for r in records)


# -- --format table ------------------------------------------------------------------------------
def test_table_shows_the_same_numbers_as_json(capsys):
    args = ["run", *BASE.split(), "--num-instances", "2", "--fitness-weights", "throughput:1"]
    code, table, _ = run_cli(args + ["--format", "table"], capsys)
    assert code == 0
    code, text, _ = run_cli(args + ["--format", "json"], capsys)
    blocks = [json.loads(b.split("}\n")[0] + "}") for b in text.split("=== Simulation Metrics ===\n")[1:]]
    by_id = {b["instance_id"]: b for b in blocks}
    lines = table.splitlines()
    header = lines[0].split()
    assert header == ["metric", "cluster", "instance_0", "instance_1"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:] if line and
            not line.startswith("=") and line.split()[0] in by_id["cluster"]}
    assert set(rows) == set(by_id["cluster"]) - {"instance_id"}
    for key, cells in rows.items():
        for column, cell in zip(header[1:], cells):
            expected = by_id[column][key]
            assert float(cell.replace(",", "")) == pytest.approx(expected, abs=5e-4), key
    assert "=== Fitness Evaluation ===" in table


def test_auto_format_is_json_when_stdout_is_not_a_terminal(capsys):
    code, out, _ = run_cli(["run", *BASE.split()], capsys)
    assert code == 0 and out.startswith("=== Simulation Metrics ===\n{")


def test_table_renderer_handles_a_run_without_completions():
    result = blis_core.evaluate(BASE + " --admission-policy reject-all")
    table = render_table(result)
    assert "completed_requests" in table and "nan" not in table.lower()

