"""Quantized MLPs in NumPy: float training, TFLite-style int8 quantization, integer inference,
and quantization-aware fine-tuning of the int8 weights under per-weight bounds.

A quantized model is a list of ``golden.litert_model.DenseLayer`` records, whether it was read
from a .tflite file or made here, so every tool (the bins quantizer, the delta trainer, the
core compiler) works on either. Conventions are TFLite's int8 spec: weights symmetric per
output channel in [-127, 127], activations asymmetric per tensor, bias int32 in units of
``s_in * s_w[o]``; hidden layers have a fused ReLU, the last none.

Fine-tuning keeps every scale and zero point fixed and moves only the int8 weights: each
weight has a float shadow ``v`` (in int8 grid units); the forward pass uses
``q = round(clip(v, lo, hi))`` and the gradient passes straight through (the straight-through
estimator), so the trained weights are always on the deployed grid and inside the per-weight
bounds ``[lo, hi]``: a precision level's range (issue 4) or ``base +- (2**b - 1)`` (deltas).
"""

from dataclasses import replace

import numpy as np

from .layers import fully_connected
from .litert_model import DenseLayer

__all__ = ["train_float", "quantize", "run_int8", "accuracy", "fine_tune", "weights",
           "with_weights"]


def _relu_mask(k, n_layers):
    return k < n_layers - 1


def train_float(x, y, widths=(32, 16, 10), *, epochs=120, lr=3e-3, batch=32, seed=0,
                log=None, prune=None):
    """Train a float ReLU MLP with Adam on softmax cross-entropy.

    ``prune``: optional ``prune(epoch, params, x)`` called before each epoch; it returns a
    list of boolean weight masks (or None to keep the current ones), and the weights outside
    them are held at zero from then on (pruning during training, ``golden.block_prune``).
    Returns a list of ``(w (out, in), b (out,))`` float64 pairs. Deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(x, np.float64)
    sizes = [x.shape[1], *widths]
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        lim = np.sqrt(6.0 / (n_in + n_out))  # Glorot uniform, as Keras
        params.append([rng.uniform(-lim, lim, (n_out, n_in)), np.zeros(n_out)])
    opt = _Adam([p for pair in params for p in pair], lr)
    masks = None
    for epoch in range(epochs):
        if prune is not None:
            masks = prune(epoch, params, x) or masks
        order = rng.permutation(len(x))
        for s in range(0, len(x), batch):
            idx = order[s:s + batch]
            grads = _float_grads(params, x[idx], y[idx])
            opt.step([g for pair in grads for g in pair])
            if masks is not None:
                for (w, _), keep in zip(params, masks, strict=True):
                    w[~keep] = 0.0
        if log and (epoch + 1) % max(1, epochs // 4) == 0:
            log(f"  float epoch {epoch + 1}/{epochs}")
    return [(w.copy(), b.copy()) for w, b in params]


def _float_grads(params, x, y):
    acts, zs = [x], []
    for k, (w, b) in enumerate(params):
        z = acts[-1] @ w.T + b
        zs.append(z)
        acts.append(np.maximum(z, 0) if _relu_mask(k, len(params)) else z)
    d = _softmax(acts[-1])
    d[np.arange(len(y)), y] -= 1.0
    d /= len(y)
    grads = [None] * len(params)
    for k in range(len(params) - 1, -1, -1):
        w, _ = params[k]
        grads[k] = (d.T @ acts[k], d.sum(0))
        if k:
            d = (d @ w) * (zs[k - 1] > 0)
    return grads


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class _Adam:
    def __init__(self, params, lr, b1=0.9, b2=0.999, eps=1e-8):
        self.p, self.lr, self.b1, self.b2, self.eps, self.t = params, lr, b1, b2, eps, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def step(self, grads):
        self.t += 1
        for p, g, m, v in zip(self.p, grads, self.m, self.v, strict=True):
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * g * g
            mh = m / (1 - self.b1 ** self.t)
            vh = v / (1 - self.b2 ** self.t)
            p -= self.lr * mh / (np.sqrt(vh) + self.eps)


def _act_qparams(lo, hi):
    """Asymmetric int8 scale and zero point covering [min(lo, 0), max(hi, 0)] (TFLite's)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = float(np.float32((hi - lo) / 255.0 if hi > lo else 1.0))  # stored as float32
    zp = int(np.clip(round(-128 - lo / scale), -128, 127))
    return scale, zp


def quantize(params, calib, *, input_range=(0.0, 1.0)):
    """Post-training int8 quantization of float ``params`` (as ``train_float`` returns).

    Weights: symmetric per output channel, ``s_w[o] = max|w[o]| / 127``. Activations: per
    tensor, asymmetric, from the min and max over the calibration inputs ``calib`` (the input
    tensor from ``input_range``). Bias: ``round(b / (s_in * s_w))`` as int32. Hidden layers
    clamp at the zero point (fused ReLU).
    """
    s_in, zp_in = _act_qparams(*input_range)
    a = np.asarray(calib, np.float64)
    layers = []
    for k, (w, b) in enumerate(params):
        z = a @ w.T + b
        relu = _relu_mask(k, len(params))
        a = np.maximum(z, 0) if relu else z
        s_out, zp_out = _act_qparams(a.min(), a.max())
        s_w = np.maximum(np.abs(w).max(axis=1), 1e-12) / 127.0
        wq = np.clip(np.round(w / s_w[:, None]), -127, 127).astype(np.int8)
        bq = np.round(b / (s_in * s_w)).astype(np.int32)
        layers.append(DenseLayer(
            op="FULLY_CONNECTED", w=wq, bias=bq, input_scale=s_in, input_zero_point=zp_in,
            weight_scales=s_w.astype(np.float32), output_scale=s_out, output_zero_point=zp_out,
            act_min=zp_out if relu else -128, act_max=127, output_tensor=-1))
        s_in, zp_in = s_out, zp_out
    return layers


def quantize_input(layers, x_float):
    """Quantize float inputs with the first layer's input scale and zero point."""
    lay = layers[0]
    q = np.round(np.asarray(x_float, np.float64) / lay.input_scale) + lay.input_zero_point
    return np.clip(q, -128, 127).astype(np.int8)


def run_int8(layers, xq, *, mode="single", weights_override=None):
    """Integer inference; returns every layer's int8 output (a list of (batch, out) arrays)."""
    outs, a = [], np.asarray(xq, np.int8)
    for k, lay in enumerate(layers):
        w = lay.w if weights_override is None else weights_override[k]
        a = fully_connected(a, w, lay.bias, **lay.fc_kwargs(mode)).astype(np.int8)
        outs.append(a)
    return outs


def accuracy(layers, xq, y, *, weights_override=None):
    """Top-1 accuracy in percent of the integer model (``single`` mode, LiteRT's FC)."""
    logits = run_int8(layers, xq, weights_override=weights_override)[-1]
    return 100.0 * float(np.mean(logits.argmax(axis=1) == np.asarray(y)))


def weights(layers):
    """The int8 weight matrices of a model, as a list of copies."""
    return [lay.w.copy() for lay in layers]


def with_weights(layers, ws):
    """A copy of ``layers`` with new int8 weight matrices (scales and biases unchanged)."""
    return [replace(lay, w=np.asarray(w, np.int8)) for lay, w in zip(layers, ws, strict=True)]


def fine_tune(layers, x, y, *, lo, hi, epochs=20, lr=0.05, batch=64, seed=0, l1=0.0,
              anchor=None, trainable=None, teacher=0.0, step=1, latent=False, log=None):
    """Quantization-aware fine-tuning of the int8 weights of ``layers`` on float inputs ``x``.

    ``lo``/``hi``: per-weight integer bounds (lists of arrays shaped like the weights); the
    result always lies in them. ``trainable``: optional boolean masks, weights outside them
    stay as they are. ``l1``: weight of an L1 penalty on ``v - anchor`` (``anchor`` defaults
    to the starting weights), applied as a proximal step so that small changes snap back.
    ``step``: every weight stays ``anchor`` plus a multiple of ``step`` (a coarser grid for
    the change; 1 is the plain int8 grid), the multiple rounded to nearest and kept inside
    the bounds. ``latent``: also return the float weights behind the rounded ones (how far
    each weight wants to move, finer than the grid).
    Activations are fake-quantized with the model's own scales, zero points and clamps.
    ``teacher``: weight in [0, 1] of distillation from the starting model (its softmax
    outputs mixed into the one-hot targets), which keeps the tuned model's decisions close to
    the starting model's. Returns the new int8 weight matrices.
    """
    rng = np.random.default_rng(seed)
    start = weights(layers)
    anchor = start if anchor is None else anchor
    lo = [np.maximum(np.asarray(v, np.float64), -127) for v in lo]  # the int8 weight range
    hi = [np.minimum(np.asarray(v, np.float64), 127) for v in hi]
    if not (isinstance(step, int) and 1 <= step <= 254):
        raise ValueError(f"fine_tune: step must be an integer in [1, 254], not {step!r}")
    for w, a, b, c in zip(start, lo, hi, anchor, strict=True):
        if np.any(w < a) or np.any(w > b):
            raise ValueError("fine_tune: the starting weights lie outside their bounds")
        if np.any((w.astype(np.int64) - c) % step):
            raise ValueError(f"fine_tune: the starting weights are not on the anchor's grid "
                             f"of step {step}")
    # the multiples of step each weight may take: n in [n_lo, n_hi], value anchor + n*step
    n_lo = [np.ceil((a - c) / step) for a, c in zip(lo, anchor, strict=True)]
    n_hi = [np.floor((b - c) / step) for b, c in zip(hi, anchor, strict=True)]

    def on_grid(vk, c, a, b):
        return c + step * np.clip(np.round((vk - c) / step), a, b)

    v = [w.astype(np.float64) for w in start]
    masks = [np.ones(w.shape, bool) for w in start] if trainable is None else \
        [np.asarray(m, bool) for m in trainable]
    opt = _Adam(v, lr)
    xq = quantize_input(layers, x)
    y = np.asarray(y)
    target = np.zeros((len(y), layers[-1].w.shape[0]))
    target[np.arange(len(y)), y] = 1.0
    if teacher:
        lay = layers[-1]
        logits = (run_int8(layers, xq)[-1].astype(np.float64) - lay.output_zero_point) \
            * lay.output_scale
        target = (1 - teacher) * target + teacher * _softmax(logits)
    for epoch in range(epochs):
        order = rng.permutation(len(x))
        for s in range(0, len(x), batch):
            idx = order[s:s + batch]
            q = [on_grid(*z) for z in zip(v, anchor, n_lo, n_hi, strict=True)]
            grads = _qat_grads(layers, q, xq[idx], target[idx])
            opt.step([g * m for g, m in zip(grads, masks, strict=True)])
            for vk, a, b, m, w0, c in zip(v, lo, hi, masks, start, anchor, strict=True):
                if l1:
                    d = vk - c
                    vk[...] = c + np.sign(d) * np.maximum(np.abs(d) - lr * l1, 0.0)
                np.clip(vk, a - 0.49 * step, b + 0.49 * step, out=vk)
                vk[~m] = w0[~m]
        if log and (epoch + 1) % max(1, epochs // 4) == 0:
            log(f"  fine-tune epoch {epoch + 1}/{epochs}")
    out = [on_grid(*z).astype(np.int8) for z in zip(v, anchor, n_lo, n_hi, strict=True)]
    return (out, v) if latent else out


def _qat_grads(layers, q, xq, target):
    """Gradients of the mean cross-entropy against ``target`` probabilities w.r.t. the int8
    weights (grid units)."""
    lay0 = layers[0]
    a = (xq.astype(np.float64) - lay0.input_zero_point) * lay0.input_scale
    acts, pass_masks = [a], []
    for k, lay in enumerate(layers):
        s_w = lay.weight_scales.astype(np.float64)
        z = acts[-1] @ (q[k] * s_w[:, None]).T + lay.bias * lay.input_scale * s_w
        lo_f = (lay.act_min - lay.output_zero_point) * lay.output_scale
        hi_f = (lay.act_max - lay.output_zero_point) * lay.output_scale
        pass_masks.append((z > lo_f) & (z < hi_f))
        zc = np.clip(z, lo_f, hi_f)
        acts.append(np.round(zc / lay.output_scale) * lay.output_scale)  # fake quant
    d = (_softmax(acts[-1]) - target) / len(target)
    grads = [None] * len(layers)
    for k in range(len(layers) - 1, -1, -1):
        lay = layers[k]
        s_w = lay.weight_scales.astype(np.float64)
        d = d * pass_masks[k]
        grads[k] = (d.T @ acts[k]) * s_w[:, None]
        if k:
            d = d @ (q[k] * s_w[:, None])
    return grads

