"""Random draws of the workload generator: length samplers, arrival samplers, token ids.

The built-in length distributions and arrival processes are plugin classes (kinds "length" and
"arrival", protocols ``blis_core.protocols.LengthDistribution`` and ``ArrivalProcess``),
registered by ``blis_workloads.plugin``; ``length_sampler`` and ``arrival_sampler`` look a
spec's name up in the registry, once per client. Every built-in consumes its generator in
exactly upstream's order (``sim/workload/distribution.go`` and ``arrival.go`` at 4e179804;
cluster-policies.md §6.2), so a port that calls them in the same sequence reproduces upstream's
request stream bit for bit.

Generators are duck-typed: anything with Go's ``math/rand`` method set (``int63``, ``float64``,
``norm_float64``, ``exp_float64``, ``intn``, ``intn_array``) works. ``BlockRand`` is the fast
one used for every stream the workload owns privately.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from bisect import bisect_left
from typing import Mapping, Protocol

import numpy as np

from blis_core.gomath import go_exp, go_log, go_pow, go_pow_fixed, go_round, trunc_int64
from blis_core.gorand import GoRand
from blis_core.plugins import PluginError, get_registry
# The ziggurat tables are private to gorand; BlockRand evaluates the same algorithm on words it
# fetched in bulk, so it needs the same constants rather than a second copy of them.
from blis_core.gorand import (_FE, _FE_STEP, _FN, _FN_STEP, _INV_RN, _KE, _KN, _RE, _RN, _WE,
                              _WN, _f32)
from blis_workloads.spec import ArrivalSpec, DistSpec, WorkloadError, go_fmt_f, go_quote

log = logging.getLogger("blis.workload")

__all__ = [
    "BUILTIN_ARRIVAL_PROCESSES",
    "BUILTIN_LENGTH_DISTRIBUTIONS",
    "MAX_TOKEN_ID",
    "ArrivalSampler",
    "BlockRand",
    "ConstantArrival",
    "ConstantLength",
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
_TOKEN_MOD = np.uint32(MAX_TOKEN_ID)


class BlockRand:
    """A Go ``*rand.Rand`` reader that fetches its generator's words in large blocks.

    Yields exactly the values of the wrapped ``GoRand`` for the same call sequence, but reads
    ahead: the wrapped generator must not be used by anyone else afterwards. The workload owns
    all of its streams (per-client, per-session, replay), so this always holds there.

    Why: a request draws two lengths and then a few hundred token ids; the token ids of a
    whole block are computed with one vectorized pass, and a request only slices them.
    The words are the wrapped generator's raw outputs masked to 63 bits, which is what Go's
    ``Int63`` returns; ``GoRand.int63_array`` hands them over as one array.
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
        # Go's Int63 is the low 63 bits of the next Uint64 output (rngSource.Int63).
        fresh = self._rng.int63_array(fetch)
        self._words = np.concatenate((keep, fresh)) if len(keep) else fresh
        self._pos = 0
        int31 = (self._words >> 32).astype(np.uint32)    # Go's Int31(): the top 31 bits
        # x - (x // n) * n: numpy divides by a scalar with a precomputed multiplier, which
        # makes this several times faster than x % n.
        self._tokens = (int31 - (int31 // _TOKEN_MOD) * _TOKEN_MOD).view(np.int32)
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
            pos = self._pos
            if pos < len(self._words):          # inlined int63(): the hot path
                self._pos = pos + 1
                f = self._words.item(pos) * _TWO_TO_MINUS_63
            else:
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
            pos = self._pos
            if pos < len(self._words):          # inlined int63(): the hot path
                self._pos = pos + 1
                j = self._words.item(pos) >> 31
            else:
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
        return self._tokens_around_rejections(count)

    def _tokens_around_rejections(self, count: int) -> np.ndarray:
        """``count`` token ids from a run that contains rejected words (~1.3e-5 per word).

        Go's ``Int31n`` skips a rejected word and reads the next one, so the run ends right
        after its ``count``-th accepted word: the smallest ``n`` whose first ``n`` words hold
        ``count`` accepted ones. Iterating ``n = count + rejected(n)`` from ``n = count`` climbs
        to exactly that ``n`` (each step stays at or below it), after which the rejected words
        are cut out in one vectorized pass instead of a Python loop over every token.
        """
        need = count
        while True:
            if self._pos + need > len(self._words):
                self._refill(need)          # moves the read position to 0
            start = self._pos
            bad = self._bad
            lo = bisect_left(bad, start)
            hi = bisect_left(bad, start + need)
            if need - (hi - lo) == count:
                break
            need = count + (hi - lo)
        self._pos = start + need
        run = self._tokens[start:start + need]
        return np.delete(run, np.asarray(bad[lo:hi], dtype=np.intp) - start)


# --------------------------------------------------------------------------------------------
# Length distributions (plugin kind "length"): cls(params, file), then sample(rng) -> int >= 1
# (except a degenerate gaussian's min). Constructors raise upstream's NewLengthSampler errors.

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


# Go's Exp and Pow, ported exactly in gomath, cost microseconds in Python; libm's exp and pow
# are fast and differ from them by a few ulps (test_go_pow_special_cases_and_accuracy bounds
# the difference at 1e-14 relative). A sampler that only rounds or truncates such a value
# therefore computes it with libm first and keeps the integer unless the value lies within
# _NEAR (relative) of the rounding boundary, where the two could land on different sides;
# only then does it redo Go's computation. The margin is 10^4 times the difference, so the
# integers that leave the samplers are Go's, bit for bit.
_NEAR = 1e-10
_NORMAL_MIN = 1e-300          # below this libm's results lose relative precision (subnormals)
_TWO_TO_52 = 4503599627370496.0


def _round_clear(x: float) -> int:
    """``round_half_away(x)`` when ``0 <= x < 2^52`` and ``x`` is clear of a half-integer by
    the ``_NEAR`` margin; -1 otherwise (the caller then computes exactly)."""
    if 0.0 <= x < _TWO_TO_52:
        whole = int(x)
        frac = x - whole
        gap = x * _NEAR
        if frac - 0.5 > gap:
            return whole + 1
        if 0.5 - frac > gap:
            return whole
    return -1


def _require(params: Mapping[str, float], *names: str) -> None:
    for name in names:
        if name not in params:
            raise WorkloadError(f"distribution requires parameter {go_quote(name)}")


class GaussianSampler:
    """Gaussian lengths: mean, std_dev, clamped to [min, max] and rounded; no draw if min == max."""

    name = "gaussian"
    params = None           # upstream checks the keys itself and ignores extra ones

    __slots__ = ("mean", "std_dev", "lo", "hi", "_flo", "_fhi")

    def __init__(self, params: Mapping[str, float], file: str = "") -> None:
        _require(params, "mean", "std_dev", "min", "max")
        self.mean, self.std_dev = params["mean"], params["std_dev"]
        self.lo, self.hi = trunc_int64(params["min"]), trunc_int64(params["max"])
        self._flo, self._fhi = float(self.lo), float(self.hi)

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
    """Exponential lengths with the given mean, rounded (at least 1)."""

    name = "exponential"
    params = None

    __slots__ = ("mean",)

    def __init__(self, params: Mapping[str, float], file: str = "") -> None:
        _require(params, "mean")
        self.mean = params["mean"]

    def sample(self, rng) -> int:
        result = round_half_away(rng.exp_float64() * self.mean)
        return result if result >= 1 else 1


class ParetoLogNormalSampler:
    """Heavy tail: Pareto(alpha, xm) with probability mix_weight, else LogNormal(mu, sigma).

    Rounded half away from zero, at least 1.
    """

    name = "pareto_lognormal"
    params = None

    __slots__ = ("alpha", "xm", "mu", "sigma", "mix_weight", "_y", "_pow")

    def __init__(self, params: Mapping[str, float], file: str = "") -> None:
        _require(params, "alpha", "xm", "mu", "sigma", "mix_weight")
        self.alpha, self.xm = params["alpha"], params["xm"]
        self.mu, self.sigma, self.mix_weight = params["mu"], params["sigma"], params["mix_weight"]
        # Go divides by zero without trapping: 1/0 is +Inf, and Pow(u, +Inf) is 0 for u < 1.
        self._y = 1.0 / self.alpha if self.alpha else math.copysign(math.inf, self.alpha)
        self._pow = go_pow_fixed(self._y)

    def sample(self, rng) -> int:
        if rng.float64() < self.mix_weight:
            u = rng.float64()
            if u == 0:
                u = _SMALLEST_NONZERO
            if 0 < self._y < 64:
                p = u ** self._y
                if p > _NORMAL_MIN:
                    result = _round_clear(self.xm / p)
                    if result >= 0:
                        return result if result >= 1 else 1
            p = self._pow(u)
            value = self.xm / p if p else (math.copysign(math.inf, self.xm) if self.xm
                                            else math.nan)
        else:
            arg = self.mu + self.sigma * rng.norm_float64()
            if -700.0 < arg < 700.0:
                result = _round_clear(math.exp(arg))
                if result >= 0:
                    return result if result >= 1 else 1
            value = go_exp(arg)
        # Go's int(+Inf or NaN) is the amd64 "integer indefinite", which the floor turns into 1.
        if value < _TWO_TO_52:                  # round_half_away is exact below 2^52
            result = round_half_away(value)
        else:
            result = trunc_int64(go_round(value))
        return result if result >= 1 else 1


class ConstantSampler:
    """A fixed length (at least 1); draws nothing."""

    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value

    def sample(self, rng) -> int:
        return self.value if self.value >= 1 else 1


class ConstantLength(ConstantSampler):
    """A fixed length: value truncated toward zero (at least 1); draws nothing."""

    name = "constant"
    params = None

    __slots__ = ()

    def __init__(self, params: Mapping[str, float], file: str = "") -> None:
        super().__init__(trunc_int64(params.get("value", 0.0)))


_SCANF_INT = re.compile(r"\s*([+-]?\d+)")


class EmpiricalSampler:
    """An inverse-CDF draw over integer bins: params map each length to its probability."""

    name = "empirical"
    params = None           # the keys are the bins

    __slots__ = ("values", "cdf")

    def __init__(self, params: Mapping[str, float], file: str = "") -> None:
        if not file and not params:
            raise WorkloadError("empirical distribution requires a file path or inline params")
        pdf: dict[int, float] = {}
        for key, prob in params.items():
            # Go parses the key with Sscanf("%d"): a leading integer, trailing text ignored.
            m = _SCANF_INT.match(key)
            if m is None:
                raise WorkloadError(f"empirical PDF key {go_quote(key)} is not an integer")
            pdf[int(m.group(1))] = prob
        if not pdf:
            raise WorkloadError("empirical distribution has no valid bins")
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


BUILTIN_LENGTH_DISTRIBUTIONS = (GaussianSampler, ExponentialSampler, ParetoLogNormalSampler,
                                ConstantLength, EmpiricalSampler)


def _with_defaults(cls: type, given: Mapping[str, float]) -> dict[str, float]:
    """The parameters a plugin class is constructed with: its declared keys, given or default."""
    declared = getattr(cls, "params", None)
    if declared is None:
        return dict(given)
    complete = {}
    for key, default in declared.items():
        if key in given:
            complete[key] = given[key]
        elif default is None:
            raise WorkloadError(f"{cls.name} requires parameter {go_quote(key)}")
        else:
            complete[key] = default
    return complete


def length_sampler(dist: DistSpec) -> LengthSampler:
    """Upstream ``NewLengthSampler`` over the ``length`` plugins: the class registered under
    ``dist.type``, constructed once; its ``ValueError`` becomes a one-line WorkloadError."""
    try:
        cls = get_registry().get("length", dist.type)
    except PluginError:
        raise WorkloadError(f"unknown distribution type {go_quote(dist.type)}") from None
    try:
        return cls(_with_defaults(cls, dist.params), dist.file)
    except WorkloadError:
        raise
    except ValueError as exc:
        raise WorkloadError(str(exc)) from None


# --------------------------------------------------------------------------------------------
# Arrival processes (plugin kind "arrival"): cls(rate_per_us, cv, **params), then
# sample_iat(rng) -> int µs; 0 only from an exhausted stateful sampler.

class ArrivalSampler(Protocol):
    def sample_iat(self, rng) -> int: ...


class ConstantArrival:
    """Evenly spaced arrivals: one every 1/rate µs (truncated, at least 1); draws nothing."""

    name = "constant"
    params: dict[str, float | None] = {}

    __slots__ = ("iat",)

    def __init__(self, rate_per_us: float, cv: float | None = None) -> None:
        self.iat = max(1, trunc_int64(1.0 / rate_per_us))

    def sample_iat(self, rng) -> int:
        return self.iat


class PoissonArrival:
    """Poisson arrivals: exponential inter-arrival times at the client's rate (at least 1 µs)."""

    name = "poisson"
    params: dict[str, float | None] = {}

    __slots__ = ("rate",)

    def __init__(self, rate_per_us: float, cv: float | None = None) -> None:
        self.rate = rate_per_us

    def sample_iat(self, rng) -> int:
        iat = trunc_int64(rng.exp_float64() / self.rate)
        return iat if iat >= 1 else 1


class GammaArrival:
    """Bursty arrivals: gamma inter-arrival times with the client's rate and cv (default 1).

    A cv above 10 (shape below 0.01) falls back to Poisson with a warning, as upstream does.
    """

    name = "gamma"
    params: dict[str, float | None] = {}

    __slots__ = ("shape", "scale", "_rate", "_boosted", "_d", "_c", "_y", "_pow")

    def __init__(self, rate_per_us: float, cv: float | None = None) -> None:
        cv = cv if cv is not None and cv > 0 else 1.0
        self.shape = 1.0 / (cv * cv)
        self.scale = 1.0 / rate_per_us * cv * cv
        self._rate = 0.0
        if self.shape < 0.01:
            log.warning("Gamma shape %.4f (CV=%.1f) is very small; falling back to Poisson",
                        self.shape, cv)
            self._rate = rate_per_us
        # Marsaglia-Tsang needs shape >= 1: a smaller shape draws Gamma(shape + 1) and
        # multiplies by U^(1/shape), drawing U first.
        self._boosted = self.shape < 1.0
        shape = self.shape + 1.0 if self._boosted else self.shape
        self._d = shape - 1.0 / 3.0
        self._c = 1.0 / math.sqrt(9.0 * self._d)
        self._y = 1.0 / self.shape
        self._pow = go_pow_fixed(self._y)

    def sample_iat(self, rng) -> int:
        if self._rate:
            iat = trunc_int64(rng.exp_float64() / self._rate)
            return iat if iat >= 1 else 1
        u0 = rng.float64() if self._boosted else 0.0
        d, c = self._d, self._c
        while True:
            while True:
                x = rng.norm_float64()
                v = 1.0 + c * x
                if v > 0:
                    break
            v = v * v * v
            u = rng.float64()
            if u < 1.0 - 0.0331 * (x * x) * (x * x):
                break
            if go_log(u) < 0.5 * x * x + d * (1.0 - v + go_log(v)):
                break
        value = d * v * self.scale
        if self._boosted:
            # libm's pow first; Go's exact one only near an integer (see _NEAR).
            fast = value * u0 ** self._y
            if fast < _TWO_TO_52:
                whole = int(fast)
                frac = fast - whole
                gap = fast * _NEAR
                if frac > gap and 1.0 - frac > gap:
                    return whole if whole >= 1 else 1
            value = value * self._pow(u0)
        iat = trunc_int64(value)
        return iat if iat >= 1 else 1


def _weibull_cv(k: float) -> float:
    # math.gamma may differ from Go's Gamma in the last bit; only the bisection below sees it.
    g1 = math.gamma(1.0 + 1.0 / k)
    g2 = math.gamma(1.0 + 2.0 / k)
    return math.sqrt(g2 / (g1 * g1) - 1.0)


@functools.lru_cache(maxsize=256)
def _weibull_shape(target_cv: float) -> float:
    # Cached: a cohort's members all share one cv, and the bisection costs 100 gamma calls.
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


class WeibullArrival:
    """Weibull inter-arrival times with the client's rate and cv (default 1, at most 10.4)."""

    name = "weibull"
    params: dict[str, float | None] = {}

    __slots__ = ("shape", "scale", "_pow")

    def __init__(self, rate_per_us: float, cv: float | None = None) -> None:
        cv = cv if cv is not None and cv > 0 else 1.0
        self.shape = _weibull_shape(cv)
        self.scale = 1.0 / rate_per_us / math.gamma(1.0 + 1.0 / self.shape)
        self._pow = 1.0 / self.shape

    @classmethod
    def check(cls, cv: float | None, params: Mapping[str, float]) -> None:
        if cv is not None and not 0.01 <= cv <= 10.4:
            raise ValueError(f"cv: weibull CV must be in [0.01, 10.4], got {go_fmt_f(cv)}")

    def sample_iat(self, rng) -> int:
        u = rng.float64()
        if u == 0:
            u = _SMALLEST_NONZERO
        iat = trunc_int64(self.scale * go_pow(-go_log(u), self._pow))
        return iat if iat >= 1 else 1


BUILTIN_ARRIVAL_PROCESSES = (PoissonArrival, GammaArrival, WeibullArrival, ConstantArrival)


class NormalizedExponentialArrival:
    """inference-perf's constant-load timer: exactly ``count`` IATs summing to the duration.

    All draws happen at construction (``count`` ExpFloat64 from its own generator); afterwards
    it hands out the IATs in order and then 0, which ends the client's generation. Not a
    plugin: inference-perf expansion installs it as the client's ``arrival_factory``.
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


def arrival_sampler(spec: ArrivalSpec, rate_per_us: float) -> ArrivalSampler:
    """Upstream ``NewArrivalSampler`` over the ``arrival`` plugins: the class registered under
    ``spec.process``, constructed once with the rate floored at 1e-15 requests/µs."""
    try:
        cls = get_registry().get("arrival", spec.process)
    except PluginError:
        raise WorkloadError(f"unknown arrival process {go_quote(spec.process)}") from None
    params = _with_defaults(cls, spec.params)
    try:
        return cls(max(rate_per_us, _MIN_RATE), spec.cv, **params)
    except WorkloadError:
        raise
    except ValueError as exc:
        raise WorkloadError(f"arrival process {go_quote(spec.process)}: {exc}") from None
