"""golden.trained: the committed digits models are the files the manifest names, their
recorded figures follow from them (integer inference: the same on every machine), and the
shift update keeps its constraints and wins back what the goal asks."""

import numpy as np
import pytest

from sparq.golden import digits_model, mlp, trained
from sparq.golden.data import digits_split
from sparq.golden.delta import train


def test_files_match_the_manifest():
    man = trained.manifest()
    assert set(trained.NAMES) <= set(man)
    for name in trained.NAMES:
        path = trained.FOLDER / man[name]["file"]
        assert trained._sha256(path) == man[name]["sha256"], f"{path} is not the one recorded"
    with pytest.raises(ValueError, match="unknown trained model 'nope'"):
        trained.load("nope")
    with pytest.raises(ValueError, match="use load_float"):
        trained.load("float")


@pytest.mark.parametrize("name", trained.INT8_MODELS)
def test_recorded_accuracies_follow_from_the_files(name):
    """The manifest's accuracies are recomputed here by integer inference: bit for bit."""
    rec = trained.manifest()[name]
    layers = trained.load(name)
    assert digits_model.test_accuracy(layers) == rec["test_accuracy"]
    if "shifted_test_accuracy" in rec:
        _, _, _, y_test = digits_split()
        xs = mlp.quantize_input(layers, trained.shifted("test"))
        assert mlp.accuracy(layers, xs, y_test) == rec["shifted_test_accuracy"]


def test_int8_is_the_float_model_quantized():
    """Weights and biases of ``int8`` are ``mlp.quantize`` of ``float`` (element-wise
    arithmetic, exact everywhere; the activation ranges come from a matrix product)."""
    x_fit, _, _, _ = digits_model.fit_val_split()
    again = mlp.quantize(trained.load_float(), x_fit)
    for a, b in zip(again, trained.load("int8"), strict=True):
        assert np.array_equal(a.w, b.w) and np.array_equal(a.bias, b.bias)


def test_shift_update_keeps_its_constraints_and_wins_back_the_accuracy():
    base = trained.load("sparse")
    upd, full = trained.load("sparse_shift_update"), trained.load("sparse_shift_full")
    k, bits = trained.UPDATE["k"], trained.UPDATE["bits"]
    changed = 0
    for b, u, f in zip(base, upd, full, strict=True):
        d = u.w.astype(int) - b.w
        assert np.abs(d).max() <= 2 ** bits - 1
        assert np.all(u.w[b.w == 0] == 0)  # pruned weights stay pruned
        changed += int((d != 0).sum())
        for attr in ("bias", "weight_scales"):
            assert np.array_equal(getattr(b, attr), getattr(u, attr))
            assert np.array_equal(getattr(b, attr), getattr(f, attr))
    assert 0 < changed <= k
    assert train.changed_count(mlp.weights(full), mlp.weights(base)) > 4 * k
    _, _, _, y_test = digits_split()
    xs = mlp.quantize_input(base, trained.shifted("test"))
    acc = {n: mlp.accuracy(m, xs, y_test) for n, m in
           (("before", base), ("update", upd), ("full", full))}
    print(f"shifted test images: {acc}")
    assert acc["full"] - acc["before"] >= 5.0  # the shift costs the deployed model
    assert acc["update"] - acc["before"] >= 0.9 * (acc["full"] - acc["before"])


def test_retraining_writes_a_folder_that_reads_back(tmp_path):
    """``write_all`` round-trips whatever the recipes give (here the committed models
    themselves, so the test does not hang on a training run)."""
    models = {"float": (trained.load_float(), {})}
    models.update({n: (trained.load(n), {"test_accuracy": 0.0}) for n in trained.INT8_MODELS})
    entries = trained.write_all(models, tmp_path)
    for name in trained.INT8_MODELS:
        assert entries[name]["sha256"] == trained.manifest()[name]["sha256"]
    assert trained.manifest(tmp_path)["machine"]["numpy"] == np.__version__


def test_update_study_holds_every_run_within_its_constraints():
    """make bench's delta section reads every update from the committed study (none trained
    there), and each one keeps the constraints it was trained under."""
    study = trained.Study()
    runs = list(trained.study_runs())
    assert len(runs) == 2 * (1 + len(trained.DELTA_K) * len(trained.DELTA_RECIPES))
    for scenario, kw in runs:
        base = mlp.weights(study.scenario(scenario).base)
        d = np.concatenate([(w.astype(int) - b).ravel()
                            for w, b in zip(study.update(scenario, **kw), base, strict=True)])
        if "k" in kw:
            assert 0 < np.count_nonzero(d) <= kw["k"], (scenario, kw)
            assert not (d % kw["step"]).any()
            if kw["bits"] is not None:
                assert np.abs(d).max() <= 2 ** kw["bits"] - 1
    assert study.trained_here == 0


def test_a_study_made_on_other_base_models_is_not_used(tmp_path):
    """The study's changes are from the base models it was made on (their SHA-256 are in
    it): after the base models change, it is not applied to them."""
    import shutil

    from sparq.golden.delta import model_file

    for f in trained.FOLDER.iterdir():
        shutil.copy(f, tmp_path / f.name)
    assert trained.Study(tmp_path).changes  # the same base models: used
    base = trained.load("int8")
    moved = mlp.with_weights(base, [w if k else np.where(w == 0, 1, w).astype(np.int8)
                                    for k, w in enumerate(mlp.weights(base))])
    model_file.save_model(moved, tmp_path / "int8.safetensors")
    study = trained.Study(tmp_path)
    assert study.changes == {} and study.scenario("shift").base[0].w.min() >= -127
