"""Length and arrival samplers: upstream's formulas and exact draw order."""

from __future__ import annotations

import math
import random

import pytest

from blis_core.gomath import go_round
from blis_core.gorand import GoRand
from blis_workloads import WorkloadError
from blis_workloads.distributions import (NormalizedExponentialArrival, arrival_sampler,
                                          go_pow, length_sampler, round_half_away)
from blis_workloads.spec import ArrivalSpec, DistSpec


def test_round_half_away_equals_go_round():
    rnd = random.Random(1)
    values = [0.5, -0.5, 1.5, 2.5, -2.5, 0.49999999999999994, -0.49999999999999994, 4503599627370495.5]
    values += [rnd.uniform(-1e6, 1e6) for _ in range(20000)]
    values += [k + 0.5 for k in range(-50, 50)]
    for x in values:
        assert round_half_away(x) == int(go_round(x)), x


def test_go_pow_special_cases_and_accuracy():
    assert go_pow(2.0, 10.0) == 1024.0 and go_pow(9.0, 0.5) == 3.0 and go_pow(4.0, -0.5) == 0.5
    assert go_pow(5.0, 0.0) == 1.0 and go_pow(1.0, math.inf) == 1.0
    # Go multiplies mantissas by repeated squaring: a few ulps from libm's pow, never more.
    rnd = random.Random(2)
    for _ in range(5000):
        x, y = rnd.uniform(1e-9, 1.0), rnd.uniform(0.05, 5.0)
        assert math.isclose(go_pow(x, y), x ** y, rel_tol=1e-14)


def test_gaussian_draws_once_unless_degenerate():
    rng, ref = GoRand(42), GoRand(42)
    s = length_sampler(DistSpec("gaussian", {"mean": 100.0, "std_dev": 30.0, "min": 1.0,
                                             "max": 150.0}))
    assert s.sample(rng) == min(150, max(1, int(go_round(ref.norm_float64() * 30.0 + 100.0))))
    fixed = length_sampler(DistSpec("gaussian", {"mean": 0.0, "std_dev": 9.0, "min": 7.9,
                                                 "max": 7.2}))
    assert fixed.sample(rng) == 7                  # min == max after truncation: no draw
    assert rng.int63() == ref.int63()


def test_gaussian_and_constant_floor_at_one():
    rng = GoRand(1)
    s = length_sampler(DistSpec("gaussian", {"mean": -50.0, "std_dev": 1.0, "min": -100.0,
                                             "max": 0.0}))
    assert s.sample(rng) == 1
    assert length_sampler(DistSpec("constant", {"value": 0.7})).sample(rng) == 1
    assert length_sampler(DistSpec("constant", {})).sample(rng) == 1
    assert length_sampler(DistSpec("constant", {"value": 12.9})).sample(rng) == 12


def test_exponential_and_pareto_lognormal_draw_order():
    rng, ref = GoRand(5), GoRand(5)
    assert length_sampler(DistSpec("exponential", {"mean": 64.0})).sample(rng) == max(
        1, int(go_round(ref.exp_float64() * 64.0)))
    params = {"alpha": 1.5, "xm": 50.0, "mu": 5.5, "sigma": 1.2, "mix_weight": 0.3}
    s = length_sampler(DistSpec("pareto_lognormal", params))
    for _ in range(200):
        got = s.sample(rng)
        if ref.float64() < 0.3:
            want = 50.0 / go_pow(ref.float64(), 1.0 / 1.5)
        else:
            want = math.exp(5.5 + 1.2 * ref.norm_float64())
        assert got == max(1, int(go_round(want)))


def test_empirical_cdf_and_single_bin():
    rng, ref = GoRand(3), GoRand(3)
    s = length_sampler(DistSpec("empirical", {"30": 0.25, "10": 0.5, "20": 0.0, "40x": 0.25}))
    # Keys parse as leading integers; the zero-probability bin is dropped.
    assert s.values == [10, 30, 40] and s.cdf == [0.5, 0.75, 1.0]
    for _ in range(100):
        u = ref.float64()
        assert s.sample(rng) == (10 if u <= 0.5 else 30 if u <= 0.75 else 40)
    single = length_sampler(DistSpec("empirical", {"8": 1.0}))
    assert single.sample(rng) == 8 and rng.int63() == ref.int63()


@pytest.mark.parametrize("dist,message", [
    (DistSpec("gaussian", {"mean": 1.0}), 'distribution requires parameter "std_dev"'),
    (DistSpec("empirical"), "empirical distribution requires a file path or inline params"),
    (DistSpec("empirical", {"abc": 1.0}), 'empirical PDF key "abc" is not an integer'),
    (DistSpec("zipf"), 'unknown distribution type "zipf"'),
])
def test_length_sampler_errors(dist, message):
    with pytest.raises(WorkloadError, match=f"^{message}$"):
        length_sampler(dist)


def test_constant_arrival_truncates_the_interval():
    assert arrival_sampler(ArrivalSpec("constant"), 10 / 1e6).sample_iat(None) == 99999
    assert arrival_sampler(ArrivalSpec("constant"), 1e9).sample_iat(None) == 1
    assert arrival_sampler(ArrivalSpec("constant"), 0.0).sample_iat(None) == 10**15 - 1


def test_poisson_gamma_weibull_iats():
    rng, ref = GoRand(8), GoRand(8)
    poisson = arrival_sampler(ArrivalSpec("poisson"), 1e-3)
    assert poisson.sample_iat(rng) == max(1, int(ref.exp_float64() / 1e-3))
    for process, cv in (("gamma", 3.5), ("gamma", 0.5), ("weibull", 2.0), ("gamma", 20.0)):
        sampler = arrival_sampler(ArrivalSpec(process, cv), 1e-4)
        iats = [sampler.sample_iat(rng) for _ in range(2000)]
        assert min(iats) >= 1
        mean = sum(iats) / len(iats)
        assert 5000 < mean < 20000, (process, cv, mean)


def test_normalized_exponential_counts_and_exhausts():
    timer = NormalizedExponentialArrival(GoRand(4), 100, 60_000_000)
    iats = [timer.sample_iat(None) for _ in range(100)]
    assert all(i >= 1 for i in iats) and abs(sum(iats) - 60_000_000) < 100
    assert timer.sample_iat(None) == 0
