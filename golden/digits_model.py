"""The project's digits MLPs, made reproducibly in NumPy (no deep-learning framework).

- ``fit_val_split()``: the training split of ``golden.data`` cut into a fitting part and a
  held-out validation part (20%, stratified, ``random_state=0``); the test split is never
  used to choose anything.
- ``int8_model()``: a 64-32-16-10 ReLU MLP trained on the fitting part, quantized to int8
  (``golden.mlp.quantize``, calibrated on the fitting part): the plain int8 model.
- ``mixed_model()``: the plain int8 model in mixed precision (0.5-point budget on the
  validation part): by default every layer's channels re-quantized to the narrowest width
  the budget allows (``golden.mulbins.narrow_widths``: 4 bits for all three layers, no
  8-bit weight left, 34% of the weights 2-bit); ``method="levels"``: the scales kept and
  the least salient weights confined to narrower levels step by step
  (``golden.mulbins.mixed_precision``).
- ``sparse_model()``: the same MLP trained with block-structured pruning (at most 4, 4 and
  8 non-zero weights in every block of 16 inputs of layers 1, 2 and 3;
  ``golden.block_prune``), the core's model: level 0 for about three quarters of the weights.

``write_tflite(layers, path)`` writes either into a copy of the committed LiteRT fixture, so
LiteRT's reference kernels can check them. Each takes about a second.
"""

import pathlib

import numpy as np

from . import mlp, mulbins
from .data import digits_split
from .litert_model import write_dense_model

WIDTHS = (32, 16, 10)
SEED = 0
TEMPLATE = pathlib.Path(__file__).resolve().parents[1] / "tests" / "fixtures" / \
    "digits_mlp_fc.tflite"


def fit_val_split(x_train=None, y_train=None):
    """``(x_fit, x_val, y_fit, y_val)`` from the training split (or from the training data
    given, cut the same way: ``sim.prune_study`` re-runs the recipes on other splits)."""
    from sklearn.model_selection import train_test_split

    if x_train is None:
        x_train, _, y_train, _ = digits_split()
    return train_test_split(x_train, y_train, test_size=0.2, random_state=0, stratify=y_train)


def float_model(seed=SEED):
    """The float MLP the int8 model is quantized from: ``[(w, b), ...]``."""
    x_fit, _, y_fit, _ = fit_val_split()
    return mlp.train_float(x_fit, y_fit, WIDTHS, seed=seed)


def float_accuracy(params, x, y):
    """Top-1 accuracy (percent) of a float MLP."""
    a = np.asarray(x, np.float64)
    for k, (w, b) in enumerate(params):
        a = a @ w.T + b
        if k < len(params) - 1:
            a = np.maximum(a, 0)
    return 100.0 * float(np.mean(a.argmax(axis=1) == np.asarray(y)))


def int8_model(seed=SEED):
    """The plain int8 digits MLP (a list of ``DenseLayer``)."""
    x_fit, _, _, _ = fit_val_split()
    return mlp.quantize(float_model(seed), x_fit)


MIXED_METHODS = ("widths", "levels")


def mixed_model(base=None, *, budget=0.5, method="widths", log=None):
    """``(layers, MixedModel)``: the int8 model with mixed-precision weights (``method``:
    see the module docstring)."""
    if method not in MIXED_METHODS:
        raise ValueError(f"method must be one of {MIXED_METHODS}, not {method!r}")
    base = int8_model() if base is None else base
    x_fit, x_val, y_fit, y_val = fit_val_split()
    if method == "widths":
        mixed = mulbins.narrow_widths(base, x_val, y_val, budget=budget, log=log)
        return mixed.layers, mixed
    mixed = mulbins.mixed_precision(base, x_fit, y_fit, x_val, y_val, budget=budget, log=log)
    return mlp.with_weights(base, mixed.weights), mixed


def sparse_model(*, keeps=(4, 4, 8), log=None):
    """``SparseModel`` (``golden.block_prune``): ``.layers`` is the block-pruned int8 MLP."""
    from .block_prune import sparse_int8

    x_fit, x_val, y_fit, y_val = fit_val_split()
    return sparse_int8(x_fit, y_fit, x_val, y_val, widths=WIDTHS, keeps=keeps, log=log)


def test_accuracy(layers):
    """Top-1 accuracy (percent) of an int8 model on the 360 test images."""
    _, x_test, _, y_test = digits_split()
    return mlp.accuracy(layers, mlp.quantize_input(layers, x_test), y_test)


def write_tflite(layers, path):
    """The model as a .tflite file (FULLY_CONNECTED ops) for LiteRT."""
    return write_dense_model(TEMPLATE, layers, path)


def level_shares(layers):
    """Fraction of all weights at each precision level 0..3 (smallest level that holds it)."""
    lv = np.concatenate([mulbins.smallest_level(lay.w).ravel() for lay in layers])
    return np.bincount(lv, minlength=4) / lv.size
