"""Strict spec loading, validation and the CLI workload checks (messages included)."""

from __future__ import annotations

import math

import pytest

from _shared import requires_shared, shared_dir
from blis_core.plugins import get_registry
from blis_workloads import (PRESETS, WorkloadError, WorkloadOptions, build_cli_workload,
                            load_workload_spec, parse_workload_spec, presets_from_defaults)
from blis_workloads.spec import go_fmt_f, go_fmt_v

_CLIENT = """
version: "2"
seed: 3
aggregate_rate: 10
clients:
  - id: c
    rate_fraction: 1
    arrival: {process: poisson}
    input_distribution: {type: constant, params: {value: 10}}
    output_distribution: {type: constant, params: {value: 5}}
"""


def _error(text: str) -> str:
    with pytest.raises(WorkloadError) as info:
        parse_workload_spec(text).validate()
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("text,message", [
    ("seeed: 1\n", 'seeed: unknown field "seeed"'),
    (_CLIENT + "    shape: 2\n", 'clients[0].shape: unknown field "shape"'),
    (_CLIENT.replace("{process: poisson}", "{process: poisson, shape: 1}"),
     'clients[0].arrival.shape: unknown field "shape"'),
    ("inference_perf: {stages: [{rate: 1, duration: 2, ramp: 3}]}\n",
     'inference_perf.stages[0].ramp: unknown field "ramp"'),
    ("seed: 1.5\n", "seed: expected an integer, got 1.5"),
    ("seed: x\n", "seed: expected an integer, got 'x'"),
    ("aggregate_rate: true\n", "aggregate_rate: expected a number, got True"),
    ("clients: {id: a}\n", "clients: expected a list, got {'id': 'a'}"),
    ("seed: 1\nseed: 2\n", 'line 2: mapping key "seed" already defined'),
    (_CLIENT.replace("poisson", "foo"),
     'clients[0].arrival.process: unknown arrival process "foo"; valid: '
     + ", ".join(get_registry().names("arrival"))),
    (_CLIENT.replace("type: constant, params: {value: 10}", "type: zipf"),
     'clients[0].input_distribution.type: unknown distribution type "zipf"; valid: '
     + ", ".join(get_registry().names("length"))),
    (_CLIENT.replace("rate_fraction: 1", "rate_fraction: 0"),
     "clients[0].rate_fraction must be positive, got 0.000000"),
    (_CLIENT.replace("aggregate_rate: 10", "aggregate_rate: .nan"),
     "aggregate_rate must be a finite number, got NaN"),
    (_CLIENT.replace("id: c", "id: c\n    slo_class: gold"),
     'clients[0].slo_class: unknown slo_class "gold"; valid: critical, standard, sheddable, '
     'batch, background, or empty'),
    (_CLIENT + "    timeout: -1\n", "clients[0].timeout: must be non-negative, got -1"),
    (_CLIENT + "    lifecycle: {windows: [{start_us: 5, end_us: 5}]}\n",
     "clients[0].lifecycle.windows[0].end_us: must be > start_us (5), got 5"),
    (_CLIENT + "    reasoning: {multi_turn: {max_rounds: 0}}\n",
     "clients[0].reasoning.multi_turn.max_rounds: must be >= 1, got 0"),
    (_CLIENT.replace("poisson}", "weibull, cv: 20}"),
     "clients[0].arrival.cv: weibull CV must be in [0.01, 10.4], got 20.000000"),
    ("category: chat\n" + _CLIENT,
     'category: unknown category "chat"; valid: language, multimodal, reasoning'),
    ("aggregate_rate: 1\n", "at least one client, cohort, or servegen_data path required"),
])
def test_spec_errors_name_the_yaml_path(text, message):
    assert _error(text) == message


def test_yaml_1_2_booleans_and_scalar_strings():
    spec = parse_workload_spec(_CLIENT.replace("id: c", "id: on\n    tenant_id: 7"))
    assert spec.clients[0].id == "on" and spec.clients[0].tenant_id == "7"
    assert spec.version == "2"


def test_v1_upgrade_renames_client_slo_classes():
    spec = parse_workload_spec(
        _CLIENT.replace('version: "2"', 'version: "1"').replace("id: c",
                                                                 "id: c\n    slo_class: realtime"))
    assert spec.version == "2" and spec.clients[0].slo_class == "critical"
    spec = parse_workload_spec(_CLIENT.replace('version: "2"\n', "").replace(
        "id: c", "id: c\n    slo_class: interactive"))
    assert spec.version == "2" and spec.clients[0].slo_class == "standard"


def test_json_is_valid_yaml():
    spec = parse_workload_spec('{"seed": 5, "aggregate_rate": 2.5, "clients": []}')
    assert (spec.seed, spec.aggregate_rate) == (5, 2.5)


@requires_shared
@pytest.mark.parametrize("name", ["inference-perf-shared-prefix.yaml", "multiturn-chat-demo.yaml",
                                  "prefix-affinity-demo.yaml", "servegen-language.yaml",
                                  "regression_workload_cache_warmup.yaml",
                                  "regression_workload_load_spikes.yaml",
                                  "regression_workload_multiturn.yaml"])
def test_upstream_example_specs_load(name):
    spec = load_workload_spec(shared_dir() / "reference" / "upstream" / "examples" / name)
    assert spec.version == "2"


def test_missing_spec_file():
    with pytest.raises(WorkloadError, match="^Failed to load workload spec: reading workload"):
        build_cli_workload(WorkloadOptions(), spec_path="/nonexistent/spec.yaml")


def test_go_formatting_helpers():
    assert [go_fmt_v(x) for x in (0.0, -1.0, 1e-05, 0.5, 123456.0, 1e6, math.inf, math.nan)] == [
        "0", "-1", "1e-05", "0.5", "123456", "1e+06", "+Inf", "NaN"]
    assert go_fmt_f(-math.inf) == "-Inf" and go_fmt_f(0.25) == "0.250000"


# ---------------------------------------------------------------------------------------------
# CLI checks, in upstream's order (engine.md §8.2 item 3).

def _cli_error(**kwargs) -> str:
    workload = kwargs.pop("workload", "distribution")
    spec_path = kwargs.pop("spec_path", None)
    horizon = kwargs.pop("horizon", None)
    explicit = frozenset(kwargs.pop("explicit", ()))
    with pytest.raises(WorkloadError) as info:
        build_cli_workload(WorkloadOptions(explicit=explicit, **kwargs), workload, spec_path,
                           horizon)
    return str(info.value)


@pytest.mark.parametrize("kwargs,message", [
    (dict(num_requests=-1), "--num-requests must be >= 0, got -1"),
    (dict(prefix_tokens=-2), "--prefix-tokens must be >= 0, got -2"),
    (dict(concurrency=-1), "--concurrency must be >= 0, got -1"),
    (dict(think_time_ms=-5), "--think-time-ms must be >= 0, got -5"),
    (dict(concurrency=2, explicit={"rate"}),
     "--concurrency and --rate are mutually exclusive; use one or the other"),
    (dict(concurrency=2, spec_path="x.yaml"),
     "--concurrency cannot be used with --workload-spec; define concurrency in the spec file "
     "using clients[].concurrency instead"),
    (dict(rate=0.0), "--rate must be a finite value > 0, got 0"),
    (dict(rate=math.inf), "--rate must be a finite value > 0, got +Inf"),
    (dict(prompt_tokens_min=0), "--prompt-tokens-min must be >= 1, got 0"),
    (dict(output_tokens_max=0), "--output-tokens-max must be >= 1, got 0"),
    (dict(output_tokens_stdev=-1), "--output-tokens-stdev must be >= 0, got -1"),
    (dict(prompt_tokens_min=600, prompt_tokens_max=500),
     "--prompt-tokens-min (600) must be <= --prompt-tokens-max (500)"),
    (dict(prompt_tokens=9000),
     "prompt-tokens and prompt-tokens-stdev should be in range [prompt-tokens-min, "
     "prompt-tokens-max]"),
    # The carry-over quirk: a stdev below the minimum is fatal too.
    (dict(output_tokens_stdev=1, output_tokens_min=2),
     "output-tokens and output-tokens-stdev should be in range [output-tokens-min, "
     "output-tokens-max]"),
    (dict(workload="traces"),
     'Undefined workload "traces". Use one among (chatbot, summarization, contentgen, '
     'multidoc) or --workload-spec'),
    (dict(workload="chatbot", rate=-1.0), "--rate must be a finite value > 0, got -1"),
    (dict(num_requests=0, explicit={"num-requests"}),
     "Workload requires either num_requests or --horizon to bound generation"),
])
def test_cli_workload_errors(kwargs, message):
    assert _cli_error(**kwargs) == message


def test_presets_skip_the_length_checks_and_use_the_table():
    options = WorkloadOptions(rate=5.0, num_requests=20, prompt_tokens_min=0)
    spec = build_cli_workload(options, "summarization").spec
    client = spec.clients[0]
    assert client.input_distribution.params == {"mean": 4096.0, "std_dev": 500.0, "min": 100.0,
                                                "max": 8192.0}
    assert (spec.aggregate_rate, spec.num_requests, client.prefix_group) == (5.0, 20, "")


def test_presets_from_defaults_file_layout():
    table = presets_from_defaults({"workloads": {"tiny": {"prompt_tokens": 4}}})
    assert table["tiny"].prompt_tokens == 4 and table["tiny"].prefix_tokens == 0
    assert set(PRESETS) == {"chatbot", "summarization", "contentgen", "multidoc"}


def test_spec_seed_and_horizon_overrides(tmp_path):
    path = tmp_path / "w.yaml"
    path.write_text(_CLIENT + "horizon: 2000000\nnum_requests: 7\n")
    cli = build_cli_workload(WorkloadOptions(seed=99), spec_path=str(path))
    assert (cli.spec.seed, cli.horizon, cli.max_requests) == (3, 2_000_000, 7)
    cli = build_cli_workload(WorkloadOptions(seed=99, num_requests=4,
                                             explicit=frozenset({"seed", "num-requests"})),
                             spec_path=str(path), horizon=500)
    assert (cli.spec.seed, cli.horizon, cli.max_requests) == (99, 500, 4)


def test_generation_errors_are_prefixed(tmp_path):
    path = tmp_path / "w.yaml"
    path.write_text(_CLIENT.replace("rate_fraction: 1", "rate_fraction: -1") + "num_requests: 5\n")
    with pytest.raises(WorkloadError) as info:
        build_cli_workload(WorkloadOptions(), spec_path=str(path))
    assert str(info.value) == ("Failed to generate workload: invalid workload spec: "
                               "clients[0].rate_fraction must be positive, got -1.000000")


def test_plugin_generators_are_named_and_documented():
    from blis_workloads.plugin import blis_workload_generators
    from blis_workloads.scenarios import SCENARIOS
    classes = blis_workload_generators()
    assert [c.name for c in classes] == ["distribution", "chatbot", "summarization",
                                         "contentgen", "multidoc"] + [s.name for s in SCENARIOS]
    for cls in classes:
        assert cls.__doc__.strip().splitlines()[0]
        spec = cls().to_spec(WorkloadOptions(rate=2.0, num_requests=3))
        assert spec.aggregate_rate == 2.0
        if cls not in SCENARIOS:
            assert spec.clients[0].id == "distribution"
