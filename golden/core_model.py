"""The core's cost model: the ISA simulator with the dot-product engine's cycles.

An executed DOT of ``beats`` beats costs the engine's front-end cycles for them
(``golden.sparse_dot.beat_cycles``; ``golden.mulbins.bin_cycles`` with multiplier bins; the
dense baseline ``ceil(lanes / slots)`` per beat); every other instruction costs what the
sequencer's model says (``golden.isa_sim``). ``run_image`` runs a compiled program on one
input and returns the machine (outputs, counters, cycles).
"""

import numpy as np

from .isa_sim import new_machine, run
from .mulbins import bin_cycles, smallest_level
from .sparse_dot import beat_cycles


def engine_cost(*, lanes, slots, skip=True, bins=None):
    """``cost(x - zp, w)`` of one DOT: the engine's cycles over its beats."""
    def cost(xd, w):
        xd, w = np.asarray(xd).reshape(-1, lanes), np.asarray(w).reshape(-1, lanes)
        nz = (xd != 0) & (w != 0)
        if bins is not None:
            return int(bin_cycles(smallest_level(w), nz, bins=bins).sum())
        return int(beat_cycles(nz.sum(axis=1), lanes=lanes, slots=slots, skip=skip).sum())
    return cost


def run_image(compiled, xq_row, dot_cost=None):
    """Run ``compiled`` (golden.compiler) on one quantized input row."""
    m = new_machine(compiled.cfg, compiled.params, compiled.x_image(xq_row))
    m.dot_cost = dot_cost
    return run(m, compiled.program)
