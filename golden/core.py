"""The core's cost model: the ISA simulator with the dot-product engine's cycles.

An executed DOT of ``beats`` beats costs the engine's front-end cycles for them
(``golden.sparse_dot.beat_cycles``; ``golden.mulbins.bin_cycles`` with multiplier bins; the
dense baseline ``ceil(lanes / slots)`` per beat); every other instruction costs what the
sequencer's model says (``golden.sequencer``). ``run_image`` runs a compiled program on one
input and returns the machine (outputs, counters, cycles).
"""

import numpy as np

from sparq.spec import params as spec_params
from sparq.spec.isa import N_ACC, N_BANKS, Src

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
    core's single mode, or with the convolution extensions (``conv``) in dual mode (both
    roundings: SETL's ``round``)."""
    p = spec_params.core(**params)
    dot = spec_params.sparse_dot_latency(lanes=p["lanes"], slots=p["slots"], skip=p["skip"],
                                         bins=p["bins"]) + ACC_REGISTER
    mode = "dual" if p["conv"] else "single"
    return dot, spec_params.requant_latency(mode=mode, short=p["short_requant"])


def program_beat_costs(cfg, params, program, x_init, *, lanes, slots, skip=True, bins=None):
    """The machine after running a program from ``x_init`` (with its ``effects``: what each
    instruction touched), and the engine cycles of each executed DOT's beats (a list of
    lists, in execution order)."""
    per_beat = []

    def cost(xd, w):
        c = dot_beat_cycles(xd, w, lanes=lanes, slots=slots, skip=skip, bins=bins)
        per_beat.append([int(v) for v in c])
        return 1

    m = new_machine(cfg, params, x_init)
    m.dot_cost, m.effects = cost, []
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
    m, per_beat = program_beat_costs(cfg, params, program, x_init, lanes=p["lanes"],
                                     slots=p["slots"], skip=p["skip"], bins=p["bins"])
    st = _Timing(p)
    dots = iter(per_beat)
    decoded = {}  # (each word decoded once, as the ISA simulator does)
    for (pc, _, on), eff in zip(m.trace, m.effects, strict=True):
        ins = decoded.get(pc)
        if ins is None:
            ins = decoded[pc] = decode(program[pc])
        if not on or ins.op not in st.OPS:
            st.t += 1  # predicated off, HALT, LOOP, PAND, POR, PNOT, SETL, STRD, SETG
        else:
            getattr(st, ins.op.lower())(ins, eff, dots)
        if timeline is not None:
            timeline.append((pc, st.t))
    return st.end(), m


class _Timing:
    """The datapath's state in ``predict_program_cycles``: ``t``, the cycle the current
    instruction is offered in, and from when each resource is free. Accumulators 4 and 5
    are the lane banks of a convolution machine; a REQ on a bank (REQW) takes the
    Requantizer for ``lanes`` cycles (one lane a cycle), a bank is read out then, and CLR
    of a bank or the first beat of a DOT into it waits for that."""

    OPS = ("CLR", "LDB", "DOT", "REQ", "SETP")

    def __init__(self, p):
        self.hw = p["hazard_words"]
        self.dot_latency, self.req_latency = latencies(**p)
        self.read = {"async": 0, "sync": 1}[p["param_ram"]]  # a uop's parameters' wait
        self.t = 0
        self.acc_ready = [0] * (N_ACC + N_BANKS)  # each accumulator: no DOT in flight
        self.bank_free = [0] * (N_ACC + N_BANKS)  # each bank: read out by its REQW
        self.word_clear = {}  # hazard region -> no REQ result in flight writes it
        self.word_free = {}  # hazard region -> no queued DOT reads it
        self.req_done = 0  # every REQ result written
        self.req_free = 0  # the Requantizer takes a REQ
        self.pops = [-1, -1]  # the cycles the last two DOTs left the queue
        self.addr = self.hs = -1  # the last beat's address cycle and hand-over cycle
        self.in_free = self.fe_free = 0  # the engine's input register / front end
        self.window_wait = spec_params.WINDOW_WAIT  # a window DOT's wait once offered
        self.handed = None  # a list: receives each beat's hand-over cycle

    def end(self):
        return max(self.t, self.req_done, max(self.acc_ready))

    def clr(self, ins, eff, dots):
        self.t = max(self.t, self.acc_ready[ins.acc], self.bank_free[ins.acc]) + 1

    def ldb(self, ins, eff, dots):
        self.t = max(self.t + self.read, self.acc_ready[ins.acc]) + 1

    def req(self, ins, eff, dots):
        w = eff["o_word"] // self.hw
        c = max(self.t + self.read, self.acc_ready[ins.acc], self.word_free.get(w, 0),
                self.req_free)
        self.t = c + 1
        self.req_free = c + eff["lanes"]
        self.bank_free[ins.acc] = c + eff["lanes"]
        self.word_clear[w] = self.req_done = max(self.req_done,
                                                 c + eff["lanes"] + self.req_latency)

    def dot(self, ins, eff, dots):
        # taken into the queue; a window DOT ``window_wait`` cycles after it is offered at
        # the earliest (the feeder registers the window's arithmetic: spec.params.WINDOW_WAIT)
        c = max(self.t + (self.window_wait if ins.win else 0), self.pops[-2] + 1)
        self.t = c + 1
        xw = eff["x_words"]
        costs = next(dots)
        if not xw:  # a window DOT whose taps are all dropped: nothing reaches the engine
            self.acc_ready[ins.acc] = max(self.acc_ready[ins.acc], c + 1)
            return
        # the regions from its lowest to its highest word (a window's taps are not contiguous)
        words = range(min(xw) // self.hw, max(xw) // self.hw + 1)
        a = max(c + 1, self.addr + 1, self.hs, self.bank_free[ins.acc],
                *(self.word_clear.get(w, 0) for w in words))
        for k, cost in enumerate(costs):
            if k:
                a = max(self.addr + 1, self.hs)
            h = max(a + 1, self.in_free)  # handed to the engine's input register
            s = max(h + 1, self.fe_free)  # taken by the front end
            self.in_free, self.fe_free = s, s + cost
            self.addr, self.hs = a, h
            if self.handed is not None:
                self.handed.append(h)
        self.pops = [self.pops[-1], self.addr]
        for w in words:
            self.word_free[w] = max(self.word_free.get(w, 0), self.addr + 1)
        # the last beat's word is read again while the beat waits in the engine's input
        held = xw[-1] // self.hw
        self.word_free[held] = max(self.word_free[held], self.hs + 1)
        self.acc_ready[ins.acc] = self.fe_free + self.dot_latency

    def setp(self, ins, eff, dots):
        start = max(self.t, self.hs + 1)
        if ins.src not in (Src.W, Src.WNNZ):  # (probes of activations wait for REQs)
            start = max(start, self.req_done)
        self.t = start + (5 if ins.src in (Src.W, Src.X) else 5 + ins.beats)
