"""Sparsity-aware dot product: the value and the cycle model of ``SparseDotProduct``.

A vector arrives as beats of ``lanes`` pairs ``(w[i], x[i])`` with a precision level
``lvl[i]`` per weight; the beat flagged ``last`` ends the vector. The engine computes

    result = sum over the vector's beats and lanes of (x[i] - x_zero_point) * w[i]

exactly (int32; a partial sum outside int32 raises here, and sets the block's sticky
``overflow`` flag). A pair is *zero* when ``w[i] == 0`` or ``x[i] == x_zero_point`` (the
activation's real value is 0): it is never multiplied. With ``skip=True`` the non-zero pairs
of a beat are compacted onto the ``slots`` multipliers, so a beat costs

    max(1, ceil(nnz / slots)) cycles        (nnz = the beat's non-zero pairs)

and with ``skip=False`` (the dense baseline: every lane multiplied in its fixed slot)
``ceil(lanes / slots)`` cycles. With ``bins={8: a, 4: b, 2: c}`` the slots are multipliers of
those weight widths and a beat costs ``golden.mulbins.bin_cycles`` (each pair on a
multiplier at least as wide as its weight's declared level). These are cycles the block's
front end is busy, which its ``cycles`` counter counts; when the output never stalls and
the input is always valid they are also the cycles between successive results. A vector's
result leaves ``spec.params.sparse_dot_latency(**params)`` cycles after the cycle the front
end issues its last step (the block's ``latency``; 3 up to 4 slots, more with a deeper adder
tree).

Precision levels: 0 = zero, then ``level_widths`` (default signed 2, 4, 8 bits). A weight
that does not fit its declared level raises ``LevelError`` here (the block raises its sticky
``level_error`` flag, counts the lanes, and still multiplies the weight at full width).
"""

from dataclasses import dataclass

import numpy as np

from sparq.spec import params as spec_params

from .requant import INT32_MAX, INT32_MIN, check_range


class LevelError(ValueError):
    """A weight does not fit the precision level it is declared with."""


def check_params(**params):
    """Validate the elaboration parameters shared by the golden model and the block."""
    return spec_params.sparse_dot(**params)


def level_fits(w, lvl, level_widths=(2, 4, 8)):
    """True where ``w`` fits its level: 0 holds only 0, level k a signed level_widths[k-1]."""
    w, lvl = np.asarray(w, np.int64), np.asarray(lvl, np.int64)
    lo = np.array([0] + [-(1 << (b - 1)) for b in level_widths])[lvl]
    hi = np.array([0] + [(1 << (b - 1)) - 1 for b in level_widths])[lvl]
    return (w >= lo) & (w <= hi)


def smallest_level(w, level_widths=(2, 4, 8)):
    """The smallest precision level that holds each weight."""
    w = np.asarray(w, np.int64)
    lvl = np.full(w.shape, 3, np.int64)
    for k in (2, 1):
        lvl = np.where(level_fits(w, np.full(w.shape, k), level_widths), k, lvl)
    return np.where(w == 0, 0, lvl)


def beat_cycles(nnz, *, lanes, slots, skip=True):
    """Cycles the front end spends on beats with ``nnz`` non-zero pairs."""
    nnz = np.asarray(nnz, np.int64)
    if not skip:
        return np.full(nnz.shape, -(-lanes // slots), np.int64)
    return np.maximum(1, -(-nnz // slots))


@dataclass
class DotRun:
    results: np.ndarray  # int64, one per vector
    beat_cycles: np.ndarray  # int64, one per beat
    nnz: np.ndarray  # non-zero pairs per beat
    vector_cycles: np.ndarray  # front-end cycles per vector
    lanes: int
    skip: bool

    @property
    def stats(self):
        """The block's counters: cycles busy, pairs seen, pairs skipped."""
        beats = len(self.nnz)
        pairs = beats * self.lanes
        return dict(beats=beats, vectors=len(self.results), cycles=int(self.beat_cycles.sum()),
                    pairs=pairs, skipped=int(pairs - self.nnz.sum()) if self.skip else 0)


def sparse_dot(w, x, lvl=None, last=None, *, x_zero_point=0, lanes=8, slots=4, skip=True,
               output="stream", addr_width=8, level_widths=(2, 4, 8), bins=None):
    """Run beats through the engine's model.

    ``w``, ``x``: int8 arrays (beats, lanes), ``w`` in [-127, 127]; ``lvl``: levels 0..3
    (default: the smallest level of each weight); ``last``: bools (beats,) (default: every
    vector is one beat). The final beat must be ``last``. ``x_zero_point``: one for all
    beats, or one per beat (shape ``(beats,)``, as the engine samples it). Returns a ``DotRun``; its
    ``stats`` are the block's counters: cycles busy, pairs seen, pairs skipped.
    """
    p = check_params(lanes=lanes, slots=slots, skip=skip, output=output,
                     addr_width=addr_width, level_widths=level_widths, bins=bins)
    w = check_range("w", w, -127, 127)
    x = check_range("x", x, -128, 127)
    zp = check_range("x_zero_point", x_zero_point, -128, 127)
    if w.ndim != 2 or w.shape != x.shape or w.shape[1] != lanes:
        raise ValueError(f"w and x must both be (beats, lanes={lanes}); got w{w.shape} "
                         f"x{x.shape}")
    beats = w.shape[0]
    if zp.ndim and zp.shape != (beats,):
        raise ValueError(f"x_zero_point must be one value or one per beat ({beats},), got "
                         f"shape {zp.shape}")
    zp = zp.reshape(-1, 1) if zp.ndim else int(zp)
    lvl = smallest_level(w, p["level_widths"]) if lvl is None else \
        check_range("lvl", lvl, 0, 3)
    if lvl.shape != w.shape:
        raise ValueError(f"lvl must have shape {w.shape}, got {lvl.shape}")
    bad = ~level_fits(w, lvl, p["level_widths"])
    if bad.any():
        b, i = np.argwhere(bad)[0]
        raise LevelError(f"weight {int(w[b, i])} at beat {b}, lane {i} does not fit its "
                         f"level {int(lvl[b, i])}")
    last = np.ones(beats, bool) if last is None else np.asarray(last, bool)
    if last.shape != (beats,):
        raise ValueError(f"last must have shape ({beats},), got {last.shape}")
    if beats and not last[-1]:
        raise ValueError("the final beat must be last: a vector is left unfinished")
    nz = (w != 0) & (x != zp)
    nnz = nz.sum(axis=1)
    if p["bins"] is None:
        cyc = beat_cycles(nnz, lanes=lanes, slots=slots, skip=skip)
    else:  # the multiplier-bins schedule (golden.mulbins)
        from .mulbins import bin_cycles
        cyc = bin_cycles(lvl, nz, bins=p["bins"], level_widths=p["level_widths"])
    partial = np.cumsum(((x - zp) * w).sum(axis=1))
    ends = np.flatnonzero(last)
    starts = np.concatenate([[0], ends[:-1] + 1])
    base = np.concatenate([[0], partial])
    # every running sum within a vector must stay in int32 (the accumulator's width)
    for s, e in zip(starts, ends, strict=True):
        run = partial[s:e + 1] - base[s]
        if run.min() < INT32_MIN or run.max() > INT32_MAX:
            raise ValueError(f"the accumulation of the vector ending at beat {e} leaves "
                             f"int32 (reaches {int(run[np.argmax(np.abs(run))])})")
    results = partial[ends] - base[starts]
    vcyc = np.array([cyc[s:e + 1].sum() for s, e in zip(starts, ends, strict=True)], np.int64)
    return DotRun(results=results.astype(np.int64), beat_cycles=cyc, nnz=nnz,
                  vector_cycles=vcyc, lanes=lanes, skip=skip)


def lane_sums(w, x, last=None, *, x_zero_point=0):
    """Per vector, each lane's own sum of ``(x[i] - x_zero_point) * w[i]`` over the vector's
    beats: what a DOT into a lane bank adds to the bank's lanes (``golden.sequencer``'s
    ``_dot``; the block's ``bank_add`` steps, summed per lane). ``w``, ``x``: (beats, lanes);
    ``last``: bools (beats,) (default: every vector one beat; the final beat must be last);
    ``x_zero_point``: one, or one per beat. Returns int64 (vectors, lanes); whether a bank
    stays in int32 is the caller's check (``golden.sequencer`` raises)."""
    w = check_range("w", w, -128, 127)
    x = check_range("x", x, -128, 127)
    zp = check_range("x_zero_point", x_zero_point, -128, 127)
    if w.ndim != 2 or w.shape != x.shape:
        raise ValueError(f"w and x must both be (beats, lanes); got w{w.shape} x{x.shape}")
    beats = w.shape[0]
    last = np.ones(beats, bool) if last is None else np.asarray(last, bool)
    if last.shape != (beats,) or (beats and not last[-1]):
        raise ValueError(f"last must be ({beats},) bools ending with True, not {last!r}")
    if zp.ndim and zp.shape != (beats,):
        raise ValueError(f"x_zero_point must be one value or one per beat ({beats},), got "
                         f"shape {zp.shape}")
    zp = zp.reshape(-1, 1) if zp.ndim else int(zp)
    prods = (x - zp) * w
    ends = np.flatnonzero(last)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return np.array([prods[s:e + 1].sum(axis=0) for s, e in zip(starts, ends, strict=True)],
                    np.int64).reshape(len(ends), w.shape[1])
