"""The synthesis flow's own plumbing (``hw.synth``): placer seeds, on a small block.

The figures themselves come from ``make synth``; here one small configuration is placed and
routed twice on iCE40 (about a minute, the first nextpnr call compiles the tool)."""

import shutil

import pytest

from sparq.hw import synth


def test_parse_seeds_accepts_lists_and_names_the_bad_value():
    assert synth.parse_seeds("1") == (1,)
    assert synth.parse_seeds("3,1,2") == (3, 1, 2)
    for bad in ("", "0", "1,1", "x", "1,,2", "-2"):
        with pytest.raises(ValueError, match=repr(bad).replace("\\", "\\\\")):
            synth.parse_seeds(bad)


def test_ecp5_keeps_dff_without_abc9s_sequential_self_check():
    """ECP5 synthesizes with ``-dff`` (fewer LUTs) but without ABC9's ``&verify -s``, which
    took 8 and 35 minutes of ``core``'s two syntheses (docs/synthesis.md); iCE40 has neither
    and keeps ABC9's combinational check."""
    for family in ("ecp5", "ecp5_lutmul"):
        script = synth.synth_script(family, "core")
        assert script.startswith("scratchpad -set abc9.verify 0; synth_ecp5 -dff")
        assert script.endswith(" -top core")
    assert synth.synth_script("ice40", "harness") == "synth_ice40 -dsp -top harness"


def test_ecp5_harness_puts_the_reset_on_a_global_buffer():
    """nextpnr-ecp5 promotes only clocks: the ECP5 harness gives the block's reset a DCCA
    (routing it through the fabric made router1 take 11 minutes on ``core`` at seed 2);
    nextpnr-ice40 promotes a reset itself, and the iCE40 harness stays as it was."""
    port = lambda name, d, w: dict(type="port", name=name, dir=d, width=w)  # noqa: E731
    meta = {"ports": {"interface": {"members": {
        "a": port("a", "in", 3),
        "s": {"type": "interface", "members": {"y": port("s__y", "out", 2)}}}}}}
    ecp5 = synth.harness(meta, "blk", synth.FAMILIES["ecp5"]["rst_buffer"])
    assert "DCCA rst_buf(.CLKI(rst), .CE(1'b1), .CLKO(rst_g));" in ecp5
    assert "blk dut(.clk(clk), .rst(rst_g), .a(in_sr[2:0]), .s__y(s__y));" in ecp5
    assert synth.FAMILIES["ecp5_lutmul"]["rst_buffer"] == synth.FAMILIES["ecp5"]["rst_buffer"]
    assert "rst_buffer" not in synth.FAMILIES["ice40"]
    ice40 = synth.harness(meta, "blk")
    assert "DCCA" not in ice40 and "rst_g" not in ice40
    assert "blk dut(.clk(clk), .rst(rst), .a(in_sr[2:0]), .s__y(s__y));" in ice40


def test_format_seconds():
    text = synth.format_seconds({"yosys": 40.24, "yosys_harness": 45.6,
                                 "pnr": {"1": 61.0, "3": 59.5}, "total": 206.3})
    assert text == ("yosys 40 s, yosys_harness 46 s, pnr 61 s (seed 1), pnr 60 s (seed 3), "
                    "total 206 s")


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
    seconds = fig["seconds"]
    print("seconds:", seconds)
    assert set(seconds) == {"yosys", "yosys_harness", "pnr", "total"}
    assert set(seconds["pnr"]) == {"1", "2"} and all(v > 0 for v in seconds["pnr"].values())
    assert seconds["total"] >= seconds["yosys"] + seconds["yosys_harness"]
    assert len(fig["load_avg"]) == 2
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

    monkeypatch.setattr(synth, "synthesize",
                        lambda *a: ({"luts": 1, "seconds": {"yosys": 0.5}}, None, {}))
    monkeypatch.setattr(synth, "harness_netlist", lambda *a: tmp_path / "h.json")
    monkeypatch.setattr(synth, "place_route", place_route)
    fig = synth.synth_one("x", "ice40", tmp_path, seeds=(1, 2, 4))
    assert fig["fits"] and fig["fmax_mhz"] == 41.0
    assert fig["fmax_mhz_by_seed"] == {"1": 41.0, "2": None, "4": 44.0}
    assert fig["overused"] == ["ICESTORM_LC 5400/5280"]
    assert set(fig["seconds"]) == {"yosys", "yosys_harness", "pnr", "total"}
    assert set(fig["seconds"]["pnr"]) == {"1", "2", "4"}  # a failed seed's time is kept too
    fig = synth.synth_one("x", "ice40", tmp_path, seeds=(2,))
    assert not fig["fits"] and fig["fmax_mhz"] is None and "fmax_mhz_by_seed" not in fig
    with pytest.raises(RuntimeError, match="nextpnr failed"):
        synth.synth_one("x", "ice40", tmp_path, seeds=(1, 3))
