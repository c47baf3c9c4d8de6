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
The hardware twin is ``hw.sparse_dot.SparseDotProduct(bins=...)``, whose dispatcher meets
this model cycle for cycle.
"""

import numpy as np

import spec.params

from .requant import check_range
from .sparse_dot import level_fits, smallest_level

__all__ = ["bin_cycles", "check_bins", "smallest_level", "level_fits", "narrow_levels"]


def check_bins(bins, level_widths=(2, 4, 8)):
    """``bins`` maps a weight width to a multiplier count; every level must have a bin."""
    return spec.params.multiplier_bins(bins, level_widths)


def bin_cycles(lvl, nz, *, bins, level_widths=(2, 4, 8)):
    """Cycles per beat for levels ``lvl`` (beats, lanes) and non-zero mask ``nz``."""
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


def narrow_levels(w, accuracy, *, budget, level_widths=(2, 4, 8), steps=(0.5, 0.25, 0.1)):
    """Greedy mixed-precision quantization of int8 weights.

    ``w``: list of int8 weight matrices; ``accuracy(ws)`` returns the accuracy (in points)
    of a model with weights ``ws`` on held-out data. Weights are moved to a narrower level by
    clipping to the level's range (level 0: set to 0), smallest magnitude first, in chunks;
    a chunk is kept while the accuracy stays within ``budget`` points of the starting one.
    Returns ``(weights, levels, accuracy)``.

    The accuracy oracle must be held-out data the model was not trained on: on the digits
    fixture (trained on the whole training split) training accuracy saturates at 100% and
    a 0.5-point budget on it cost 2.2 points of test accuracy. A proper validation split and
    fine-tuning after narrowing are still to come (issue 4).
    """
    ws = [check_range("w", m, -127, 127).copy() for m in w]
    base = accuracy(ws)
    floor = base - budget
    for target in range(len(level_widths) - 1, -1, -1):  # to level 2, then 1, then 0
        lo, hi = (0, 0) if target == 0 else (-(1 << (level_widths[target - 1] - 1)),
                                              (1 << (level_widths[target - 1] - 1)) - 1)
        for frac in steps:
            while True:
                flat = np.concatenate([m.ravel() for m in ws])
                movable = np.flatnonzero((flat < lo) | (flat > hi))
                if movable.size == 0:
                    break
                k = max(1, int(frac * movable.size))
                pick = movable[np.argsort(np.abs(flat[movable]), kind="stable")[:k]]
                trial = flat.copy()
                trial[pick] = np.clip(trial[pick], lo, hi)
                cand = _unflatten(trial, ws)
                if accuracy(cand) < floor:
                    break
                ws = cand
    levels = [smallest_level(m, level_widths) for m in ws]
    return ws, levels, accuracy(ws)


def _unflatten(flat, like):
    out, pos = [], 0
    for m in like:
        out.append(flat[pos:pos + m.size].reshape(m.shape))
        pos += m.size
    return out
