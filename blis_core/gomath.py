"""Go's math functions where Python's differ in the last bit or in semantics.

Upstream BLIS is written in Go; bit-exact parity needs Go's own algorithms for ``math.Log``,
``math.Exp`` and ``math.Pow`` (Python calls the platform libm, which rounds differently for a
few percent of inputs), Go's rounding and float-to-int conversions, and Go's ``encoding/json``
float formatting.
"""

from __future__ import annotations

import math
import struct

__all__ = [
    "clamp64",
    "format_go_float",
    "go_exp",
    "go_log",
    "go_pow",
    "go_pow_int",
    "go_round",
    "trunc_int64",
]

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_SQRT2_OVER_2 = 0.7071067811865476  # Go's constant Sqrt2/2, rounded once to float64

_LOG_L1 = 6.666666666666735130e-01
_LOG_L2 = 3.999999999940941908e-01
_LOG_L3 = 2.857142874366239149e-01
_LOG_L4 = 2.222219843214978396e-01
_LOG_L5 = 1.818357216161805012e-01
_LOG_L6 = 1.531383769920937332e-01
_LOG_L7 = 1.479819860511658591e-01


def go_log(x: float) -> float:
    """Go's ``math.Log`` (the FreeBSD algorithm; Go's amd64 assembly computes the same)."""
    if x != x or x == math.inf:
        return x
    if x < 0:
        return math.nan
    if x == 0:
        return -math.inf
    f1, ki = math.frexp(x)
    if f1 < _SQRT2_OVER_2:
        f1 *= 2
        ki -= 1
    f = f1 - 1
    k = float(ki)
    s = f / (2 + f)
    s2 = s * s
    s4 = s2 * s2
    t1 = s2 * (_LOG_L1 + s4 * (_LOG_L3 + s4 * (_LOG_L5 + s4 * _LOG_L7)))
    t2 = s4 * (_LOG_L2 + s4 * (_LOG_L4 + s4 * _LOG_L6))
    r = t1 + t2
    hfsq = 0.5 * f * f
    return k * _LN2_HI - ((hfsq - (s * (hfsq + r) + k * _LN2_LO)) - f)


_LOG2E = 1.44269504088896338700e+00
_EXP_OVERFLOW = 7.09782712893383973096e+02
_EXP_UNDERFLOW = -7.45133219101941108420e+02
_EXP_NEAR_ZERO = 1.0 / (1 << 28)

_EXP_P1 = 1.66666666666666657415e-01
_EXP_P2 = -2.77777777770155933842e-03
_EXP_P3 = 6.61375632143793436117e-05
_EXP_P4 = -1.65339022054652515390e-06
_EXP_P5 = 4.13813679705723846039e-08


def go_exp(x: float) -> float:
    """Go's portable ``math.Exp`` algorithm (``exp`` + ``expmulti`` in src/math/exp.go).

    On amd64 Go dispatches ``math.Exp`` to assembly (exp_amd64.s, with FMA when the CPU has
    it), which can differ from this in the last bit. The ziggurat wedge tests round the result
    to float32 before comparing, so no draw in the reference vectors depends on the choice.
    """
    if x != x or x == math.inf:
        return x
    if x == -math.inf:
        return 0.0
    if x > _EXP_OVERFLOW:
        return math.inf
    if x < _EXP_UNDERFLOW:
        return 0.0
    if -_EXP_NEAR_ZERO < x < _EXP_NEAR_ZERO:
        return 1 + x
    # Go's int() conversion truncates toward zero, like Python's int().
    if x < 0:
        k = int(_LOG2E * x - 0.5)
    else:
        k = int(_LOG2E * x + 0.5)
    hi = x - k * _LN2_HI
    lo = k * _LN2_LO
    r = hi - lo
    t = r * r
    c = r - t * (_EXP_P1 + t * (_EXP_P2 + t * (_EXP_P3 + t * (_EXP_P4 + t * _EXP_P5))))
    y = 1 - ((lo - (r * c) / (2 - c)) - hi)
    # Go's Ldexp and C's ldexp both round a subnormal result to nearest even.
    return math.ldexp(y, k)


_F64 = struct.Struct("<d")
_U64 = struct.Struct("<Q")

_SIGN_MASK = 1 << 63
_MANT_BITS = 52
_EXP_BIAS = 1023
_FRAC_MASK = (1 << _MANT_BITS) - 1
_ONE_BITS = _EXP_BIAS << _MANT_BITS


def _bits(x: float) -> int:
    return _U64.unpack(_F64.pack(x))[0]


def _from_bits(bits: int) -> float:
    return _F64.unpack(_U64.pack(bits))[0]


def go_round(x: float) -> float:
    """Go's ``math.Round``: half away from zero (Python's ``round`` is half to even).

    Works on the bit pattern, as Go does, so that values such as 0.49999999999999994 (where
    ``x + 0.5`` rounds up to 1) and signed zeros come out exactly as in Go.
    """
    bits = _bits(x)
    exponent = (bits >> _MANT_BITS) & 0x7FF
    if exponent < _EXP_BIAS:
        # |x| < 1: the result is a signed 0 or 1.
        bits &= _SIGN_MASK
        if exponent == _EXP_BIAS - 1:
            bits |= _ONE_BITS
    elif exponent < _EXP_BIAS + _MANT_BITS:
        # Adding half an integer unit may carry into the exponent; that is the rounding up.
        exponent -= _EXP_BIAS
        bits += (1 << (_MANT_BITS - 1)) >> exponent
        bits &= ~(_FRAC_MASK >> exponent)
    return _from_bits(bits)


def go_pow(x: float, y: float) -> float:
    """Go's ``math.Pow`` (pure Go on amd64; libm's pow rounds differently in the last bit).

    Ported for the finite, positive-base cases blis uses (roofline MoE weights, the workload
    samplers); the special cases are delegated to ``math.pow``, which agrees with Go on them.
    """
    if y == 0 or x == 1:
        return 1.0
    if y == 1:
        return x
    if x != x or y != y:
        return math.nan
    if x == 0 or math.isinf(x) or math.isinf(y):
        try:
            return math.pow(x, y)    # special cases: libm and Go agree on these exactly
        except (ValueError, ZeroDivisionError):
            return math.inf          # Pow(±0, y < 0): Go returns +Inf where Python raises
    yf, yi = math.modf(abs(y))
    if x < 0 and yf != 0:
        return math.nan
    if y == 0.5:
        return math.sqrt(x)
    if y == -0.5:
        return 1 / math.sqrt(x)
    if yi >= 2.0**63:
        if (abs(x) < 1) == (y > 0):
            return 0.0
        return math.inf
    a1 = 1.0
    if yf != 0:
        if yf > 0.5:
            yf -= 1
            yi += 1
        a1 = go_exp(yf * go_log(x))
    a1, ae = _times_integer_power(a1, x, int(yi))
    if y < 0:
        a1 = 1 / a1
        ae = -ae
    try:
        return math.ldexp(a1, ae)
    except OverflowError:
        return math.copysign(math.inf, a1)  # Go's Ldexp saturates to a signed infinity


def _times_integer_power(a1: float, x: float, n: int) -> tuple[float, int]:
    """``a1 · x**n`` as Go's Pow computes it: repeated squaring of the frexp mantissa with the
    binary exponent kept apart; returns (mantissa product, binary exponent)."""
    ae = 0
    x1, xe = math.frexp(x)
    while n != 0:
        if xe < -(1 << 12) or (1 << 12) < xe:
            # Certain overflow or underflow: Go lets Ldexp saturate.
            ae += xe
            break
        if n & 1 == 1:
            a1 *= x1
            ae += xe
        x1 *= x1
        xe <<= 1
        if x1 < 0.5:
            x1 += x1
            xe -= 1
        n >>= 1
    return a1, ae


def go_pow_fixed(y: float):
    """``x -> go_pow(x, y)`` for one fixed exponent, fast for ``0 < x < 1``.

    The workload samplers raise a uniform draw to one constant power per sample; splitting
    ``y`` into Go's integer and fractional parts once, instead of on every call, keeps
    go_pow's exact arithmetic (same operations, same order) at a fraction of its cost. Other
    ``x``, and exponents outside ``0 < y < 2**63`` or equal to 0.5 or 1, go to ``go_pow``.
    """
    if not (0 < y < 2.0**63) or y in (0.5, 1.0):
        return lambda x: go_pow(x, y)
    yf, yi = math.modf(y)
    if yf > 0.5:
        yf -= 1
        yi += 1
    steps = int(yi)

    def power(x: float) -> float:
        if not 0 < x < 1:
            return go_pow(x, y)
        a1, ae = _times_integer_power(go_exp(yf * go_log(x)) if yf != 0 else 1.0, x, steps)
        return math.ldexp(a1, ae)

    return power


def go_pow_int(x: float, n: int) -> float:
    """Go's ``math.Pow(x, float64(n))`` for an integer ``n >= 0`` (the roofline's MoE term).

    Go multiplies the frexp mantissas by repeated squaring and keeps the binary exponent apart,
    which rounds differently from libm's ``pow``.
    """
    if n < 0:
        raise ValueError(f"go_pow_int needs a non-negative exponent, got {n}")
    return go_pow(x, float(n))


def trunc_int64(x: float) -> int:
    """Go's ``int64(x)``: truncation toward zero.

    Out of range and NaN give the amd64 result (CVTTSD2SQ's "integer indefinite", -2^63); Go
    leaves that case implementation-defined.
    """
    if x != x or not -9223372036854777856.0 < x < 9223372036854775808.0:
        return INT64_MIN
    return int(x)


def clamp64(x: float) -> int:
    """Upstream's float-to-tick conversion: NaN or x >= 2^63 saturate to 2^63-1, else truncate."""
    if x != x or x >= 9223372036854775808.0:
        return INT64_MAX
    return trunc_int64(x)


def plain_shortest(x: float) -> str | None:
    """Go's shortest plain-decimal digits of x where Python's repr already has them
    (1e-4 <= |x| < 1e16, and zero), else None. Go only drops the ".0" of an integral value."""
    text = repr(x)
    if "e" in text or "n" in text:
        return None
    return text[:-2] if text.endswith(".0") else text


def format_go_float(x: float) -> str:
    """Format a float64 the way Go's ``encoding/json`` does.

    Shortest round-trip digits (Python's ``repr`` picks the same digits as Go's
    ``strconv.FormatFloat(x, _, -1, 64)``); plain decimal for 1e-6 <= |x| < 1e21 and for zero,
    exponent form otherwise, with a two-digit negative exponent losing its leading zero
    (``1e-7``, ``2.5e-10``, ``1.5e+21``).
    """
    text = plain_shortest(x)
    if text is not None:
        return text
    if x != x or x in (math.inf, -math.inf):
        raise ValueError(f"Go's encoding/json cannot encode {x!r}")
    sign = "-" if math.copysign(1.0, x) < 0 else ""
    magnitude = abs(x)
    if magnitude == 0:
        return sign + "0"
    digits, point = _shortest_digits(magnitude)
    if 1e-6 <= magnitude < 1e21:
        if point <= 0:
            body = "0." + "0" * -point + digits
        elif point >= len(digits):
            body = digits + "0" * (point - len(digits))
        else:
            body = digits[:point] + "." + digits[point:]
    else:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        exponent = point - 1
        if exponent < 0:
            body = f"{mantissa}e-{-exponent}"
        else:
            body = f"{mantissa}e+{exponent:02d}"
    return sign + body


def _shortest_digits(magnitude: float) -> tuple[str, int]:
    """Shortest round-trip decimal digits of a positive float and the decimal point position.

    Returns ``(digits, point)`` with no leading or trailing zeros in ``digits``, such that the
    value is ``0.digits * 10**point``.
    """
    text = repr(magnitude)
    mantissa, _, exp_text = text.partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    all_digits = int_part + frac_part
    point = len(int_part) + (int(exp_text) if exp_text else 0)
    stripped = all_digits.lstrip("0")
    point -= len(all_digits) - len(stripped)
    return stripped.rstrip("0"), point
