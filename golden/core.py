"""The core's cost model: the ISA simulator with the dot-product engine's cycles.

An executed DOT of ``beats`` beats costs the engine's front-end cycles for them
(``golden.sparse_dot.beat_cycles``; ``golden.mulbins.bin_cycles`` with multiplier bins; the
dense baseline ``ceil(lanes / slots)`` per beat); every other instruction costs what the
sequencer's model says (``golden.sequencer``). ``run_image`` runs a compiled program on one
input and returns the machine (outputs, counters, cycles).
"""

import numpy as np

from sparq.spec import params as spec_params
from sparq.spec.isa import Src

from .mulbins import bin_cycles, smallest_level
from .sequencer import new_machine, run
from .sparse_dot import beat_cycles


def dot_beat_cycles(xd, w, *, lanes, slots, skip=True, bins=None):
    """The engine's cycles for each beat of one DOT (``xd = x - zp``, ``w``)."""
    xd, w = np.asarray(xd).reshape(-1, lanes), np.asarray(w).reshape(-1, lanes)
    nz = (xd != 0) & (w != 0)
    if bins is not None:
        return bin_cycles(smallest_level(w), nz, bins=bins)
    return beat_cycles(nz.sum(axis=1), lanes=lanes, slots=slots, skip=skip)


def engine_cost(*, lanes, slots, skip=True, bins=None):
    """``cost(x - zp, w)`` of one DOT: the engine's cycles over its beats."""
    def cost(xd, w):
        return int(dot_beat_cycles(xd, w, lanes=lanes, slots=slots, skip=skip,
                                   bins=bins).sum())
    return cost


def run_image(compiled, xq_row, dot_cost=None):
    """Run ``compiled`` (golden.compiler) on one quantized input row."""
    m = new_machine(compiled.cfg, compiled.params, compiled.x_image(xq_row))
    m.dot_cost = dot_cost
    return run(m, compiled.program)


# The core's timing (hw.core), for predict_cycles. The Sequencer issues one instruction a
# cycle; the datapath takes CLR, LDB and REQ in one cycle once their accumulator has no DOT
# in flight, and a DOT in one cycle into the feeder's queue of two (while the queue has
# room). The feeder addresses one beat a cycle (the queue's head; a DOT's first beat only
# when no REQ result in flight writes a word it reads), the beat's words reach the engine's
# input register the cycle after and wait there until the engine takes them; the engine's
# front end takes each beat the cycle after it was handed over, when free, for the beat's
# cycles (the engine's cycle model). A REQ waits while a queued DOT, or the beat in the
# engine's input, reads the word it writes. A DOT result is in its accumulator
# ``dot_latency`` cycles after its last beat leaves the front end; a REQ result is written
# ``req_latency`` cycles after the REQ (``latencies``: the blocks' own). A probe (SETP)
# starts when the feeder is empty (and, for an activation source, every REQ result has been
# written) and takes 5 cycles for one element, 5 + beats for a block (the words read are
# registered, then reduced, then accumulated). tests/test_core_rtl.py and the end-to-end run
# compare the prediction with the RTL's cycle counter.
ACC_REGISTER = 1  # the accumulator is written the cycle the engine's result is valid


def latencies(**params):
    """``(dot_latency, req_latency)`` of a core (``spec.params.core``'s parameters): the
    engine's latency (``spec.params.sparse_dot_latency``, ``SparseDotProduct.latency``) and
    the accumulator's register; the Requantizer's latency (``Requantizer.latency``) in the
    core's single mode."""
    p = spec_params.core(**params)
    dot = spec_params.sparse_dot_latency(lanes=p["lanes"], slots=p["slots"], skip=p["skip"],
                                         bins=p["bins"]) + ACC_REGISTER
    return dot, spec_params.requant_latency(mode="single", short=p["short_requant"])


def program_beat_costs(cfg, params, program, x_init, *, lanes, slots, skip=True, bins=None):
    """The machine after running a program from ``x_init``, and the engine cycles of each
    executed DOT's beats (a list of lists, in execution order)."""
    per_beat = []

    def cost(xd, w):
        c = dot_beat_cycles(xd, w, lanes=lanes, slots=slots, skip=skip, bins=bins)
        per_beat.append([int(v) for v in c])
        return 1

    m = new_machine(cfg, params, x_init)
    m.dot_cost = cost
    run(m, program)
    return m, per_beat


def predict_cycles(compiled, xq_row, **core):
    """``(cycles, machine)``: the core's cycle count for one input row, predicted from the
    ISA simulator's trace with the engine's cycle model and the datapath's timing; ``core``:
    the parameters the ``hw.core.Core`` was built with (e.g. ``spec.configs.CONFIGS[name][1]``;
    those of the machine must match the compiled program's)."""
    return predict_program_cycles(compiled.cfg, compiled.params, compiled.program,
                                  compiled.x_image(xq_row), **core)


def predict_program_cycles(cfg, params, program, x_init, *, timeline=None, **core):
    """``predict_cycles`` for any program that runs without an error; ``timeline``, a list,
    receives ``(pc, cycle after the instruction was taken)`` for each executed step.
    ``core``: the Core's parameters (``spec.params.core``; the machine's are taken from
    ``cfg`` where not given, and must equal it where given). What they change here: the
    engine (``lanes``, ``slots``, ``skip``, ``bins``: its cycles per beat and its latency);
    ``param_ram="sync"``: LDB and REQ are taken one cycle after they are shown at the
    earliest (the parameter block RAM's read); ``short_requant``: the Requantizer's shorter
    latency; ``hazard_words``: the hazards track regions of that many activation words."""
    from .isa import decode

    machine = {k: getattr(cfg, k) for k in vars(cfg)}
    for k, v in core.items():
        if k in machine and machine[k] != v:
            raise ValueError(f"the core's {k}={v!r} is not the program's machine's "
                             f"({machine[k]!r})")
    p = spec_params.core(**dict(machine, **core))
    lanes, param_ram, hazard_words = p["lanes"], p["param_ram"], p["hazard_words"]
    dot_latency, req_latency = latencies(**p)
    m, per_beat = program_beat_costs(cfg, params, program, x_init, lanes=lanes,
                                     slots=p["slots"], skip=p["skip"], bins=p["bins"])
    dots = iter(per_beat)
    t = 0  # the cycle the current instruction is offered in
    acc_ready = [0] * 4  # from when each accumulator has no DOT in flight
    word_clear = {}  # activation word -> from when no REQ result in flight writes it
    word_free = {}  # activation word -> from when no queued DOT reads it
    req_done = 0  # from when every REQ result has been written
    pops = [-1, -1]  # the cycles the last two DOTs left the queue
    addr = hs = -1  # the last beat's address cycle and hand-over cycle
    in_free = fe_free = 0  # from when the engine's input register / front end is free
    xstride = ostride = 0  # the strides of the last LOOP taken
    read = {"async": 0, "sync": 1}[param_ram]  # cycles before a uop's parameters are there
    for pc, i, on in m.trace:
        ins = decode(program[pc])
        if not on or ins.op == "HALT":
            t += 1
        elif ins.op == "LOOP":
            xstride, ostride = ins.xstride, ins.ostride
            t += 1
        elif ins.op == "CLR":
            t = max(t, acc_ready[ins.acc]) + 1
        elif ins.op == "LDB":
            t = max(t + read, acc_ready[ins.acc]) + 1
        elif ins.op == "REQ":
            w = (ins.oaddr + (i * ostride if ins.oi else 0)) // lanes // hazard_words
            c = max(t + read, acc_ready[ins.acc], word_free.get(w, 0))
            t = c + 1
            word_clear[w] = req_done = max(req_done, c + 1 + req_latency)
        elif ins.op == "DOT":
            c = max(t, pops[-2] + 1)  # taken into the queue
            t = c + 1
            first = (ins.xaddr + (i * xstride if ins.xi else 0)) // lanes
            words = range(first // hazard_words, (first + ins.beats - 1) // hazard_words + 1)
            a = max(c + 1, addr + 1, hs, *(word_clear.get(w, 0) for w in words))
            for k, cost in enumerate(next(dots)):
                if k:
                    a = max(addr + 1, hs)
                h = max(a + 1, in_free)  # handed to the engine's input register
                s = max(h + 1, fe_free)  # taken by the front end
                in_free, fe_free = s, s + cost
                addr, hs = a, h
            pops = [pops[-1], addr]
            for w in words:
                word_free[w] = max(word_free.get(w, 0), addr + 1)
            word_free[words[-1]] = max(word_free[words[-1]], hs + 1)
            acc_ready[ins.acc] = fe_free + dot_latency
        elif ins.op == "SETP":
            start = max(t, hs + 1)
            if ins.src not in (Src.W, Src.WNNZ):  # (probes of activations wait for REQs)
                start = max(start, req_done)
            t = start + (5 if ins.src in (Src.W, Src.X) else 5 + ins.beats)
        else:
            t += 1
        if timeline is not None:
            timeline.append((pc, t))
    return max(t, req_done, max(acc_ready)), m
