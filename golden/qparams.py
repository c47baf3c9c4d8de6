"""Deriving requantizer parameters from a real (float) scale.

- ``quantize_multiplier``: TFLite's ``QuantizeMultiplier`` for the ``tflite`` and ``single``
  modes: ``scale = M * 2**(shift - 31)``, ``M`` a Q31 integer in [2**30, 2**31).
- ``derive_prepost``: the procedure for the ``prepost`` mode (documented in
  docs/requantizer.md), with ``prepost_error_bound`` its worst-case error.
"""

import math

from .requant import SHIFT_MAX, check_mode_params


def _check_scale(scale):
    if not isinstance(scale, (int, float)) or isinstance(scale, bool):
        raise TypeError(f"scale must be a real number, not {scale!r}")
    if not math.isfinite(scale) or scale < 0:
        raise ValueError(f"scale must be finite and >= 0, got {scale!r}")
    return float(scale)


def quantize_multiplier(scale):
    """Return ``(M, shift)`` with ``scale ~= M * 2**(shift-31)``, as TFLite computes them.

    ``M`` is ``round(frac * 2**31)`` (half away from zero) of ``frexp(scale)``'s fraction; a
    fraction that rounds up to 2**31 is halved and the exponent raised; scales below
    2**-32 give ``(0, 0)`` (TFLite flushes them). Scales of 2**30 or more raise: their shift
    would exceed the hardware's range of [-31, 30].
    """
    scale = _check_scale(scale)
    if scale == 0.0:
        return 0, 0
    frac, exp = math.frexp(scale)
    q = math.floor(frac * 2**31 + 0.5)  # frac > 0: half away from zero, like std::round
    if q == 2**31:
        q //= 2
        exp += 1
    if exp < -31:
        return 0, 0
    if exp > SHIFT_MAX:
        raise ValueError(f"scale {scale!r} is too large: its shift {exp} exceeds {SHIFT_MAX}")
    return q, exp


def derive_prepost(scale, *, acc_bound=2**31 - 1, m_bits=16, x_bits=18):
    """Choose ``(M, pre, post)`` for ``prepost`` mode so that ``x*scale`` is approximated.

    1. ``pre`` is the smallest right shift that makes every accumulator with
       ``|x| <= acc_bound`` fit the multiplier's signed ``x_bits`` input, so the saturation
       never acts on such accumulators and the product has at most ``x_bits + m_bits`` bits.
    2. ``post`` is the largest value in [1, x_bits + m_bits - 1] for which
       ``M = round(scale * 2**(pre+post))`` (half up) still fits ``m_bits`` unsigned bits:
       as many significant multiplier bits as the width allows.
    Raises ValueError if even ``post = 1`` needs a wider M (scale too large for the widths).
    """
    check_mode_params(mode="prepost", m_bits=m_bits, x_bits=x_bits)
    scale = _check_scale(scale)
    if not isinstance(acc_bound, int) or not 1 <= acc_bound <= 2**31:
        raise ValueError(f"acc_bound must be an integer in [1, 2**31], not {acc_bound!r}")
    pre = max(0, acc_bound.bit_length() - (x_bits - 1))
    if pre > 31:
        raise ValueError(f"acc_bound {acc_bound} needs a pre-shift of {pre} > 31")
    m_max = (1 << m_bits) - 1
    for post in range(x_bits + m_bits - 1, 0, -1):
        m = math.floor(math.ldexp(scale, pre + post) + 0.5)
        if m <= m_max:
            return m, pre, post
    raise ValueError(f"scale {scale!r} needs a multiplier wider than m_bits={m_bits} "
                     f"(pre={pre}, post=1)")


def prepost_error_bound(scale, m, pre, post, *, acc_bound):
    """Worst-case ``|(sat(x>>pre)*M + 2**(post-1)) >> post - x*scale|`` for ``|x| <= acc_bound``.

    With ``x >> pre = (x - e1) / 2**pre``, ``0 <= e1 <= 2**pre - 1``, and
    ``M = scale * 2**(pre+post) + e2``:

        error <= 1/2                                  (final rounding)
               + (2**pre - 1) * scale                 (bits dropped by the pre-shift)
               + ceil(acc_bound / 2**pre) * |e2| / 2**post   (multiplier quantization)

    The int8 output then differs from ``clamp(round(x*scale) + zp)`` by at most
    ``floor(bound + 1/2)`` steps (the clamp never increases a difference).
    """
    e2 = abs(m - scale * 2.0 ** (pre + post))
    xp_max = -(-acc_bound // (1 << pre))
    return 0.5 + ((1 << pre) - 1) * scale + xp_max * e2 / 2.0**post
