"""Constrained fine-tuning for small deltas, and the two update scenarios on the digits set.

``constrained_update(layers, x, y, k=None, bits=None, l1=0.0, step=1)`` fine-tunes the int8
weights of a deployed model (``golden.mlp.fine_tune``: on the int8 grid with the
straight-through estimator, scales and biases fixed) under any mix of constraints:

- ``k``: at most ``k`` weights may change, chosen by a saliency score: ``"change"``
  (default) the magnitude of each weight's move in a short unconstrained fine-tune, or
  ``"gradient"`` the magnitude of the loss gradient summed over the training data (both
  choose the mask once, before training); ``"iterative"``: a full fine-tune, then
  ``rounds`` rounds that keep a geometrically shrinking number of the largest changes
  (ending at ``k``) and retrain only those, starting from their tuned values;
- ``bits``: every change is at most ``2**bits - 1`` in magnitude;
- ``step``: every change is a multiple of ``step``; a power of two ``2**s`` saves ``s``
  bits per changed weight in the delta file (its differences are stored shifted);
- ``l1``: an L1 penalty on the change (a proximal step: small changes snap back to 0).

Without constraints it is the unconstrained fine-tune the deltas are measured against.

Scenarios (``scenario(name)``): ``more_data``: the base model is trained on 30% of the
training split, the update on all of it; ``shift``: the base model is the plain int8 digits
model, then the sensor changes (a brightness offset of 0.2 of full scale and uniform noise
of +-0.1, ``shift_images``) and the update trains on shifted training images. Accuracy is
always measured on the 360 test images (shifted in ``shift``). For the default seed both
base models are the committed ones (``golden.trained``).
"""

from dataclasses import dataclass

import numpy as np

from .. import mlp
from ..data import digits_split

SCENARIOS = ("more_data", "shift")


@dataclass
class Scenario:
    name: str
    base: list  # DenseLayer list
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def accuracy(self, layers):
        return mlp.accuracy(layers, mlp.quantize_input(layers, self.x_test), self.y_test)


def shift_images(x, *, seed=0, offset=0.2, noise=0.1):
    """A sensor shift: pixels (in [0, 1]) plus ``offset`` plus uniform noise, clipped."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x, np.float64)
    return np.clip(x + offset + rng.uniform(-noise, noise, x.shape), 0.0, 1.0).astype(
        np.float32)


def scenario(name, *, seed=0, committed=True):
    """The base model and the update's data for scenario ``name`` (see the docstring).
    ``committed``: for the default seed, the base model is the committed one
    (``golden.trained``: ``more_data_base``, ``int8``), the same on every machine, instead of
    one trained here."""
    from .. import digits_model, trained

    x_train, x_test, y_train, y_test = digits_split()
    use_file = committed and seed == digits_model.SEED
    if name == "more_data":
        if use_file:
            base = trained.load("more_data_base")
        else:
            from sklearn.model_selection import train_test_split
            x_few, _, y_few, _ = train_test_split(x_train, y_train, train_size=0.3,
                                                  random_state=seed, stratify=y_train)
            params = mlp.train_float(x_few, y_few, digits_model.WIDTHS, seed=seed)
            base = mlp.quantize(params, x_few)
        return Scenario(name, base, x_train, y_train, x_test, y_test)
    if name == "shift":
        base = trained.load("int8") if use_file else digits_model.int8_model(seed)
        return Scenario(name, base, shift_images(x_train, seed=1),
                        y_train, shift_images(x_test, seed=2), y_test)
    raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")


def saliency(layers, x, y, batch=256):
    """``|sum of dLoss/dw|`` per weight over ``(x, y)`` (grid units), on the model as is."""
    xq = mlp.quantize_input(layers, x)
    target = np.zeros((len(y), layers[-1].w.shape[0]))
    target[np.arange(len(y)), np.asarray(y)] = 1.0
    q = [lay.w.astype(np.float64) for lay in layers]
    total = [np.zeros(w.shape) for w in q]
    for s in range(0, len(x), batch):
        g = mlp._qat_grads(layers, q, xq[s:s + batch], target[s:s + batch])
        total = [t + gi * len(xq[s:s + batch]) for t, gi in zip(total, g, strict=True)]
    return [np.abs(t) for t in total]


def top_k_mask(scores, k):
    """Boolean masks of the ``k`` highest scores over all matrices (ties: lowest index)."""
    flat = np.concatenate([s.ravel() for s in scores])
    keep = np.zeros(flat.size, bool)
    if k:
        keep[np.argsort(-flat, kind="stable")[:k]] = True
    out, pos = [], 0
    for s in scores:
        out.append(keep[pos:pos + s.size].reshape(s.shape))
        pos += s.size
    return out


SCORES = ("change", "gradient", "iterative")


def constrained_update(layers, x, y, *, k=None, bits=None, l1=0.0, step=1, score="change",
                       rounds=4, epochs=30, lr=1.0, seed=0, keep_zeros=False):
    """The fine-tuned int8 weights under the given constraints (see the docstring);
    ``keep_zeros``: pruned (zero) weights stay zero, so a block-pruned model keeps its
    structure (``golden.block_prune``)."""
    base = mlp.weights(layers)
    if bits is not None:
        if not (isinstance(bits, int) and 1 <= bits <= 8):
            raise ValueError(f"bits must be an integer in [1, 8], not {bits!r}")
        lo = [w.astype(np.int64) - (2 ** bits - 1) for w in base]
        hi = [w.astype(np.int64) + (2 ** bits - 1) for w in base]
    else:
        lo = [np.full(w.shape, -127) for w in base]
        hi = [np.full(w.shape, 127) for w in base]
    if keep_zeros:
        lo = [np.where(w == 0, 0, v) for w, v in zip(base, lo, strict=True)]
        hi = [np.where(w == 0, 0, v) for w, v in zip(base, hi, strict=True)]
    if score not in SCORES:
        raise ValueError(f"score must be one of {', '.join(SCORES)}, not {score!r}")
    if not (isinstance(rounds, int) and rounds >= 1):
        raise ValueError(f"rounds must be a positive integer, not {rounds!r}")
    if not (isinstance(step, int) and 1 <= step <= 254):
        raise ValueError(f"step must be an integer in [1, 254], not {step!r}")
    if not (isinstance(l1, (int, float)) and l1 >= 0):
        raise ValueError(f"l1 must be a number >= 0 (a penalty on the change), not {l1!r}")
    if not (isinstance(epochs, int) and epochs >= 0):
        raise ValueError(f"epochs must be an integer >= 0, not {epochs!r}")
    tune = dict(lo=lo, hi=hi, l1=l1, epochs=epochs, lr=lr, seed=seed, step=step)
    mask = None
    if k is not None:
        total = sum(w.size for w in base)
        if not (isinstance(k, int) and 0 <= k <= total):
            raise ValueError(f"k must be an integer in [0, {total}], not {k!r}")
        if score == "iterative":
            return _iterative(layers, x, y, k, rounds, tune)
        if score == "change":
            probe = mlp.fine_tune(layers, x, y, lo=lo, hi=hi, epochs=max(1, epochs // 3),
                                  lr=lr, seed=seed, step=step)
            scores = [np.abs(p.astype(np.int64) - w) for p, w in zip(probe, base, strict=True)]
        else:
            scores = saliency(layers, x, y)
        if keep_zeros:
            scores = [np.where(w == 0, 0, s) for w, s in zip(base, scores, strict=True)]
        mask = top_k_mask(scores, k)
    return mlp.fine_tune(layers, x, y, trainable=mask, **tune)


def _iterative(layers, x, y, k, rounds, tune):
    """``score="iterative"``: fine-tune everything, then per round keep the largest changes
    (``n * (k/n)**(i/rounds)`` of the ``n`` changed weights in round ``i``; ranked by the
    latent float weights' distance from the base, so equal grid steps are told apart, and
    pinned weights never move) and retrain only those from their tuned values, the rest
    reverted."""
    base = mlp.weights(layers)
    cur, latent = mlp.fine_tune(layers, x, y, latent=True, **tune)
    n = changed_count(cur, base)
    if n <= k:
        return cur
    for i in range(1, rounds + 1):
        keep = k if i == rounds else int(round(n * (k / n) ** (i / rounds)))
        moved = [np.where(c != w, np.abs(v - w), 0.0) for c, v, w in zip(cur, latent, base,
                                                                          strict=True)]
        mask = top_k_mask(moved, keep)
        start = [np.where(m, c, w).astype(np.int8) for m, c, w in zip(mask, cur, base,
                                                                      strict=True)]
        cur, latent = mlp.fine_tune(mlp.with_weights(layers, start), x, y, trainable=mask,
                                    anchor=base, latent=True, **tune)
    return cur


def post_hoc_top_k(base, tuned, k):
    """Keep only the ``k`` largest changes of ``tuned`` over ``base`` (the rest reverted)."""
    change = [t.astype(np.int64) - b for t, b in zip(tuned, base, strict=True)]
    mask = top_k_mask([np.abs(c) for c in change], k)
    return [np.where(m, t, b).astype(np.int8) for m, t, b in zip(mask, tuned, base,
                                                                   strict=True)]


def changed_count(weights, base):
    """How many weights differ between two lists of matrices."""
    return int(sum(int((a != b).sum()) for a, b in zip(weights, base, strict=True)))
