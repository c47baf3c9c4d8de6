"""PredicateFile and Sequencer: predicated micro-op issue (US10553207 / US11264011).

The Sequencer fetches 48-bit instructions (``golden.isa``) from its program memory, keeps the
predicates, the loop state and the counters, and issues the ops that execute:

- ``uop`` (stream out): CLR, LDB, DOT and REQ with effective (loop-indexed) addresses, for
  the datapath that owns the accumulators and memories (the core, issue 7; a testbench here);
- ``probe`` (stream out) / ``value`` (stream in): a SETP asks the datapath for its
  representative value, then writes the comparison into the predicate file.

Gating: an instruction executes when ``p[pred] != neg``. Every state write of an
instruction (predicate file, loop registers, ``uop`` and ``probe`` valid) is qualified by one
signal, ``commit = on & legal``; a predicated-off instruction only advances the program
counter and costs one cycle (a predicated-off LOOP skips its body in that cycle).

Timing with an always-ready datapath (``golden.isa_sim`` cycle model): one instruction per
cycle, executed or not; an executed SETP two (probe, then value); loop jumps are free. Any
extra cycle waiting on a stream is counted in ``stalls``, so ``cycles - stalls`` equals the
model. Illegal instructions (static or, when executed, an address out of range) set ``error``
and halt in that cycle with no state written; ``error_pc`` names the instruction.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

import spec.params
from spec.isa import COMMON, FIELDS, OPS

N_PRED = 8
WORD = 48
OPC = OPS
UOP_KIND = dict(CLR=0, LDB=1, DOT=2, REQ=3)  # uop.kind


def uop_layout():
    return data.StructLayout({"kind": 2, "acc": 2, "ch": 8, "xaddr": 10, "waddr": 14,
                              "beats": 4, "oaddr": 10})


def probe_layout():
    return data.StructLayout({"src": 3, "addr": 14, "beats": 4})


class PredicateFile(wiring.Component):
    """``n`` one-bit predicates; ``p0`` reads as 1 and is never written.

    ``values`` shows them all (bit k = p[k]). A write (``we``, ``waddr``, ``wdata``) lands at
    the next clock edge; ``clear`` (priority over a write) resets p1..p(n-1) to 0.
    """

    def __init__(self, n=N_PRED):
        self.n = spec.params.int_in("n", n, 2, 64)
        super().__init__({"values": Out(n), "we": In(1), "waddr": In(range(n)),
                          "wdata": In(1), "clear": In(1)})

    def elaborate(self, platform):
        m = Module()
        regs = Signal(self.n)  # bit 0 unused: p0 reads as 1
        m.d.comb += self.values.eq(regs | 1)
        with m.If(self.clear):
            m.d.sync += regs.eq(0)
        with m.Elif(self.we & (self.waddr != 0)):
            m.d.sync += regs.bit_select(self.waddr, 1).eq(self.wdata)
        return m


class Sequencer(wiring.Component):
    """Fetch, predicate and issue (see the module docstring); ``params`` as
    ``spec.params.machine`` (the golden twin is ``golden.isa_sim`` with the same values)."""

    def __init__(self, **params):
        self._p = spec.params.machine(**params)
        p = self._p
        super().__init__({
            "pload": In(stream.Signature(data.StructLayout(
                {"addr": range(p["prog_depth"]), "word": WORD}))),
            "start": In(1),
            "uop": Out(stream.Signature(uop_layout())),
            "probe": Out(stream.Signature(probe_layout())),
            "value": In(stream.Signature(signed(16))),
            "busy": Out(1), "halted": Out(1), "error": Out(1),
            "error_pc": Out(range(p["prog_depth"] + 256)), "preds": Out(N_PRED),
            "cycles": Out(32), "executed": Out(32), "predicated_off": Out(32),
            "stalls": Out(32),
        })
        # internal, named for the formal harness (tests/test_formal.py): the current
        # instruction executes / is legal / completes this cycle; the predicate file's write
        self.on, self.legal, self.done, self.pred_we = (
            Signal(name=n) for n in ("on", "legal", "done", "pred_we"))

    @property
    def params(self):
        return dict(self._p)

    def elaborate(self, platform):
        m = Module()
        p = self._p
        depth = p["prog_depth"]
        m.submodules.prog = prog = Memory(shape=WORD, depth=depth, init=[])
        rd, wr = prog.read_port(), prog.write_port()
        m.submodules.pf = pf = PredicateFile(N_PRED)
        m.d.comb += self.preds.eq(pf.values)

        # program loading while idle
        m.d.comb += [self.pload.ready.eq(~self.busy), wr.addr.eq(self.pload.payload.addr),
                     wr.data.eq(self.pload.payload.word),
                     wr.en.eq(self.pload.valid & ~self.busy)]

        pc = Signal(range(depth))
        # the current instruction: the read port's word, or, while it has not completed, the
        # word held from its first cycle (the port is always reading the next instruction,
        # so its address never waits for the datapath's handshake)
        word = Signal(WORD)
        held, held_word = Signal(), Signal(WORD)
        m.d.comb += word.eq(Mux(held, held_word, rd.data))
        f = _fields(m, word)
        in_loop, l_start, l_end = Signal(), Signal(range(depth)), Signal(range(depth))
        l_left = Signal(8)  # iterations left after the current one
        xstride, ostride = Signal(10), Signal(10)
        xoff, ooff = Signal(18), Signal(18)
        probing = Signal()  # SETP: probe sent, waiting for the value
        xo, oo = Signal(18), Signal(18)  # the loop index times the strides; 0 outside loops
        m.d.comb += [xo.eq(Mux(in_loop, xoff, 0)), oo.eq(Mux(in_loop, ooff, 0))]

        on, legal, done = self.on, self.legal, self.done
        m.d.comb += on.eq(pf.values.bit_select(f["pred"], 1) ^ f["neg"])
        illegal = self._illegal(m, f, on, pc, in_loop, xo, oo)
        m.d.comb += legal.eq(~illegal)
        commit = self._commit(m, on, legal)

        # completion of the current instruction (it leaves this cycle): done
        op = f["op"]
        is_uop = Signal()
        m.d.comb += is_uop.eq((op == OPC["CLR"]) | (op == OPC["LDB"]) | (op == OPC["DOT"])
                              | (op == OPC["REQ"]))
        m.d.comb += [
            self.uop.valid.eq(commit & is_uop),
            self.uop.payload.kind.eq(op - 1),
            self.uop.payload.acc.eq(f["acc"]), self.uop.payload.ch.eq(f["ch"]),
            self.uop.payload.xaddr.eq(f["xaddr"] + Mux(f["xi"], xo, 0)),
            self.uop.payload.waddr.eq(f["waddr"]),
            self.uop.payload.beats.eq(Mux(op == OPC["DOT"], f["dbeats"], 0)),
            self.uop.payload.oaddr.eq(f["oaddr"] + Mux(f["oi"], oo, 0)),
            self.probe.valid.eq(commit & (op == OPC["SETP"]) & ~probing),
            self.probe.payload.src.eq(f["src"]),
            self.probe.payload.addr.eq(f["addr"] + Mux(f["ai"] & (f["src"] != 0) &
                                                       (f["src"] != 5), xo, 0)),
            self.probe.payload.beats.eq(f["sbeats"]),
            self.value.ready.eq(commit & (op == OPC["SETP"]) & probing),
        ]
        with m.If(~self.busy | ~legal | ~on):
            m.d.comb += done.eq(self.busy & legal)
        with m.Elif(is_uop):
            m.d.comb += done.eq(self.uop.ready)
        with m.Elif(op == OPC["SETP"]):
            m.d.comb += done.eq(probing & self.value.valid)
        with m.Else():
            m.d.comb += done.eq(1)

        # predicate writes
        cmp_true = _compare(m, f["cmp"], self.value.payload, f["imm"])
        pa, pb = pf.values.bit_select(f["pa"], 1), pf.values.bit_select(f["pb"], 1)
        m.d.comb += [pf.waddr.eq(f["pd"]), pf.we.eq(commit & done & (
            (op == OPC["SETP"]) | (op == OPC["PAND"]) | (op == OPC["POR"]) |
            (op == OPC["PNOT"]))), self.pred_we.eq(pf.we)]
        with m.Switch(op):
            with m.Case(OPC["SETP"]):
                m.d.comb += pf.wdata.eq(cmp_true)
            with m.Case(OPC["PAND"]):
                m.d.comb += pf.wdata.eq(pa & pb)
            with m.Case(OPC["POR"]):
                m.d.comb += pf.wdata.eq(pa | pb)
            with m.Default():
                m.d.comb += pf.wdata.eq(~pa)
        with m.If(self.probe.valid & self.probe.ready):
            m.d.sync += probing.eq(1)
        with m.If(done):
            m.d.sync += probing.eq(0)

        # next pc, loop control
        nxt = Signal(range(depth + 256))
        m.d.comb += nxt.eq(pc + 1)
        is_loop = op == OPC["LOOP"]
        with m.If(is_loop & ~on):
            m.d.comb += nxt.eq(pc + 1 + f["body"])
        with m.If(done & commit & is_loop):
            m.d.sync += [in_loop.eq(1), l_start.eq(pc + 1), l_end.eq(pc + f["body"]),
                         l_left.eq(f["count"] - 1), xstride.eq(f["xstride"]),
                         ostride.eq(f["ostride"]), xoff.eq(0), ooff.eq(0)]
        halt_now = done & commit & (op == OPC["HALT"])
        with m.If(done & in_loop & (pc == l_end) & ~halt_now):
            with m.If(l_left != 0):
                m.d.comb += nxt.eq(l_start)
                m.d.sync += [l_left.eq(l_left - 1), xoff.eq(xoff + xstride),
                             ooff.eq(ooff + ostride)]
            with m.Else():
                m.d.sync += in_loop.eq(0)

        # fetch: the read port always reads the instruction after the current one, as if it
        # completed this cycle (``fetch`` equals ``nxt`` then; a halt or an error stops the
        # Sequencer whatever was read); until it completes, the current word is held
        fetch = Signal(range(depth + 256))
        m.d.comb += fetch.eq(Mux(in_loop & (pc == l_end) & (l_left != 0), l_start,
                                 Mux(is_loop & ~on, pc + 1 + f["body"], pc + 1)))
        m.d.comb += rd.addr.eq(Mux(self.busy, fetch, 0))
        with m.If(done):
            m.d.sync += [pc.eq(nxt), held.eq(0)]
        with m.Elif(self.busy):
            m.d.sync += [held.eq(1), held_word.eq(word)]

        # run control and counters
        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
            with m.If(done):
                m.d.sync += [self.executed.eq(self.executed + on),
                             self.predicated_off.eq(self.predicated_off + ~on)]
            # cycles beyond the model: a uop not taken, a probe not taken, a value not there
            stall = commit & Mux(is_uop, ~self.uop.ready, (op == OPC["SETP"]) & Mux(
                probing, ~self.value.valid, ~self.probe.ready))
            with m.If(stall):
                m.d.sync += self.stalls.eq(self.stalls + 1)
            with m.If(illegal):
                m.d.sync += [self.busy.eq(0), self.error.eq(1), self.halted.eq(1),
                             self.error_pc.eq(pc)]
            with m.Elif(done & (nxt >= depth) & ~halt_now):  # ran off the program's end
                m.d.sync += [self.busy.eq(0), self.error.eq(1), self.halted.eq(1),
                             self.error_pc.eq(nxt)]
            with m.Elif(halt_now):
                m.d.sync += [self.busy.eq(0), self.halted.eq(1)]
        with m.Elif(self.start):
            m.d.sync += [self.busy.eq(1), self.halted.eq(0), self.error.eq(0), pc.eq(0),
                         in_loop.eq(0), probing.eq(0), held.eq(0), self.cycles.eq(0),
                         self.executed.eq(0), self.predicated_off.eq(0), self.stalls.eq(0)]
        m.d.comb += pf.clear.eq(~self.busy & self.start)
        return m

    def _commit(self, m, on, legal):
        """The one qualifier of every state write of the current instruction."""
        commit = Signal()
        m.d.comb += commit.eq(self.busy & on & legal)
        return commit

    def _illegal(self, m, f, on, pc, in_loop, xo, oo):
        """Static illegality of the word, LOOP's structural checks, and when the instruction
        executes, its (effective) addresses and channel."""
        p = self._p
        lanes, low = p["lanes"], (p["lanes"] - 1).bit_length()
        op = f["op"]

        def aligned(a):
            return (a[:low] == 0) if low else Const(1)

        def block_ok(a, beats, depth):  # a + beats * lanes <= depth, counted in blocks
            return aligned(a) & ((a >> low) + beats <= depth // lanes)

        static = Signal()
        known = Cat(*[op == c for c in OPC.values()]).any()
        writes_p = (op == OPC["SETP"]) | (op == OPC["PAND"]) | (op == OPC["POR"]) | \
            (op == OPC["PNOT"])
        m.d.comb += static.eq(
            ~known | (f["reserved"] != 0) | (writes_p & (f["pd"] == 0))
            | ((op == OPC["SETP"]) & ((f["cmp"] > 5) | (f["src"] > 5) | (f["sbeats"] == 0)))
            | ((op == OPC["DOT"]) & (f["dbeats"] == 0))
            | ((op == OPC["LOOP"]) & ((f["count"] == 0) | (f["body"] == 0))))
        loop_bad = Signal()
        m.d.comb += loop_bad.eq((op == OPC["LOOP"]) &
                                (in_loop | (pc + f["body"] >= p["prog_depth"])))
        xa = Signal(19)
        sa = Signal(19)
        oa = Signal(19)
        m.d.comb += [xa.eq(f["xaddr"] + Mux(f["xi"], xo, 0)),
                     oa.eq(f["oaddr"] + Mux(f["oi"], oo, 0)),
                     sa.eq(f["addr"] + Mux(f["ai"], xo, 0))]
        dyn = Signal()
        src = f["src"]
        with m.Switch(op):
            with m.Case(OPC["LDB"]):
                m.d.comb += dyn.eq(f["ch"] >= p["channels"])
            with m.Case(OPC["REQ"]):
                m.d.comb += dyn.eq((f["ch"] >= p["channels"]) | (oa >= p["x_depth"]))
            with m.Case(OPC["DOT"]):
                m.d.comb += dyn.eq(~block_ok(xa, f["dbeats"], p["x_depth"]) |
                                   ~block_ok(f["waddr"], f["dbeats"], p["w_depth"]))
            with m.Case(OPC["SETP"]):
                with m.Switch(src):
                    with m.Case(0):
                        m.d.comb += dyn.eq(f["addr"] >= p["w_depth"])
                    with m.Case(1):
                        m.d.comb += dyn.eq(sa >= p["x_depth"])
                    with m.Case(2, 3, 4):
                        m.d.comb += dyn.eq(~block_ok(sa, f["sbeats"], p["x_depth"]))
                    with m.Case(5):
                        m.d.comb += dyn.eq(~block_ok(f["addr"], f["sbeats"], p["w_depth"]))
        illegal = Signal()
        m.d.comb += illegal.eq(self.busy & (static | loop_bad | (on & dyn)))
        return illegal


def _fields(m, word):
    """Every operand field of ``word`` as a named signal (golden.isa.FIELDS)."""
    f = {}
    for name, lsb, width in COMMON:
        f[name] = word[lsb:lsb + width]
    rename = {("DOT", "beats"): "dbeats", ("SETP", "beats"): "sbeats"}
    for op, fields in FIELDS.items():
        for name, lsb, width in fields:
            key = rename.get((op, name), name)
            if key not in f:
                sig = Signal(signed(width) if name == "imm" else width, name=f"f_{key}")
                m.d.comb += sig.eq(word[lsb:lsb + width])
                f[key] = sig
    reserved = Signal(WORD, name="f_reserved")
    cases = {}
    for op, fields in FIELDS.items():
        mask = 0
        for _, lsb, width in fields:
            mask |= ((1 << width) - 1) << lsb
        cases[OPC[op]] = ((1 << 40) - 1) & ~mask
    with m.Switch(f["op"]):
        for code, mask in cases.items():
            with m.Case(code):
                m.d.comb += reserved.eq(word & mask)
    f["reserved"] = reserved
    return f


def _compare(m, cmp, a, imm):
    """``a cmp imm`` for cmp 0..5 = EQ, NE, LT, LE, GT, GE (signed)."""
    r = Signal()
    with m.Switch(cmp):
        for code, expr in enumerate((a == imm, a != imm, a < imm, a <= imm, a > imm,
                                     a >= imm)):
            with m.Case(code):
                m.d.comb += r.eq(expr)
    return r
