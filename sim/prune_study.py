"""``python -m sparq.sim.prune_study``: what the core's block pruning costs in accuracy, measured
less noisily than on the one test split that ``make sim`` reports.

1. Paired cross-validation on the training split (the test split is not read): ``--folds``
   stratified folds, ``--seeds`` seeds per fold. On every fold and seed the plain int8
   recipe (``golden.digits_model``: 120 epochs, no pruning, int8) and each block-pruned
   recipe (``golden.block_prune.train_one``, at most 4, 4 and 8 non-zero weights per block
   of 16) are trained on the same data with the same seed; reported: each one's mean
   accuracy on the held-out folds and its gap to int8, paired, with its standard error.
2. The fixed split, over ``--split-seeds`` seeds: mean validation and test accuracy of the
   int8 recipe and of the shipped block-pruned recipe (this reads the test split and chooses
   nothing: it is ``make sim``'s comparison averaged over seeds, where ``make sim`` shows
   one seed of int8 against the best of six by validation).
3. The two pipelines exactly as ``make sim`` runs them, re-run on other splits of the whole
   data set (``--repeats`` x 5 stratified outer folds of the 1,797 images; an outer fold holds
   359 or 360 images, the test split's size): on each outer training part, cut into fitting
   and validation parts as ``golden.digits_model.fit_val_split`` cuts the training split,
   the plain int8 model (seed 0) and the block-pruned model (the best of six seeds by
   validation) are made and both scored on the outer fold. Reported: mean accuracies, the
   paired gap with its standard error (the spread of the fold gaps over the square root of
   the folds in one repeat: one pass over the data's worth of evidence, as the repeats
   re-use the same images), the worst and best fold, and the share of folds where the gap
   is below -0.5 points (how often a test split of 360 images shows a miss).

Writes build/reports/prune_study.json (``--report``) and prints a table; about 5 minutes on
one core with the defaults (``--scale`` shortens every training, for a quick look).

    $ .venv/bin/python -m sparq.sim.prune_study --folds 5 --seeds 2
"""

import argparse
import inspect
import json
import pathlib
import time

import numpy as np

from sparq.golden import block_prune, digits_model, mlp
from sparq.golden.data import digits_split
from sparq.sim.runner import BUILD, make_report_folder

WHOLE_FOLDS = 5  # outer folds of the whole data set: 359-360 images each, as the test split

RECIPES = {
    "shipped": {},
    "longer schedule": dict(epochs=240),
    "no fine-tuning": dict(fine_tune_epochs=0),
    "gentler fine-tuning": dict(fine_tune_epochs=60, fine_tune_lr=0.5),
    "earlier pruning": dict(prune_window=(1 / 16, 3 / 8)),
    "later pruning": dict(prune_window=(1 / 4, 3 / 4)),
}


def _default(fn, name):
    """The default of ``fn``'s keyword ``name`` (the recipes' epoch counts are scaled from
    the trainers' own defaults, not copies of them)."""
    return inspect.signature(fn).parameters[name].default


def _scaled(recipe, scale):
    r = dict(recipe)
    for key, least in (("epochs", 2), ("fine_tune_epochs", 0)):
        r[key] = max(least, round(r.get(key, _default(block_prune.train_one, key)) * scale))
    return r


def _int8(x, y, seed, scale):
    """The plain int8 model's recipe (``golden.digits_model.int8_model``: ``train_float``
    with its default epochs, then ``quantize``)."""
    epochs = max(2, round(_default(mlp.train_float, "epochs") * scale))
    params = mlp.train_float(x, y, digits_model.WIDTHS, seed=seed, epochs=epochs)
    return mlp.quantize(params, x)


def _acc(layers, x, y):
    return mlp.accuracy(layers, mlp.quantize_input(layers, x), y)


def cross_validation(names, *, folds, seeds, scale, log=print):
    """Paired accuracies per fold and seed: ``{"int8": [...], name: [...]}``."""
    from sklearn.model_selection import StratifiedKFold

    x, _, y, _ = digits_split()
    acc = {n: [] for n in ("int8", *names)}
    t0 = time.time()
    split = StratifiedKFold(folds, shuffle=True, random_state=1).split(x, y)
    for k, (fit, held) in enumerate(split):
        for seed in range(seeds):
            acc["int8"].append(_acc(_int8(x[fit], y[fit], seed, scale), x[held], y[held]))
            for n in names:
                layers = block_prune.train_one(x[fit], y[fit], seed=seed,
                                               **_scaled(RECIPES[n], scale))
                acc[n].append(_acc(layers, x[held], y[held]))
        log(f"[prune_study] fold {k + 1}/{folds} done ({time.time() - t0:.0f} s)")
    return acc


def fixed_split(*, split_seeds, scale, log=print):
    """Validation and test accuracy per seed of int8 and the shipped recipe."""
    x_fit, x_val, y_fit, y_val = digits_model.fit_val_split()
    _, x_test, _, y_test = digits_split()
    out = {"int8": {"val": [], "test": []}, "shipped": {"val": [], "test": []}}
    for seed in range(split_seeds):
        models = {"int8": _int8(x_fit, y_fit, seed, scale),
                  "shipped": block_prune.train_one(x_fit, y_fit, seed=seed,
                                                   **_scaled(RECIPES["shipped"], scale))}
        for n, layers in models.items():
            out[n]["val"].append(_acc(layers, x_val, y_val))
            out[n]["test"].append(_acc(layers, x_test, y_test))
        log(f"[prune_study] fixed split, seed {seed + 1}/{split_seeds} done")
    return out


def whole_data(*, repeats, folds, scale, log=print):
    """Outer-fold accuracies of the shipped pipelines: ``{"int8": [...], "block-pruned":
    [...]}``, ``repeats * folds`` entries each, repeat by repeat."""
    from sklearn.model_selection import StratifiedKFold

    x_tr, x_te, y_tr, y_te = digits_split()
    x, y = np.concatenate([x_tr, x_te]), np.concatenate([y_tr, y_te])
    shipped = _scaled(RECIPES["shipped"], scale)
    acc = {"int8": [], "block-pruned": []}
    t0 = time.time()
    for r in range(repeats):
        for train, held in StratifiedKFold(folds, shuffle=True, random_state=r).split(x, y):
            x_fit, x_val, y_fit, y_val = digits_model.fit_val_split(x[train], y[train])
            pruned = block_prune.sparse_int8(x_fit, y_fit, x_val, y_val,
                                             widths=digits_model.WIDTHS, **shipped).layers
            acc["int8"].append(_acc(_int8(x_fit, y_fit, digits_model.SEED, scale),
                                    x[held], y[held]))
            acc["block-pruned"].append(_acc(pruned, x[held], y[held]))
        log(f"[prune_study] whole data set, repeat {r + 1}/{repeats} done "
            f"({time.time() - t0:.0f} s)")
    return acc


def _whole_data_summary(acc, folds, goal=0.5):
    gaps = np.array(acc["block-pruned"]) - np.array(acc["int8"])
    se = float(gaps.std(ddof=1) / np.sqrt(folds)) if len(gaps) > 1 else float("nan")
    return {"int8": round(float(np.mean(acc["int8"])), 2),
            "block-pruned": round(float(np.mean(acc["block-pruned"])), 2),
            "gap": round(float(gaps.mean()), 2), "gap_se": round(se, 2),
            "fold_gap_min": round(float(gaps.min()), 2),
            "fold_gap_max": round(float(gaps.max()), 2),
            "folds": len(gaps), "share_below_goal": round(float(np.mean(gaps < -goal)), 3)}


def summarize(cv, split, whole=None, folds=5):
    """The report: means, paired gaps to int8 and their standard errors (points)."""
    base = np.array(cv["int8"])
    rep = {"cross_validation": {"int8": round(float(base.mean()), 2), "recipes": {}},
           "fixed_split": {}}
    for n, v in cv.items():
        if n == "int8":
            continue
        d = np.array(v) - base
        se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
        rep["cross_validation"]["recipes"][n] = dict(
            mean=round(float(np.mean(v)), 2), gap=round(float(d.mean()), 2),
            gap_se=round(se, 2))
    for n, parts in split.items():
        rep["fixed_split"][n] = {k: round(float(np.mean(v)), 2) for k, v in parts.items()}
    if whole is not None:
        rep["whole_data"] = _whole_data_summary(whole, folds)
    return rep


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=2, help="seeds per fold")
    ap.add_argument("--split-seeds", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=10,
                    help="repeats of the 5-fold whole-data-set run (0: skip it)")
    ap.add_argument("--recipes", default=",".join(RECIPES),
                    help=f"comma-separated, of: {', '.join(RECIPES)}")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiply every epoch count (a quick look: 0.1)")
    ap.add_argument("--report", default=str(BUILD / "reports" / "prune_study.json"))
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.recipes.split(",") if n.strip()]
    unknown = [n for n in names if n not in RECIPES]
    if unknown or not names:
        ap.error(f"unknown recipe(s) {unknown}; known: {', '.join(RECIPES)}")
    if args.folds < 2 or args.seeds < 1 or args.split_seeds < 1 or args.repeats < 0:
        ap.error(f"need --folds >= 2, --seeds >= 1, --split-seeds >= 1, --repeats >= 0 (got "
                 f"{args.folds}, {args.seeds}, {args.split_seeds}, {args.repeats})")
    if not 0 < args.scale <= 4:
        ap.error(f"--scale must be in (0, 4], not {args.scale}")
    make_report_folder(ap, args.report)
    print(f"[prune_study] {args.folds} folds x {args.seeds} seeds, recipes {names}; "
          f"fixed split x {args.split_seeds} seeds; whole data set x {args.repeats} repeats",
          flush=True)
    whole = whole_data(repeats=args.repeats, folds=WHOLE_FOLDS, scale=args.scale) \
        if args.repeats else None
    rep = summarize(cross_validation(names, folds=args.folds, seeds=args.seeds,
                                     scale=args.scale),
                    fixed_split(split_seeds=args.split_seeds, scale=args.scale),
                    whole, WHOLE_FOLDS)
    rep["settings"] = dict(folds=args.folds, seeds=args.seeds, split_seeds=args.split_seeds,
                           repeats=args.repeats, scale=args.scale)
    cv = rep["cross_validation"]
    print(f"\ncross-validation (paired with int8, {cv['int8']:.2f}%):")
    for n, r in cv["recipes"].items():
        print(f"  {n:22s} {r['mean']:6.2f}%  gap {r['gap']:+.2f} +- {r['gap_se']:.2f}")
    print(f"fixed split, mean over {args.split_seeds} seeds:")
    for n, r in rep["fixed_split"].items():
        print(f"  {n:22s} validation {r['val']:.2f}%  test {r['test']:.2f}%")
    if "whole_data" in rep:
        w = rep["whole_data"]
        print(f"whole data set, the pipelines as shipped ({w['folds']} outer folds of ~360 "
              f"images): int8 {w['int8']:.2f}%, block-pruned {w['block-pruned']:.2f}%, gap "
              f"{w['gap']:+.2f} +- {w['gap_se']:.2f} (folds {w['fold_gap_min']:+.2f} to "
              f"{w['fold_gap_max']:+.2f}; below -0.5 in {100 * w['share_below_goal']:.0f}%)")
    out = pathlib.Path(args.report)
    out.write_text(json.dumps(rep, indent=1) + "\n")
    print(f"wrote {out}")
    return rep


if __name__ == "__main__":
    main()
