"""golden.mulbins: the schedule model against a cycle-by-cycle dispatcher, and the greedy
mixed-precision quantizer's contract."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparq.golden import digits_model, litert_model, mlp, mulbins, trained
from sparq.golden.data import digits_split
from sparq.golden.mulbins import (
    MixedModel,
    bin_cycles,
    check_bins,
    level_bounds,
    mixed_precision,
    smallest_level,
)

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


@pytest.fixture(scope="module")
def digits_models():
    """The committed int8 model and its "levels" mixed-precision model (``golden.trained``:
    the same on every machine), with the record the recipe returned."""
    base, mixed = trained.load("int8"), trained.load("levels")
    rec = trained.manifest()["levels"]
    record = MixedModel(mlp.weights(mixed), [smallest_level(lay.w) for lay in mixed],
                        rec["base_val_accuracy"], rec["val_accuracy"])
    return base, mixed, record


@pytest.fixture(scope="module")
def narrowed():
    """``narrow_widths`` of the committed int8 model (no training: the same everywhere)."""
    base = trained.load("int8")
    return base, *digits_model.mixed_model(base)


def test_narrow_widths_on_digits(narrowed):
    """The default mixed model: every layer re-quantized to 4 bits per weight (2-bit layers
    lose 20 to 40 points): no 8-bit weight, a third of them 2-bit, within the budget on the
    validation part; the scales are re-derived and the arithmetic is the int8 model's."""
    base, mixed, record = narrowed
    shares = digits_model.level_shares(mixed)
    print(f"narrowed: level shares {shares.round(3)}, val {record.val_accuracy:.2f}% "
          f"(int8 {record.base_val_accuracy:.2f}%), test {digits_model.test_accuracy(mixed):.2f}%")
    assert record.val_accuracy >= record.base_val_accuracy - 0.5
    assert shares[3] == 0 and shares[1] > 0.25 and record.layers is mixed
    for a, b in zip(base, mixed, strict=True):
        assert np.abs(b.w).max() <= 7 and np.all(b.weight_scales > a.weight_scales)
        # the float weights and biases move by at most half a step of the new grid
        wa = a.w * a.weight_scales.astype(np.float64)[:, None]
        wb = b.w * b.weight_scales.astype(np.float64)[:, None]
        assert np.all(np.abs(wa - wb) <= 0.5 * b.weight_scales[:, None] * (1 + 1e-6))
        ba = a.bias * a.weight_scales.astype(np.float64)
        bb = b.bias * b.weight_scales.astype(np.float64)
        assert np.all(np.abs(ba - bb) <= 0.5 * b.weight_scales * (1 + 1e-6))
    tried = {tuple(h[0]) for h in record.history}
    assert len(tried) == 27 and (2, 2, 2) in tried
    with pytest.raises(ValueError, match="a layer width must be 2, 4 or 8, not 3"):
        mulbins.narrow_scales(base, (8, 3, 8))
    with pytest.raises(ValueError, match="method must be one of"):
        digits_model.mixed_model(base, method="best")


def test_narrowed_model_is_bit_exact_on_litert(narrowed, tmp_path):
    pytest.importorskip("ai_edge_litert")
    _, mixed, _ = narrowed
    path = digits_model.write_tflite(mixed, tmp_path / "narrow.tflite")
    back = litert_model.read_dense_layers(path)
    assert all(np.array_equal(a.w, b.w) and np.array_equal(a.weight_scales, b.weight_scales)
               and np.array_equal(a.bias, b.bias) for a, b in zip(mixed, back, strict=True))
    _, x_test, _, _ = digits_split()
    xq = mlp.quantize_input(mixed, x_test)
    ref = litert_model.run_reference(path, xq)
    for k, (r, o) in enumerate(zip(ref, mlp.run_int8(mixed, xq), strict=True)):
        assert np.array_equal(r, o), f"layer {k}: {int((r != o).sum())} outputs differ"


def _check_mixed(base, mixed, record, budget=0.5):
    """What ``mixed_precision`` guarantees whatever its training lands on."""
    # every weight inside its level's range, levels the smallest that hold the weights
    for lay, lv in zip(mixed, record.levels, strict=True):
        lo, hi = level_bounds(lv)
        assert np.all(lay.w >= lo) and np.all(lay.w <= hi)
        assert np.array_equal(lv, smallest_level(lay.w))
    # within the budget on the validation part
    assert record.val_accuracy >= record.base_val_accuracy - budget
    # scales, zero points and biases are untouched: only weights move
    for a, b in zip(base, mixed, strict=True):
        assert np.array_equal(a.bias, b.bias) and a.output_scale == b.output_scale
        assert np.array_equal(a.weight_scales, b.weight_scales)


def test_mixed_precision_on_digits(digits_models):
    """The committed "levels" model: its guarantees, and much narrower than int8."""
    base, mixed, record = digits_models
    _check_mixed(base, mixed, record)
    before, after = digits_model.level_shares(base), digits_model.level_shares(mixed)
    print(f"level shares int8 {before.round(3)} mixed {after.round(3)}")
    assert after[3] < 0.6 * before[3] and after[0] > 0.2


def test_mixed_precision_keeps_its_guarantees_when_trained_here():
    """The recipe run here (a short schedule): what it lands on varies with the machine's
    floating point, its guarantees do not."""
    base = trained.load("int8")
    x_fit, x_val, y_fit, y_val = digits_model.fit_val_split()
    record = mixed_precision(base, x_fit[:400], y_fit[:400], x_val, y_val, steps=3, epochs=4)
    mixed = mlp.with_weights(base, record.weights)
    _check_mixed(base, mixed, record)
    assert len(record.history) >= 1


def test_mixed_model_is_bit_exact_on_litert(digits_models, tmp_path):
    pytest.importorskip("ai_edge_litert")
    _, mixed, _ = digits_models
    path = digits_model.write_tflite(mixed, tmp_path / "mixed.tflite")
    back = litert_model.read_dense_layers(path)
    assert all(np.array_equal(a.w, b.w) for a, b in zip(mixed, back, strict=True))
    _, x_test, _, _ = digits_split()
    xq = mlp.quantize_input(mixed, x_test)
    ref = litert_model.run_reference(path, xq)
    ours = mlp.run_int8(mixed, xq)
    for k, (r, o) in enumerate(zip(ref, ours, strict=True)):
        assert np.array_equal(r, o), f"layer {k}: {int((r != o).sum())} outputs differ"


def test_mixed_precision_rejects_bad_targets(digits_models):
    base, _, _ = digits_models
    x = np.zeros((4, 64), np.float32)
    y = np.zeros(4, np.int64)
    with pytest.raises(ValueError, match="targets has 1 entries for 3 layers"):
        mixed_precision(base, x, y, x, y, targets=[(0, 0, 0)])
    with pytest.raises(ValueError, match=r"\(0.5, 0.2, 0.9\) is not three cumulative"):
        mixed_precision(base, x, y, x, y, targets=[(0.5, 0.2, 0.9)] * 3)


def test_narrowed_model_on_a_lane_local_bin(narrowed, tmp_path):
    """On the narrowed digits model every beat of the lane-local engine ({8: 1, 4: 16}) takes
    one cycle (no weight needs 8 bits), while a uniform 8-bit engine of 4 multipliers needs
    more than two cycles a beat on average for the same pairs."""
    from sparq.golden.sparse_dot import beat_cycles
    from sparq.sim.sparse_stim import digits_beats

    _, mixed, _ = narrowed
    _, x_test, _, _ = digits_split()
    path = digits_model.write_tflite(mixed, tmp_path / "narrow.tflite")
    b, zp, _ = digits_beats(path, x_test[:20], lanes=16)
    nz = (b["w"] != 0) & (b["x"] != zp)
    local = bin_cycles(b["lvl"], nz, bins={8: 1, 4: 16})
    uniform = beat_cycles(nz.sum(1), lanes=16, slots=4)
    print(f"{len(local)} beats: lane-local {local.mean():.2f}, uniform M4 {uniform.mean():.2f} "
          "cycles a beat")
    assert np.all(local == 1) and uniform.mean() > 2
