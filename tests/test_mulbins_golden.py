"""golden.mulbins: the schedule model against a cycle-by-cycle dispatcher, and the greedy
mixed-precision quantizer's contract."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golden.mulbins import bin_cycles, check_bins, narrow_levels, smallest_level

WIDTHS = (2, 4, 8)


def dispatch_widest_first(widths_needed, bins):
    """Cycle by cycle: the widest pending pairs take the widest free multipliers first."""
    pending = sorted(widths_needed, reverse=True)
    cycles = 0
    while pending or cycles == 0:
        free = sorted((w for w, c in bins.items() for _ in range(c)), reverse=True)
        left = []
        for need in pending:
            # the narrowest free multiplier that is wide enough keeps wide ones for wide pairs
            fits = [m for m in free if m >= need]
            if fits:
                free.remove(min(fits))
            else:
                left.append(need)
        pending = left
        cycles += 1
    return cycles


@settings(max_examples=800, deadline=None)
@given(lvl=st.lists(st.integers(0, 3), min_size=1, max_size=16),
       a=st.integers(1, 4), b=st.integers(0, 4), c=st.integers(0, 4))
def test_schedule_model_is_reached_by_a_dispatcher(lvl, a, b, c):
    bins = {8: a, 4: b, 2: c}
    lvl = np.array([lvl])
    nz = lvl > 0
    need = [WIDTHS[k - 1] for k in lvl[0] if k > 0]
    assert bin_cycles(lvl, nz, bins=bins)[0] == dispatch_widest_first(need, bins)


def test_schedule_examples():
    lvl = np.array([[3, 3, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0], [2, 2, 2, 2, 2, 2]])
    nz = lvl > 0
    assert bin_cycles(lvl, nz, bins={8: 1, 4: 1, 2: 2}).tolist() == [2, 1, 3]
    assert bin_cycles(lvl, nz, bins={8: 4}).tolist() == [2, 1, 2]


@pytest.mark.parametrize("bins, match", [({}, "non-empty"), ({16: 1}, "bin width"),
                                         ({8: -1}, "count"), ({4: 2}, "8-bit")])
def test_bad_bins(bins, match):
    with pytest.raises(ValueError, match=match):
        check_bins(bins)


def test_narrow_levels_respects_the_budget():
    """A toy accuracy: 100 minus the total absolute change of the weights, per 100."""
    rng = np.random.default_rng(5)
    w0 = [rng.integers(-127, 128, (8, 8)), rng.integers(-20, 21, (4, 8))]

    def accuracy(ws):
        return 100 - sum(np.abs(a - b).sum() for a, b in zip(ws, w0, strict=True)) / 100

    ws, levels, acc = narrow_levels(w0, accuracy, budget=0.5)
    assert acc >= 99.5 and acc == accuracy(ws)
    before = np.concatenate([smallest_level(m).ravel() for m in w0])
    after = np.concatenate([lv.ravel() for lv in levels])
    assert after.mean() < before.mean()  # some weights moved to narrower levels
    assert all(np.array_equal(lv, smallest_level(m)) for lv, m in zip(levels, ws, strict=True))
