"""Sequencer Verilog under cocotb: random programs against the golden ISA simulator."""

import pytest

from sim.runner import run
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


def test_testbench_catches_ungated_ops(tmp_path):
    """A mutant whose predicated-off ops still write state must fail the testbench."""
    from hw.export import CONFIGS, write
    from hw.sequencer import Sequencer

    class Ungated(Sequencer):
        def _commit(self, m, on, legal):
            return super()._commit(m, 1, legal)

    Ungated.__name__ = "Sequencer"
    _, params = CONFIGS["sequencer_small"]
    verilog = write("sequencer_small", tmp_path, Ungated, params)
    with pytest.raises(AssertionError, match="random_programs"):
        run("sequencer_small", "tb_sequencer", vectors=50, seed=SEED, tag="mutant",
            meta=verilog.with_suffix(".json"))
