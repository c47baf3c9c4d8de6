"""SparseDotProduct Verilog under cocotb (Icarus, Verilator), real digits data, gate level."""

import pathlib

import numpy as np
import pytest

from sparq.golden.data import digits_split
from sparq.golden.sparse_dot import sparse_dot
from sparq.hw import mulbins as hw_mulbins
from sparq.hw.export import CONFIGS, write
from sparq.sim.runner import run, run_given
from sparq.sim.sparse_stim import beats_file_content, digits_beats
from tests.conftest import SEED, sim_params
from tests.gate_level import needs_icarus, run_gate_level

SPARSE = [n for n in CONFIGS if n.startswith("sparse_dot_")]
FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "digits_mlp_fc.tflite"


def digits_beats_file(lanes, images):
    """Content of a ``beats_file`` with the digits MLP's beats for the first ``images``."""
    _, x_test, _, _ = digits_split()
    b, zp, _ = digits_beats(FIXTURE, x_test[:images], lanes=lanes)
    return beats_file_content(b, zp)


@pytest.mark.parametrize("sim, full", sim_params())
@pytest.mark.parametrize("name", SPARSE)
def test_sparse_dot_cocotb(name, sim, full):
    vectors = 5_000 if full else 1_000
    lanes = CONFIGS[name][1]["lanes"]
    given = {"beats_file": digits_beats_file(lanes, 8 if full else 2)}
    rep, _ = run_given(name, "tb_sparse_dot", given, sim=sim, vectors=vectors, seed=SEED)
    print(f"{name} on {sim}: {rep}")
    assert rep["vectors"] >= vectors and rep["mismatches"] == 0
    assert rep["measured_cycles"] == rep["model_cycles"]
    assert rep["given_vectors"] > 0 and rep["given_mismatches"] == 0
    assert rep["given_cycle_exact"] and rep["given_rtl_cycles"] == rep["given_model_cycles"]


def test_digits_beats_are_the_layer_accumulators():
    """The engine's dot products on the digits beats are each layer's accumulators less the
    bias (all 360 images), and the zero pairs really are ReLU zeros and zero weights."""
    _, x_test, _, _ = digits_split()
    b, zp, sums = digits_beats(FIXTURE, x_test, lanes=16)
    r = sparse_dot(b["w"], b["x"], b["lvl"], b["last"], x_zero_point=zp, lanes=16, slots=4)
    assert np.array_equal(r.results, sums)
    assert 0.3 < r.nnz.sum() / r.stats["pairs"] < 0.8


@pytest.mark.gate
@needs_icarus
@pytest.mark.parametrize("name", ["sparse_dot_N8_M8", "sparse_dot_N8_bins211",
                                  "sparse_dot_N8_bins1l"])
def test_sparse_dot_gate_level_ice40(name):
    rep = run_gate_level(name, "tb_sparse_dot", vectors=600)
    assert rep["mismatches"] == 0 and rep["measured_cycles"] == rep["model_cycles"]


def test_testbench_catches_a_broken_engine(monkeypatch, tmp_path):
    """A compaction that ranks zero lanes too (a plausible slip) must fail the testbench."""
    real = hw_mulbins.prefix_counts
    monkeypatch.setattr(hw_mulbins, "prefix_counts",
                        lambda bits, m=None: real(bits, m)[:-1] + [real(bits, m)[-1] + 1])
    cls, params = CONFIGS["sparse_dot_N16_M4"]
    verilog = write("sparse_dot_N16_M4", tmp_path, cls, params)
    with pytest.raises(AssertionError, match="random_handshakes"):
        run("sparse_dot_N16_M4", "tb_sparse_dot", vectors=500, seed=SEED,
            tag="mutant", meta=verilog.with_suffix(".json"))
