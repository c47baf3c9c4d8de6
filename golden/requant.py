"""Integer requantization: int32 accumulator to int8, bit-exact to the hardware `Requantizer`.

Three modes, chosen by the keyword ``mode`` (the same keyword parameters as the block):

``tflite``  TFLite reference double rounding, ``MultiplyByQuantizedMultiplier`` as gemmlowp
            and TFLite builds without single rounding compute it:
            ``RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x << l, M), r)`` with
            ``l = max(shift, 0)``, ``r = max(-shift, 0)``. Equal to TOSA RESCALE with
            ``double_round``: ``(x*M + 2**(S-1) + d) >> S``, ``S = 31 - shift``, where
            ``d = +-2**30`` (the sign of ``x*M``; ``+`` for a zero product) when ``S > 31``,
            else 0.
``single``  TFLite's single-rounding variant (TOSA SINGLE_ROUND):
            ``(x*M + 2**(30-shift)) >> (31-shift)``.
``dual``    ``tflite`` or ``single`` per accumulator, as ``double_round`` (1 or 0, broadcast
            against ``acc``) says: one block for layers of both kinds (a convolution
            rounds twice, LiteRT's FULLY_CONNECTED once); ``multiplier`` may be negative
            only where ``double_round`` is 1.
``prepost`` the pre-shift / multiply / post-shift method of US10579383:
            ``(sat_xbits(x >> pre) * M + 2**(post-1)) >> post``, where ``sat_xbits``
            saturates to a signed ``x_bits`` value (the multiplier's input width) and ``M``
            is an unsigned ``m_bits`` integer.

Every mode then adds the output zero point and clamps to ``[act_min, act_max]``::

    out = clamp(rescaled + output_zero_point, act_min, act_max)      # int8

``shift`` follows TFLite's sign convention (positive = left), range [-31, 30].
The intermediates are computed exactly (no int32 wrap): where TFLite's C code would overflow
int32 (a left shift of a large accumulator; TOSA's REQUIRE fails there) the golden model and
the hardware give the exactly rounded value, saturated by the final clamp. The one case that
the TFLite primitives define by saturation, ``SRDHM(INT32_MIN, INT32_MIN)``, therefore gives
the same int8 output.

``>>`` is an arithmetic (floor) shift throughout, so every rounding above is "round half up"
at its step except the double-rounding nudge, which makes the first step round half away
from zero. All arithmetic is on int64 NumPy arrays, which the ranges below keep exact.
"""

import numpy as np

from sparq.spec import params as spec_params

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
MODES = spec_params.REQUANT_MODES
SHIFT_MIN, SHIFT_MAX = -31, 30


def _as_int64(name, value):
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"{name} must hold integers, not {arr.dtype} values")
    return arr.astype(np.int64)


def check_range(name, value, lo, hi):
    """Return ``value`` as int64; raise ValueError naming the first value outside [lo, hi]."""
    arr = _as_int64(name, value)
    bad = (arr < lo) | (arr > hi)
    if np.any(bad):
        first = arr[bad].flat[0]
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {int(first)}")
    return arr


def check_mode_params(**params):
    """Validate the elaboration parameters shared by the golden model and the block."""
    return spec_params.requant(**params)


def round_shift(p, s):
    """``(p + 2**(s-1)) >> s`` for int64 ``p`` and per-element ``s >= 1``, without overflow.

    Written as ``(p >> s) + bit(p, s-1)``: adding ``2**(s-1)`` carries into bit ``s``
    exactly when bit ``s-1`` of ``p`` is set (two's complement, floor shift).
    """
    p = np.asarray(p, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    return (p >> s) + ((p >> (s - 1)) & 1)


def rescale_q31(x, multiplier, shift, *, double_round):
    """Exact ``x * M * 2**(shift-31)`` rounded as in ``tflite`` (double) or ``single`` mode;
    ``double_round`` a bool or, per element, an array of them (``dual`` mode)."""
    x = np.asarray(x, dtype=np.int64)
    m = np.asarray(multiplier, dtype=np.int64)
    s = 31 - np.asarray(shift, dtype=np.int64)
    p = x * m  # |p| <= 2**62: exact in int64
    if np.any(double_round):
        nudge = np.where(p >= 0, 1 << 30, -(1 << 30))
        p = p + np.where((s > 31) & np.asarray(double_round, bool), nudge, 0)
    return round_shift(p, s)


def saturate(x, bits):
    """Clamp to the signed ``bits``-bit range."""
    return np.clip(x, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def rescale_prepost(x, multiplier, pre, post, *, x_bits):
    """``(sat_xbits(x >> pre) * M + 2**(post-1)) >> post``."""
    x = np.asarray(x, dtype=np.int64)
    xs = saturate(x >> np.asarray(pre, dtype=np.int64), x_bits)
    return round_shift(xs * np.asarray(multiplier, dtype=np.int64), post)


def requantize(acc, *, multiplier, shift=0, pre=0, post=1, output_zero_point=0,
               act_min=-128, act_max=127, mode="tflite", m_bits=16, x_bits=18,
               double_round=None):
    """Requantize int32 accumulators to int8 (see the module docstring for the contract).

    ``acc`` is any int array; the channel parameters broadcast against it (per-channel arrays
    along the last axis, or scalars). ``shift`` is used by ``tflite``/``single``, ``pre`` and
    ``post`` by ``prepost``, ``double_round`` (0/1, broadcast) by ``dual`` only. Every value
    is range-checked; the first bad one is named.
    Returns an int8 array of ``acc``'s broadcast shape.
    """
    check_mode_params(mode=mode, m_bits=m_bits, x_bits=x_bits)
    acc = check_range("acc", acc, INT32_MIN, INT32_MAX)
    zp = check_range("output_zero_point", output_zero_point, -128, 127)
    lo = check_range("act_min", act_min, -128, 127)
    hi = check_range("act_max", act_max, -128, 127)
    if np.any(lo > hi):
        raise ValueError(f"act_min must not exceed act_max, got act_min={lo.max()} "
                         f"act_max={hi.min()}")
    if mode == "prepost":
        m = check_range("multiplier", multiplier, 0, (1 << m_bits) - 1)
        pre = check_range("pre", pre, 0, 31)
        post = check_range("post", post, 1, x_bits + m_bits - 1)
        r = rescale_prepost(acc, m, pre, post, x_bits=x_bits)
    else:
        double = mode == "tflite"
        if mode == "dual":
            if double_round is None:
                raise ValueError("mode 'dual' needs double_round (1: tflite, 0: single)")
            double = check_range("double_round", double_round, 0, 1).astype(bool)
        elif double_round is not None:
            raise ValueError(f"double_round is for mode 'dual', not {mode!r}")
        m = check_range("multiplier", multiplier, INT32_MIN, INT32_MAX)
        single_neg = (m < 0) & ~np.asarray(double, bool)
        if np.any(single_neg):
            first = int(np.broadcast_to(m, single_neg.shape)[single_neg].flat[0])
            raise ValueError(f"multiplier must be in [0, {INT32_MAX}] where the rounding is "
                             f"single, got {first}")
        shift = check_range("shift", shift, SHIFT_MIN, SHIFT_MAX)
        return requantize_q31(acc, m, shift, zp, lo, hi, double_round=double)
    return np.clip(r + zp, lo, hi).astype(np.int8)


def requantize_q31(acc, multiplier, shift, output_zero_point, act_min, act_max, *,
                   double_round):
    """``requantize`` in ``tflite`` (``double_round``) or ``single`` mode, its parameters
    already checked (for callers that check a channel once and use it often)."""
    r = rescale_q31(acc, multiplier, shift, double_round=double_round)
    return np.clip(r + output_zero_point, act_min, act_max).astype(np.int8)


def multiply_by_quantized_multiplier(x, multiplier, shift, *, mode="tflite"):
    """TFLite's ``MultiplyByQuantizedMultiplier`` as int32 (``tflite`` or ``single`` rounding).

    Saturates to int32 where TFLite saturates (``SRDHM(INT32_MIN, INT32_MIN)``) and where its
    int32 intermediates would overflow (undefined behaviour in the C code).
    """
    if mode not in ("tflite", "single"):
        raise ValueError(f"mode must be 'tflite' or 'single', not {mode!r}")
    x = check_range("x", x, INT32_MIN, INT32_MAX)
    m = check_range("multiplier", multiplier, INT32_MIN if mode == "tflite" else 0, INT32_MAX)
    shift = check_range("shift", shift, SHIFT_MIN, SHIFT_MAX)
    r = rescale_q31(x, m, shift, double_round=(mode == "tflite"))
    return np.clip(r, INT32_MIN, INT32_MAX).astype(np.int32)
