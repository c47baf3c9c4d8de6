"""Plain Python-int twins of the requantizer arithmetic, transliterated from the C sources.

TFLite (tensorflow/lite/kernels/internal/common.h, gemmlowp fixedpoint.h) and TOSA RESCALE,
written with unbounded ints and C's truncating division, for the hypothesis tests.
"""

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def c_div(a, b):
    """C integer division: truncates toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def srdhm(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul for int32 a, b."""
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return c_div(ab + nudge, 1 << 31)


def rdbp(x, exponent):
    """gemmlowp RoundingDivideByPOT."""
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def mbqm_double(x, m, shift):
    """TFLite MultiplyByQuantizedMultiplier, double rounding; None where C would overflow."""
    left, right = max(shift, 0), max(-shift, 0)
    xl = x * (1 << left)
    if not INT32_MIN <= xl <= INT32_MAX:
        return None
    return rdbp(srdhm(xl, m), right)


def mbqm_single(x, m, shift):
    """TFLite MultiplyByQuantizedMultiplier under TFLITE_SINGLE_ROUNDING."""
    total = 31 - shift
    return (x * m + (1 << (total - 1))) >> total


def tosa_apply_scale_32(value, multiplier, shift, double_round):
    """TOSA apply_scale_32 (shift = TOSA's right shift, 2..62), without its REQUIRE."""
    rnd = 1 << (shift - 1)
    if double_round and shift > 31:
        rnd += (1 << 30) if value >= 0 else -(1 << 30)
    return (value * multiplier + rnd) >> shift


def prepost(x, m, pre, post, x_bits):
    xs = max(-(1 << (x_bits - 1)), min((1 << (x_bits - 1)) - 1, x >> pre))
    return (xs * m + (1 << (post - 1))) >> post


def finish(r, zp, lo, hi):
    return max(lo, min(hi, r + zp))
