"""Re-simulate a configuration's synthesized iCE40 netlist with its own cocotb testbench."""

import pytest

from hw.synth import cell_models, synthesize
from sim.runner import BUILD, run, simulator_available
from tests.conftest import SEED

# yosys' iCE40 cell models use constructs the Verilator build here does not take; the
# gate-level runs need Icarus (.ci/run installs it).
needs_icarus = pytest.mark.skipif(not simulator_available("icarus"),
                                  reason="gate-level simulation needs Icarus (iverilog)")


def run_gate_level(name, tb_module, *, vectors):
    """yosys ``synth_ice40 -dsp`` netlist + yosys' cell models under Icarus; the report."""
    out = BUILD / "synth"
    _, netlist, _ = synthesize(name, "ice40", out)
    cells, defines = cell_models("ice40")
    rep = run(name, tb_module, sim="icarus", vectors=vectors, seed=SEED,
              sources=[netlist, cells], defines=defines, tag="gl-ice40",
              meta=out / "verilog" / f"{name}.json")
    print(f"{name} gate level: {rep}")
    return rep
