"""Random draws of the workload generator: length samplers, arrival samplers, token ids.

Every sampler consumes its generator in exactly upstream's order (``sim/workload/distribution.go``
and ``arrival.go`` at 4e179804; cluster-policies.md §6.2), so a port that calls them in the same
sequence reproduces upstream's request stream bit for bit.

Generators are duck-typed: anything with Go's ``math/rand`` method set (``int63``, ``float64``,
``norm_float64``, ``exp_float64``, ``intn``, ``intn_array``) works. ``BlockRand`` is the fast
one used for every stream the workload owns privately.
"""

from __future__ import annotations

import logging
import math
import re
from bisect import bisect_left
from typing import Protocol

import numpy as np

from blis_core.gomath import go_exp, go_log, go_pow, go_round, trunc_int64
from blis_core.gorand import GoRand
# The ziggurat tables are private to gorand; BlockRand evaluates the same algorithm on words it
# fetched in bulk, so it needs the same constants rather than a second copy of them.
from blis_core.gorand import (_FE, _FE_STEP, _FN, _FN_STEP, _INV_RN, _KE, _KN, _RE, _RN, _WE,
                              _WN, _f32)
from blis_workloads.spec import ArrivalSpec, DistSpec, WorkloadError, go_quote

__all__ = [
    "MAX_TOKEN_ID",
    "ArrivalSampler",
    "BlockRand",
    "ConstantArrival",
    "ConstantSampler",
    "EmpiricalSampler",
    "ExponentialSampler",
    "GammaArrival",
    "GaussianSampler",
    "LengthSampler",
    "NormalizedExponentialArrival",
    "ParetoLogNormalSampler",
    "PoissonArrival",
    "WeibullArrival",
    "arrival_sampler",
    "length_sampler",
    "round_half_away",
]

MAX_TOKEN_ID = 128000            # token ids are Intn(128000) draws
_INT63_MAX = (1 << 63) - 1
_INT31_MAX = (1 << 31) - 1
_SMALLEST_NONZERO = 5e-324       # Go's math.SmallestNonzeroFloat64
_TWO_TO_MINUS_63 = 2.0**-63
# Int31n rejects an Int31 above this bound (v1 rejection sampling).
_TOKEN_LIMIT = _INT31_MAX - (1 << 31) % MAX_TOKEN_ID


class BlockRand:
    """A Go ``*rand.Rand`` reader that fetches its generator's words in large blocks.

    Yields exactly the values of the wrapped ``GoRand`` for the same call sequence, but reads
    ahead: the wrapped generator must not be used by anyone else afterwards. The workload owns
    all of its streams (per-client, per-session, replay), so this always holds there.

    Why: a request draws two lengths and then a few hundred token ids; the token ids of a
    whole block are computed with one vectorized pass, and a request only slices them.
    The words come from ``GoRand.intn_array(2**63 - 1, n)``: ``Int63n(2^63-1)`` returns the
    ``Int63`` word itself, rejecting only the value 2^63-1 (probability 2^-63 per word).
    """

    __slots__ = ("_rng", "_words", "_tokens", "_bad", "_pos", "_block")

    _MIN_BLOCK = 2048
    _MAX_BLOCK = 1 << 16

    def __init__(self, seed_or_rng: int | GoRand) -> None:
        self._rng = seed_or_rng if isinstance(seed_or_rng, GoRand) else GoRand(seed_or_rng)
        self._words = np.empty(0, dtype=np.int64)
        self._tokens = np.empty(0, dtype=np.int32)
        self._bad: list[int] = []
        self._pos = 0
        # Start small (a session draws a few hundred words), double up to the cap.
        self._block = self._MIN_BLOCK

    def _refill(self, needed: int) -> None:
        """Make at least ``needed`` unread words available."""
        keep = self._words[self._pos:]
        fetch = max(needed - len(keep), self._block)
        self._block = min(self._block * 2, self._MAX_BLOCK)
        self._words = np.concatenate((keep, self._rng.intn_array(_INT63_MAX, fetch)))
        self._pos = 0
        int31 = (self._words >> 32).astype(np.int32)     # Go's Int31(): the top 31 bits
        self._tokens = int31 % np.int32(MAX_TOKEN_ID)
        self._bad = np.flatnonzero(int31 > _TOKEN_LIMIT).tolist()

    def int63(self) -> int:
        pos = self._pos
        if pos >= len(self._words):
            self._refill(1)
            pos = 0
        self._pos = pos + 1
        return self._words.item(pos)

    def float64(self) -> float:
        while True:
            f = self.int63() * _TWO_TO_MINUS_63
            if f != 1.0:
                return f

    def norm_float64(self) -> float:
        """Go's ``NormFloat64`` ziggurat, as in ``GoRand.norm_float64``."""
        while True:
            pos = self._pos
            if pos < len(self._words):          # inlined int63(): the hot path
                self._pos = pos + 1
                j = self._words.item(pos) >> 31
            else:
                j = self.int63() >> 31
            if j > _INT31_MAX:
                j -= 1 << 32          # Go reinterprets the Uint32 as int32
            i = j & 0x7F
            x = j * _WN[i]
            if abs(j) < _KN[i]:
                return x
            if i == 0:
                while True:
                    x = -go_log(self.float64()) * _INV_RN
                    y = -go_log(self.float64())
                    if y + y >= x * x:
                        break
                return _RN + x if j > 0 else -_RN - x
            if _f32(_FN[i] + _f32(_f32(self.float64()) * _FN_STEP[i])) < _f32(go_exp(-0.5 * x * x)):
                return x

    def exp_float64(self) -> float:
        """Go's ``ExpFloat64`` ziggurat, as in ``GoRand.exp_float64``."""
        while True:
            j = self.int63() >> 31
            i = j & 0xFF
            x = j * _WE[i]
            if j < _KE[i]:
                return x
            if i == 0:
                return _RE - go_log(self.float64())
            if _f32(_FE[i] + _f32(_f32(self.float64()) * _FE_STEP[i])) < _f32(go_exp(-x)):
                return x

    def intn(self, n: int) -> int:
        """Go's ``Intn`` for 0 < n <= 2^31-1 (``Int31n``: rejection sampling)."""
        if not 0 < n <= _INT31_MAX:
            raise ValueError(f"intn needs 0 < n <= 2^31-1, got {n}")
        if n & (n - 1) == 0:
            return (self.int63() >> 32) & (n - 1)
        limit = _INT31_MAX - (1 << 31) % n
        while True:
            v = self.int63() >> 32
            if v <= limit:
                return v % n

    def intn_array(self, n: int, count: int) -> np.ndarray:
        """``count`` successive ``intn(n)`` draws as int32; token ids take the fast path."""
        if n != MAX_TOKEN_ID:
            return np.fromiter((self.intn(n) for _ in range(count)), dtype=np.int32, count=count)
        if self._pos + count > len(self._words):
            self._refill(count)
        start = self._pos
        stop = start + count
        bad = self._bad
        if not bad or bad[-1] < start or bisect_left(bad, start) == bisect_left(bad, stop):
            self._pos = stop
            return self._tokens[start:stop]
        # A rejected word inside the run: drop it and read one more (rare, ~1.3e-5 per word).
        out = []
        while len(out) < count:
            if self._pos >= len(self._words):
                self._refill(count - len(out))
            v = self._words.item(self._pos) >> 32
            self._pos += 1
            if v <= _TOKEN_LIMIT:
                out.append(v % MAX_TOKEN_ID)
        return np.array(out, dtype=np.int32)


# --------------------------------------------------------------------------------------------
# Length samplers: Sample(rng) -> int >= 1 (except a degenerate gaussian's min).

def round_half_away(x: float) -> int:
    """``int(math.Round(x))`` for finite x: Go rounds half away from zero.

    ``x - trunc(x)`` is exact in binary64, so comparing it with 0.5 decides exactly (no
    ``x + 0.5`` rounding trap at 0.49999999999999994); faster than ``gomath.go_round``.
    """
    r = int(x)
    d = x - r
    if d >= 0.5:
        return r + 1
    if d <= -0.5:
        return r - 1
    return r


class LengthSampler(Protocol):
    def sample(self, rng) -> int: ...


class GaussianSampler:
    """Clamped gaussian: no draw when min == max; results below 1 become 1."""

    __slots__ = ("mean", "std_dev", "lo", "hi", "_flo", "_fhi")

    def __init__(self, mean: float, std_dev: float, lo: int, hi: int) -> None:
        self.mean, self.std_dev, self.lo, self.hi = mean, std_dev, lo, hi
        self._flo, self._fhi = float(lo), float(hi)

    def sample(self, rng) -> int:
        if self.lo == self.hi:
            return self.lo
        value = rng.norm_float64() * self.std_dev + self.mean
        # Go: math.Min(hi, math.Max(lo, v)), then round half away from zero.
        if value < self._flo:
            value = self._flo
        elif value > self._fhi:
            value = self._fhi
        result = round_half_away(value)
        return result if result >= 1 else 1


class ExponentialSampler:
    __slots__ = ("mean",)

    def __init__(self, mean: float) -> None:
        self.mean = mean

    def sample(self, rng) -> int:
        result = round_half_away(rng.exp_float64() * self.mean)
        return result if result >= 1 else 1


class ParetoLogNormalSampler:
    """Mixture: Pareto(alpha, xm) with probability mix_weight, else LogNormal(mu, sigma)."""

    __slots__ = ("alpha", "xm", "mu", "sigma", "mix_weight")

    def __init__(self, alpha: float, xm: float, mu: float, sigma: float,
                 mix_weight: float) -> None:
        self.alpha, self.xm, self.mu, self.sigma, self.mix_weight = alpha, xm, mu, sigma, mix_weight

    def sample(self, rng) -> int:
        if rng.float64() < self.mix_weight:
            u = rng.float64()
            if u == 0:
                u = _SMALLEST_NONZERO
            value = self.xm / go_pow(u, 1.0 / self.alpha)
        else:
            value = go_exp(self.mu + self.sigma * rng.norm_float64())
        # Go's int(+Inf or NaN) is the amd64 "integer indefinite", which the floor turns into 1.
        result = trunc_int64(go_round(value))
        return result if result >= 1 else 1


class ConstantSampler:
    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value

    def sample(self, rng) -> int:
        return self.value if self.value >= 1 else 1


class EmpiricalSampler:
    """Inverse-CDF over sorted integer bins; a single bin draws nothing."""

    __slots__ = ("values", "cdf")

    def __init__(self, pdf: dict[int, float]) -> None:
        keys = sorted(pdf)
        total = 0.0
        for k in keys:
            total += pdf[k]
        self.values: list[int] = []
        self.cdf: list[float] = []
        cumulative = 0.0
        for k in keys:
            p = pdf[k]
            if p <= 0:
                continue          # dropped, but its mass stays in the normalizing total
            cumulative += p / total
            self.values.append(k)
            self.cdf.append(cumulative)
        if self.cdf:
            self.cdf[-1] = 1.0

    def sample(self, rng) -> int:
        if not self.values:
            return 1
        if len(self.values) == 1:
            return self.values[0]
        idx = bisect_left(self.cdf, rng.float64())
        return self.values[min(idx, len(self.values) - 1)]


_SCANF_INT = re.compile(r"\s*([+-]?\d+)")


def _require(params: dict[str, float], *names: str) -> None:
    for name in names:
        if name not in params:
            raise WorkloadError(f"distribution requires parameter {go_quote(name)}")


def length_sampler(dist: DistSpec) -> LengthSampler:
    """Upstream ``NewLengthSampler``: the sampler for a ``DistSpec``, or a WorkloadError."""
    p = dist.params
    kind = dist.type
    if kind == "gaussian":
        _require(p, "mean", "std_dev", "min", "max")
        return GaussianSampler(p["mean"], p["std_dev"], trunc_int64(p["min"]),
                               trunc_int64(p["max"]))
    if kind == "exponential":
        _require(p, "mean")
        return ExponentialSampler(p["mean"])
    if kind == "pareto_lognormal":
        _require(p, "alpha", "xm", "mu", "sigma", "mix_weight")
        return ParetoLogNormalSampler(p["alpha"], p["xm"], p["mu"], p["sigma"], p["mix_weight"])
    if kind == "constant":
        return ConstantSampler(trunc_int64(p.get("value", 0.0)))
    if kind == "empirical":
        if not dist.file and not p:
            raise WorkloadError("empirical distribution requires a file path or inline params")
        pdf: dict[int, float] = {}
        for key, prob in p.items():
            # Go parses the key with Sscanf("%d"): a leading integer, trailing text ignored.
            m = _SCANF_INT.match(key)
            if m is None:
                raise WorkloadError(f"empirical PDF key {go_quote(key)} is not an integer")
            pdf[int(m.group(1))] = prob
        if not pdf:
            raise WorkloadError("empirical distribution has no valid bins")
        return EmpiricalSampler(pdf)
    raise WorkloadError(f"unknown distribution type {go_quote(kind)}")


# --------------------------------------------------------------------------------------------
# Arrival samplers: sample_iat(rng) -> int (µs); 0 only from an exhausted stateful sampler.

class ArrivalSampler(Protocol):
    def sample_iat(self, rng) -> int: ...


class ConstantArrival:
    __slots__ = ("iat",)

    def __init__(self, iat: int) -> None:
        self.iat = iat

    def sample_iat(self, rng) -> int:
        return self.iat


class PoissonArrival:
    __slots__ = ("rate",)

    def __init__(self, rate_per_us: float) -> None:
        self.rate = rate_per_us

    def sample_iat(self, rng) -> int:
        iat = trunc_int64(rng.exp_float64() / self.rate)
        return iat if iat >= 1 else 1


def _gamma_draw(rng, shape: float, scale: float) -> float:
    """Marsaglia-Tsang; shape < 1 draws its uniform first, then recurses with shape + 1."""
    if shape < 1.0:
        u = rng.float64()
        return _gamma_draw(rng, shape + 1.0, scale) * go_pow(u, 1.0 / shape)
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


class GammaArrival:
    __slots__ = ("shape", "scale")

    def __init__(self, shape: float, scale: float) -> None:
        self.shape, self.scale = shape, scale

    def sample_iat(self, rng) -> int:
        iat = trunc_int64(_gamma_draw(rng, self.shape, self.scale))
        return iat if iat >= 1 else 1


class WeibullArrival:
    __slots__ = ("shape", "scale")

    def __init__(self, shape: float, scale: float) -> None:
        self.shape, self.scale = shape, scale

    def sample_iat(self, rng) -> int:
        u = rng.float64()
        if u == 0:
            u = _SMALLEST_NONZERO
        iat = trunc_int64(self.scale * go_pow(-go_log(u), 1.0 / self.shape))
        return iat if iat >= 1 else 1


def _weibull_cv(k: float) -> float:
    # math.gamma may differ from Go's Gamma in the last bit; only the bisection below sees it.
    g1 = math.gamma(1.0 + 1.0 / k)
    g2 = math.gamma(1.0 + 2.0 / k)
    return math.sqrt(g2 / (g1 * g1) - 1.0)


def _weibull_shape(target_cv: float) -> float:
    lo, hi = 0.1, 100.0
    for _ in range(100):
        mid = (lo + hi) / 2.0
        cv = _weibull_cv(mid)
        if abs(cv - target_cv) < 0.001:
            return mid
        if cv > target_cv:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


class NormalizedExponentialArrival:
    """inference-perf's constant-load timer: exactly ``count`` IATs summing to the duration.

    All draws happen at construction (``count`` ExpFloat64 from its own generator); afterwards
    it hands out the IATs in order and then 0, which ends the client's generation.
    """

    __slots__ = ("intervals", "index")

    def __init__(self, rng, count: int, duration_us: int) -> None:
        if count <= 0 or duration_us <= 0 or duration_us < count:
            raise WorkloadError(f"normalized exponential sampler: invalid count {count} for "
                                f"duration {duration_us} µs")
        rate = float(count) / float(duration_us)
        raw = [rng.exp_float64() / rate for _ in range(count)]
        total = 0.0
        for v in raw:
            total += v
        scale = float(duration_us) / total
        self.intervals = [max(1, trunc_int64(v * scale)) for v in raw]
        self.index = 0

    def sample_iat(self, rng) -> int:
        if self.index >= len(self.intervals):
            return 0
        iat = self.intervals[self.index]
        self.index += 1
        return iat


_MIN_RATE = 1e-15
log = logging.getLogger("blis.workload")


def arrival_sampler(spec: ArrivalSpec, rate_per_us: float) -> ArrivalSampler:
    """Upstream ``NewArrivalSampler``; the rate is floored at 1e-15 requests/µs."""
    rate = max(rate_per_us, _MIN_RATE)
    process = spec.process
    if process == "constant":
        return ConstantArrival(max(1, trunc_int64(1.0 / rate)))
    if process in ("gamma", "weibull"):
        cv = spec.cv if spec.cv is not None and spec.cv > 0 else 1.0
        mean = 1.0 / rate
        if process == "gamma":
            shape = 1.0 / (cv * cv)
            if shape < 0.01:
                log.warning("Gamma shape %.4f (CV=%.1f) is very small; falling back to Poisson",
                            shape, cv)
                return PoissonArrival(rate)
            return GammaArrival(shape, mean * cv * cv)
        k = _weibull_shape(cv)
        return WeibullArrival(k, mean / math.gamma(1.0 + 1.0 / k))
    return PoissonArrival(rate)    # "poisson" and, defensively, anything unvalidated
