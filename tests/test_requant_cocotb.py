"""Requantizer Verilog under cocotb (Icarus and Verilator) and its gate-level netlist."""

import pathlib

import pytest

from sparq.golden.data import digits_split
from sparq.hw import requant as hw_requant
from sparq.hw.export import CONFIGS, write
from sparq.sim.requant_stim import digits_vectors
from sparq.sim.runner import run, run_given
from tests.conftest import SEED, sim_params
from tests.gate_level import needs_icarus, run_gate_level

REQUANT = [n for n in CONFIGS if n.startswith("requant_")]
FIXTURES = pathlib.Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("sim, full", sim_params())
@pytest.mark.parametrize("name", REQUANT)
def test_requant_cocotb(name, sim, full):
    vectors = 20_000 if full else 5_000
    rep = run(name, "tb_requant", sim=sim, vectors=vectors, seed=SEED)
    print(f"{name} on {sim}: {rep}")
    assert rep["vectors"] == vectors and rep["mismatches"] == 0
    assert rep["results_per_cycle"] == 1.0


@pytest.mark.gate
@needs_icarus
@pytest.mark.parametrize("name", ["requant_tflite", "requant_prepost", "requant_single_short"])
def test_requant_gate_level_ice40(name):
    """The yosys synth_ice40 -dsp netlist, re-simulated with the same testbench."""
    rep = run_gate_level(name, "tb_requant", vectors=3_000)
    assert rep["mismatches"] == 0 and rep["results_per_cycle"] == 1.0


def test_testbench_catches_a_broken_requantizer(monkeypatch, tmp_path):
    """Saturating the rescaled value to 7 bits instead of 11 is a plausible slip; the
    testbench must fail on it."""
    monkeypatch.setattr(hw_requant, "_SAT_BITS", 7)
    cls, params = CONFIGS["requant_tflite"]
    verilog = write("requant_tflite", tmp_path, cls, params)
    with pytest.raises(AssertionError, match="random_handshakes"):
        run("requant_tflite", "tb_requant", vectors=2_000, seed=SEED,
            tag="mutant", meta=verilog.with_suffix(".json"))


@pytest.mark.parametrize("name, fixture", [("requant_single", "digits_mlp_fc.tflite"),
                                           ("requant_tflite", "digits_mlp_conv1x1.tflite")])
def test_requant_rtl_matches_litert_on_digits(name, fixture):
    """Every accumulator of the digits MLP (360 test images, 3 layers) through the RTL:
    equal to LiteRT's reference kernel outputs, bit for bit."""
    _, x_test, _, _ = digits_split()
    mode = CONFIGS[name][1]["mode"]
    vectors, litert = digits_vectors(FIXTURES / fixture, x_test, mode)
    rep, got = run_given(name, "tb_requant", {"vectors_file": vectors}, outputs=True,
                         seed=SEED, tag="digits")
    exact = int((got == litert).sum())
    print(f"{name}: RTL equals LiteRT on {exact}/{litert.size} outputs")
    assert rep["mismatches"] == 0 and got.shape == litert.shape and exact == litert.size
