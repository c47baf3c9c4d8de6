"""ISA simulator of the sparq core: the architectural state and what each instruction does.

Architectural state: predicates ``p[0..7]`` (``p0`` always true), accumulators
``acc[0..3]`` (int32), the activation zero point ``x_zp`` (SETL; ``x_zero_point`` of the
machine when a program starts), the activation memory ``x`` (int8: inputs and every layer's
outputs), and the counters. Read-only: weights ``w`` (int8), per-channel ``bias`` (int32) and
requantizer parameters. Semantics are in ``golden.isa``; the arithmetic is the golden
models' (``golden.requant.requantize`` in the machine's mode, exact int32 accumulation: an
accumulator leaving int32 raises).

Cycle model of the sequencer (``Machine.cycles``), with the datapath always ready: every
instruction fetched costs one cycle, executed or predicated off; an executed SETP two more
(the representative value's round trip, then its comparison, registered); the jump back of
a loop costs nothing. With a ``dot_cost`` (the core model), an executed DOT costs what the
datapath takes instead of one.

An illegal instruction raises ``IllegalInstruction`` before it changes anything; the state
is then that of the previous instruction, which is what the hardware keeps when it halts
with its error flag set. A DOT whose accumulator leaves int32 raises ``ArithmeticError`` and
a REQ whose channel's parameters the requantizer refuses raises ``ValueError``; the core
raises its error there too, but other instructions in flight may have changed its state.
Every exception ``run`` raises for an instruction carries its address as ``pc``, the core's
``error_pc`` (``fault_pc``).
"""

from dataclasses import dataclass, field, replace

import numpy as np

from sparq.spec import params as spec_params

from .isa import CMPS, SRCS, IllegalInstruction, decode
from .requant import INT32_MAX, INT32_MIN, check_range, requantize

N_PRED, N_ACC = 8, 4


@dataclass(frozen=True)
class MachineConfig:
    """Sizes and constants of a machine (``spec.params.machine``); the hardware takes the
    same keyword arguments. ``x_zero_point`` is the activation zero point a program starts
    with (SETL changes it)."""
    lanes: int = 16
    x_depth: int = 256
    w_depth: int = 4096
    channels: int = 64
    prog_depth: int = 256
    x_zero_point: int = -128
    mode: str = "single"

    def __post_init__(self):
        spec_params.machine(**vars(self))

    @classmethod
    def of(cls, params):
        """The machine of a block's parameters (a Core's or a Sequencer's: the same dict that
        built it, e.g. ``spec.configs.CONFIGS["core"][1]``; the others are ignored)."""
        return cls(**{k: params[k] for k in cls.__dataclass_fields__ if k in params})


@dataclass
class Params:
    """Read-only memories: weights, biases and per-channel requantizer parameters."""
    w: np.ndarray
    bias: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray
    out_zp: np.ndarray
    act_min: np.ndarray
    act_max: np.ndarray


@dataclass
class Machine:
    cfg: MachineConfig
    params: Params
    x: np.ndarray
    p: list = field(default_factory=lambda: [True] + [False] * (N_PRED - 1))
    acc: list = field(default_factory=lambda: [0] * N_ACC)
    pc: int = 0
    x_zp: int = None  # the activation zero point (SETL); new_machine sets the machine's
    cycles: int = 0
    executed: int = 0
    predicated_off: int = 0
    halted: bool = False
    trace: list = field(default_factory=list)  # (pc, loop index, executed) per fetch
    # cycles an executed DOT takes in the datapath, given (x - x_zp, w) of its block
    # (None: one, the sequencer alone); the core model (golden.core) sets it
    dot_cost: object = None

    def state(self):
        """The architectural state as plain Python values (for comparisons)."""
        return dict(p=[bool(v) for v in self.p], acc=[int(v) for v in self.acc],
                    x=[int(v) for v in self.x], executed=self.executed,
                    predicated_off=self.predicated_off, cycles=self.cycles, halted=self.halted)


def new_machine(cfg, params, x_init):
    """A machine at reset with activation memory ``x_init`` (int8, padded with zeros)."""
    x = np.zeros(cfg.x_depth, np.int64)
    w = np.zeros(cfg.w_depth, np.int64)
    x_init = check_range("x_init", x_init, -128, 127).ravel()
    if x_init.size > cfg.x_depth:
        raise ValueError(f"{x_init.size} initial activations do not fit x_depth={cfg.x_depth}")
    x[:x_init.size] = x_init
    w_init = check_range("w", params.w, -127, 127).ravel()
    if w_init.size > cfg.w_depth:
        raise ValueError(f"{w_init.size} weights do not fit w_depth={cfg.w_depth}")
    w[:w_init.size] = w_init
    for name in ("bias", "multiplier", "shift", "out_zp", "act_min", "act_max"):
        if len(getattr(params, name)) > cfg.channels:
            raise ValueError(f"{len(getattr(params, name))} channels of {name} do not fit "
                             f"channels={cfg.channels}")
    return Machine(cfg, replace(params, w=w), x, x_zp=cfg.x_zero_point)


def _block(cfg, a, beats, depth, what):
    n = beats * cfg.lanes
    if a % cfg.lanes or a + n > depth:
        raise IllegalInstruction(f"{what} block at {a} of {beats} beats is not lane-aligned or "
                                 f"runs past the memory ({depth})")
    return slice(a, a + n)


def representative(m, ins, i):
    """The value SETP compares (see golden.isa)."""
    cfg, src = m.cfg, SRCS[ins.src]
    a = ins.addr + (i * m.xstride if ins.ai else 0)
    w = m.params.w
    if src == "W":
        if ins.addr >= w.size:
            raise IllegalInstruction(f"SETP: weight address {ins.addr} outside w ({w.size})")
        return int(w[ins.addr])
    if src == "WNNZ":
        return int(np.count_nonzero(w[_block(cfg, ins.addr, ins.beats, w.size, "weight")]))
    if src == "X":
        if a >= cfg.x_depth:
            raise IllegalInstruction(f"SETP: activation address {a} outside x "
                                     f"({cfg.x_depth})")
        return int(m.x[a])
    blk = m.x[_block(cfg, a, ins.beats, cfg.x_depth, "activation")] - m.x_zp
    return {"XMAXABS": int(np.abs(blk).max()), "XZERO": int(not blk.any()),
            "XNNZ": int(np.count_nonzero(blk))}[src]


def _compare(cmp, a, b):
    return {"EQ": a == b, "NE": a != b, "LT": a < b, "LE": a <= b, "GT": a > b,
            "GE": a >= b}[CMPS[cmp]]


def execute(m, ins, i):
    """Apply one executed instruction (its predicate already true); returns its extra cycles."""
    cfg, prm = m.cfg, m.params
    if ins.op in ("CLR", "LDB", "DOT", "REQ") and ins.acc >= N_ACC:
        raise IllegalInstruction(f"{ins.op}: accumulator {ins.acc}")
    if ins.op in ("LDB", "REQ") and ins.ch >= cfg.channels:
        raise IllegalInstruction(f"{ins.op}: channel {ins.ch} outside the parameter memory "
                                 f"({cfg.channels})")
    if ins.op == "CLR":
        m.acc[ins.acc] = 0
    elif ins.op == "LDB":
        m.acc[ins.acc] = int(prm.bias[ins.ch])
    elif ins.op == "DOT":
        xa = ins.xaddr + (i * m.xstride if ins.xi else 0)
        xs = _block(cfg, xa, ins.beats, cfg.x_depth, "DOT activation")
        ws = _block(cfg, ins.waddr, ins.beats, prm.w.size, "DOT weight")
        xd = m.x[xs] - m.x_zp
        v = m.acc[ins.acc] + int((xd * prm.w[ws]).sum())
        if not INT32_MIN <= v <= INT32_MAX:
            raise ArithmeticError(f"DOT at pc {m.pc}: accumulator {ins.acc} leaves int32 ({v})")
        m.acc[ins.acc] = v
        if m.dot_cost is not None:
            return int(m.dot_cost(xd, prm.w[ws])) - 1
    elif ins.op == "REQ":
        oa = ins.oaddr + (i * m.ostride if ins.oi else 0)
        if oa >= cfg.x_depth:
            raise IllegalInstruction(f"REQ: output address {oa} outside x ({cfg.x_depth})")
        c = ins.ch
        m.x[oa] = int(requantize(
            np.array([m.acc[ins.acc]]), multiplier=int(prm.multiplier[c]),
            shift=int(prm.shift[c]), output_zero_point=int(prm.out_zp[c]),
            act_min=int(prm.act_min[c]), act_max=int(prm.act_max[c]), mode=cfg.mode)[0])
    elif ins.op == "SETP":
        m.p[ins.pd] = bool(_compare(ins.cmp, representative(m, ins, i), ins.imm))
        return 2
    elif ins.op == "SETL":
        m.x_zp = ins.in_zp
    elif ins.op == "PAND":
        m.p[ins.pd] = m.p[ins.pa] and m.p[ins.pb]
    elif ins.op == "POR":
        m.p[ins.pd] = m.p[ins.pa] or m.p[ins.pb]
    elif ins.op == "PNOT":
        m.p[ins.pd] = not m.p[ins.pa]
    return 0


def fault_pc(exc):
    """The pc an exception of ``run`` names (the core's ``error_pc``), or None."""
    return getattr(exc, "pc", None)


def run(m, program, max_steps=1_000_000):
    """Run ``program`` (a list of words) until HALT; returns the machine.

    Raises ``IllegalInstruction`` (state as before the offending instruction; also for a
    program running past its end), ``ArithmeticError`` (an accumulator leaving int32) or
    ``ValueError`` (a REQ's parameters out of range), each with the instruction's ``pc``
    attribute; or ``RuntimeError`` after ``max_steps`` instructions.
    """
    if len(program) > m.cfg.prog_depth:
        raise ValueError(f"{len(program)} words do not fit prog_depth={m.cfg.prog_depth}")
    try:
        return _run(m, program, max_steps)
    except (IllegalInstruction, ArithmeticError, ValueError) as e:
        if fault_pc(e) is None:
            e.pc = m.pc
        raise


def _run(m, program, max_steps):
    program = list(program) + [0] * (m.cfg.prog_depth - len(program))  # as in hardware
    m.xstride = m.ostride = 0
    loop = None  # (start, end, count, index)
    steps = 0
    while not m.halted:
        if m.pc >= len(program):  # the hardware reads an all-zero (illegal) word there
            raise IllegalInstruction(f"pc {m.pc}: past the end of the program without HALT")
        steps += 1
        if steps > max_steps:
            raise RuntimeError(f"no HALT after {max_steps} instructions")
        ins = decode(program[m.pc])
        i = loop[3] if loop else 0
        on = m.p[ins.pred] != bool(ins.neg)
        nxt = m.pc + 1
        if ins.op == "LOOP":
            if loop is not None:
                raise IllegalInstruction(f"LOOP at pc {m.pc} inside the loop body starting at "
                                         f"{loop[0]}: loops do not nest")
            if m.pc + ins.body >= len(program):
                raise IllegalInstruction(f"LOOP at pc {m.pc}: body of {ins.body} runs past the "
                                         f"program ({len(program)} words)")
            if on:
                loop = (m.pc + 1, m.pc + ins.body, ins.count, 0)
                m.xstride, m.ostride = ins.xstride, ins.ostride
            else:
                nxt = m.pc + 1 + ins.body
        extra = 0
        if on and ins.op == "HALT":
            m.halted = True
        elif on and ins.op != "LOOP":
            extra = execute(m, ins, i)
        m.cycles += 1 + extra
        m.executed += int(on)
        m.predicated_off += int(not on)
        m.trace.append((m.pc, i, on))
        if loop and m.pc == loop[1] and not m.halted:  # end of the body: back or out
            start, end, count, idx = loop
            if idx + 1 < count:
                loop = (start, end, count, idx + 1)
                nxt = start
            else:
                loop = None
        m.pc = nxt
    return m
