"""Block-structured pruning: at most ``keep`` non-zero weights in every block of ``lanes``
consecutive weights of a row (the engine's beat), so that a beat never needs more than
``ceil(keep / slots)`` cycles of ``SparseDotProduct`` whatever the activations are.

- ``block_mask(w, keep, lanes, activity)``: per row and block, the ``keep`` weights with the
  largest ``|w[o, i]| * activity[i]`` (a weight on an input that is rarely non-zero is cheap to
  lose and cheap to keep: the engine skips it with its input).
- ``schedule(keeps, lanes, ...)``: a ``golden.mlp.train_float`` pruning hook that tightens the
  blocks from ``lanes`` to ``keeps[layer]`` non-zeros in steps (gradual magnitude pruning), the
  activity measured as each layer's input RMS on the training data.
- ``sparse_int8(x_fit, y_fit, x_val, y_val, ...)``: float training with that schedule (from
  1/8 to 1/2 of the epochs),
  TFLite-style int8 quantization (``golden.mlp.quantize``), quantization-aware fine-tuning with
  the pruned weights held at zero, over a few seeds; the model with the best accuracy on the
  held-out ``(x_val, y_val)`` is kept (the test split chooses nothing).
"""

from dataclasses import dataclass

import numpy as np

from . import mlp


def block_mask(w, keep, lanes, activity=None):
    """Boolean mask, shaped like ``w`` (out, in), of the weights kept: at most ``keep`` per
    row in each block of ``lanes`` inputs (ties: the lower input index)."""
    w = np.asarray(w, np.float64)
    if not (isinstance(keep, (int, np.integer)) and 0 <= keep <= lanes):
        raise ValueError(f"keep must be an integer in [0, lanes={lanes}], not {keep!r}")
    act = np.ones(w.shape[1]) if activity is None else np.asarray(activity, np.float64)
    score = np.abs(w) * act[None, :]
    mask = np.zeros(w.shape, bool)
    for j in range(0, w.shape[1], lanes):
        s = score[:, j:j + lanes]
        idx = np.argsort(-s, axis=1, kind="stable")[:, :keep]
        np.put_along_axis(mask[:, j:j + lanes], idx, True, axis=1)
    return mask


def schedule(keeps, lanes, *, start=20, stop=80, every=5):
    """A ``train_float`` pruning hook: from epoch ``start`` to ``stop``, every ``every``
    epochs and at ``stop``, each layer's blocks are cut to
    ``round(lanes - (lanes - keep) * f)`` weights, ``f`` growing linearly from 0 to 1."""
    def prune(epoch, params, x):
        if epoch < start or epoch > stop or ((epoch - start) % every and epoch != stop):
            return None
        f = (epoch - start) / max(1, stop - start)
        a, masks = np.asarray(x, np.float64), []
        for k, ((w, b), keep) in enumerate(zip(params, keeps, strict=True)):
            act = np.sqrt((a ** 2).mean(axis=0))
            masks.append(block_mask(w, int(round(lanes - (lanes - keep) * f)), lanes, act))
            w *= masks[-1]
            a = a @ w.T + b
            if k < len(params) - 1:
                a = np.maximum(a, 0)
        return masks
    return prune


@dataclass
class SparseModel:
    layers: list  # the chosen int8 model (DenseLayer list)
    seed: int
    val_accuracy: float
    history: list  # (seed, validation accuracy) per candidate


def train_one(x_fit, y_fit, *, seed, widths=(32, 16, 10), keeps=(4, 4, 8), lanes=16,
              epochs=160, fine_tune_epochs=30, prune_window=(1 / 8, 1 / 2), fine_tune_lr=1.0):
    """One block-pruned int8 MLP: float training with the pruning ``schedule`` over the
    fraction ``prune_window`` of the ``epochs``, int8 quantization, then
    ``fine_tune_epochs`` of quantization-aware fine-tuning with the pruned weights held at
    zero (none for 0)."""
    if len(keeps) != len(widths):
        raise ValueError(f"keeps has {len(keeps)} entries for {len(widths)} layers")
    lo_f, hi_f = prune_window
    if not 0 <= lo_f <= hi_f <= 1:
        raise ValueError(f"prune_window must be 0 <= start <= stop <= 1, not {prune_window!r}")
    prune = schedule(keeps, lanes, start=int(epochs * lo_f), stop=int(epochs * hi_f),
                     every=max(1, epochs // 32))
    params = mlp.train_float(x_fit, y_fit, widths, epochs=epochs, seed=seed, prune=prune)
    layers = mlp.quantize(params, x_fit)
    if not fine_tune_epochs:
        return layers
    ws = mlp.weights(layers)
    lo = [np.where(w != 0, -127, 0) for w in ws]
    hi = [np.where(w != 0, 127, 0) for w in ws]
    return mlp.with_weights(layers, mlp.fine_tune(
        layers, x_fit, y_fit, lo=lo, hi=hi, epochs=fine_tune_epochs, lr=fine_tune_lr,
        seed=seed, teacher=0.5))


def sparse_int8(x_fit, y_fit, x_val, y_val, *, widths=(32, 16, 10), keeps=(4, 4, 8), lanes=16,
                seeds=range(6), epochs=160, fine_tune_epochs=30, log=None):
    """The block-pruned int8 MLP (``train_one``) with the best validation accuracy over
    ``seeds``."""
    if len(keeps) != len(widths):
        raise ValueError(f"keeps has {len(keeps)} entries for {len(widths)} layers")
    best, history = None, []
    for seed in seeds:
        layers = train_one(x_fit, y_fit, seed=seed, widths=widths, keeps=keeps, lanes=lanes,
                           epochs=epochs, fine_tune_epochs=fine_tune_epochs)
        acc = mlp.accuracy(layers, mlp.quantize_input(layers, x_val), y_val)
        history.append((seed, acc))
        if log:
            log(f"  block-pruned model, seed {seed}: validation accuracy {acc:.2f}%")
        if best is None or acc > best.val_accuracy:
            best = SparseModel(layers, seed, acc, history)
    return best
