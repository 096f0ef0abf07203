"""A workload spec's empirical behaviour converges to what it declares.

Every property writes a random spec as YAML text, generates a few thousand requests with
``generate_workload`` and checks a sample statistic (mean inter-arrival time, per-client counts
and fractions, mean token lengths) against the value the spec declares. Nothing is tuned: each
acceptance region is derived from the sample size and the declared distribution so that a
correct generator fails a check with probability at most ``DELTA`` = 1e-9 (two-sided):

* Sums of gamma draws (poisson and gamma inter-arrival times, exponential lengths) use the
  Chernoff bound of the gamma distribution, which holds at every sample size, not just in the
  limit: for S ~ Gamma(A, θ) and g(r) = r - 1 - ln r,
  ``P(S <= r·Aθ) <= exp(-A·g(r))`` for r < 1 and ``P(S >= r·Aθ) <= exp(-A·g(r))`` for r > 1.
  Inverted, it bounds a mean, or the number of arrivals of a client before a horizon.
* Means of bounded values (clamped gaussian and empirical lengths, indicators) use Bernstein's
  inequality, also exact: ``P(|mean - μ| >= t) <= 2·exp(-n t² / (2σ² + 2Mt/3))`` when every
  value is within M of μ.
* Weibull inter-arrival times and pareto-lognormal lengths have no moment generating function
  to bound; they use the normal approximation of the mean with a first-order Cornish-Fisher
  correction for its skewness, ``(Z + γ_mean·(Z² - 1)/6)·σ/√n`` with Z the normal 1 - DELTA/2
  quantile. This is the only approximate bound. It is safe because, for the parameters drawn,
  the mean's skewness is below 0.08 (the correction already widens the bound by up to 0.5σ,
  more than the next Edgeworth term could need at 6σ), and because the Pareto component keeps
  alpha >= 5 and a weight >= 0.05: a single draw large enough to move the mean past the bound on
  its own, which the normal approximation ignores, has probability below 1e-7 per example
  (evaluated over the parameter ranges; see ``_pareto_lognormal_moments``).

Integers: the generator truncates inter-arrival times and rounds lengths, then floors both at 1.
Every generated integer is therefore within 1 of its continuous draw, so every bound on a mean
of draws widens by 1 (a sum of n draws by n).

A check per client count, mean and threshold (fraction checks follow from the per-client count
bounds and add no failure probability): fewer than 25 per example, about 100 examples per run,
so a correct generator fails a run of this file with probability below 1e-5. Hypothesis chooses
the spec (seed included) and the spec fixes the requests, so a failure replays exactly. Each
property also asserts that its acceptance region is narrow enough to matter (for example ±6% of
the rate at cv 1), so a wrong rate, fraction or distribution parameter does not pass unnoticed.
"""

from __future__ import annotations

import math
from collections import Counter

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from blis_workloads import MAX_HORIZON, generate_workload, parse_workload_spec

DELTA = 1e-9
_LOG_TAIL = math.log(2.0 / DELTA)     # exp(-_LOG_TAIL) = DELTA/2: one tail of a check


def _normal_quantile(tail: float) -> float:
    """z with P(N(0,1) > z) = tail."""
    return _bisect(lambda z: tail - 0.5 * math.erfc(z / math.sqrt(2.0)), 0.0, 40.0)


def _bisect(f, lo: float, hi: float) -> float:
    """The root of an increasing ``f`` on [lo, hi]."""
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if f(mid) < 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


Z = _normal_quantile(DELTA / 2)       # 6.11

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
US_PER_S = 1_000_000


# --------------------------------------------------------------------------------------------
# Bounds.

def _g(r: float) -> float:
    return r - 1.0 - math.log(r)


def gamma_mean_band(shape_total: float) -> tuple[float, float]:
    """(lo, hi): lo·E[S] < S < hi·E[S] except with probability DELTA, for S ~ Gamma(shape_total)."""
    lo = _bisect(lambda r: _LOG_TAIL - shape_total * _g(r), 1e-300, 1.0)
    hi = _bisect(lambda r: shape_total * _g(r) - _LOG_TAIL, 1.0, 1e9)
    return lo, hi


def bernstein_halfwidth(n: int, variance: float, spread: float) -> float:
    """t with P(|mean of n - μ| >= t) <= DELTA for values within ``spread`` of μ."""
    a = 2.0 * spread * _LOG_TAIL / 3.0
    return (a + math.sqrt(a * a + 8.0 * n * variance * _LOG_TAIL)) / (2.0 * n)


def skewed_normal_halfwidth(n: int, sd: float, skewness: float) -> float:
    """Normal approximation of a mean's deviation, corrected for the mean's skewness."""
    skew_of_mean = abs(skewness) / math.sqrt(n)
    return (Z + skew_of_mean * (Z * Z - 1.0) / 6.0) * sd / math.sqrt(n)


def renewal_count_band(horizon: int, mean_iat: float, shape: float) -> tuple[int, int]:
    """Bounds on the arrivals before ``horizon`` of a client whose inter-arrival times are
    within 1 µs of Gamma(shape, mean_iat/shape) draws (shape 1: poisson), each side violated
    with probability at most DELTA/2.

    N >= n iff the n-th arrival T_n < horizon, and T_n > X_n - n with X_n ~ Gamma(n·shape), so
    P(N >= n) <= P(X_n < horizon + n); likewise P(N < n) <= P(X_n > horizon - n).
    """
    def too_many(n: int) -> bool:          # P(N >= n) <= DELTA/2
        r = (horizon + n) / (n * mean_iat)
        return r < 1.0 and n * shape * _g(r) >= _LOG_TAIL

    def too_few(n: int) -> bool:           # P(N < n) <= DELTA/2
        r = (horizon - n) / (n * mean_iat)
        return r > 1.0 and n * shape * _g(r) >= _LOG_TAIL

    expected = horizon / mean_iat
    lo_n, hi_n = max(1, int(expected)), int(expected) + 1
    while not too_many(hi_n):
        hi_n *= 2
    a, b = max(1, int(expected)), hi_n           # smallest n with too_many(n), in (a, b]
    while b - a > 1:
        mid = (a + b) // 2
        a, b = (a, mid) if too_many(mid) else (mid, b)
    upper = b - 1                                 # N <= upper
    if not too_few(1):
        return 0, upper
    a, b = 1, lo_n + 1                            # largest n with too_few(n), in [a, b)
    while b - a > 1:
        mid = (a + b) // 2
        a, b = (mid, b) if too_few(mid) else (a, mid)
    return a, upper


def _regularized_lower_gamma(a: float, x: float) -> float:
    """P(a, x) by its power series (converges for every x; used with x = a <= 16)."""
    term = math.exp(a * math.log(x) - x - math.lgamma(a + 1.0))
    total, n = term, 0
    while term > 1e-18 * total:
        n += 1
        term *= x / (a + n)
        total += term
    return total


def _weibull_cv(k: float) -> float:
    g1, g2 = math.gamma(1.0 + 1.0 / k), math.gamma(1.0 + 2.0 / k)
    return math.sqrt(g2 / (g1 * g1) - 1.0)


def _weibull_shape(cv: float) -> float:
    # cv(k) decreases in k: bisect on -cv.
    return _bisect(lambda k: cv - _weibull_cv(k), 0.05, 200.0)


# The generator solves the weibull shape for a CV within 0.001 of the declared one (upstream's
# bisection tolerance); the bounds allow any CV in that range.
WEIBULL_CV_TOLERANCE = 0.001


def _weibull_moments(cv: float) -> tuple[float, float]:
    """(sd/mean, skewness) at the most dispersed shape the generator may have chosen."""
    k = _weibull_shape(cv + WEIBULL_CV_TOLERANCE)
    g1, g2, g3 = (math.gamma(1.0 + i / k) for i in (1, 2, 3))
    var = g2 - g1 * g1
    skew = (g3 - 3.0 * g1 * var - g1 ** 3) / var ** 1.5
    return math.sqrt(var) / g1, skew


def below_probability(process: str, cv: float, fraction: float) -> tuple[float, float]:
    """Range of P(IAT < fraction · mean) for the declared process and CV: the shape of the
    distribution, which the mean alone does not check."""
    if process == "poisson":
        p = 1.0 - math.exp(-fraction)
        return p, p
    if process == "gamma":
        shape = 1.0 / (cv * cv)
        p = _regularized_lower_gamma(shape, shape * fraction)
        return p, p
    values = []
    for i in range(9):
        c = cv - WEIBULL_CV_TOLERANCE + i * (2 * WEIBULL_CV_TOLERANCE / 8)
        k = _weibull_shape(c)
        values.append(1.0 - math.exp(-(fraction * math.gamma(1.0 + 1.0 / k)) ** k))
    return min(values), max(values)


def assert_between(observed: float, lo: float, hi: float, what: str) -> None:
    assert lo <= observed <= hi, f"{what}: {observed!r} outside [{lo!r}, {hi!r}]"


# --------------------------------------------------------------------------------------------
# Specs as YAML text.

def _spec(clients: list[dict], seed: int, aggregate_rate: float, cohorts=()) -> object:
    data = {"version": "2", "seed": seed, "aggregate_rate": aggregate_rate, "clients": clients}
    if cohorts:
        data["cohorts"] = list(cohorts)
    return parse_workload_spec(yaml.safe_dump(data, sort_keys=False))


def _arrival(process: str, cv: float | None) -> dict:
    return {"process": process} if cv is None else {"process": process, "cv": cv}


ONE_TOKEN = {"type": "constant", "params": {"value": 1}}
seeds = st.integers(0, 2**31 - 1)
# Mean inter-arrival times are whole microseconds, so the shape thresholds (the mean and a
# quarter of it, both >= 2) are integers and "an IAT below m" is decided exactly on the
# truncated IATs: trunc(x) < m iff x < m.
mean_iats_us = st.integers(200, 200_000)
cvs = st.floats(0.4, 2.5).map(lambda x: round(x, 3))


# --------------------------------------------------------------------------------------------
# Aggregate rate.

N_ARRIVALS = 12_000


def _single_client_gaps(process: str, cv: float | None, mean_iat: int, seed: int) -> list[int]:
    spec = _spec([{"id": "c", "rate_fraction": 1.0, "arrival": _arrival(process, cv),
                   "input_distribution": ONE_TOKEN, "output_distribution": ONE_TOKEN}],
                 seed, US_PER_S / mean_iat)
    requests = generate_workload(spec, MAX_HORIZON, N_ARRIVALS).requests
    assert len(requests) == N_ARRIVALS
    arrivals = [0] + [r.arrival_time for r in requests]
    return [b - a for a, b in zip(arrivals, arrivals[1:])]


@SETTINGS
@given(process=st.sampled_from(["poisson", "gamma", "weibull"]), cv=cvs, mean_iat=mean_iats_us,
       seed=seeds)
def test_empirical_rate_and_iat_shape_converge(process, cv, mean_iat, seed):
    declared_cv = 1.0 if process == "poisson" else cv
    gaps = _single_client_gaps(process, None if process == "poisson" else cv, mean_iat, seed)
    n = len(gaps)
    span = sum(gaps)                    # the first arrival is one IAT after time 0
    if process == "weibull":
        rel_sd, skew = _weibull_moments(declared_cv)
        half = skewed_normal_halfwidth(n, rel_sd * mean_iat, skew)
        lo, hi = mean_iat - half, mean_iat + half
    else:
        # Poisson IATs are Gamma(1); gamma IATs Gamma(1/cv²): their sum is Gamma(n/cv²).
        band_lo, band_hi = gamma_mean_band(n / declared_cv ** 2)
        lo, hi = mean_iat * band_lo, mean_iat * band_hi
    lo, hi = lo - 1.0, hi + 1.0         # integer IATs are within 1 µs of the draws
    # At cv 2.5 the region is ±15% of the rate; at cv 1, ±6%.
    assert (hi - lo) / mean_iat < 0.32, "the bound must be able to catch a wrong rate"
    assert_between(span / n, lo, hi, f"mean IAT (declared {mean_iat} µs)")
    rate = n * US_PER_S / span
    assert_between(rate, US_PER_S / hi, US_PER_S / lo,
                   f"requests/span (declared aggregate_rate {US_PER_S / mean_iat})")

    # The shape: how often an IAT is below a quarter of the mean and below the mean (integer
    # thresholds, so the truncated IATs decide exactly).
    for threshold in (mean_iat // 4, mean_iat):
        p_lo, p_hi = below_probability(process, declared_cv, threshold / mean_iat)
        var = 0.25 if p_lo <= 0.5 <= p_hi else max(p * (1 - p) for p in (p_lo, p_hi))
        half = bernstein_halfwidth(n, var, 1.0) + 1e-6   # 1e-6: float error of the mean
        below = sum(1 for g in gaps if g < threshold) / n
        assert_between(below, p_lo - half, p_hi + half,
                       f"P(IAT < {threshold}) for {process} cv={cv}, mean {mean_iat}")


@settings(max_examples=15, deadline=None)
@given(rate=st.floats(0.5, 50_000.0), seed=seeds)
def test_constant_arrivals_are_exactly_periodic(rate, seed):
    spec = _spec([{"id": "c", "rate_fraction": 1.0, "arrival": {"process": "constant"},
                   "input_distribution": ONE_TOKEN, "output_distribution": ONE_TOKEN}],
                 seed, rate)
    requests = generate_workload(spec, MAX_HORIZON, 2000).requests
    period = requests[0].arrival_time
    # Upstream truncates 1/(rate/1e6): the period is the exact 1e6/rate rounded down, give or
    # take the float error of that division (rate 5 gives 199999.99999999997, so 199999).
    exact = US_PER_S / rate
    assert exact * (1 - 1e-12) - 1 < period <= exact * (1 + 1e-12) and period >= 1
    assert [r.arrival_time for r in requests] == [period * (i + 1) for i in range(2000)]


# --------------------------------------------------------------------------------------------
# Per-client, per-tenant and per-class fractions.

TENANTS = ("t-a", "t-b")
CLASSES = ("critical", "standard", "batch")
EXPECTED_TOTAL = 12_000


@st.composite
def client_mixes(draw):
    """Clients and small cohorts with poisson, gamma or constant arrivals."""
    def member():
        process = draw(st.sampled_from(["poisson", "gamma", "constant"]))
        cv = draw(st.floats(0.5, 1.5).map(lambda x: round(x, 3))) if process == "gamma" else None
        return {"tenant_id": draw(st.sampled_from(TENANTS)),
                "slo_class": draw(st.sampled_from(CLASSES)),
                "rate_fraction": draw(st.floats(0.2, 1.0).map(lambda x: round(x, 4))),
                "arrival": _arrival(process, cv),
                "input_distribution": ONE_TOKEN, "output_distribution": ONE_TOKEN}

    clients = [dict(id=f"c{i}", **member()) for i in range(draw(st.integers(1, 4)))]
    cohorts = [dict(id=f"h{i}", population=draw(st.integers(1, 3)), **member())
               for i in range(draw(st.integers(0 if clients else 1, 2)))]
    return clients, cohorts


def _count_band(member: dict, horizon: int, mean_iat: float) -> tuple[float, float]:
    arrival = member["arrival"]
    if arrival["process"] == "constant":
        # One arrival every g µs, g = trunc(mean) in (mean - 1, mean]: (horizon - 1) // g of
        # them before the horizon. Real-valued bounds, so they also hold the expectation.
        return (max(0.0, (horizon - 1) / (mean_iat + 1) - 1), (horizon - 1) / (mean_iat - 1))
    shape = 1.0 if arrival["process"] == "poisson" else 1.0 / arrival["cv"] ** 2
    return renewal_count_band(horizon, mean_iat, shape)


@SETTINGS
@given(mix=client_mixes(), aggregate_rate=st.floats(20.0, 5000.0), seed=seeds)
def test_client_tenant_and_class_fractions_converge(mix, aggregate_rate, seed):
    clients, cohorts = mix
    spec = _spec(clients, seed, aggregate_rate, cohorts)
    horizon = int(EXPECTED_TOTAL / aggregate_rate * US_PER_S)
    requests = generate_workload(spec, horizon, 0).requests

    # Every generating stream (a client, or one member of a cohort) with its declared fraction.
    streams = [(c["id"], c, c["rate_fraction"]) for c in clients]
    streams += [(f"{h['id']}-{j}", h, h["rate_fraction"] / h["population"])
                for h in cohorts for j in range(h["population"])]
    total_fraction = sum(fraction for _, _, fraction in streams)
    counts = Counter(r.client_id for r in requests)
    assert set(counts) <= {sid for sid, _, _ in streams}
    bands = {}
    for sid, member, fraction in streams:
        share = fraction / total_fraction
        bands[sid] = _count_band(member, horizon, US_PER_S / (aggregate_rate * share))
        assert_between(counts[sid], *bands[sid], f"requests of {sid} (share {share:.4f})")

    # Group fractions: a group's fraction rises with its own count and falls with the others'.
    groups = {f"client {sid}": [sid] for sid, _, _ in streams}
    for key in ("tenant_id", "slo_class"):
        for value in sorted({m[key] for _, m, _ in streams}):
            groups[f"{key} {value}"] = [sid for sid, m, _ in streams if m[key] == value]
    total = len(requests)
    for name, members in groups.items():
        inside = set(members)
        g_lo = sum(bands[s][0] for s in inside)
        g_hi = sum(bands[s][1] for s in inside)
        r_lo = sum(bands[s][0] for s in bands if s not in inside)
        r_hi = sum(bands[s][1] for s in bands if s not in inside)
        lo = g_lo / (g_lo + r_hi) if g_lo > 0 else 0.0
        hi = g_hi / (g_hi + r_lo)
        declared = sum(f for sid, _, f in streams if sid in inside) / total_fraction
        assert lo <= declared <= hi, "the bound must contain the declared fraction"
        if len(inside) == 1:
            assert hi - lo < 0.15, "the bound must be able to catch a wrong fraction"
        observed = sum(counts[s] for s in inside) / total
        assert_between(observed, lo, hi, f"fraction of {name} (declared {declared:.4f})")


# --------------------------------------------------------------------------------------------
# Token lengths.

N_LENGTHS = 6000


def _gaussian_length_moments(mean: float, sd: float, lo: int, hi: int) -> tuple[float, float]:
    """Exact mean and variance of round-half-away(clamp(N(mean, sd), lo, hi)) for 1 <= lo < hi:
    E[L] = lo + Σ_{k=lo}^{hi-1} P(L > k) with P(L > k) = P(V >= k + 1/2)."""
    first = lo * lo
    mean_l, second = float(lo), float(first)
    for k in range(lo, hi):
        tail = 0.5 * math.erfc((k + 0.5 - mean) / (sd * math.sqrt(2.0)))
        mean_l += tail
        second += (2 * k + 1) * tail
    return mean_l, max(second - mean_l * mean_l, 0.0)


def _pareto_lognormal_moments(alpha, xm, mu, sigma, weight) -> tuple[float, float, float]:
    """Mean, sd and skewness of the mixture w·Pareto(alpha, xm) + (1-w)·LogNormal(mu, sigma).

    Heavy tail: one Pareto draw moves the mean past the bound h on its own if it exceeds n·h;
    max over alpha in [5, 10], xm in [10, 300], mu in [3, 6], sigma in [0.1, 0.8] and weight in
    [0.05, 1] of n·weight·(xm/(n·h))^alpha is 5e-8 (n = 6000; at alpha = 5, xm = 300)."""
    def raw(j):
        return (weight * alpha * xm ** j / (alpha - j)
                + (1 - weight) * math.exp(j * mu + 0.5 * j * j * sigma * sigma))

    m1, m2, m3 = raw(1), raw(2), raw(3)
    var = m2 - m1 * m1
    third = m3 - 3 * m1 * m2 + 2 * m1 ** 3
    return m1, math.sqrt(var), third / var ** 1.5


@st.composite
def length_distributions(draw):
    """(yaml distribution, check(lengths) -> None) pairs."""
    kind = draw(st.sampled_from(["constant", "gaussian", "exponential", "pareto_lognormal",
                                 "empirical"]))
    if kind == "constant":
        value = draw(st.floats(1.0, 600.0).map(lambda x: round(x, 2)))
        dist = {"type": "constant", "params": {"value": value}}

        def check(lengths):
            assert set(lengths) == {int(value)}

        return dist, check
    if kind == "gaussian":
        # Clamping anywhere from 4 sd below to 0.2 sd above the mean: its effect on the mean
        # ranges from none to dominant.
        mean = draw(st.floats(20.0, 1500.0))
        sd = draw(st.floats(1.0, mean / 2))
        lo = max(1, int(mean - draw(st.floats(0.0, 4.0)) * sd))
        hi = max(lo + 1, int(mean + draw(st.floats(0.2, 4.0)) * sd))
        dist = {"type": "gaussian", "params": {"mean": mean, "std_dev": sd, "min": lo, "max": hi}}
        expected, var = _gaussian_length_moments(mean, sd, lo, hi)
        half = bernstein_halfwidth(N_LENGTHS, var, hi - lo)
        bound = (expected - half, expected + half)
    elif kind == "exponential":
        mean = draw(st.floats(20.0, 800.0))
        dist = {"type": "exponential", "params": {"mean": mean}}
        band_lo, band_hi = gamma_mean_band(N_LENGTHS)
        expected, bound = mean, (mean * band_lo - 1.0, mean * band_hi + 1.0)
    elif kind == "pareto_lognormal":
        params = {"alpha": draw(st.floats(5.0, 10.0)), "xm": draw(st.floats(10.0, 300.0)),
                  "mu": draw(st.floats(3.0, 6.0)), "sigma": draw(st.floats(0.1, 0.8)),
                  "mix_weight": draw(st.floats(0.05, 1.0))}
        dist = {"type": "pareto_lognormal", "params": params}
        expected, sd, skew = _pareto_lognormal_moments(*params.values())
        half = skewed_normal_halfwidth(N_LENGTHS, sd, skew) + 1.0
        bound = (expected - half, expected + half)
    else:
        keys = draw(st.lists(st.integers(100, 2000), min_size=1, max_size=6, unique=True))
        probs = [draw(st.floats(0.2, 1.0)) for _ in keys]
        dist = {"type": "empirical", "params": {str(k): p for k, p in zip(keys, probs)}}
        total = sum(probs)
        expected = sum(k * p for k, p in zip(keys, probs)) / total
        var = sum((k - expected) ** 2 * p for k, p in zip(keys, probs)) / total
        half = bernstein_halfwidth(N_LENGTHS, var, max(keys) - min(keys))
        bound = (expected - half, expected + half)

    def check(lengths):
        assert (bound[1] - bound[0]) / expected < 0.5, "the bound must catch a wrong mean"
        slack = 1e-9 * expected         # float error of the computed expectation
        assert_between(sum(lengths) / len(lengths), bound[0] - slack, bound[1] + slack,
                       f"mean length of {dist}")

    return dist, check


@SETTINGS
@given(inp=length_distributions(), out=length_distributions(), seed=seeds)
def test_mean_lengths_converge_to_the_declared_distributions(inp, out, seed):
    (in_dist, check_in), (out_dist, check_out) = inp, out
    spec = _spec([{"id": "c", "rate_fraction": 1.0, "arrival": {"process": "poisson"},
                   "input_distribution": in_dist, "output_distribution": out_dist}],
                 seed, 100.0)
    requests = generate_workload(spec, MAX_HORIZON, N_LENGTHS).requests
    assert len(requests) == N_LENGTHS
    check_in([r.num_input for r in requests])
    check_out([r.num_output for r in requests])


# --------------------------------------------------------------------------------------------
# The bounds themselves.

def test_bounds_agree_with_known_values():
    assert Z == pytest.approx(6.109, abs=1e-3)
    # Gamma(A) Chernoff band: the defining equation holds on both sides.
    lo, hi = gamma_mean_band(1000.0)
    assert 1000 * _g(lo) == pytest.approx(_LOG_TAIL) and 1000 * _g(hi) == pytest.approx(_LOG_TAIL)
    assert 0.8 < lo < 1 < hi < 1.25
    assert _regularized_lower_gamma(1.0, 1.0) == pytest.approx(1 - math.exp(-1), rel=1e-12)
    assert _regularized_lower_gamma(1.0, 0.25) == pytest.approx(1 - math.exp(-0.25), rel=1e-12)
    assert below_probability("weibull", 1.0, 0.25)[0] == pytest.approx(1 - math.exp(-0.25),
                                                                       abs=2e-3)
    assert _regularized_lower_gamma(2.0, 2.0) == pytest.approx(1 - 3 * math.exp(-2), rel=1e-12)
    assert _weibull_cv(_weibull_shape(1.0)) == pytest.approx(1.0, abs=1e-9)
    assert _weibull_shape(1.0) == pytest.approx(1.0, abs=1e-6)
    # Clamping and rounding: a wide range leaves the mean; a tight one pins it.
    assert _gaussian_length_moments(300.0, 20.0, 1, 2000)[0] == pytest.approx(300.0, abs=1e-9)
    assert _gaussian_length_moments(300.0, 20.0, 1, 2000)[1] == pytest.approx(400 + 1 / 12,
                                                                              rel=1e-6)
    assert _gaussian_length_moments(1000.0, 5.0, 10, 50) == (50.0, 0.0)
    # Renewal counts: the band brackets the expectation and tightens with more arrivals.
    a, b = renewal_count_band(10_000_000, 1000.0, 1.0)
    assert a < 10_000 < b and (b - a) < 0.14 * 10_000
    assert renewal_count_band(10_000_000, 1000.0, 4.0)[1] - \
        renewal_count_band(10_000_000, 1000.0, 4.0)[0] < b - a
