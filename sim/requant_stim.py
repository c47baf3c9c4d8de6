"""Stimulus for the requantizer: corner cases first, then shaped random vectors.

Each vector is a dict with ``acc`` and the channel parameters named as in
``golden.requant.requantize`` (``multiplier``, ``shift`` or ``pre``/``post``,
``output_zero_point``, ``act_min``, ``act_max``; in ``dual`` mode also ``double``, the
accumulator's rounding). ``expected`` applies the golden model.
"""

import itertools

import numpy as np

from sparq.golden.requant import INT32_MAX, INT32_MIN, requantize

_PARAM_KEYS = ("multiplier", "shift", "pre", "post", "output_zero_point", "act_min", "act_max")


def expected(vectors, short=False, **params):
    """The golden int8 outputs of ``vectors`` (a list of dicts) for the block's params
    (``short`` changes the pipeline, not the arithmetic)."""
    cols = {k: np.array([v[k] for v in vectors], np.int64) for k in vectors[0]}
    kw = {k: cols[k] for k in _PARAM_KEYS if k in cols}
    if "double" in cols:
        kw["double_round"] = cols["double"]
    return requantize(cols["acc"], **kw, **params)


def payload(vec, mode):
    """A vector as the Requantizer's ``i`` payload (``hw.requant.input_layout``)."""
    keys = ("multiplier", "pre", "post") if mode == "prepost" else ("multiplier", "shift")
    p = {k: vec[k] for k in keys + ("output_zero_point", "act_min", "act_max")}
    extra = {"double": vec["double"]} if mode == "dual" else {}
    return {"acc": vec["acc"], "p": p, **extra}


def _out_params(rng):
    """Output zero point and clamp range: mostly a ReLU-like or full range, sometimes odd."""
    zp = int(rng.choice([-128, 127, 0, int(rng.integers(-128, 128))]))
    kind = rng.random()
    if kind < 0.4:
        return dict(output_zero_point=zp, act_min=-128, act_max=127)
    if kind < 0.7:
        return dict(output_zero_point=zp, act_min=max(-128, zp), act_max=127)
    lo, hi = sorted(int(v) for v in rng.integers(-128, 128, 2))
    return dict(output_zero_point=zp, act_min=lo, act_max=hi)


def _q31_corners(mode):
    accs = [INT32_MIN, INT32_MAX, 0, 1, -1, INT32_MIN + 1]
    mults = [INT32_MAX, 1 << 30, 0, 1] + ([INT32_MIN, -(1 << 30)] if mode == "tflite" else [])
    shifts = [-31, -30, -1, 0, 1, 30]
    outs = [dict(output_zero_point=0, act_min=-128, act_max=127),
            dict(output_zero_point=-128, act_min=-128, act_max=127),
            dict(output_zero_point=127, act_min=-5, act_max=-5)]
    return [dict(acc=a, multiplier=m, shift=s, **o)
            for a, m, s, o in itertools.product(accs, mults, shifts, outs)]


def _q31_tie(rng, mode):
    """acc*M exactly halfway at the final rounding (M odd: solve acc = 2**(S-1)/M mod 2**S)."""
    shift = int(rng.integers(-31, 1))
    s = 31 - shift
    m = int(rng.integers(1 << 29, 1 << 31)) | 1
    if s <= 32:
        acc = (pow(2, s - 1, 1 << s) * pow(m, -1, 1 << s)) % (1 << s)
        span = (1 << 31) >> s  # acc + k * 2**s stays in int32 for -span <= k < span
        acc += int(rng.integers(-min(span, 256), max(min(span, 256), 1))) * (1 << s)
        acc = acc - (1 << 32) if acc > INT32_MAX else acc
    else:  # wider than int32: make the tie with M = 2**30 (0.5): acc = odd * 2**(S-31)
        m = 1 << 30
        k = s - 31
        acc = INT32_MIN if k == 31 else (2 * int(rng.integers(-(1 << (30 - k)),
                                                               1 << (30 - k))) + 1) << k
    if rng.random() < 0.5:
        acc = -acc if acc != INT32_MIN else acc
    return dict(acc=acc, multiplier=m, shift=shift, **_out_params(rng))


def _q31_random(rng, mode):
    """A realistic M and shift, and an accumulator aimed at a result in [-300, 300]."""
    shift = int(rng.integers(-31, 3))
    m = int(rng.integers(1 << 30, 1 << 31))
    if mode == "tflite" and rng.random() < 0.05:
        m = -m
    target = rng.uniform(-300, 300)
    acc = target * 2.0 ** (31 - shift) / m
    if rng.random() < 0.1 or abs(acc) >= 2**31:  # a share of saturating / extreme ones
        acc = rng.integers(INT32_MIN, INT32_MAX, endpoint=True)
    return dict(acc=int(acc), multiplier=m, shift=shift, **_out_params(rng))


def _prepost_corners(m_bits, x_bits):
    mmax = (1 << m_bits) - 1
    accs = [INT32_MIN, INT32_MAX, 0, 1, -1]
    return [dict(acc=a, multiplier=m, pre=pr, post=po, output_zero_point=zp, act_min=-128,
                 act_max=127)
            for a, m, pr, po, zp in itertools.product(
                accs, [0, 1, mmax, 1 << (m_bits - 1)], [0, 1, 14, 31],
                [1, 2, x_bits + m_bits - 1], [-128, 0, 127])]


def _prepost_random(rng, m_bits, x_bits):
    pre = int(rng.integers(0, 32)) if rng.random() < 0.3 else int(rng.integers(0, 15))
    post = int(rng.integers(1, x_bits + m_bits))
    m = int(rng.integers(0, 1 << m_bits))
    target = rng.uniform(-300, 300)
    if rng.random() < 0.15 or m == 0:
        acc = int(rng.integers(INT32_MIN, INT32_MAX, endpoint=True))
    else:
        acc = int(np.clip(target * 2.0 ** (post + pre) / m, INT32_MIN, INT32_MAX))
    if rng.random() < 0.2:  # ties of the final rounding: (x >> pre) * M == 2**(post-1) mod 2**post
        m = 1 << int(rng.integers(0, m_bits))
        acc = ((1 << max(post - 1 - int(np.log2(m)), 0)) * (2 * int(rng.integers(-50, 50)) + 1)
               << pre)
        acc = int(np.clip(acc, INT32_MIN, INT32_MAX))
    return dict(acc=acc, multiplier=m, pre=pre, post=post, **_out_params(rng))


def requant_vectors(rng, n, *, mode="tflite", m_bits=16, x_bits=18, short=False):
    """``n`` vectors (at least all corners): corners, then 20% ties, then shaped random."""
    if mode == "prepost":
        vecs = _prepost_corners(m_bits, x_bits)
        while len(vecs) < n:
            vecs.append(_prepost_random(rng, m_bits, x_bits))
    elif mode == "dual":  # both kinds, interleaved at random: each carries its rounding
        both = [dict(v, double=1) for v in requant_vectors(rng, n // 2, mode="tflite")] + \
            [dict(v, double=0) for v in requant_vectors(rng, n - n // 2, mode="single")]
        vecs = [both[k] for k in rng.permutation(len(both))]
    else:
        vecs = _q31_corners(mode)
        while len(vecs) < n:
            vecs.append(_q31_tie(rng, mode) if rng.random() < 0.2 else _q31_random(rng, mode))
    return vecs


def digits_vectors(path, x_float, mode):
    """Real requantizer inputs: every accumulator of every dense layer of a .tflite digits
    model over ``x_float`` images, with its channel's parameters, and LiteRT's int8 outputs.

    Each layer is fed LiteRT's own output of the previous layer, so every vector has a
    LiteRT reference. Returns ``(vectors, litert_outputs)`` in the same order.
    """
    from sparq.golden.layers import fc_accumulators
    from sparq.golden.litert_model import quantize_input, read_dense_layers, run_reference

    x = quantize_input(path, x_float)
    refs = run_reference(path, x)
    vectors, outs, a = [], [], x
    for layer, ref in zip(read_dense_layers(path), refs, strict=True):
        acc = fc_accumulators(a, layer.w, layer.bias, input_zero_point=layer.input_zero_point)
        kw = layer.fc_kwargs(mode)
        for b, o in np.ndindex(acc.shape):
            vectors.append(dict(acc=int(acc[b, o]), multiplier=int(kw["output_multiplier"][o]),
                                shift=int(kw["output_shift"][o]),
                                output_zero_point=kw["output_zero_point"],
                                act_min=kw["act_min"], act_max=kw["act_max"]))
        outs.append(ref.reshape(-1))
        a = ref
    return vectors, np.concatenate(outs).astype(np.int64)
