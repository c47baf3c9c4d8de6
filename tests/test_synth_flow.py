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


def test_a_seed_that_does_not_place_is_recorded_not_fatal(monkeypatch, tmp_path):
    """nextpnr failing to place with one seed leaves that seed null and keeps the others'
    figures; every seed failing records ``fits: false`` with the over-used resources; any
    other nextpnr failure still raises."""
    log_text = {2: "Info: Device utilisation:\nInfo: \t ICESTORM_LC:  5400/  5280   102%\n"
                   "ERROR: Unable to place cell 'x'\n",
                3: "ERROR: something else\n"}

    def place_route(pnr_json, name, family, out_dir, seed):
        if seed in log_text:
            synth.pnr_log(name, family, out_dir, seed).write_text(log_text[seed])
            raise RuntimeError("nextpnr failed")
        return 40.0 + seed

    monkeypatch.setattr(synth, "synthesize", lambda *a: ({"luts": 1}, None, {}))
    monkeypatch.setattr(synth, "harness_netlist", lambda *a: tmp_path / "h.json")
    monkeypatch.setattr(synth, "place_route", place_route)
    fig = synth.synth_one("x", "ice40", tmp_path, seeds=(1, 2, 4))
    assert fig["fits"] and fig["fmax_mhz"] == 41.0
    assert fig["fmax_mhz_by_seed"] == {"1": 41.0, "2": None, "4": 44.0}
    assert fig["overused"] == ["ICESTORM_LC 5400/5280"]
    fig = synth.synth_one("x", "ice40", tmp_path, seeds=(2,))
    assert not fig["fits"] and fig["fmax_mhz"] is None and "fmax_mhz_by_seed" not in fig
    with pytest.raises(RuntimeError, match="nextpnr failed"):
        synth.synth_one("x", "ice40", tmp_path, seeds=(1, 3))
