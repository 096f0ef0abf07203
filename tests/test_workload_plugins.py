"""Arrival processes and length distributions as plugins (kinds "arrival" and "length").

What a third party relies on: the built-ins are registered like any plugin, a spec selects a
class by name, the class's declared parameters are validated with their YAML path, and the
class draws from the client's generator. And what the built-ins' fast paths must keep: Go's
exact values (the parity corpus depends on them).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from blis_core import hookimpl
from blis_core.gomath import go_exp, go_log, go_pow, go_pow_fixed, go_round, trunc_int64
from blis_core.gorand import GoRand
from blis_core.plugins import build_manager, collect
from blis_core.protocols import ArrivalProcess, LengthDistribution
from blis_workloads import WorkloadError, generate_workload, parse_workload_spec
from blis_workloads.distributions import (BlockRand, GammaArrival, ParetoLogNormalSampler,
                                          arrival_sampler, length_sampler)
from blis_workloads.spec import ArrivalSpec, DistSpec


# ---------------------------------------------------------------------------------------------
# The built-ins are plugins.

def test_builtins_are_registered_under_their_spec_names():
    from blis_workloads.plugin import blis_arrival_processes, blis_length_distributions
    arrivals, lengths = blis_arrival_processes(), blis_length_distributions()
    assert [c.name for c in arrivals] == ["poisson", "gamma", "weibull", "constant"]
    assert [c.name for c in lengths] == ["gaussian", "exponential", "pareto_lognormal",
                                         "constant", "empirical"]
    registry = collect(*build_manager())
    for cls in arrivals:
        assert registry.get("arrival", cls.name) is cls
        assert cls.__doc__.strip().splitlines()[0]
        assert isinstance(cls(1e-3, None), ArrivalProcess)
    for cls in lengths:
        assert registry.get("length", cls.name) is cls
        assert cls.__doc__.strip().splitlines()[0]
    sampler = length_sampler(DistSpec("exponential", {"mean": 5.0}))
    assert isinstance(sampler, LengthDistribution)


# ---------------------------------------------------------------------------------------------
# A third-party arrival process and length distribution, registered for these tests only.

class Steps:
    """Test arrivals: every step_us µs, plus a uniform jitter in [0, jitter_us]."""

    name = "test-steps"
    params = {"step_us": None, "jitter_us": 0.0}

    def __init__(self, rate_per_us, cv=None, *, step_us, jitter_us):
        if step_us > 1e9:
            raise ValueError("step_us too large for this test process")
        self.step, self.jitter = int(step_us), int(jitter_us)

    @classmethod
    def check(cls, cv, params):
        if params["step_us"] < 1:
            raise ValueError(f"step_us: must be >= 1, got {params['step_us']:g}")

    def sample_iat(self, rng):
        return self.step + (rng.intn(self.jitter + 1) if self.jitter else 0)


class Bimodal:
    """Test lengths: long with probability p_long, else short."""

    name = "test-bimodal"
    params = {"short": None, "long": None, "p_long": 0.5}

    def __init__(self, params, file):
        self.short, self.long, self.p_long = int(params["short"]), int(params["long"]), \
            params["p_long"]

    @classmethod
    def check(cls, params):
        if not 0 <= params["p_long"] <= 1:
            raise ValueError(f"p_long: must be in [0, 1], got {params['p_long']:g}")

    def sample(self, rng):
        return self.long if rng.float64() < self.p_long else self.short


class Backwards:
    """Test arrivals: a broken process that goes back in time."""

    name = "test-backwards"
    params = {}

    def __init__(self, rate_per_us, cv=None):
        pass

    def sample_iat(self, rng):
        return -5


class TestPlugin:
    @hookimpl
    def blis_arrival_processes(self):
        return [Steps, Backwards]

    @hookimpl
    def blis_length_distributions(self):
        return [Bimodal]


@pytest.fixture
def with_test_plugins(monkeypatch):
    from blis_core import plugins
    registry = collect(*build_manager(extra_plugins=[(TestPlugin(), "test-plugins", "0")]))
    monkeypatch.setattr(plugins, "_registry", registry)
    return registry


SPEC = """
version: "2"
seed: 5
aggregate_rate: 10
clients:
  - id: c
    rate_fraction: 1
    arrival: {process: test-steps, step_us: 1000, jitter_us: 10}
    input_distribution: {type: test-bimodal, params: {short: 10, long: 500, p_long: 0.25}}
    output_distribution: {type: constant, params: {value: 4}}
"""


def test_a_plugin_process_and_distribution_drive_generation(with_test_plugins):
    spec = parse_workload_spec(SPEC)
    spec.validate()
    requests = generate_workload(spec, 10**9, 4000).requests
    times = [r.arrival_time for r in requests]
    gaps = np.diff([0] + times)
    assert gaps.min() >= 1000 and gaps.max() <= 1010
    assert len(set(gaps.tolist())) > 5                  # the jitter draws from the client's rng
    lengths = [r.num_input for r in requests]
    assert set(lengths) == {10, 500}
    assert abs(lengths.count(500) / len(lengths) - 0.25) < 4 * math.sqrt(0.25 * 0.75 / 4000)
    again = generate_workload(parse_workload_spec(SPEC), 10**9, 4000).requests
    assert [r.arrival_time for r in again] == times
    assert all(np.array_equal(a.input_tokens, b.input_tokens) for a, b in zip(again, requests))


def test_declared_defaults_are_filled_in(with_test_plugins):
    spec = parse_workload_spec(SPEC.replace(", jitter_us: 10", "").replace(", p_long: 0.25", ""))
    requests = generate_workload(spec, 10**9, 200).requests
    assert [r.arrival_time for r in requests][:3] == [1000, 2000, 3000]
    long = sum(r.num_input == 500 for r in requests) / len(requests)
    assert 0.3 < long < 0.7


@pytest.mark.parametrize("old,new,message", [
    ("step_us: 1000, jitter_us: 10", "jitter_us: 10",
     'clients[0].arrival.step_us: missing; required by arrival process "test-steps"'),
    ("jitter_us: 10", "jitter_us: 10, burst: 2", 'clients[0].arrival.burst: unknown field "burst"'),
    ("step_us: 1000", "step_us: 0", "clients[0].arrival.step_us: must be >= 1, got 0"),
    ("step_us: 1000", "step_us: .inf",
     "clients[0].arrival.step_us must be a finite number, got +Inf"),
    ("step_us: 1000", "step_us: fast", "clients[0].arrival.step_us: expected a number, got 'fast'"),
    ("test-steps", "test-stairs",
     'clients[0].arrival.process: unknown arrival process "test-stairs"; valid: constant, '
     "gamma, {on-off}poisson, test-backwards, test-steps, weibull"),
    ("short: 10, ", "", 'clients[0].input_distribution.params.short: missing; required by '
     'length distribution "test-bimodal"'),
    ("p_long: 0.25", "p_long: 0.25, medium: 3",
     'clients[0].input_distribution.params.medium: unknown field "medium"'),
    ("p_long: 0.25", "p_long: 2", "clients[0].input_distribution.params.p_long: must be in "
     "[0, 1], got 2"),
    ("type: test-bimodal", "type: trimodal",
     'clients[0].input_distribution.type: unknown distribution type "trimodal"; valid: '
     "constant, empirical, exponential, gaussian, pareto_lognormal, test-bimodal"),
])
def test_plugin_parameters_are_validated_with_their_path(with_test_plugins, old, new, message):
    example = "on-off, " if "on-off" in with_test_plugins.names("arrival") else ""
    with pytest.raises(WorkloadError) as info:
        parse_workload_spec(SPEC.replace(old, new)).validate()
    assert str(info.value) == message.replace("{on-off}", example)


def test_a_constructor_error_and_a_negative_interval_are_one_line_errors(with_test_plugins):
    with pytest.raises(WorkloadError) as info:
        generate_workload(parse_workload_spec(SPEC.replace("1000", "2000000000")), 10**12, 10)
    assert str(info.value) == ('client "c": arrival process "test-steps": step_us too large '
                               "for this test process")
    with pytest.raises(WorkloadError) as info:
        generate_workload(parse_workload_spec(SPEC.replace(
            "{process: test-steps, step_us: 1000, jitter_us: 10}", "{process: test-backwards}")),
            10**9, 10)
    assert str(info.value) == ('client "c": arrival process "test-backwards" returned a '
                               "negative inter-arrival time (-5)")


def test_built_in_length_distributions_accept_any_keys_like_upstream():
    # Upstream ignores extra params and reports missing ones only at generation.
    spec = parse_workload_spec(SPEC.replace(
        "{process: test-steps, step_us: 1000, jitter_us: 10}", "{process: poisson}").replace(
        "type: test-bimodal, params: {short: 10, long: 500, p_long: 0.25}",
        "type: exponential, params: {mean: 20, unused: 1}"))
    spec.validate()
    assert len(generate_workload(spec, 10**9, 20).requests) == 20


# ---------------------------------------------------------------------------------------------
# The built-ins' fast paths return Go's values exactly.

def _gamma_reference(rng, rate: float, cv: float) -> int:
    """Upstream's gamma sampler, written with Go's Pow: Marsaglia-Tsang on shape + 1, then
    times U^(1/shape) (U drawn first) when shape < 1."""
    shape, scale = 1.0 / (cv * cv), 1.0 / rate * cv * cv

    def draw(shape):
        if shape < 1.0:
            u = rng.float64()
            return draw(shape + 1.0) * go_pow(u, 1.0 / shape)
        d = shape - 1.0 / 3.0
        c = 1.0 / math.sqrt(9.0 * d)
        while True:
            while True:
                x = rng.norm_float64()
                v = 1.0 + c * x
                if v > 0:
                    break
            v = v * v * v
            u = rng.float64()
            if u < 1.0 - 0.0331 * (x * x) * (x * x):
                return d * v * scale
            if go_log(u) < 0.5 * x * x + d * (1.0 - v + go_log(v)):
                return d * v * scale

    return max(1, trunc_int64(draw(shape)))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(-2**40, 2**40), cv=st.floats(1.05, 9.9),
       rate=st.floats(1e-9, 1e-2))
def test_gamma_fast_path_equals_go_pow(seed, cv, rate):
    # cv > 1 makes shape < 1: the branch that multiplies by Go's Pow.
    sampler = arrival_sampler(ArrivalSpec("gamma", cv), rate)
    assert isinstance(sampler, GammaArrival)
    fast, ref = BlockRand(seed), GoRand(seed)
    for _ in range(400):
        assert sampler.sample_iat(fast) == _gamma_reference(ref, rate, cv)
    assert fast.int63() == ref.int63()


def _pareto_reference(rng, alpha, xm, mu, sigma, mix) -> int:
    if rng.float64() < mix:
        u = rng.float64() or 5e-324
        value = xm / go_pow(u, 1.0 / alpha)
    else:
        value = go_exp(mu + sigma * rng.norm_float64())
    return max(1, trunc_int64(go_round(value)))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(-2**40, 2**40), alpha=st.floats(0.2, 5.0), xm=st.floats(0.5, 500.0),
       mu=st.floats(-2.0, 12.0), sigma=st.floats(0.0, 4.0), mix=st.floats(0.0, 1.0))
def test_pareto_lognormal_fast_path_equals_go_math(seed, alpha, xm, mu, sigma, mix):
    params = {"alpha": alpha, "xm": xm, "mu": mu, "sigma": sigma, "mix_weight": mix}
    sampler = length_sampler(DistSpec("pareto_lognormal", params))
    assert isinstance(sampler, ParetoLogNormalSampler)
    fast, ref = BlockRand(seed), GoRand(seed)
    for _ in range(400):
        assert sampler.sample(fast) == _pareto_reference(ref, alpha, xm, mu, sigma, mix)


@settings(max_examples=50, deadline=None)
@given(y=st.floats(0.01, 150.0), xs=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=50))
def test_go_pow_fixed_is_go_pow(y, xs):
    power = go_pow_fixed(y)
    for x in xs + [5e-324, 1e-300, 0.5, 0.9999999999999999]:
        assert power(x) == go_pow(x, y)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(-2**40, 2**40),
       runs=st.lists(st.integers(0, 300_000), min_size=1, max_size=12))
def test_block_rand_token_runs_across_rejections_match_gorand(seed, runs):
    # ~1.3e-5 of the words are rejected by Int31n(128000): long runs contain several, and a
    # run may straddle a refill; the words after a run must be the same too.
    fast, ref = BlockRand(seed), GoRand(seed)
    for n in runs:
        assert np.array_equal(fast.intn_array(128000, n), ref.intn_array(128000, n))
        assert fast.float64() == ref.float64()


@pytest.mark.parametrize("old,new,message", [
    ("{process: poisson}", "{process: poisson, cv: -1}",
     "clients[0].arrival.cv must be positive, got -1.000000"),
    ("{process: poisson}", "{process: weibull, cv: 0.001}",
     "clients[0].arrival.cv: weibull CV must be in [0.01, 10.4], got 0.001000"),
    ("rate_fraction: 1\n    arrival: {process: poisson}",
     "concurrency: 2\n    arrival: {process: poisson, burst: 1}",
     'clients[0].arrival.burst: unknown field "burst"'),
])
def test_builtin_arrival_checks_keep_their_messages(old, new, message):
    text = SPEC.replace("{process: test-steps, step_us: 1000, jitter_us: 10}",
                        "{process: poisson}").replace(
        "type: test-bimodal, params: {short: 10, long: 500, p_long: 0.25}",
        "type: constant, params: {value: 3}")
    with pytest.raises(WorkloadError) as info:
        parse_workload_spec(text.replace(old, new)).validate()
    assert str(info.value) == message
