"""Re-simulate a configuration's synthesized iCE40 netlist with its own cocotb testbench."""

import pytest

from sparq.hw.synth import cell_models, synthesize
from sparq.sim.runner import BUILD, run, simulator_available
from tests.conftest import SEED

# yosys' iCE40 cell models use constructs the Verilator build here does not take; the
# gate-level runs need Icarus (.ci/run installs it).
needs_icarus = pytest.mark.skipif(not simulator_available("icarus"),
                                  reason="gate-level simulation needs Icarus (iverilog)")


def netlist_run_kw(name):
    """The keyword arguments of ``sim.runner.run`` (and ``sim.core_run.run_core``) that
    simulate configuration ``name``'s yosys ``synth_ice40 -dsp`` netlist with yosys' cell
    models instead of its RTL."""
    out = BUILD / "synth"
    _, netlist, _ = synthesize(name, "ice40", out)
    cells, defines = cell_models("ice40")
    return dict(sim="icarus", sources=[netlist, cells], defines=defines, tag="gl-ice40",
                meta=out / "verilog" / f"{name}.json")


def run_gate_level(name, tb_module, *, vectors):
    """The netlist (``netlist_run_kw``) under Icarus with the RTL's testbench; the report."""
    rep = run(name, tb_module, vectors=vectors, seed=SEED, **netlist_run_kw(name))
    print(f"{name} gate level: {rep}")
    return rep
