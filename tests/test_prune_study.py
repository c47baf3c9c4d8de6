"""``sim.prune_study``'s plumbing, on a tiny run (every training cut to a few epochs): the
report's figures are the paired means and gaps of what it trained (cross-validation on the
training split, the whole data set's outer folds); bad options are named."""

import json

import pytest

from sparq.sim import prune_study


def test_quick_study_reports_paired_gaps(tmp_path):
    out = tmp_path / "study.json"
    rep = prune_study.main(["--folds", "2", "--seeds", "1", "--split-seeds", "1",
                            "--scale", "0.05", "--repeats", "1",
                            "--recipes", "shipped,no fine-tuning",
                            "--report", str(out)])
    assert json.loads(out.read_text()) == rep
    cv = rep["cross_validation"]
    assert set(cv["recipes"]) == {"shipped", "no fine-tuning"}
    for r in cv["recipes"].values():
        assert r["gap"] == pytest.approx(r["mean"] - cv["int8"], abs=0.011)
        assert 0 < r["mean"] <= 100 and r["gap_se"] >= 0
    assert set(rep["fixed_split"]) == {"int8", "shipped"}
    assert all(0 < v <= 100 for r in rep["fixed_split"].values() for v in r.values())
    w = rep["whole_data"]
    assert w["folds"] == 5 and 0 <= w["share_below_goal"] <= 1
    assert w["gap"] == pytest.approx(w["block-pruned"] - w["int8"], abs=0.011)
    assert w["fold_gap_min"] <= w["gap"] <= w["fold_gap_max"]


@pytest.mark.parametrize("argv, said", [
    (["--recipes", "shipped,magic"], "magic"),
    (["--folds", "1"], "--folds >= 2"),
    (["--scale", "0"], "--scale must be in"),
    (["--repeats", "-1"], "--repeats >= 0"),
    (["--report", __file__ + "/r.json"], "cannot make the folder of --report"),
])
def test_bad_options_are_named(argv, said, capsys):
    with pytest.raises(SystemExit):
        prune_study.main(argv)
    assert said in capsys.readouterr().err
