"""golden.layers.fully_connected against LiteRT's reference kernels on the digits MLP fixtures.

- ``digits_mlp_fc.tflite`` (FULLY_CONNECTED ops): ``mode="single"`` with M from the
  double-precision scale reproduces LiteRT's reference FULLY_CONNECTED kernel.
- ``digits_mlp_conv1x1.tflite`` (the same layers as 1x1 CONV_2D ops): ``mode="tflite"``
  (double rounding) reproduces LiteRT's reference CONV_2D kernel.
Every layer of every one of the 360 test images is compared, bit for bit.
"""

import pathlib

import numpy as np
import pytest

from sparq.golden.data import digits_split
from sparq.golden.layers import fully_connected
from sparq.golden.litert_model import quantize_input, read_dense_layers, run_reference
from sparq.golden.qparams import derive_prepost, prepost_error_bound

FIX = pathlib.Path(__file__).parent / "fixtures"
CASES = {"single": FIX / "digits_mlp_fc.tflite", "tflite": FIX / "digits_mlp_conv1x1.tflite"}


@pytest.fixture(scope="module")
def digits():
    _, x_test, _, y_test = digits_split()
    return x_test, y_test


def golden_layers(path, x, mode):
    outs, a = [], x
    for layer in read_dense_layers(path):
        a = fully_connected(a, layer.w, layer.bias, **layer.fc_kwargs(mode))
        outs.append(a)
    return outs


@pytest.mark.parametrize("mode", sorted(CASES))
def test_fully_connected_bitexact_to_litert(mode, digits):
    x_test, y_test = digits
    path = CASES[mode]
    x = quantize_input(path, x_test)
    ref = run_reference(path, x)
    got = golden_layers(path, x, mode)
    assert len(ref) == 3
    for k, (g, r) in enumerate(zip(got, ref, strict=True)):
        assert g.shape == r.shape == (360, r.shape[1])
        n_bad = int((g != r).sum())
        print(f"{path.name} mode={mode} layer {k}: {r.size - n_bad}/{r.size} outputs equal")
        assert n_bad == 0
    assert (ref[-1].argmax(1) == y_test).mean() > 0.93


@pytest.mark.parametrize("mode, other", [("single", "tflite"), ("tflite", "single")])
def test_the_other_rounding_mode_is_not_exact(mode, other, digits):
    """The oracle can tell the modes apart: the wrong one disagrees on some outputs."""
    path = CASES[mode]
    x = quantize_input(path, digits[0])
    ref = run_reference(path, x)
    got = golden_layers(path, x, other)
    assert sum(int((g != r).sum()) for g, r in zip(got, ref, strict=True)) > 0


def test_prepost_on_the_digits_model(digits):
    """prepost (16-bit M, 18-bit multiplier input) stays within its stated bound of exact."""
    x_test, y_test = digits
    path = CASES["single"]
    x = quantize_input(path, x_test)
    ref = run_reference(path, x)
    a, total, differ = x, 0, 0
    for layer, r in zip(read_dense_layers(path), ref, strict=True):
        acc_bound = int(np.abs(layer.w.astype(np.int64)).sum(1).max() * 255
                        + np.abs(layer.bias.astype(np.int64)).max())
        params = [derive_prepost(float(s), acc_bound=acc_bound)
                  for s in layer.effective_scales()]
        bounds = [prepost_error_bound(float(s), *p, acc_bound=acc_bound)
                  for s, p in zip(layer.effective_scales(), params, strict=True)]
        assert max(bounds) < 1.0
        m, pre, post = (np.array(v) for v in zip(*params, strict=True))
        kw = layer.fc_kwargs("prepost")
        kw.update(output_multiplier=m, pre=pre, post=post)
        got = fully_connected(a, layer.w, layer.bias, **kw)
        diff = np.abs(got.astype(int) - r.astype(int))
        assert diff.max() <= 1
        total, differ = total + r.size, differ + int((diff > 0).sum())
        a = r  # each layer fed with LiteRT's input, so the bound applies layer by layer
    print(f"prepost: {differ}/{total} outputs one step from LiteRT")
    assert differ < total * 0.05
