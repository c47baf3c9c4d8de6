"""Stimulus and the datapath stand-in for the Sequencer's testbenches.

- ``random_case``: a random machine (weights, biases, requantizer parameters, activations)
  and a random program: every op, random predicates and polarities, loops with indexed
  addresses, and a share of illegal words (bad opcodes, reserved bits, p0 writes, bad codes,
  out-of-range or misaligned addresses, nested loops, running off the end).
- ``Datapath``: what the core's datapath does with the Sequencer's ``uop`` and ``probe``
  streams, computed by the golden ISA simulator's own functions, so the testbench's
  architectural state (accumulators, activation memory) follows the RTL's issued ops.
- ``expected``: the golden ISA simulator's final state for a case, or its error.
"""

from dataclasses import dataclass

import numpy as np

from sparq.golden import isa
from sparq.golden import sequencer as golden_sequencer
from sparq.golden.isa import IllegalInstruction, Instr
from sparq.spec.isa import UOP_OPS


@dataclass
class Case:
    cfg: golden_sequencer.MachineConfig
    params: golden_sequencer.Params
    x_init: np.ndarray
    program: list  # words, padded with zeros to prog_depth


SMALL = dict(lanes=4, x_depth=64, w_depth=128, channels=8, prog_depth=64, x_zero_point=-3)


def random_params(rng, cfg, *, bad_channels=0, edge_bias=False):
    """Random weights and channel parameters; ``bad_channels`` channels get requantizer
    parameters the requantizer refuses (a shift of 31 or -32, a negative multiplier, or
    act_min above act_max), so that a REQ on them raises; with ``edge_bias`` every bias is
    at an edge of int32, so that a DOT after an LDB may take the accumulator out of it."""
    c = cfg.channels
    prm = golden_sequencer.Params(
        w=np.where(rng.random(cfg.w_depth) < 0.4, 0, rng.integers(-127, 128, cfg.w_depth)),
        bias=rng.integers(-5000, 5000, c), multiplier=rng.integers(1 << 30, 1 << 31, c),
        shift=rng.integers(-12, 1, c), out_zp=rng.integers(-10, 10, c),
        act_min=np.full(c, -128), act_max=np.full(c, 127))
    if edge_bias:
        prm.bias[:] = rng.choice([-1, 1], c) * ((1 << 31) - rng.integers(1, 2000, c))
    for ch in rng.choice(c, size=bad_channels, replace=False):
        kind = int(rng.integers(0, 4))
        if kind < 2:
            prm.shift[ch] = (31, -32)[kind]
        elif kind == 2:
            prm.multiplier[ch] = -int(rng.integers(1, 1 << 31))
        else:
            prm.act_min[ch], prm.act_max[ch] = 5, 4
    return prm


def random_x(rng, cfg):
    x = rng.integers(-128, 128, cfg.x_depth)
    return np.where(rng.random(cfg.x_depth) < 0.5, cfg.x_zero_point, x)


def _pred(rng):
    if rng.random() < 0.5:
        return 0, 0
    return int(rng.integers(0, 8)), int(rng.integers(0, 2))


def _block_addr(rng, cfg, depth, beats, bad):
    n = beats * cfg.lanes
    if bad:
        return int(rng.integers(0, depth))  # likely misaligned or past the end
    return int(rng.integers(0, (depth - n) // cfg.lanes + 1)) * cfg.lanes


def random_instr(rng, cfg, *, in_body, bad_rate):
    """One random instruction word (legal unless the dice say otherwise)."""
    bad = rng.random() < bad_rate
    pred, neg = _pred(rng)
    kind = rng.choice(["CLR", "LDB", "DOT", "DOT", "DOT", "REQ", "REQ", "SETP", "SETP", "PAND",
                       "POR", "PNOT", "SETL", "HALT"] + ([] if in_body else ["LOOP"]),
                      p=None)
    if bad and rng.random() < 0.35:  # a word the decoder must refuse
        choice = rng.integers(0, 4)
        if choice == 0:
            return int(rng.choice([0x0, 0xB, 0xC, 0xD, 0xE])) << 44 | \
                int(rng.integers(0, 1 << 40))
        if choice == 1:
            return isa.ins("CLR", pred, neg, acc=1) | 1 << int(rng.integers(0, 37))
        if choice == 2:
            return isa.ins("PNOT", pred, neg, pd=1, pa=2) & ~(7 << 37)  # writes p0
        word = isa.ins("SETP", pred, neg, pd=1, cmp=0, src=0, addr=0, beats=1, imm=0)
        return word | (int(rng.integers(6, 8)) << (34 if rng.random() < 0.5 else 31))
    beats = int(rng.integers(1, 3))
    if kind == "CLR":
        return isa.ins(kind, pred, neg, acc=int(rng.integers(0, 4)))
    if kind == "LDB":
        ch = int(rng.integers(0, cfg.channels + (4 if bad else 0)))
        return isa.ins(kind, pred, neg, acc=int(rng.integers(0, 4)), ch=min(ch, 255))
    if kind == "DOT":
        return isa.ins(kind, pred, neg, acc=int(rng.integers(0, 4)),
                       xi=int(in_body and rng.random() < 0.6),
                       xaddr=_block_addr(rng, cfg, cfg.x_depth // 2, beats, bad),
                       waddr=_block_addr(rng, cfg, cfg.w_depth, beats, bad), beats=beats)
    if kind == "REQ":
        return isa.ins(kind, pred, neg, acc=int(rng.integers(0, 4)),
                       ch=int(rng.integers(0, cfg.channels + (4 if bad else 0))),
                       oi=int(in_body and rng.random() < 0.6),
                       oaddr=int(rng.integers(cfg.x_depth // 2, cfg.x_depth + (8 if bad else -4))))
    if kind == "SETP":
        src = int(rng.integers(0, 6))
        depth = cfg.w_depth if src in (0, 5) else cfg.x_depth // 2
        addr = (int(rng.integers(0, depth)) if src in (0, 1)
                else _block_addr(rng, cfg, depth, beats, bad))
        imm = int(rng.choice([0, 1, 2, -1, int(rng.integers(-130, 130))]))
        return isa.ins(kind, pred, neg, pd=int(rng.integers(1, 8)), cmp=int(rng.integers(0, 6)),
                       src=src, ai=int(in_body and rng.random() < 0.5), addr=addr,
                       beats=beats, imm=imm)
    if kind in ("PAND", "POR"):
        return isa.ins(kind, pred, neg, pd=int(rng.integers(1, 8)), pa=int(rng.integers(0, 8)),
                       pb=int(rng.integers(0, 8)))
    if kind == "PNOT":
        return isa.ins(kind, pred, neg, pd=int(rng.integers(1, 8)), pa=int(rng.integers(0, 8)))
    if kind == "SETL":  # the activations hold the machine's zero point half the time
        zp = rng.choice([cfg.x_zero_point, 0, -128, 127, int(rng.integers(-128, 128))])
        return isa.ins(kind, pred, neg, in_zp=int(zp))
    if kind == "HALT":
        return isa.ins(kind, pred, 1 - neg if (pred, neg) == (0, 0) and rng.random() < 0.7
                       else neg)
    misaligned = int(rng.integers(1, cfg.lanes)) if bad and cfg.lanes > 1 else 0
    return isa.ins("LOOP", pred, neg, count=int(rng.integers(1, 5)),
                   body=int(rng.integers(1, 5)),
                   xstride=cfg.lanes * int(rng.integers(0, 3)) + misaligned,
                   ostride=int(rng.integers(0, 3)))


def random_program(rng, cfg, *, length=None, bad_rate=0.02):
    """A random program of about ``length`` words ending in HALT, padded to prog_depth."""
    length = length or int(rng.integers(4, cfg.prog_depth - 2))
    words, body_left = [], 0
    while len(words) < length - 1:
        w = random_instr(rng, cfg, in_body=body_left > 0, bad_rate=bad_rate)
        if bad_rate and body_left and rng.random() < bad_rate:  # a nested loop
            w = isa.ins("LOOP", count=2, body=1)
        words.append(w)
        body_left = max(0, body_left - 1)
        if w >> 44 == isa.OPS["LOOP"]:
            body_left = (w >> 24) & 0xFF
    if not (bad_rate and rng.random() < bad_rate):  # else it runs off the end
        words.append(isa.ins("HALT"))
    return words + [0] * (cfg.prog_depth - len(words))


PRED_WRITERS = {isa.OPS[k] for k in ("SETP", "PAND", "POR", "PNOT")}


def _draw(rng, cfg, ops, *, in_body):
    """A random legal instruction word whose opcode is in ``ops``."""
    while True:
        w = random_instr(rng, cfg, in_body=in_body, bad_rate=0.0)
        if w >> 44 in ops:
            return w


def pred_loop_program(rng, cfg, *, length=40):
    """Predicate writes (SETP, PAND, POR, PNOT), each followed at once by a LOOP guarded by
    the predicate it writes (either polarity) with a short body: the LOOP's fate is decided
    in the cycle that predicate is written, from the value being written. Ends in HALT,
    padded to prog_depth."""
    body_ops = {isa.OPS[k] for k in UOP_OPS} | PRED_WRITERS
    words = []
    while len(words) < length - 6:
        w = _draw(rng, cfg, PRED_WRITERS, in_body=False)
        body = int(rng.integers(1, 4))
        words += [w, isa.ins("LOOP", (w >> 37) & 7, int(rng.integers(0, 2)),
                             count=int(rng.integers(1, 4)), body=body,
                             xstride=cfg.lanes * int(rng.integers(0, 2)),
                             ostride=int(rng.integers(0, 2)))]
        words += [_draw(rng, cfg, body_ops, in_body=True) for _ in range(body)]
    words.append(isa.ins("HALT"))
    return words + [0] * (cfg.prog_depth - len(words))


def hazard_program(rng, cfg, *, length=40, window=8):
    """LDB, DOT and REQ only, every activation address in the first ``window`` words, so
    that REQ results and DOT reads of nearby words follow each other closely (the hazards'
    tracking granularity matters); ends in HALT, padded to prog_depth."""
    lanes, words = cfg.lanes, []
    for _ in range(length - 1):
        acc, kind = int(rng.integers(0, 4)), rng.choice(["LDB", "DOT", "DOT", "REQ"])
        if kind == "LDB":
            words.append(isa.ins("LDB", acc=acc, ch=int(rng.integers(0, cfg.channels))))
        elif kind == "DOT":
            beats = int(rng.integers(1, 4))
            first = int(rng.integers(0, window - beats + 1))
            waddr = lanes * int(rng.integers(0, cfg.w_depth // lanes - beats + 1))
            words.append(isa.ins("DOT", acc=acc, xaddr=first * lanes, waddr=waddr,
                                 beats=beats))
        else:
            words.append(isa.ins("REQ", acc=acc, ch=int(rng.integers(0, cfg.channels)),
                                 oaddr=int(rng.integers(0, window * lanes))))
    words.append(isa.ins("HALT"))
    return words + [0] * (cfg.prog_depth - len(words))


CONV = dict(lanes=4, x_depth=1024, w_depth=1024, channels=32, prog_depth=128,
            x_zero_point=-3, conv=True)


class ConvProgram:
    """A random program for a convolution machine (``conv_case``): loops nested up to
    ``LOOP_LEVELS`` deep (inner bodies often ending with their enclosing one, predicated-off
    LOOPs among them), STRD of every level (of an open level now and then: illegal), SETG,
    window DOTs, lane banks and their REQs, ``ci``/``wi``/``xi``/``oi`` indexing, SETL with
    either rounding, predicate writes; ``bad_rate`` of the words illegal or out of range."""

    def __init__(self, rng, cfg, bad_rate):
        self.rng, self.cfg, self.bad_rate = rng, cfg, bad_rate

    def words(self, length):
        words = self._body(length - 1, 0)
        return words + [isa.ins("HALT")]

    def _body(self, length, depth):
        out = []
        while len(out) < length:
            room = length - len(out)
            if room >= 2 and self.rng.random() < (0.35 if depth < 3 else 0.03):
                n = int(self.rng.integers(1, min(room - 1, 8) + 1))
                out.append(self._loop(depth, n))
                out += self._body(n, depth + 1)
            elif room >= 3 and self.rng.random() < 0.1:  # a pixel of a depthwise layer
                out += self._bank_pixel(depth)
            else:
                out.append(self._instr(depth))
        return out

    def _bank_pixel(self, depth):
        """CLR of a lane bank, a DOT into it, its REQ: in a loop, the bank is cleared and
        written again while (or just after) the writeback reads it out."""
        while True:
            words = [self._instr(depth, kind) for kind in ("CLR", "WDOT", "REQW")]
            bank = {(w >> 37) & 7 for w in words}
            if len(bank) == 1 and bank.pop() >= 4:
                return words

    def _loop(self, depth, body):
        pred, neg = _pred(self.rng) if self.rng.random() < 0.3 else (0, 0)
        lanes = self.cfg.lanes
        return isa.ins("LOOP", pred, neg, count=int(self.rng.integers(1, 4)), body=body,
                       xstride=lanes * int(self.rng.integers(0, 3)),
                       ostride=int(self.rng.integers(0, 3))
                       * (1 if self.rng.random() < 0.1 else lanes))

    def _instr(self, depth, kind=None):
        rng, cfg, lanes = self.rng, self.cfg, self.cfg.lanes
        bad = rng.random() < self.bad_rate
        pred, neg = _pred(rng) if rng.random() < 0.4 else (0, 0)
        kind = kind or rng.choice(["CLR", "LDB", "DOT", "DOT", "WDOT", "WDOT", "REQ", "REQW",
                                   "STRD", "SETG", "SETL", "SETP", "PNOT"])
        acc = int(rng.integers(0, 4))
        bank = 4 + int(rng.integers(0, 2))
        if kind == "CLR":
            return isa.ins("CLR", pred, neg, acc=bank if rng.random() < 0.4 else acc)
        top = rng.random() < 0.15  # near the top of its memory: a loop offset takes it out
        if kind == "LDB":
            return isa.ins("LDB", pred, neg, acc=bank if bad else acc,
                           ci=int(top or rng.random() < .5),
                           ch=int(rng.integers(cfg.channels - 3 if top else 0, cfg.channels)))
        if kind in ("DOT", "WDOT"):
            win, words = kind == "WDOT", cfg.w_depth // lanes
            beats = int(rng.integers(1, 10 if win else 3))
            xw = cfg.x_depth // lanes  # (inputs in the first half, outputs in the second)
            xaddr = lanes * int(rng.integers(xw // 16, xw // (4 if win else 2)))
            return isa.ins("DOT", pred, neg, acc=bank if rng.random() < 0.4 else acc,
                           xi=int(not win and rng.random() < 0.5), xaddr=xaddr,
                           wi=int(top or rng.random() < 0.5),
                           waddr=lanes * int(rng.integers(
                               words - beats - 3 if top else 0, words - beats + 1 + 3 * bad)),
                           win=int(win), beats=beats)
        if kind in ("REQ", "REQW"):
            w = kind == "REQW"
            most = cfg.channels - (lanes if w else 1)
            return isa.ins("REQ", pred, neg, acc=bank if w else acc,
                           ci=int(top or rng.random() < .5),
                           ch=int(rng.integers(most - 3 if top else 0, most + 1 + 3 * bad)),
                           oi=int(rng.random() < .5),
                           oaddr=lanes * int(rng.integers(
                               cfg.x_depth // lanes * 5 // 8,
                               cfg.x_depth // lanes - 6 + (26 if bad else 0)))
                           + (0 if w else int(rng.integers(0, lanes))))
        if kind == "STRD" and (depth < 3 or bad):  # (of an open level: illegal, executed)
            level = int(rng.integers(0, 3)) if bad else int(rng.integers(depth, 3))
            k = int(rng.integers(0, 2))
            return isa.ins("STRD", pred, neg, level=level, kind=k,
                           stride=int(rng.integers(0, 3)) * (lanes if k == 0 else 1)
                           + int(k == 0 and rng.random() < 0.08) * int(rng.integers(1, lanes)))
        if kind in ("SETG", "STRD"):
            return isa.ins("SETG", pred, neg, ih=int(rng.integers(1, 5)),
                           iw=int(rng.integers(1, 5)), kw=int(rng.integers(1, 4)),
                           pt=int(rng.integers(0, 2)), pl=int(rng.integers(0, 2)),
                           sy=int(rng.integers(1, 3)), sx=int(rng.integers(1, 3)),
                           pixpitch=int(rng.integers(0, 2)), rowpitch=int(rng.integers(0, 5)))
        if kind == "SETL":
            return isa.ins("SETL", pred, neg, in_zp=int(rng.choice([cfg.x_zero_point, 0, 5])),
                           round=int(rng.integers(0, 2)))
        if kind == "SETP":
            return isa.ins("SETP", pred, neg, pd=int(rng.integers(1, 8)), cmp=int(
                rng.integers(0, 6)), src=4, ai=0, addr=lanes * int(rng.integers(0, 64)),
                beats=1, imm=int(rng.integers(0, lanes + 1)))
        return isa.ins("PNOT", pred, neg, pd=int(rng.integers(1, 8)),
                       pa=int(rng.integers(0, 8)))


def conv_case(rng, *, length=None, bad_rate=0.02, bad_channels=0, edge_bias=False, **cfg):
    """A random case on a convolution machine (``CONV``, updated with ``cfg``);
    ``bad_channels`` and ``edge_bias`` as ``random_params``'s (requantizer parameters refused,
    biases at the edges of int32: a REQW's lane sum may leave it)."""
    cfg = golden_sequencer.MachineConfig(**dict(CONV, **cfg))
    prm = random_params(rng, cfg, edge_bias=edge_bias)
    prm.multiplier[:] = np.abs(prm.multiplier)  # (the tflite rounding takes them too)
    for ch in rng.choice(cfg.channels, size=bad_channels, replace=False):
        prm.shift[ch] = (31, -32)[int(rng.integers(0, 2))]
    length = length or int(rng.integers(8, cfg.prog_depth - 4))
    words = ConvProgram(rng, cfg, bad_rate).words(length)
    return Case(cfg, prm, random_x(rng, cfg), words + [0] * (cfg.prog_depth - len(words)))


def random_case(rng, cfg=None, *, bad_channels=0, edge_bias=False, **kw):
    cfg = cfg or golden_sequencer.MachineConfig(**SMALL)
    prm = random_params(rng, cfg, bad_channels=bad_channels, edge_bias=edge_bias)
    return Case(cfg, prm, random_x(rng, cfg), random_program(rng, cfg, **kw))


def expected(case):
    """``(state, error)``: the golden final state, and the error text or None. The state
    also holds ``error_pc`` (the pc the error names, or None) and ``precise`` (False for the
    datapath's errors, an accumulator leaving int32 or a REQ's bad parameters, after which
    the core's state is not specified: other instructions in flight may have landed) and
    ``fault``, the exception's class name."""
    m = golden_sequencer.new_machine(case.cfg, case.params, case.x_init)
    try:
        golden_sequencer.run(m, case.program)
        return dict(m.state(), error_pc=None, precise=True, fault=None), None
    except (IllegalInstruction, ArithmeticError, ValueError) as e:
        return (dict(m.state(), error_pc=golden_sequencer.fault_pc(e),
                     precise=isinstance(e, IllegalInstruction), fault=type(e).__name__), str(e))


class Datapath:
    """The architectural state outside the Sequencer, driven by its issued ops."""

    def __init__(self, case):
        self.m = golden_sequencer.new_machine(case.cfg, case.params, case.x_init)

    def uop(self, kind, acc, ch, xaddr, waddr, beats, oaddr, zp, conv=None):
        """Execute an issued uop; ``zp``: the activation zero point it carries; ``conv``: a
        convolution machine's fields (``win``, ``i0``, ``i1``, ``window``: a dict of SETG's
        fields, ``round``)."""
        op = UOP_OPS[kind]
        self.m.x_zp = zp
        off, win = golden_sequencer.NO_OFFSETS, 0
        if conv is not None:
            self.m.x_round, win = conv["round"], conv["win"]
            self.m.window = conv["window"] if conv["window"]["ih"] else None
            off = golden_sequencer.Offsets(i0=conv["i0"], i1=conv["i1"])
        args = dict(CLR=dict(acc=acc), LDB=dict(acc=acc, ci=0, ch=ch),
                    DOT=dict(acc=acc, xi=0, xaddr=xaddr, wi=0, waddr=waddr, win=win,
                             beats=beats),
                    REQ=dict(acc=acc, ci=0, ch=ch, oi=0, oaddr=oaddr))[op]
        golden_sequencer.execute(self.m, Instr(op, 0, 0, args), off)

    def probe(self, src, addr, beats, zp):
        """A probe's value; ``zp``: the activation zero point it carries."""
        self.m.x_zp = zp
        return golden_sequencer.representative(self.m, Instr("SETP", 0, 0, dict(
            src=src, addr=addr, beats=beats, ai=0)))


def case_to_json(case):
    """A case as JSON-able data (a testbench's ``program_file``)."""
    prm = {k: [int(v) for v in np.asarray(getattr(case.params, k)).ravel()]
           for k in ("w", "bias", "multiplier", "shift", "out_zp", "act_min", "act_max")}
    return dict(cfg=vars(case.cfg), params=prm, x_init=[int(v) for v in case.x_init],
                program=[int(w) for w in case.program])


def case_from_json(d):
    cfg = golden_sequencer.MachineConfig(**d["cfg"])
    prm = golden_sequencer.Params(**{k: np.array(v, np.int64) for k, v in d["params"].items()})
    program = list(d["program"]) + [0] * (cfg.prog_depth - len(d["program"]))
    return Case(cfg, prm, np.array(d["x_init"], np.int64), program)


class ValueReply:
    """The datapath's answer to a SETP probe: the value, presented after a random delay
    (with probability ``stall``, 1-3 cycles) and held until the Sequencer takes it."""

    def __init__(self, rng, stall):
        self.rng, self.stall, self.pending = rng, stall, None  # (value, cycles to wait)

    def presented(self):
        """The value to drive this cycle, or None (valid low)."""
        return self.pending[0] if self.pending is not None and self.pending[1] == 0 else None

    def clock(self, taken):
        """After a clock edge; ``taken``: the Sequencer's value.ready in that cycle."""
        if self.pending is None:
            return
        if self.pending[1] == 0:
            if taken:
                self.pending = None
        else:
            self.pending = (self.pending[0], self.pending[1] - 1)

    def probe(self, value):
        assert self.pending is None, "a second probe before the value was taken"
        delay = 0 if self.rng.random() >= self.stall else int(self.rng.integers(1, 4))
        self.pending = (value, delay)
