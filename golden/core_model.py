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


# The core's timing (hw.core), for predict_cycles. The datapath takes one uop at a time
# (CLR, LDB and REQ one cycle each once their accumulator is ready); a
# DOT streams its beats into the engine's input register, and the engine's front end takes
# each beat from there the cycle after, when free, for the beat's cycles (the engine's cycle
# model); the DOT is done when its last beat is in the input register, so the engine keeps
# working while the next uops are handled. A DOT result lands DOT_LATENCY cycles after its
# last beat leaves the front end; a REQ result REQ_LATENCY cycles after the REQ. The two
# latencies are the RTL's (fitted once; tests/test_core_model.py and the end-to-end run
# compare the prediction with the RTL's counter).
DOT_LATENCY = 4
REQ_LATENCY = 8


def beat_costs(compiled, xq_row, *, lanes, slots, skip=True, bins=None):
    """The machine after running one row, and the engine cycles of each executed DOT's beats
    (a list of lists, in execution order)."""
    per_beat = []

    def cost(xd, w):
        xd, w = np.asarray(xd).reshape(-1, lanes), np.asarray(w).reshape(-1, lanes)
        nz = (xd != 0) & (w != 0)
        if bins is not None:
            c = bin_cycles(smallest_level(w), nz, bins=bins)
        else:
            c = beat_cycles(nz.sum(axis=1), lanes=lanes, slots=slots, skip=skip)
        per_beat.append([int(v) for v in c])
        return 1

    m = new_machine(compiled.cfg, compiled.params, compiled.x_image(xq_row))
    m.dot_cost = cost
    run(m, compiled.program)
    return m, per_beat


def predict_cycles(compiled, xq_row, *, lanes, slots, skip=True, bins=None):
    """``(cycles, machine)``: the core's cycle count for one input row, predicted from the
    ISA simulator's trace with the engine's cycle model and the datapath's timing."""
    from .isa import decode

    m, per_beat = beat_costs(compiled, xq_row, lanes=lanes, slots=slots, skip=skip,
                             bins=bins)
    dots = iter(per_beat)
    t = 0  # the cycle the current instruction starts in
    acc_ready = [0] * 4  # the cycle each accumulator's last DOT result has landed by
    req_done = 0  # the cycle the last REQ result has been written by
    in_free = 0  # the cycle the engine's input register is free from
    fe_free = 0  # the cycle the engine's front end is free from
    for pc, _, on in m.trace:
        ins = decode(compiled.program[pc])
        if not on or ins.op == "HALT":
            t += 1
        elif ins.op == "CLR":
            t = max(t, acc_ready[ins.acc]) + 1
        elif ins.op == "LDB":
            t = max(t, acc_ready[ins.acc]) + 1
        elif ins.op == "REQ":
            t = max(t, acc_ready[ins.acc]) + 1
            req_done = t + REQ_LATENCY
        elif ins.op == "DOT":
            a = max(t, req_done) + 1  # the dispatch cycle, then the first beat
            for c in next(dots):
                a = max(a, in_free)  # the beat enters the input register in cycle a
                s = max(a + 1, fe_free)  # and the front end in cycle s
                in_free, fe_free = s, s + c
                a += 1
            t = a
            acc_ready[ins.acc] = fe_free + DOT_LATENCY
        elif ins.op == "SETP":
            start = t if ins.src in (0, 5) else max(t, req_done)
            t = start + (3 if ins.src in (0, 1) else 2 + ins.beats)
        else:
            t += 1
    return max(t, req_done, max(acc_ready)), m
