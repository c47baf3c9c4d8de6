"""golden.sparse_dot against a plain Python-int twin, and its checks."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparq.golden.sparse_dot import LevelError, beat_cycles, smallest_level, sparse_dot


def twin(w, x, last, zp, lanes, slots, skip):
    """Loops over beats and lanes with Python ints: results and cycles per beat."""
    results, cycles, acc = [], [], 0
    for wb, xb, lb in zip(w, x, last, strict=True):
        nnz = 0
        for wi, xi in zip(wb, xb, strict=True):
            if wi != 0 and xi != zp:
                nnz += 1
                acc += (xi - zp) * wi
        cycles.append(max(1, math.ceil(nnz / slots)) if skip else math.ceil(lanes / slots))
        if lb:
            results.append(acc)
            acc = 0
    return results, cycles


@st.composite
def runs(draw):
    lanes = draw(st.sampled_from([1, 4, 8, 16]))
    slots = draw(st.integers(1, lanes))
    n = draw(st.integers(1, 12))
    zp = draw(st.integers(-128, 127))
    wv = st.one_of(st.just(0), st.integers(-127, 127))
    xv = st.one_of(st.just(zp), st.integers(-128, 127))
    w = draw(st.lists(st.lists(wv, min_size=lanes, max_size=lanes), min_size=n, max_size=n))
    x = draw(st.lists(st.lists(xv, min_size=lanes, max_size=lanes), min_size=n, max_size=n))
    last = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    last[-1] = True
    return lanes, slots, zp, w, x, last, draw(st.booleans())


@settings(max_examples=1500, deadline=None)
@given(runs())
def test_sparse_dot_matches_twin(r):
    lanes, slots, zp, w, x, last, skip = r
    got = sparse_dot(np.array(w), np.array(x), None, np.array(last), x_zero_point=zp,
                     lanes=lanes, slots=slots, skip=skip)
    want_res, want_cyc = twin(w, x, last, zp, lanes, slots, skip)
    assert got.results.tolist() == want_res
    assert got.beat_cycles.tolist() == want_cyc
    assert got.stats["cycles"] == sum(want_cyc)


def test_cycle_model():
    assert beat_cycles([0, 1, 4, 5, 16], lanes=16, slots=4).tolist() == [1, 1, 1, 2, 4]
    assert beat_cycles([0, 16], lanes=16, slots=4, skip=False).tolist() == [4, 4]
    assert beat_cycles([7], lanes=8, slots=3, skip=False).tolist() == [3]


def test_levels():
    w = np.array([0, 1, -2, 2, 7, -8, 8, 127, -127])
    assert smallest_level(w).tolist() == [0, 1, 1, 2, 2, 2, 3, 3, 3]
    with pytest.raises(LevelError, match="weight 2 at beat 0, lane 1 does not fit its level 1"):
        sparse_dot(np.array([[0, 2]]), np.array([[1, 1]]), np.array([[0, 1]]), lanes=2,
                   slots=1)


@pytest.mark.parametrize("kw, match", [
    (dict(lanes=0), "lanes"), (dict(lanes=4, slots=5), "slots"), (dict(skip=1), "skip"),
    (dict(output="wire"), "output"), (dict(level_widths=(4, 2, 8)), "level_widths"),
    (dict(x_zero_point=200), "x_zero_point"),
])
def test_bad_parameters(kw, match):
    args = dict(lanes=4, slots=2)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        sparse_dot(np.zeros((1, 4), int), np.zeros((1, 4), int), **args)


def test_bad_inputs():
    with pytest.raises(ValueError, match="w must be in .*-128"):
        sparse_dot(np.full((1, 4), -128), np.zeros((1, 4), int), lanes=4, slots=2)
    with pytest.raises(ValueError, match="final beat must be last"):
        sparse_dot(np.ones((2, 4), int), np.ones((2, 4), int), last=np.array([True, False]),
                   lanes=4, slots=2)
    big = np.full((70000, 1), 127)
    with pytest.raises(ValueError, match="leaves int32"):
        sparse_dot(big, np.full((70000, 1), -128), last=np.r_[np.zeros(69999, bool), True],
                   x_zero_point=127, lanes=1, slots=1)
