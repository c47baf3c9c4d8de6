"""golden.mlp: training, int8 quantization, and the bounds of quantization-aware fine-tuning."""

import numpy as np
import pytest

from sparq.golden import digits_model, litert_model, mlp, trained


@pytest.fixture(scope="module")
def model():
    return trained.load("int8")


def test_int8_model_learns_digits(model):
    acc = digits_model.test_accuracy(model)
    print(f"int8 digits MLP test accuracy {acc:.2f}%")
    assert acc > 93.0
    for lay in model:
        assert lay.w.dtype == np.int8 and np.abs(lay.w.astype(int)).max() == 127
        assert np.float32(lay.input_scale) == lay.input_scale  # stored as float32


def test_fine_tune_stays_in_bounds_and_masks(model):
    x_fit, _, y_fit, _ = digits_model.fit_val_split()
    base = mlp.weights(model)
    lo = [w.astype(int) - 2 for w in base]
    hi = [w.astype(int) + 1 for w in base]
    keep = [np.random.default_rng(k).random(w.shape) < 0.5 for k, w in enumerate(base)]
    new = mlp.fine_tune(model, x_fit[:300], y_fit[:300], lo=lo, hi=hi, trainable=keep,
                        epochs=3, lr=1.0)
    moved = 0
    for w0, w1, a, b, k in zip(base, new, lo, hi, keep, strict=True):
        assert np.all(w1 >= a) and np.all(w1 <= b)
        assert np.array_equal(w1[~k], w0[~k])  # frozen weights never move
        moved += int((w1 != w0).sum())
    assert moved > 0


def test_fine_tune_l1_keeps_changes_sparse(model):
    x_fit, _, y_fit, _ = digits_model.fit_val_split()
    base = mlp.weights(model)
    lo = [np.full(w.shape, -127) for w in base]
    hi = [np.full(w.shape, 127) for w in base]
    kw = dict(lo=lo, hi=hi, epochs=3, lr=1.0, seed=3)
    free = mlp.fine_tune(model, x_fit, y_fit, **kw)
    sparse = mlp.fine_tune(model, x_fit, y_fit, l1=2.0, **kw)
    changed = lambda ws: sum(int((a != b).sum()) for a, b in zip(ws, base, strict=True))  # noqa: E731
    assert changed(sparse) < changed(free) / 2


def test_fine_tune_rejects_a_start_outside_the_bounds(model):
    base = mlp.weights(model)
    with pytest.raises(ValueError, match="outside their bounds"):
        mlp.fine_tune(model, np.zeros((2, 64)), np.zeros(2, int), lo=[w * 0 for w in base],
                      hi=[w * 0 for w in base], epochs=1)


def test_write_dense_model_checks_the_template(model, tmp_path):
    with pytest.raises(ValueError, match="2 dense layers, the model 3|has 3 dense layers, "
                                         "the model 2"):
        litert_model.write_dense_model(digits_model.TEMPLATE, model[:2], tmp_path / "m.tflite")
    assert not (tmp_path / "m.tflite").exists()


def test_write_dense_model_makes_its_folder(model, tmp_path):
    """make sim on a fresh clone writes build/digits_core.tflite before build/ exists."""
    path = tmp_path / "build" / "m.tflite"
    assert litert_model.write_dense_model(digits_model.TEMPLATE, model, path) == path
    back = litert_model.read_dense_layers(path)
    assert all(np.array_equal(a.w, b.w) for a, b in zip(back, model, strict=True))
