"""Stimulus for the sparse dot-product engine: beats at chosen operand densities.

``beats(rng, n, lanes, w_density, x_density)`` returns dict arrays ``w``, ``x``, ``lvl``,
``last`` (vectors of 1 to ``max_beats`` beats); a zero weight is 0 and a zero activation is
``x_zero_point``. Levels are each weight's smallest level, or (``lvl_slack``) sometimes a
wider one, which is legal.
"""

import numpy as np

from sparq.golden.sparse_dot import smallest_level


def _values(rng, shape, lo, hi, avoid):
    v = rng.integers(lo, hi + 1, shape)
    while np.any(v == avoid):
        v = np.where(v == avoid, rng.integers(lo, hi + 1, shape), v)
    return v


def beats(rng, n, *, lanes, w_density, x_density, x_zero_point=0, max_beats=4,
          lvl_slack=0.2, narrow=0.3):
    shape = (n, lanes)
    w = _values(rng, shape, -127, 127, 0)
    small = rng.random(shape) < narrow  # a share of narrow weights, so every level occurs
    w = np.where(small, _values(rng, shape, -8, 7, 0), w)
    w = np.where(small & (rng.random(shape) < 0.5), _values(rng, shape, -2, 1, 0), w)
    w = np.where(rng.random(shape) < w_density, w, 0)
    x = _values(rng, shape, -128, 127, x_zero_point)
    x = np.where(rng.random(shape) < x_density, x, x_zero_point)
    lvl = smallest_level(w)
    wider = (rng.random(shape) < lvl_slack) & (lvl > 0)
    lvl = np.where(wider, np.minimum(3, lvl + rng.integers(0, 2, shape)), lvl)
    last = np.zeros(n, bool)
    k = 0
    while k < n:
        k += int(rng.integers(1, max_beats + 1))
        last[min(k, n) - 1] = True
    return dict(w=w, x=x, lvl=lvl, last=last)


def corner_beats(lanes, x_zero_point=0):
    """All-zero, all-dense extreme values, one non-zero lane at each position."""
    rows_w, rows_x = [], []
    rows_w += [np.zeros(lanes), np.full(lanes, 127), np.full(lanes, -127), np.full(lanes, -127)]
    rows_x += [np.full(lanes, x_zero_point), np.full(lanes, 127), np.full(lanes, -128),
               np.full(lanes, 127)]
    for i in range(lanes):
        w = np.zeros(lanes)
        w[i] = -127
        rows_w.append(w)
        rows_x.append(np.full(lanes, -128))
    w, x = np.array(rows_w, np.int64), np.array(rows_x, np.int64)
    if x_zero_point != 0:  # x - zp of -128 - zp etc. stays in range by construction
        pass
    last = np.ones(len(w), bool)
    last[1:3] = False  # one three-beat vector of extreme values
    return dict(w=w, x=x, lvl=smallest_level(w), last=last)


# the weight and the activation densities a testbench's sweep crosses
SWEEP_DENSITIES = (0.0, 0.1, 0.3, 0.5, 0.7, 1.0)


def sweep_beats(rng, vectors, lanes, zp):
    """The corner beats, then random beats at every (weight, activation) density pair of
    ``SWEEP_DENSITIES``, topped up with random densities until there are ``vectors``
    vectors (the engine testbenches' ``random_handshakes``)."""
    per = max(1, vectors * 5 // (2 * len(SWEEP_DENSITIES) ** 2))
    parts = [corner_beats(lanes, zp)]
    for wd in SWEEP_DENSITIES:
        for xd in SWEEP_DENSITIES:
            parts.append(beats(rng, per, lanes=lanes, w_density=wd, x_density=xd,
                               x_zero_point=zp))
    while sum(int(np.sum(q["last"])) for q in parts) < vectors:  # top up
        wd, xd = rng.random(2)
        parts.append(beats(rng, 50, lanes=lanes, w_density=wd, x_density=xd, x_zero_point=zp))
    return concat(*parts)


def concat(*parts):
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def beats_file_content(b, x_zero_point):
    """The JSON content of a testbench ``beats_file``: the zero point and the beat arrays."""
    return dict(x_zero_point=int(x_zero_point), beats={k: v.tolist() for k, v in b.items()})


def beat_payloads(b):
    """Beat dicts for the stream drivers: nested lists per field."""
    return [dict(w=[int(v) for v in b["w"][k]], x=[int(v) for v in b["x"][k]],
                 lvl=[int(v) for v in b["lvl"][k]], last=int(b["last"][k]))
            for k in range(len(b["last"]))]


def digits_beats(path, x_float, *, lanes):
    """Real beats: every dense layer of a .tflite digits MLP over ``x_float`` images, each
    output channel one vector of ``in/lanes`` beats (weights row, the layer's int8 input as
    LiteRT computes it, the weights' smallest levels). Returns ``(beats, x_zero_point,
    accumulators - bias)`` with one entry per vector, in order."""
    from sparq.golden.layers import fc_accumulators
    from sparq.golden.litert_model import quantize_input, read_dense_layers, run_reference

    x = quantize_input(path, x_float)
    refs = run_reference(path, x)
    layers = read_dense_layers(path)
    zps = {layer.input_zero_point for layer in layers}
    if len(zps) != 1:
        raise ValueError(f"the layers' input zero points differ ({sorted(zps)})")
    parts, sums, a = [], [], x
    for layer, ref in zip(layers, refs, strict=True):
        n_in = layer.w.shape[1]
        if n_in % lanes:
            raise ValueError(f"layer input width {n_in} is not a multiple of lanes={lanes}")
        k = n_in // lanes
        for img in a:
            w = layer.w.reshape(-1, lanes)  # (out * k, lanes): channel o's beats in a row
            xb = np.tile(img.reshape(k, lanes), (layer.w.shape[0], 1))
            last = np.zeros(len(w), bool)
            last[k - 1::k] = True
            parts.append(dict(w=w.astype(np.int64), x=xb.astype(np.int64),
                              lvl=smallest_level(w), last=last))
        acc = fc_accumulators(a, layer.w, layer.bias, input_zero_point=layer.input_zero_point)
        sums.append((acc - layer.bias.astype(np.int64)).reshape(-1))
        a = ref
    return concat(*parts), zps.pop(), np.concatenate(sums)


def queued_times(i_fire, o_valid, o_ready, *, registers):
    """The carry-over engine's (``hw.queued_dot``) handshakes, sampled once a cycle, in the
    time of its cycle model (``golden.queued_dot``: the cycles ``o`` did not stall the
    engine, a stall being ``o_valid and not o_ready``). Returns ``(arrive, leave)``: per beat
    the cycle ``registers`` (``QueuedDotProduct.INPUT_REGISTERS``) after its ``i`` transfer
    (the model's ``arrive``), per result the first cycle it was valid on ``o`` (the model's
    ``leave``)."""
    t, shown, arrive, leave = 0, False, [], []
    for fire, valid, ready in zip(i_fire, o_valid, o_ready, strict=True):
        if fire:
            arrive.append(t + registers)
        if valid and not shown:
            leave.append(t)
            shown = True
        if valid and ready:
            shown = False
        t += int(not valid or ready)
    return np.array(arrive, np.int64), np.array(leave, np.int64)
