"""The synthesis flow's own plumbing (``hw.synth``): placer seeds, on a small block.

The figures themselves come from ``make synth``; here one small configuration is placed and
routed twice on iCE40 (about a minute, the first nextpnr call compiles the tool)."""

import shutil

import pytest

from hw import synth


def test_parse_seeds_accepts_lists_and_names_the_bad_value():
    assert synth.parse_seeds("1") == (1,)
    assert synth.parse_seeds("3,1,2") == (3, 1, 2)
    for bad in ("", "0", "1,1", "x", "1,,2", "-2"):
        with pytest.raises(ValueError, match=repr(bad).replace("\\", "\\\\")):
            synth.parse_seeds(bad)


def test_synth_one_places_once_per_seed_and_keeps_the_lowest():
    out = synth.BUILD / "test_synth_flow"
    shutil.rmtree(out, ignore_errors=True)
    fig = synth.synth_one("sparse_dot_N4_M1", "ice40", out, seeds=(1, 2))
    by_seed = fig["fmax_mhz_by_seed"]
    print("Fmax by seed:", by_seed)
    assert fig["fits"] and set(by_seed) == {"1", "2"}
    assert all(v > 0 for v in by_seed.values())
    assert fig["fmax_mhz"] == min(by_seed.values())
    assert synth.pnr_log("sparse_dot_N4_M1", "ice40", out, 2).exists()
    assert synth.pnr_log("sparse_dot_N4_M1", "ice40", out, 1).exists()
    assert "fmax_mhz_by_seed" not in synth.synth_one("sparse_dot_N4_M1", "ice40", out)
