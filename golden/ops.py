"""int8 graph ops, bit-exact to LiteRT's reference kernels (the ``BUILTIN_REF`` op resolver).

Each op is two steps, as in LiteRT: a *parameter derivation* (the kernel's ``Prepare``) turns
the float32 scales stored in the .tflite into integers (multipliers, shifts, the activation
clamp, the softmax's ``diff_min``) with LiteRT's double-precision arithmetic and ``frexp``;
the *op* itself is then integer-only (int64 NumPy arrays, or Python ints where 64 bits do not
suffice). Layout NHWC as in TFLite; a leading batch axis of any size. Inputs are range-checked
(a ValueError names the first bad value); nothing wraps.

Ops and the reference kernel each is checked against (``tests/test_litert_ops.py``; paths
under ``tensorflow/lite/kernels/``, ``tflite/kernels/`` in the LiteRT repository):

============================  ==================================================================
``conv_2d``                   ``internal/reference/integer_ops/conv.h`` ``ConvPerChannel``;
                              parameters ``kernel_util.cc`` PopulateConvolutionQuantizationParams
``depthwise_conv_2d``         ``internal/reference/integer_ops/depthwise_conv.h``
                              ``DepthwiseConvPerChannel``
``average_pool_2d``           ``internal/reference/integer_ops/pooling.h`` ``AveragePool``
``add``                       ``internal/reference/integer_ops/add.h`` ``Add`` (broadcast:
                              ``BroadcastAdd6DSlow``);
                              parameters ``add.cc`` Prepare (left shift 20)
``fully_connected``           ``internal/reference/integer_ops/fully_connected.h``
                              ``FullyConnected`` / ``FullyConnectedPerChannel`` (the variants
                              taking float scales: ``round((double)acc * scale)``)
``softmax``                   ``internal/reference/softmax.h`` ``Softmax<int8_t, int8_t>``
                              (gemmlowp fixed point); parameters ``activations.cc``
                              SoftmaxPrepare, ``quantization_util.cc`` PreprocessSoftmaxScaling
``reshape``                   ``reshape.cc`` (a copy)
============================  ==================================================================

Rounding: CONV_2D, DEPTHWISE_CONV_2D and ADD use ``MultiplyByQuantizedMultiplier`` with
double rounding (``golden.requant`` mode ``"tflite"``; LiteRT's pip build does not define
``TFLITE_SINGLE_ROUNDING``). FULLY_CONNECTED rounds the double-precision product half away
from zero, which is *not* always ``golden.requant`` mode ``"single"``: see
``rescale_double``.
"""

import math

import numpy as np

from .layers import fc_accumulators
from .qparams import quantize_multiplier
from .requant import (
    INT32_MAX,
    INT32_MIN,
    check_range,
    multiply_by_quantized_multiplier,
    requantize,
)

ACT_NONE, ACT_RELU, ACT_RELU_N1_TO_1, ACT_RELU6 = 0, 1, 2, 3  # TFLite ActivationFunctionType
PADDINGS = ("SAME", "VALID")
ADD_LEFT_SHIFT = 20  # add.cc: 20 for int8 (15 for int16)
SOFTMAX_DIFF_INTEGER_BITS = 5  # reference softmax: the scaled difference is Q5.26
SOFTMAX_ACCUM_INTEGER_BITS = 12  # the sum of exponentials is Q12.19


# ---------------------------------------------------------------------------------------------
# Parameter derivation (LiteRT's Prepare): floats in, integers out.

def f32(value):
    """The float32 value a .tflite stores, as the Python float (a double) LiteRT widens it to."""
    v = float(np.float32(value))
    if not math.isfinite(v):
        raise ValueError(f"a scale must be finite, got {value!r}")
    return v


def _positive_scale(name, value):
    v = f32(value)
    if v <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return v


def _round_half_away(v):
    """C's ``round`` / ``TfLiteRound`` of a float: half away from zero."""
    return int(math.copysign(math.floor(abs(v) + 0.5), v)) if abs(v) < 2**52 else int(v)


def act_range(activation, scale, zero_point):
    """``(act_min, act_max)`` of a fused activation, as ``CalculateActivationRangeQuantized``.

    A bound ``b`` is quantized as ``zero_point + TfLiteRound(b / scale)`` with a float32
    division (``kernel_util.cc`` ``Quantize``) and clamped to [-128, 127].
    ``activation``: 0 NONE, 1 RELU, 2 RELU_N1_TO_1, 3 RELU6.
    """
    scale = np.float32(_positive_scale("scale", scale))
    zp = int(check_range("zero_point", zero_point, -128, 127))

    def q(b):
        return zp + _round_half_away(float(np.float32(b) / scale))

    if activation == ACT_NONE:
        return -128, 127
    if activation == ACT_RELU:
        return max(-128, q(0.0)), 127
    if activation == ACT_RELU_N1_TO_1:
        return max(-128, q(-1.0)), min(127, q(1.0))
    if activation == ACT_RELU6:
        return max(-128, q(0.0)), min(127, q(6.0))
    raise ValueError(f"activation must be one of 0 (NONE), 1 (RELU), 2 (RELU_N1_TO_1), "
                     f"3 (RELU6), not {activation!r}")


def conv_output_params(input_scale, weight_scales, output_scale, channels):
    """Per-channel ``(output_multiplier, output_shift)`` int64 arrays for CONV_2D and
    DEPTHWISE_CONV_2D, as PopulateConvolutionQuantizationParams: the effective scale
    ``(double)s_in * (double)s_w[c] / (double)s_out`` through QuantizeMultiplier
    (``golden.qparams.quantize_multiplier``). A single weight scale is broadcast.
    """
    s_in, s_out, ws = _scales(input_scale, weight_scales, output_scale, channels)
    pairs = [quantize_multiplier(s_in * _positive_scale("weight_scale", s) / s_out)
             for s in ws]
    return (np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64))


def _scales(input_scale, weight_scales, output_scale, channels):
    """The input and output scales (checked positive) and ``channels`` float32 weight
    scales (a single one broadcast)."""
    s_in = _positive_scale("input_scale", input_scale)
    s_out = _positive_scale("output_scale", output_scale)
    ws = np.atleast_1d(np.asarray(weight_scales, np.float32))
    if ws.size == 1:
        ws = np.repeat(ws, channels)
    if ws.shape != (channels,):
        raise ValueError(f"weight_scales must hold 1 or {channels} scales, got {ws.size}")
    return s_in, s_out, ws


def fc_output_params(input_scale, weight_scales, output_scale, channels):
    """Per-channel ``(mantissa, exponent)`` int64 arrays for FULLY_CONNECTED: the double
    ``(double)s_in * (double)s_w[c] / (double)s_out`` that the reference kernel multiplies
    by, written exactly as ``mantissa * 2**exponent`` with a 53-bit ``mantissa``."""
    s_in, s_out, ws = _scales(input_scale, weight_scales, output_scale, channels)
    mant, expo = [], []
    for s in ws:
        frac, e = math.frexp(s_in * _positive_scale("weight_scale", s) / s_out)
        mant.append(int(frac * 2**53))  # exact: frac has 53 significant bits
        expo.append(e - 53)
    return np.array(mant, np.int64), np.array(expo, np.int64)


def add_params(input1_scale, input2_scale, output_scale):
    """ADD's integer parameters, as ``add.cc`` Prepare for int8 (doubles, frexp)::

        twice_max = 2 * max(s1, s2);  left_shift = 20
        input{1,2}_(multiplier, shift) = QuantizeMultiplierSmallerThanOneExp(s{1,2} / twice_max)
        output_(multiplier, shift) = QuantizeMultiplierSmallerThanOneExp(
                                         twice_max / (2**20 * s_out))

    Raises ValueError if the output multiplier is not below 1 (LiteRT refuses the model).
    """
    s1 = _positive_scale("input1_scale", input1_scale)
    s2 = _positive_scale("input2_scale", input2_scale)
    so = _positive_scale("output_scale", output_scale)
    twice_max = 2 * max(s1, s2)
    out = {"left_shift": ADD_LEFT_SHIFT}
    for name, real in (("input1", s1 / twice_max), ("input2", s2 / twice_max),
                       ("output", twice_max / (float(1 << ADD_LEFT_SHIFT) * so))):
        if not 0 <= real < 1:
            raise ValueError(f"ADD's {name} multiplier {real!r} is not in [0, 1) (scales "
                             f"{s1!r}, {s2!r} -> {so!r})")
        m, s = quantize_multiplier(real)
        out[f"{name}_multiplier"], out[f"{name}_shift"] = m, s
    return out


def softmax_params(beta, input_scale):
    """SOFTMAX's integer parameters, as ``activations.cc`` SoftmaxPrepare (kReference)::

        real = min(beta * s_in * 2**26, 2**31 - 1)       # PreprocessSoftmaxScaling, doubles
        (input_multiplier, input_left_shift) = QuantizeMultiplierGreaterThanOne(real)
        diff_min = -floor(31 * 2**26 / 2**input_left_shift)   # CalculateInputRadius(5, shift)

    Raises ValueError if ``real <= 1`` (LiteRT's check fails) or its shift exceeds 30.
    """
    beta = f32(beta)
    s_in = _positive_scale("input_scale", input_scale)
    real = min(beta * s_in * float(1 << (31 - SOFTMAX_DIFF_INTEGER_BITS)), float(2**31 - 1))
    if not real > 1:
        raise ValueError(f"softmax's beta * input_scale * 2**26 = {real!r} must exceed 1")
    m, shift = quantize_multiplier(real)
    radius = (((1 << SOFTMAX_DIFF_INTEGER_BITS) - 1) << (31 - SOFTMAX_DIFF_INTEGER_BITS)) >> shift
    return {"input_multiplier": m, "input_left_shift": shift, "diff_min": -radius}


def out_size(padding, in_size, filter_size, stride, dilation=1):
    """Output length along one axis, as TFLite's ``ComputeOutSize``."""
    _check_padding(padding)
    eff = (filter_size - 1) * dilation + 1
    return (in_size + stride - 1) // stride if padding == "SAME" else \
        (in_size + stride - eff) // stride


def pad_before(in_size, filter_size, stride, dilation, out):
    """Padding before the first element (top or left), as TFLite's ``ComputePadding``."""
    eff = (filter_size - 1) * dilation + 1
    return max(0, ((out - 1) * stride + eff - in_size) // 2)


def _check_padding(padding):
    if padding not in PADDINGS:
        raise ValueError(f"padding must be 'SAME' or 'VALID', not {padding!r}")


def _pair(name, v):
    t = (v, v) if isinstance(v, int) else tuple(v)
    if len(t) != 2 or not all(isinstance(i, (int, np.integer)) and i >= 1 for i in t):
        raise ValueError(f"{name} must be a positive int or a pair of them, not {v!r}")
    return int(t[0]), int(t[1])


# ---------------------------------------------------------------------------------------------
# Integer ops.

def _window(h, w, kh, kw, stride, dilation, padding):
    """Output size and top/left padding of a 2-D window op, TFLite's padding computation."""
    sh, sw = _pair("stride", stride)
    dh, dw = _pair("dilation", dilation)
    _check_padding(padding)
    oh, ow = out_size(padding, h, kh, sh, dh), out_size(padding, w, kw, sw, dw)
    if oh < 1 or ow < 1:
        raise ValueError(f"a {kh}x{kw} window (dilation {dh}x{dw}) does not fit a {h}x{w} "
                         f"input with {padding} padding")
    return (oh, ow), (pad_before(h, kh, sh, dh, oh), pad_before(w, kw, sw, dw, ow)), (sh, sw), \
        (dh, dw)


def _taps(xz, kh, kw, out, pad, stride, dilation):
    """Yield ``(ky, kx, view)``: for each tap the (N, OH, OW, C) input values it reads, with
    zeros for taps outside the image (where the reference kernels skip the tap)."""
    n, h, w, c = xz.shape
    (oh, ow), (pt, pl), (sh, sw), (dh, dw) = out, pad, stride, dilation
    pb = max(0, (oh - 1) * sh + (kh - 1) * dh - pt - (h - 1))
    pr = max(0, (ow - 1) * sw + (kw - 1) * dw - pl - (w - 1))
    xp = np.zeros((n, h + pt + pb, w + pl + pr, c), xz.dtype)
    xp[:, pt:pt + h, pl:pl + w] = xz
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dh, kx * dw
            yield ky, kx, xp[:, y0:y0 + (oh - 1) * sh + 1:sh, x0:x0 + (ow - 1) * sw + 1:sw]


def _check_nhwc(name, x):
    x = check_range(name, x, -128, 127)
    if x.ndim != 4:
        raise ValueError(f"{name} must be NHWC (4 axes), got shape {x.shape}")
    return x


def _bias(bias, channels):
    if bias is None:
        return np.zeros(channels, np.int64)
    b = check_range("bias", bias, INT32_MIN, INT32_MAX)
    if b.shape != (channels,):
        raise ValueError(f"bias must have shape ({channels},), got {b.shape}")
    return b


def conv_2d_accumulators(x, w, bias, *, stride=1, padding="VALID", dilation=1,
                         input_zero_point):
    """CONV_2D's int32 accumulators (N, OH, OW, OC) as int64: for every output position and
    channel ``sum (x - input_zero_point) * w + bias[oc]`` over the taps inside the image.
    ``x``: int8 (N, H, W, IC); ``w``: int8 (OC, KH, KW, IC) in [-127, 127]. An accumulator
    outside int32 raises (the reference kernel's int32 would wrap)."""
    x = _check_nhwc("x", x)
    w = check_range("w", w, -127, 127)
    if w.ndim != 4 or w.shape[3] != x.shape[3]:
        raise ValueError(f"w must be (OC, KH, KW, IC) with IC = {x.shape[3]}, got {w.shape}")
    zp = int(check_range("input_zero_point", input_zero_point, -128, 127))
    oc, kh, kw, _ = w.shape
    b = _bias(bias, oc)
    out, pad, st, dl = _window(x.shape[1], x.shape[2], kh, kw, stride, dilation, padding)
    acc = np.zeros((x.shape[0], *out, oc), np.int64)
    for ky, kx, v in _taps(x - zp, kh, kw, out, pad, st, dl):
        acc += v @ w[:, ky, kx, :].T
    acc += b
    check_range("accumulator", acc, INT32_MIN, INT32_MAX)
    return acc


def conv_2d(x, w, bias, *, stride=1, padding="VALID", dilation=1, input_zero_point,
            output_multiplier, output_shift, output_zero_point, act_min=-128, act_max=127):
    """int8 CONV_2D (NHWC), bit-exact to LiteRT's reference ``ConvPerChannel``.

    ``out = clamp(MultiplyByQuantizedMultiplier(acc, M[oc], shift[oc]) + output_zero_point,
    act_min, act_max)`` with ``acc`` from ``conv_2d_accumulators`` and the double-rounding
    rescale (``golden.requant.requantize`` mode ``"tflite"``). ``stride``/``dilation``: int
    or (h, w); ``padding`` "SAME" or "VALID" (TFLite's ComputePadding: the odd pixel goes
    after). ``output_multiplier``/``output_shift``: per channel (``conv_output_params``) or
    scalars. Returns int8 (N, OH, OW, OC).
    """
    acc = conv_2d_accumulators(x, w, bias, stride=stride, padding=padding, dilation=dilation,
                               input_zero_point=input_zero_point)
    return requantize(acc, multiplier=output_multiplier, shift=output_shift,
                      output_zero_point=output_zero_point, act_min=act_min, act_max=act_max,
                      mode="tflite")


def depthwise_conv_2d(x, w, bias, *, stride=1, padding="VALID", dilation=1,
                      depth_multiplier=1, input_zero_point, output_multiplier, output_shift,
                      output_zero_point, act_min=-128, act_max=127):
    """int8 DEPTHWISE_CONV_2D (NHWC), bit-exact to LiteRT's ``DepthwiseConvPerChannel``.

    ``w``: int8 (1, KH, KW, C * depth_multiplier) in [-127, 127]; output channel ``oc`` reads
    input channel ``oc // depth_multiplier``:
    ``acc[oc] = sum_taps (x[oc // dm] - input_zero_point) * w[oc] + bias[oc]`` (taps outside
    the image skipped), then requantized as ``conv_2d``. Returns int8 (N, OH, OW, C * dm).
    """
    x = _check_nhwc("x", x)
    w = check_range("w", w, -127, 127)
    if not isinstance(depth_multiplier, int) or depth_multiplier < 1:
        raise ValueError(f"depth_multiplier must be an int >= 1, not {depth_multiplier!r}")
    if w.ndim != 4 or w.shape[0] != 1 or w.shape[3] != x.shape[3] * depth_multiplier:
        raise ValueError(f"w must be (1, KH, KW, {x.shape[3] * depth_multiplier}), got "
                         f"{w.shape}")
    zp = int(check_range("input_zero_point", input_zero_point, -128, 127))
    _, kh, kw, oc = w.shape
    b = _bias(bias, oc)
    out, pad, st, dl = _window(x.shape[1], x.shape[2], kh, kw, stride, dilation, padding)
    xz = np.repeat(x - zp, depth_multiplier, axis=3)
    acc = np.zeros((x.shape[0], *out, oc), np.int64)
    for ky, kx, v in _taps(xz, kh, kw, out, pad, st, dl):
        acc += v * w[0, ky, kx]
    acc += b
    check_range("accumulator", acc, INT32_MIN, INT32_MAX)
    return requantize(acc, multiplier=output_multiplier, shift=output_shift,
                      output_zero_point=output_zero_point, act_min=act_min, act_max=act_max,
                      mode="tflite")


def average_pool_2d(x, *, filter_size, stride=1, padding="VALID", act_min=-128, act_max=127):
    """int8 AVERAGE_POOL_2D (NHWC), bit-exact to LiteRT's reference ``AveragePool``.

    For each window, over the ``n`` taps inside the image: ``s = sum x`` (the raw int8
    values: input and output share scale and zero point), ``avg = (s + n//2) / n`` if
    ``s > 0`` else ``(s - n//2) / n`` with C's truncating division (round half away from
    zero), then clamped to [act_min, act_max]. Returns int8 (N, OH, OW, C).
    """
    x = _check_nhwc("x", x)
    kh, kw = _pair("filter_size", filter_size)
    lo = int(check_range("act_min", act_min, -128, 127))
    hi = int(check_range("act_max", act_max, -128, 127))
    out, pad, st, dl = _window(x.shape[1], x.shape[2], kh, kw, stride, 1, padding)
    acc = np.zeros((x.shape[0], *out, x.shape[3]), np.int64)
    cnt = np.zeros_like(acc)
    ones = np.ones_like(x)
    for (_, _, v), (_, _, m) in zip(_taps(x, kh, kw, out, pad, st, dl),
                                    _taps(ones, kh, kw, out, pad, st, dl), strict=True):
        acc += v
        cnt += m
    if np.any(cnt == 0):
        raise ValueError("a pooling window lies wholly outside the input")
    half = cnt // 2
    avg = np.where(acc > 0, (acc + half) // cnt, -((half - acc) // cnt))
    return np.clip(avg, lo, hi).astype(np.int8)


def add(x1, x2, *, input1_zero_point, input2_zero_point, output_zero_point, input1_multiplier,
        input1_shift, input2_multiplier, input2_shift, output_multiplier, output_shift,
        left_shift=ADD_LEFT_SHIFT, act_min=-128, act_max=127):
    """int8 ADD with NumPy broadcasting, bit-exact to LiteRT's reference ``Add`` (``AddFunc``)::

        v_k   = MBQM((x_k - input_k_zero_point) * 2**left_shift, input_k_multiplier,
                     input_k_shift)                             # k = 1, 2
        out   = clamp(MBQM(v_1 + v_2, output_multiplier, output_shift) + output_zero_point,
                      act_min, act_max)

    where MBQM is ``MultiplyByQuantizedMultiplierSmallerThanOneExp`` (double rounding,
    shifts <= 0). Parameters from ``add_params``. Returns int8 of the broadcast shape.
    """
    x1 = check_range("x1", x1, -128, 127)
    x2 = check_range("x2", x2, -128, 127)
    zp1 = int(check_range("input1_zero_point", input1_zero_point, -128, 127))
    zp2 = int(check_range("input2_zero_point", input2_zero_point, -128, 127))
    if not isinstance(left_shift, int) or not 0 <= left_shift <= 22:
        raise ValueError(f"left_shift must be an int in [0, 22], not {left_shift!r}")
    for name, s in (("input1_shift", input1_shift), ("input2_shift", input2_shift),
                    ("output_shift", output_shift)):
        check_range(name, s, -31, 0)
    v1 = multiply_by_quantized_multiplier((x1 - zp1) << left_shift, input1_multiplier,
                                          input1_shift).astype(np.int64)
    v2 = multiply_by_quantized_multiplier((x2 - zp2) << left_shift, input2_multiplier,
                                          input2_shift).astype(np.int64)
    return requantize(v1 + v2, multiplier=output_multiplier, shift=output_shift,
                      output_zero_point=output_zero_point, act_min=act_min, act_max=act_max,
                      mode="tflite")


def reshape(x, shape):
    """RESHAPE: the same int8 values in a new shape (quantization unchanged)."""
    return np.reshape(check_range("x", x, -128, 127).astype(np.int8), shape)


def rescale_double(acc, mantissa, exponent):
    """``round((double)acc * scale)`` exactly as C++ computes it, in integers, where
    ``scale = mantissa * 2**exponent`` (``fc_output_params``; per channel along the last
    axis, or scalars): the product ``acc * mantissa`` is rounded to a double's 53 significant
    bits (to nearest, ties to even), then to an integer half away from zero (``round``).

    This differs from ``golden.requant`` mode ``"single"`` (a 31-bit multiplier) where the
    exact product lies within about ``|acc| * scale * 2**-31`` of a half-integer, and for
    negative exact halves (``"single"`` rounds them up). Returns int64 of ``acc``'s shape.
    The arithmetic is on Python ints (the product has up to 84 bits).
    """
    acc = check_range("acc", acc, INT32_MIN, INT32_MAX)
    mant, expo = np.broadcast_arrays(np.asarray(mantissa, np.int64),
                                     np.asarray(exponent, np.int64), acc)[:2]
    check_range("mantissa", mant, 1 << 52, (1 << 53) - 1)

    def one(a, m, e):
        p = abs(int(a)) * int(m)
        n = max(0, p.bit_length() - 53)
        if n:  # round p to 53 significant bits, ties to even
            q, r = p >> n, p & ((1 << n) - 1)
            half = 1 << (n - 1)
            q += r > half or (r == half and q & 1)
            p = q << n
        e = int(e)
        if e >= 0:
            v = p << e
        else:  # half away from zero (p >= 0 here)
            v = (p + (1 << (-e - 1))) >> -e
        return -v if a < 0 else v

    out = np.frompyfunc(one, 3, 1)(acc, mant, expo)
    return np.asarray(out, dtype=object).astype(np.int64)


def fully_connected(x, w, bias, *, input_zero_point, output_mantissa, output_exponent,
                    output_zero_point, act_min=-128, act_max=127):
    """int8 FULLY_CONNECTED, bit-exact to LiteRT's reference ``FullyConnected`` and
    ``FullyConnectedPerChannel`` (the variants that take the float scales)::

        acc = sum_i (x[b, i] - input_zero_point) * w[o, i] + bias[o]   # golden.layers
        out = clamp(round((double)acc * scale[o]) + output_zero_point, act_min, act_max)

    with ``scale = output_mantissa * 2**output_exponent`` (``fc_output_params``) and the
    product rounded as ``rescale_double``. ``x``: int8 (..., in), flattened to (batch, in)
    as TFLite does; ``w``: int8 (out, in). Returns int8 (batch, out).
    """
    w = np.asarray(w)
    if w.ndim != 2:
        raise ValueError(f"w must be (out, in), got shape {w.shape}")
    x = np.asarray(x)
    if x.size % w.shape[1]:
        raise ValueError(f"x of shape {x.shape} does not flatten to rows of {w.shape[1]}")
    acc = fc_accumulators(x.reshape(-1, w.shape[1]), w, bias,
                          input_zero_point=input_zero_point)
    zp = int(check_range("output_zero_point", output_zero_point, -128, 127))
    lo = int(check_range("act_min", act_min, -128, 127))
    hi = int(check_range("act_max", act_max, -128, 127))
    r = rescale_double(acc, output_mantissa, output_exponent)
    check_range("rescaled accumulator", r, INT32_MIN, INT32_MAX)  # C's int32 cast
    return np.clip(r + zp, lo, hi).astype(np.int8)


# gemmlowp fixed-point primitives (fixedpoint/fixedpoint.h), on int64 arrays holding int32.

def _srdhm(a, b):
    """SaturatingRoundingDoublingHighMul: ``(a*b + nudge) / 2**31`` truncated, nudge
    ``2**30`` (or ``1 - 2**30`` for a negative product); ``MIN * MIN`` saturates."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    p = a * b
    p = p + np.where(p >= 0, 1 << 30, 1 - (1 << 30))
    q = np.where(p >= 0, p >> 31, -((-p) >> 31))
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, q)


def _rdbpot(x, exponent):
    """RoundingDivideByPOT: ``x / 2**exponent`` rounded half away from zero."""
    x = np.asarray(x, np.int64)
    mask = (np.int64(1) << exponent) - 1
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + ((x & mask) > threshold)


def _sat_shl(x, exponent):
    """SaturatingRoundingMultiplyByPOT with a positive exponent: saturating left shift."""
    return np.clip(np.asarray(x, np.int64) << exponent, INT32_MIN, INT32_MAX)


def _exp_on_interval_between_negative_one_quarter_and_0_excl(a):
    x = a + (1 << 28)  # + 1/8 in Q0.31
    x2 = _srdhm(x, x)
    x3 = _srdhm(x2, x)
    x4 = _srdhm(x2, x2)
    x4_over_4 = _rdbpot(x4, 2)
    poly = _rdbpot(_srdhm(x4_over_4 + x3, 715827883) + x2, 1)  # 715827883: 1/3
    c = 1895147668  # exp(-1/8)
    return c + _srdhm(c, x + poly)


_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
               (2, 39332535), (3, 720401), (4, 242))


def _exp_on_negative_values(a, integer_bits):
    """gemmlowp ``exp_on_negative_values``: Q(integer_bits) raw in, Q0.31 raw out."""
    frac_bits = 31 - integer_bits
    quarter = 1 << (frac_bits - 2)
    a_mod = (a & (quarter - 1)) - quarter
    result = _exp_on_interval_between_negative_one_quarter_and_0_excl(
        _sat_shl(a_mod, integer_bits))
    remainder = a_mod - a
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent:
            bit = (remainder & (1 << (frac_bits + exponent))) != 0
            result = np.where(bit, _srdhm(result, multiplier), result)
    if integer_bits > 5:
        result = np.where(a < -(1 << (36 - integer_bits)), 0, result)
    return np.where(a == 0, INT32_MAX, result)


def _one_over_one_plus_x_for_x_in_0_1(a):
    """gemmlowp ``one_over_one_plus_x_for_x_in_0_1``: Newton-Raphson, Q0.31 in and out."""
    s = a + INT32_MAX
    half_denominator = np.where(s >= 0, (s + 1) // 2, -((-(s - 1)) // 2))  # RoundingHalfSum
    x = 1515870810 + _srdhm(half_denominator, -1010580540)  # Q2.29: 48/17 - 32/17 * d
    for _ in range(3):
        one_minus = (1 << 29) - _srdhm(half_denominator, x)
        x = x + _sat_shl(_srdhm(x, one_minus), 2)
    return _sat_shl(x, 1)


def softmax(x, *, input_multiplier, input_left_shift, diff_min):
    """int8 SOFTMAX over the last axis, bit-exact to LiteRT's reference
    ``Softmax<int8_t, int8_t>`` (output scale 1/256, zero point -128)::

        d    = x - max(row)                                   # <= 0
        e    = exp_on_negative_values(Q5.26 SRDHM(d * 2**input_left_shift, input_multiplier))
               for d >= diff_min, else skipped (output -128)
        sum  = sum of Rescale<12>(e)                          # Q12.19
        r, k = GetReciprocal(sum, 12)                         # 1 / sum as Q0.31 and 2**k
        out  = clamp(RoundingDivideByPOT(SRDHM(r, e), k + 23) - 128, -128, 127)

    all in gemmlowp's fixed point (``fixedpoint.h``: SaturatingRoundingDoublingHighMul,
    RoundingDivideByPOT, ``exp_on_negative_values``, ``one_over_one_plus_x_for_x_in_0_1``).
    Parameters from ``softmax_params``. Returns int8 of ``x``'s shape.
    """
    x = check_range("x", x, -128, 127)
    m = int(check_range("input_multiplier", input_multiplier, 1 << 30, INT32_MAX))
    ls = int(check_range("input_left_shift", input_left_shift, 0, 30))
    dmin = int(check_range("diff_min", diff_min, INT32_MIN, 0))
    d = x - x.max(axis=-1, keepdims=True)
    valid = d >= dmin
    shifted = check_range("shifted difference", np.where(valid, d, 0) << ls, INT32_MIN,
                          INT32_MAX)
    scaled = _srdhm(shifted, m)  # MultiplyByQuantizedMultiplierGreaterThanOne
    e = _exp_on_negative_values(scaled, SOFTMAX_DIFF_INTEGER_BITS)
    total = np.where(valid, _rdbpot(e, SOFTMAX_ACCUM_INTEGER_BITS), 0).sum(  # Rescale<12>
        axis=-1, keepdims=True)
    check_range("sum of exponentials", total, 1, INT32_MAX)
    bits = np.zeros_like(total)  # bit length of total (>= 1)
    for k in range(32):
        bits += (total >> k) > 0
    headroom_plus_one = 32 - bits
    num_bits_over_unit = SOFTMAX_ACCUM_INTEGER_BITS - headroom_plus_one
    shifted_sum_minus_one = (total << headroom_plus_one) - (1 << 31)
    recip = _one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one)
    exponent = num_bits_over_unit + 31 - 8
    out = _rdbpot(_srdhm(recip, e), exponent) - 128
    return np.where(valid, np.clip(out, -128, 127), -128).astype(np.int8)
