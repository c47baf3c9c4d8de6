"""ISA simulator of the sparq core: the architectural state and what each instruction does.

Architectural state: predicates ``p[0..7]`` (``p0`` always true), accumulators
``acc[0..3]`` (int32), the activation zero point ``x_zp`` and the REQ rounding ``x_round``
(SETL; the machine's ``x_zero_point`` and ``single`` rounding when a program starts), the
activation memory ``x`` (int8: inputs and every layer's outputs), and the counters; on a
convolution machine (``conv=True``) also the lane-accumulator banks (``N_BANKS`` x
``lanes`` int32), the loop levels' weight and channel strides (STRD) and the window
(SETG). Read-only: weights ``w`` (int8), per-channel ``bias`` (int32) and requantizer
parameters. Semantics are in ``golden.isa``; the arithmetic is the golden models'
(``golden.requant.requantize`` in the machine's mode, exact int32 accumulation: an
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
from sparq.spec.isa import CONV_FLAGS, CONV_OPS, LOOP_LEVELS, N_ACC, N_BANKS, STRIDE_KINDS

from .isa import CMPS, SRCS, IllegalInstruction, decode
from .requant import INT32_MAX, INT32_MIN, check_range, requantize, requantize_q31

N_PRED = 8


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
    conv: bool = False

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
    x_round: int = 0  # SETL's rounding: 0 the machine's mode, 1 double (tflite)
    banks: np.ndarray = None  # (N_BANKS, lanes) int32 lane accumulators (conv machines)
    # each loop level's strides: x and o (LOOP), w and ch (STRD)
    strides: dict = field(default_factory=lambda: {k: [0] * LOOP_LEVELS
                                                   for k in ("x", "o", "w", "ch")})
    window: dict = None  # SETG's fields (None: every tap of a window DOT is dropped)
    checked: set = field(default_factory=set)  # (channel, mode) whose parameters are checked
    # with a list here, ``run`` appends for each trace entry what the instruction touched
    # (``effect``: a DOT's activation words, a REQ's output word and lanes; else None)
    effects: list = None
    effect: dict = None
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
    chans = {}
    for name in ("bias", "multiplier", "shift", "out_zp", "act_min", "act_max"):
        v = np.asarray(getattr(params, name), np.int64).ravel()
        if v.size > cfg.channels:
            raise ValueError(f"{v.size} channels of {name} do not fit "
                             f"channels={cfg.channels}")
        chans[name] = np.concatenate([v, np.zeros(cfg.channels - v.size, np.int64)])
    # (channels past the given ones read as zeros, as an unwritten parameter memory)
    return Machine(cfg, replace(params, w=w, **chans), x, x_zp=cfg.x_zero_point,
                   banks=np.zeros((N_BANKS, cfg.lanes), np.int64))


@dataclass(frozen=True)
class Offsets:
    """The loop offsets an indexed operand adds (``golden.isa``): activation ``x``, output
    ``o``, weight ``w``, channel ``ch``; and the loop indices of levels 0 and 1 (``i0``,
    ``i1``: the output row and column a window DOT's taps are checked against)."""
    x: int = 0
    o: int = 0
    w: int = 0
    ch: int = 0
    i0: int = 0
    i1: int = 0


NO_OFFSETS = Offsets()


def _block(cfg, a, beats, depth, what):
    n = beats * cfg.lanes
    if a < 0 or a % cfg.lanes or a + n > depth:
        raise IllegalInstruction(f"{what} block at {a} of {beats} beats is not lane-aligned or "
                                 f"runs past the memory ({depth})")
    return slice(a, a + n)


def representative(m, ins, off=NO_OFFSETS):
    """The value SETP compares (see golden.isa)."""
    cfg, src = m.cfg, SRCS[ins.src]
    a = ins.addr + (off.x if ins.ai else 0)
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


def check_machine(cfg, ins):
    """What the machine ``cfg`` refuses of a decoded instruction whatever the state (as
    ``golden.isa.check`` does for any machine): an accumulator number it does not have, and
    the convolution extensions on a machine without them. Raises ``IllegalInstruction``."""
    accs = N_ACC + (N_BANKS if cfg.conv and ins.op != "LDB" else 0)
    if "acc" in ins.args and ins.acc >= accs:
        raise IllegalInstruction(f"{ins.op}: accumulator {ins.acc} (the machine has {accs})")
    if cfg.conv:
        return
    if ins.op in CONV_OPS:
        raise IllegalInstruction(f"{ins.op}: a convolution extension this machine (conv=False) "
                                 "does not have")
    for name in CONV_FLAGS.get(ins.op, ()):
        if ins.args[name]:
            raise IllegalInstruction(f"{ins.op} {name}=1: a convolution extension this machine "
                                     "(conv=False) does not have")


def _dot_beats(m, ins, off):
    """The (activation, weight) element addresses of each beat a DOT multiplies: its
    ``beats`` consecutive words, or the taps of the window that are not dropped."""
    cfg, lanes = m.cfg, m.cfg.lanes
    xa = ins.xaddr + (off.x if ins.xi else 0)
    wa = ins.waddr + (off.w if ins.wi else 0)
    _block(cfg, wa, ins.beats, m.params.w.size, "DOT weight")
    if not ins.win:
        _block(cfg, xa, ins.beats, cfg.x_depth, "DOT activation")
        return [(xa + k * lanes, wa + k * lanes) for k in range(ins.beats)]
    g, out = m.window, []
    if g is None:
        return out
    for k in range(ins.beats):
        ky, kx = divmod(k, g["kw"])
        iy, ix = off.i0 * g["sy"] + ky - g["pt"], off.i1 * g["sx"] + kx - g["pl"]
        if 0 <= iy < g["ih"] and 0 <= ix < g["iw"]:
            a = xa + ((ky - g["pt"]) * g["rowpitch"] + (kx - g["pl"]) * g["pixpitch"]) * lanes
            _block(cfg, a, 1, cfg.x_depth, "DOT window tap")
            out.append((a, wa + k * lanes))
    return out


def _dot(m, ins, off):
    """DOT: returns the datapath's cycles for it (``dot_cost``) less one, or 0."""
    lanes = m.cfg.lanes
    taps = _dot_beats(m, ins, off)
    xd = np.array([m.x[a:a + lanes] for a, _ in taps], np.int64).reshape(-1, lanes) - m.x_zp
    wv = np.array([m.params.w[b:b + lanes] for _, b in taps], np.int64).reshape(-1, lanes)
    prods = (xd * wv).sum(axis=0)
    m.effect = dict(x_words=[a // lanes for a, _ in taps])
    if ins.acc >= N_ACC:  # a lane bank: each lane its own sum
        bank = m.banks[ins.acc - N_ACC] + prods
        if bank.min() < INT32_MIN or bank.max() > INT32_MAX:
            raise ArithmeticError(f"DOT at pc {m.pc}: a lane of bank {ins.acc} leaves int32")
        m.banks[ins.acc - N_ACC] = bank
    else:
        v = m.acc[ins.acc] + int(prods.sum())
        if not INT32_MIN <= v <= INT32_MAX:
            raise ArithmeticError(f"DOT at pc {m.pc}: accumulator {ins.acc} leaves int32 ({v})")
        m.acc[ins.acc] = v
    if m.dot_cost is not None:  # (a window DOT whose taps are all dropped takes its cycle)
        return max(1, int(m.dot_cost(xd, wv))) - 1
    return 0


_PARAM_KEYS = ("multiplier", "shift", "out_zp", "act_min", "act_max")  # Params' names
_REQUANT_KEYS = ("multiplier", "shift", "output_zero_point", "act_min", "act_max")  # requantize's


def _requantize(m, accs, c0):
    """Accumulators ``accs`` requantized with channels ``c0, c0 + 1, ...`` in the current
    rounding (``golden.requant.requantize``). A channel's parameters are checked the first
    time a run uses them (its ValueError raised before anything is written)."""
    prm, n = m.params, len(accs)
    mode = "tflite" if m.x_round else m.cfg.mode
    for c in range(c0, c0 + n):
        if (c, mode) not in m.checked:
            try:
                requantize(np.zeros(1, np.int64), mode=mode, **dict(zip(
                    _REQUANT_KEYS, (int(getattr(prm, k)[c]) for k in _PARAM_KEYS),
                    strict=True)))
            except ValueError as e:
                raise ValueError(f"channel {c}: {e}") from None
            m.checked.add((c, mode))
    acc = np.asarray(accs, np.int64)
    if acc.min() < INT32_MIN or acc.max() > INT32_MAX:
        raise ArithmeticError(f"REQ at pc {m.pc}: a lane's sum with its bias leaves int32")
    if mode not in ("tflite", "single"):
        return requantize(acc, mode=mode, **{k: getattr(prm, k2)[c0:c0 + n] for k, k2 in zip(
            _REQUANT_KEYS, _PARAM_KEYS, strict=True)})
    return requantize_q31(acc, *(getattr(prm, k)[c0:c0 + n] for k in _PARAM_KEYS),
                          double_round=mode == "tflite")


def _req(m, ins, off):
    cfg, lanes = m.cfg, m.cfg.lanes
    oa = ins.oaddr + (off.o if ins.oi else 0)
    c = ins.ch + (off.ch if ins.ci else 0)
    if ins.acc < N_ACC:
        if oa >= cfg.x_depth:
            raise IllegalInstruction(f"REQ: output address {oa} outside x ({cfg.x_depth})")
        _channel(cfg, "REQ", c)
        m.x[oa] = _requantize(m, [m.acc[ins.acc]], c)[0]
        m.effect = dict(o_word=oa // lanes, lanes=1)
        return
    _block(cfg, oa, 1, cfg.x_depth, "REQ output")
    _channel(cfg, "REQ", c + lanes - 1)
    bank = m.banks[ins.acc - N_ACC] + m.params.bias[c:c + lanes]
    m.x[oa:oa + lanes] = _requantize(m, bank, c)
    m.effect = dict(o_word=oa // lanes, lanes=lanes)


def _channel(cfg, op, c):
    if c >= cfg.channels:
        raise IllegalInstruction(f"{op}: channel {c} outside the parameter memory "
                                 f"({cfg.channels})")


def execute(m, ins, off=NO_OFFSETS):
    """Apply one executed instruction (its predicate already true; ``off``: the loop
    offsets); returns its extra cycles."""
    prm = m.params
    if ins.op == "CLR":
        if ins.acc >= N_ACC:
            m.banks[ins.acc - N_ACC] = 0
        else:
            m.acc[ins.acc] = 0
    elif ins.op == "LDB":
        c = ins.ch + (off.ch if ins.ci else 0)
        _channel(m.cfg, "LDB", c)
        m.acc[ins.acc] = int(prm.bias[c])
    elif ins.op == "DOT":
        return _dot(m, ins, off)
    elif ins.op == "REQ":
        _req(m, ins, off)
    elif ins.op == "SETP":
        m.p[ins.pd] = bool(_compare(ins.cmp, representative(m, ins, off), ins.imm))
        return 2
    elif ins.op == "SETL":
        m.x_zp, m.x_round = ins.in_zp, ins.round
    elif ins.op == "STRD":
        m.strides[STRIDE_KINDS[ins.kind]][ins.level] = ins.stride
    elif ins.op == "SETG":
        m.window = {k: ins.args[k] for k in ("ih", "iw", "kw", "pt", "pl", "sy", "sx",
                                             "pixpitch", "rowpitch")}
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


def offsets(m, loops):
    """The loop offsets of the current iteration of ``loops`` (the stack of open loops,
    outermost first: ``[start, end, count, index]``)."""
    if not loops:
        return NO_OFFSETS
    idx = [lp[3] for lp in loops]
    st = m.strides

    def total(k):
        return sum(i * s for i, s in zip(idx, st[k][:len(idx)], strict=True))
    return Offsets(x=total("x"), o=total("o"), w=total("w"), ch=total("ch"),
                   i0=idx[0], i1=idx[1] if len(idx) > 1 else 0)


def _open_loop(m, ins, loops, program):
    """A LOOP at ``m.pc``: its legality (nesting depth, body within the program and the
    enclosing body). Returns the loop's entry ``[start, end, count, 0]``."""
    levels = LOOP_LEVELS if m.cfg.conv else 1
    end = m.pc + ins.body
    if len(loops) >= levels:
        if levels == 1:
            raise IllegalInstruction(f"LOOP at pc {m.pc} inside the loop body starting at "
                                     f"{loops[-1][0]}: loops do not nest")
        raise IllegalInstruction(f"LOOP at pc {m.pc}: loops nest at most {levels} deep")
    if end >= len(program):
        raise IllegalInstruction(f"LOOP at pc {m.pc}: body of {ins.body} runs past the "
                                 f"program ({len(program)} words)")
    if loops and end > loops[-1][1]:
        raise IllegalInstruction(f"LOOP at pc {m.pc}: body ends at {end}, past the end of "
                                 f"the enclosing body ({loops[-1][1]})")
    return [m.pc + 1, end, ins.count, 0]


def _run(m, program, max_steps):
    program = list(program) + [0] * (m.cfg.prog_depth - len(program))  # as in hardware
    loops = []  # open loops, outermost first: [start, end, count, index]
    steps, decoded = 0, {}  # (each word is decoded and checked once)
    # the current iteration's offsets, until a loop opens, steps or closes (the strides of
    # the open levels change only when their LOOP opens: STRD of an open level is illegal)
    off = NO_OFFSETS
    while not m.halted:
        if m.pc >= len(program):  # the hardware reads an all-zero (illegal) word there
            raise IllegalInstruction(f"pc {m.pc}: past the end of the program without HALT")
        steps += 1
        if steps > max_steps:
            raise RuntimeError(f"no HALT after {max_steps} instructions")
        ins = decoded.get(m.pc)
        if ins is None:
            ins = decode(program[m.pc])
            check_machine(m.cfg, ins)
            decoded[m.pc] = ins
        i = loops[-1][3] if loops else 0
        on = m.p[ins.pred] != bool(ins.neg)
        nxt, last = m.pc + 1, m.pc  # the next pc; the last instruction this step covers
        if ins.op == "LOOP":
            entry = _open_loop(m, ins, loops, program)
            if on:
                m.strides["x"][len(loops)] = ins.xstride
                m.strides["o"][len(loops)] = ins.ostride
                loops.append(entry)
                off = None
            else:  # the body is skipped: it may end an enclosing body
                nxt, last = entry[1] + 1, entry[1]
        if on and ins.op == "STRD" and ins.level < len(loops):
            raise IllegalInstruction(f"STRD at pc {m.pc}: loop level {ins.level} is open (a "
                                     "stride changes only while its level is closed)")
        extra, m.effect = 0, None
        if on and ins.op == "HALT":
            m.halted = True
        elif on and ins.op != "LOOP":
            if off is None:
                off = offsets(m, loops)
            extra = execute(m, ins, off)
        m.cycles += 1 + extra
        m.executed += int(on)
        m.predicated_off += int(not on)
        m.trace.append((m.pc, i, on))
        if m.effects is not None:
            m.effects.append(m.effect)
        while loops and last == loops[-1][1] and not m.halted:  # a body's end: back or out
            off = None
            if loops[-1][3] + 1 < loops[-1][2]:
                loops[-1][3] += 1
                nxt = loops[-1][0]
                break
            loops.pop()
        m.pc = nxt
    return m
