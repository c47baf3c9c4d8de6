"""Integer neural-network layers, computed as TFLite's reference int8 kernels compute them."""

import numpy as np

from .requant import INT32_MAX, INT32_MIN, check_range, requantize


def fully_connected(x, w, bias, *, input_zero_point, output_multiplier, output_shift=0,
                    output_zero_point, act_min=-128, act_max=127, mode="tflite",
                    pre=0, post=1, m_bits=16, x_bits=18):
    """int8 fully-connected layer with fused activation clamp.

    ``acc[b, o] = sum_i (x[b, i] - input_zero_point) * w[o, i] + bias[o]`` (int32, exact: an
    accumulator outside int32 raises instead of wrapping), then
    ``requantize(acc, multiplier=output_multiplier, shift=output_shift, ...)`` per output
    channel (scalars or arrays of shape (out,)). ``x``: int8 (batch, in); ``w``: int8
    (out, in) in [-127, 127] (symmetric weights); ``bias``: int32 (out,) or None.
    ``mode="single"`` reproduces LiteRT's reference FULLY_CONNECTED kernel when the
    multiplier is derived from the double-precision scale; ``mode="tflite"`` reproduces its
    integer (double-rounding) kernels, e.g. reference CONV_2D. ``pre``/``post`` (and the
    widths) are for ``mode="prepost"``. Returns int8 (batch, out).
    """
    acc = fc_accumulators(x, w, bias, input_zero_point=input_zero_point)
    return requantize(acc, multiplier=output_multiplier, shift=output_shift, pre=pre,
                      post=post, output_zero_point=output_zero_point, act_min=act_min,
                      act_max=act_max, mode=mode, m_bits=m_bits, x_bits=x_bits)


def fc_accumulators(x, w, bias, *, input_zero_point):
    """``sum_i (x[b, i] - input_zero_point) * w[o, i] + bias[o]`` as int64 (batch, out).

    Range-checked like ``fully_connected``; an accumulator outside int32 raises.
    """
    x = check_range("x", x, -128, 127)
    w = check_range("w", w, -127, 127)
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(f"x must be (batch, in) and w (out, in) with the same 'in'; "
                         f"got x{x.shape} and w{w.shape}")
    zp = int(check_range("input_zero_point", input_zero_point, -128, 127))
    b = (np.zeros(w.shape[0], np.int64) if bias is None
         else check_range("bias", bias, INT32_MIN, INT32_MAX))
    if b.shape != (w.shape[0],):
        raise ValueError(f"bias must have shape ({w.shape[0]},), got {b.shape}")
    acc = (x - zp) @ w.T + b
    check_range("accumulator", acc, INT32_MIN, INT32_MAX)
    return acc
