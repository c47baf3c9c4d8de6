"""The trained digits models every figure and test rests on, committed as files.

Float training in NumPy does not land on the same weights on every machine: the BLAS
kernels (and NumPy's vectorized ``exp``) differ between CPUs (Intel, AMD, with or without
AVX-512), so the recipes of ``golden.digits_model`` and ``golden.delta.train`` give slightly
different int8 models on different machines, and figures that rest on them (accuracies,
level shares, delta bytes) move. Everything downstream of a training run is integer and
exact, so the project commits the trained models themselves and computes its figures from
them; the same figures then come out on every machine.

The models (``golden/artifacts/``; int8 models as sparq model files, ``golden.delta.model_file``):

============================  ==============================================================
name                          recipe
============================  ==============================================================
``float``                     ``digits_model.float_model()``: the float 64-32-16-10 MLP
``int8``                      ``mlp.quantize`` of ``float``: the plain int8 model
``mixed``                     ``digits_model.mixed_model(int8)``: narrower per-layer scales
``levels``                    ``digits_model.mixed_model(int8, method="levels")``
``sparse``                    ``digits_model.sparse_model()``: block-pruned, the core's model
``sparse_shift_update``       the constrained update of ``sparse`` for the sensor shift
                              ``SHIFT`` (``UPDATE``: at most 150 weights, each by at most 15)
``sparse_shift_full``         the unconstrained fine-tune of ``sparse`` for the same shift
                              (every weight free on the int8 grid), the update's yardstick
============================  ==============================================================

``manifest.json`` records, per model, its file's SHA-256, its recipe, and the figures it was
chosen by (validation accuracy) with the machine that trained it; ``tests/test_trained.py``
checks the files against it. ``python -m golden.trained`` re-runs every recipe on this
machine and rewrites the files (``--out DIR`` elsewhere, to compare); expect small
differences on another CPU.
"""

import argparse
import hashlib
import json
import pathlib
import platform
import sys
import time
from functools import cache

import numpy as np

from . import digits_model, mlp
from .data import digits_split
from .delta import model_file
from .delta import train as delta_train

FOLDER = pathlib.Path(__file__).resolve().parent / "artifacts"
MANIFEST = "manifest.json"
# the sensor shift of the end-to-end update: the black level rises to 40% of full scale,
# with +-0.1 of uniform noise (``golden.delta.train.shift_images``); training images drawn
# with noise seed 1, test images with seed 2
SHIFT = dict(offset=0.4, noise=0.1)
SHIFT_SEEDS = dict(train=1, test=2)
# the constrained update: at most k weights change, each by at most 2**bits - 1, pruned
# weights stay zero (the block structure the core's engine relies on)
UPDATE = dict(k=150, bits=4, score="iterative", keep_zeros=True, seed=0)
FULL_UPDATE = dict(seed=0)  # the unconstrained fine-tune: the same training, no constraint

INT8_MODELS = ("int8", "mixed", "levels", "sparse", "sparse_shift_update", "sparse_shift_full")
NAMES = ("float", *INT8_MODELS)


def shifted(split):
    """The digits images of ``split`` (``"train"`` or ``"test"``) under the sensor shift."""
    x_train, x_test, _, _ = digits_split()
    x = {"train": x_train, "test": x_test}[split]
    return delta_train.shift_images(x, seed=SHIFT_SEEDS[split], **SHIFT)


def _path(name, folder=FOLDER):
    if name not in NAMES:
        raise ValueError(f"unknown trained model {name!r}; known: {', '.join(NAMES)}")
    return folder / (f"{name}.npz" if name == "float" else f"{name}.safetensors")


@cache
def manifest(folder=FOLDER):
    """The manifest: ``{name: {"file", "sha256", "recipe", ...figures}, "machine": ...}``."""
    return json.loads((folder / MANIFEST).read_text())


def load(name, folder=FOLDER):
    """The committed int8 model ``name`` (a list of ``DenseLayer``)."""
    if name == "float":
        raise ValueError("'float' is the float model: use load_float()")
    layers, _ = model_file.load_model(_path(name, folder))
    return layers


def load_float(folder=FOLDER):
    """The committed float MLP: ``[(w (out, in), b (out,)), ...]`` in float64."""
    with np.load(_path("float", folder)) as z:
        n = len(z.files) // 2
        return [(z[f"w{k}"], z[f"b{k}"]) for k in range(n)]


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _machine():
    cpu = platform.processor() or platform.machine()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return dict(cpu=cpu, python=platform.python_version(), numpy=np.__version__)


def train_all(log=print):
    """Run every recipe; return ``{name: (model, figures)}`` (model: layers or float params)."""
    x_fit, x_val, y_fit, y_val = digits_model.fit_val_split()
    _, _, y_train, _ = digits_split()
    t0 = time.time()

    def step(msg):
        log(f"[trained] {msg} ({time.time() - t0:.0f} s)")

    out = {}
    fl = digits_model.float_model()
    out["float"] = (fl, dict(recipe="digits_model.float_model()"))
    int8 = mlp.quantize(fl, x_fit)
    out["int8"] = (int8, dict(recipe="mlp.quantize(float, x_fit)"))
    step("float and int8 models trained")
    mixed, rec = digits_model.mixed_model(int8)
    out["mixed"] = (mixed, dict(recipe="digits_model.mixed_model(int8)",
                                val_accuracy=rec.val_accuracy,
                                base_val_accuracy=rec.base_val_accuracy))
    levels, rec = digits_model.mixed_model(int8, method="levels")
    out["levels"] = (levels, dict(recipe='digits_model.mixed_model(int8, method="levels")',
                                  val_accuracy=rec.val_accuracy,
                                  base_val_accuracy=rec.base_val_accuracy))
    step("mixed-precision models made")
    sp = digits_model.sparse_model()
    out["sparse"] = (sp.layers, dict(recipe="digits_model.sparse_model()", seed=sp.seed,
                                     val_accuracy=sp.val_accuracy))
    step("block-pruned model trained")
    xs = shifted("train")
    for name, kw in (("sparse_shift_update", UPDATE), ("sparse_shift_full", FULL_UPDATE)):
        w = delta_train.constrained_update(sp.layers, xs, y_train, **kw)
        out[name] = (mlp.with_weights(sp.layers, w),
                     dict(recipe=f"delta.train.constrained_update(sparse, shifted('train'), "
                                 f"y_train, **{kw})", shift=SHIFT,
                          changed=delta_train.changed_count(w, mlp.weights(sp.layers))))
    step("shift updates trained")
    _, _, _, y_test = digits_split()
    xs_test = shifted("test")
    for name in INT8_MODELS:
        model, figs = out[name]
        figs["test_accuracy"] = digits_model.test_accuracy(model)
        if name.startswith("sparse"):
            figs["shifted_test_accuracy"] = mlp.accuracy(
                model, mlp.quantize_input(model, xs_test), y_test)
    return out


def write_all(models, folder=FOLDER):
    """Write the models and the manifest into ``folder``; check that each reads back."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = {}
    for name, (model, figs) in models.items():
        path = _path(name, folder)
        if name == "float":
            np.savez(path, **{f"{p}{k}": a for k, pair in enumerate(model)
                              for p, a in zip("wb", pair, strict=True)})
            back = load_float(folder)
            same = all(np.array_equal(a, b) for pa, pb in zip(model, back, strict=True)
                       for a, b in zip(pa, pb, strict=True))
        else:
            model_file.save_model(model, path)
            back = load(name, folder)
            same = all(_same_layer(a, b) for a, b in zip(model, back, strict=True))
        if not same:
            raise RuntimeError(f"{name}: the model does not read back unchanged from {path}")
        entries[name] = dict(file=path.name, sha256=_sha256(path), **figs)
    entries["machine"] = _machine()
    (folder / MANIFEST).write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n")
    manifest.cache_clear()
    return entries


def _same_layer(a, b):
    return (np.array_equal(a.w, b.w) and np.array_equal(a.bias, b.bias)
            and np.array_equal(a.weight_scales, b.weight_scales)
            and (a.input_scale, a.input_zero_point, a.output_scale, a.output_zero_point,
                 a.act_min, a.act_max) == (b.input_scale, b.input_zero_point, b.output_scale,
                                           b.output_zero_point, b.act_min, b.act_max))


def main(argv=None):
    ap = argparse.ArgumentParser(description="Re-run the recipes of the committed digits "
                                             "models on this machine and write them.")
    ap.add_argument("--out", default=str(FOLDER),
                    help=f"folder to write (default: the committed one, {FOLDER})")
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out)
    if out.exists() and not out.is_dir():
        ap.error(f"--out {out} exists and is not a folder")
    old = manifest(FOLDER) if (FOLDER / MANIFEST).exists() else {}
    entries = write_all(train_all(), out)
    for name in NAMES:
        e, o = entries[name], old.get(name, {})
        same = "same bytes" if o.get("sha256") == e["sha256"] else "changed"
        acc = f", test accuracy {e['test_accuracy']:.2f}%" if "test_accuracy" in e else ""
        if "shifted_test_accuracy" in e:
            acc += f", shifted {e['shifted_test_accuracy']:.2f}%"
        was = f" (was {o['test_accuracy']:.2f}%)" if "test_accuracy" in o and same != \
            "same bytes" else ""
        print(f"{name:20s} {same}{acc}{was}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
