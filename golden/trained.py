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
``more_data_base``            the ``more_data`` scenario's base model (``golden.delta.train``:
                              trained on 30% of the training split)
============================  ==============================================================

``update_study.npz`` holds the updates ``make bench``'s section ``delta`` measures (dozens of
constrained fine-tunes of the two scenarios' base models), as their changes from the base,
keyed by their arguments (``Study``); ``python -m sparq.golden.trained --study`` retrains them.

``manifest.json`` records, per model, its file's SHA-256, its recipe, and the figures it was
chosen by (validation accuracy) with the machine that trained it; ``tests/test_trained.py``
checks the files against it. ``python -m sparq.golden.trained`` re-runs every recipe on this
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
from dataclasses import replace

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

INT8_MODELS = ("int8", "mixed", "levels", "sparse", "sparse_shift_update", "sparse_shift_full",
               "more_data_base")
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


def manifest(folder=FOLDER):
    """The manifest: ``{name: {"file", "sha256", "recipe", ...figures}, "machine": ...}``."""
    return json.loads((pathlib.Path(folder) / MANIFEST).read_text())


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
    out["more_data_base"] = (delta_train.scenario("more_data", committed=False).base,
                             dict(recipe='delta.train.scenario("more_data", committed=False)'
                                         ".base"))
    step("more_data base model trained")
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
    return entries


def _same_layer(a, b):
    return (np.array_equal(a.w, b.w) and np.array_equal(a.bias, b.bias)
            and np.array_equal(a.weight_scales, b.weight_scales)
            and (a.input_scale, a.input_zero_point, a.output_scale, a.output_zero_point,
                 a.act_min, a.act_max) == (b.input_scale, b.input_zero_point, b.output_scale,
                                           b.output_zero_point, b.act_min, b.act_max))


STUDY = "update_study.npz"
# the updates make bench's section "delta" measures: per scenario the unconstrained fine-tune
# and, at each budget k, the mask chosen once by the change score (plain, and with
# |d| <= 63) and the iterative mask on a step-32 grid of the change (chosen on a validation
# split)
DELTA_K = (25, 50, 75, 100, 150, 200, 250, 300)
DELTA_RECIPES = (dict(score="change", bits=None, step=1), dict(score="change", bits=6, step=1),
                 dict(score="iterative", bits=None, step=32))


def study_runs():
    """``(scenario, constrained_update keywords)`` of every update of the study."""
    for name in delta_train.SCENARIOS:
        yield name, {}
        for k in DELTA_K:
            for recipe in DELTA_RECIPES:
                yield name, dict(k=k, **recipe)


BASE_MODELS = {"shift": "int8", "more_data": "more_data_base"}  # the scenarios' bases


class Study:
    """Committed results of ``golden.delta.train.constrained_update`` on the scenarios'
    committed base models (``BASE_MODELS``, read from ``folder``), keyed by scenario and
    arguments: ``update(scenario, **kw)`` returns the weights from ``update_study.npz`` when
    it holds them, else trains them here (``trained_here`` counts those: their figures then
    depend on this machine's floating point) and keeps them for ``save()``. The study
    stores changes from the base models and their SHA-256: a study made on other base
    models is not used (its updates are trained again)."""

    def __init__(self, folder=FOLDER):
        self.folder = pathlib.Path(folder)
        self.path = self.folder / STUDY
        self.changes, self.trained_here, self._scenarios = {}, 0, {}
        self.bases = {name: _sha256(_path(model, self.folder))
                      for name, model in BASE_MODELS.items()}
        if self.path.exists():
            with np.load(self.path) as z:
                stored = {k: z[k] for k in z.files}
            made_on = {name: bytes(stored.pop(f"base_sha256|{name}", b"")).decode()
                       for name in BASE_MODELS}
            if made_on == self.bases:
                self.changes = stored

    @staticmethod
    def key(scenario, **kw):
        return scenario + "|" + ",".join(f"{k}={kw[k]!r}" for k in sorted(kw))

    def scenario(self, name):
        """``golden.delta.train.scenario(name)`` with the base model from this folder."""
        if name not in self._scenarios:
            sc = delta_train.scenario(name)
            self._scenarios[name] = replace(sc, base=load(BASE_MODELS[name], self.folder))
        return self._scenarios[name]

    def update(self, scenario, **kw):
        """The int8 weight matrices of ``constrained_update(base, x_train, y_train, **kw)``."""
        sc = self.scenario(scenario)
        base = mlp.weights(sc.base)
        names = [f"{self.key(scenario, **kw)}|{k}" for k in range(len(base))]
        if not all(n in self.changes for n in names):
            self.trained_here += 1
            new = delta_train.constrained_update(sc.base, sc.x_train, sc.y_train, **kw)
            for n, w, b in zip(names, new, base, strict=True):
                self.changes[n] = (w.astype(np.int16) - b).astype(np.int16)
        out = [b.astype(np.int16) + self.changes[n] for n, b in zip(names, base, strict=True)]
        if any(np.abs(w).max() > 127 for w in out):
            raise ValueError(f"the study's update {self.key(scenario, **kw)} leaves the int8 "
                             "weight range: it was made on other base models")
        return [w.astype(np.int8) for w in out]

    def save(self):
        marks = {f"base_sha256|{n}": np.frombuffer(h.encode(), np.uint8)
                 for n, h in self.bases.items()}
        np.savez_compressed(self.path, **self.changes, **marks)
        return self.path


def main(argv=None):
    ap = argparse.ArgumentParser(description="Re-run the recipes of the committed digits "
                                             "models on this machine and write them.")
    ap.add_argument("--study", action="store_true",
                    help="also retrain the update study of make bench's section delta "
                         f"({STUDY}; about 30 seconds)")
    ap.add_argument("--out", default=str(FOLDER),
                    help=f"folder to write (default: the committed one, {FOLDER})")
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out)
    if out.exists() and not out.is_dir():
        ap.error(f"--out {out} exists and is not a folder")
    old = manifest(FOLDER) if (FOLDER / MANIFEST).exists() else {}
    entries = write_all(train_all(), out)
    if args.study:
        study = Study(out)
        study.changes.clear()
        for k, (scenario, kw) in enumerate(study_runs()):
            print(f"[trained] study {k + 1}: {Study.key(scenario, **kw)}", flush=True)
            study.update(scenario, **kw)
        print(f"wrote {study.save()} ({study.trained_here} updates trained)")
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
