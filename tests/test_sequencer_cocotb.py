"""Sequencer Verilog under cocotb: random programs against the golden ISA simulator."""

import numpy as np
import pytest

from sparq.hw.export import CONFIGS
from sparq.sim.runner import run
from tests.conftest import SEED, sim_params


@pytest.mark.parametrize("sim, full", sim_params())
def test_sequencer_random_programs(sim, full):
    programs = 2_000 if full else 300
    rep = run("sequencer_small", "tb_sequencer", sim=sim, vectors=programs, seed=SEED)
    print(f"sequencer_small on {sim}: {rep}")
    assert rep["programs"] == programs and rep["mismatches"] == 0
    # both outcomes and both kinds of op were exercised
    assert 0 < rep["errors"] < programs
    assert rep["executed"] > 0 and rep["predicated_off"] > 0 and rep["stalls"] > 0


@pytest.mark.parametrize("sim, full", sim_params())
def test_conv_sequencer_random_programs(sim, full):
    """The convolution machine's Sequencer (``sim.seq_stim.conv_case``: nested loops, STRD,
    SETG, window DOTs, lane banks) against golden."""
    programs = 200 if full else 60
    rep = run("sequencer_conv_small", "tb_sequencer", sim=sim, vectors=programs, seed=SEED)
    print(f"sequencer_conv_small on {sim}: {rep}")
    assert rep["programs"] == programs and rep["mismatches"] == 0
    assert 0 < rep["errors"] < programs // 2 and rep["executed"] > 50 * programs


def test_testbench_catches_ungated_ops(tmp_path, monkeypatch):
    """A mutant whose predicated-off ops still write state must fail the testbench."""
    from sparq.hw.export import write
    from sparq.hw.seq_execute import Execute  # (the Sequencer's execute stage)
    from sparq.hw.sequencer import Sequencer

    real = Execute._commit
    monkeypatch.setattr(Execute, "_commit", lambda self, m, on, legal: real(self, m, 1, legal))
    _, params = CONFIGS["sequencer_small"]
    verilog = write("sequencer_small", tmp_path, Sequencer, params)
    monkeypatch.undo()
    with pytest.raises(AssertionError, match="random_programs"):
        run("sequencer_small", "tb_sequencer", vectors=50, seed=SEED, tag="mutant",
            meta=verilog.with_suffix(".json"))


def test_sequencer_runs_the_compiled_digits_mlp():
    """The compiled (predicated) digits MLP on the RTL Sequencer, the datapath played by the
    testbench with random ready: the outputs are LiteRT's, the counters the model's."""
    from sparq.golden import compiler, digits_model, mlp
    from sparq.golden import core as golden_core
    from sparq.golden.data import digits_split
    from sparq.golden.litert_model import read_dense_layers, run_reference
    from sparq.sim import seq_stim
    from sparq.sim.runner import run_given

    layers = read_dense_layers(digits_model.TEMPLATE)
    x_train, x_test, _, _ = digits_split()
    xt = mlp.quantize_input(layers, x_train[:300])
    c = compiler.compile_mlp(layers, calibration=xt, prog_depth=512)
    machine = {k: v for k, v in CONFIGS["sequencer"][1].items() if k != "fetch_ports"}
    assert vars(c.cfg) == {**machine, "mode": "single", "conv": False}
    xq = mlp.quantize_input(layers, x_test[:2])
    ref = run_reference(digits_model.TEMPLATE, xq)
    for n in range(2):
        case = seq_stim.Case(c.cfg, c.params, c.x_image(xq[n]),
                             c.program + [0] * (c.cfg.prog_depth - len(c.program)))
        rep, x = run_given("sequencer", "tb_sequencer",
                           {"program_file": seq_stim.case_to_json(case)}, outputs=True,
                           testcase="given_program", seed=SEED + n, tag=f"digits{n}")
        assert rep["given_programs"] == 1 and rep["given_failed"] == []
        for k in range(3):
            assert np.array_equal(c.layer_output(x, k), ref[k][n])
        model = golden_core.run_image(c, xq[n])
        assert rep["given_predicated_off"] == model.predicated_off > 0
        assert rep["given_cycles"] - rep["given_stalls"] == model.cycles
