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

Timing with an always-ready datapath (``golden.sequencer`` cycle model): one instruction per
cycle, executed or not; an executed SETP three (probe, value, its comparison registered);
loop jumps are free. Any extra cycle waiting on a stream is counted in ``stalls``, so
``cycles - stalls`` equals the model. Illegal instructions (static or, when executed, an
address out of range) set ``error`` and halt in that cycle with no state written;
``error_pc`` names the instruction. ``abort`` (the datapath's error, issue 22) halts the
Sequencer in that cycle with nothing more issued or written (``error`` stays low: the datapath
reports its own); each uop carries the ``pc`` of the instruction that issued it.

Pipeline (for the clock; the timing above is unchanged):

- *fetch* (``fetch_ports=1``): the program memory's read port shows the next instruction
  (``fpc``). In the cycle the current instruction completes, the fetch stage decides that
  instruction's successor (the next word, the loop's start at the loop's end, or past the
  body of a predicated-off LOOP) with the state as it will be after the current
  instruction (its predicate write, its loop step: ``n_*``, forwarded), starts reading it,
  and hands the word on with its effective addresses and legality already computed;
- *decode* (``fetch_ports=2``, instead): the next instruction's word waits in a register,
  so that the block RAM's slow output feeds nothing but registers; two read ports read
  both of its possible successors (the next word in sequence, and its skip target in case
  it is a LOOP that turns out to be off), and everything the execute stage takes is
  computed from registers for each way the current instruction may end, the choice last;
- *execute*: the instruction register; it issues, waits on the datapath and completes.

Each word is stored with the checks that need no machine state (``_predecode``, when the word
is loaded): what is left for the fetch stage is one comparison per activation address. The
read port shows word 0 while the Sequencer is idle; after a write of word 0 (or a halt) it
needs a cycle to show it, and a start then waits one cycle more. The waits of a start are
``prime`` (not counted): none with ``fetch_ports=1`` and one with ``fetch_ports=2`` when the
word is there, else one more. The program memory is written only while idle, so what a read
of a word being written returns does not matter (``no_rw_check``: no emulation logic).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sparq.spec import params as spec_params
from sparq.spec.isa import COMMON, FIELDS, OPS, Cmp, Src

N_PRED = 8
WORD = 48
OPC = OPS
UOP_KIND = dict(CLR=0, LDB=1, DOT=2, REQ=3)  # uop.kind


def uop_layout(prog_depth=512):
    """A uop: its kind (``spec.isa.UopKind``), operands with effective addresses, and the
    pc of the instruction that issued it (for the datapath's errors)."""
    return data.StructLayout({"kind": 2, "acc": 2, "ch": 8, "xaddr": 10, "waddr": 14,
                              "beats": 4, "oaddr": 10, "pc": range(prog_depth)})


def probe_layout():
    return data.StructLayout({"src": 3, "addr": 14, "beats": 4})


class PredicateFile(wiring.Component):
    """``n`` one-bit predicates; ``p0`` reads as 1 and is never written.

    ``values`` shows them all (bit k = p[k]). A write (``we``, ``waddr``, ``wdata``) lands at
    the next clock edge; ``clear`` (priority over a write) resets p1..p(n-1) to 0.
    """

    def __init__(self, n=N_PRED):
        self.n = spec_params.int_in("n", n, 2, 64)
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
    ``spec.params.machine`` (the golden twin is ``golden.sequencer`` with the same values)."""

    def __init__(self, *, fetch_ports=1, **params):
        self._p = spec_params.machine(**params)
        p = self._p
        self.fetch_ports = spec_params.check_fetch_ports(fetch_ports)
        super().__init__({
            "pload": In(stream.Signature(data.StructLayout(
                {"addr": range(p["prog_depth"]), "word": WORD}))),
            "start": In(1), "abort": In(1),
            "uop": Out(stream.Signature(uop_layout(p["prog_depth"]))),
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
        # the current instruction's predicate read from the predicate file: ``on`` is a
        # register, and equals this while an instruction executes (proved, test_formal)
        self.on_from_preds = Signal(name="on_from_preds")
        # a start waiting for the program's first word (not counted in ``cycles``)
        self.prime = Signal(name="prime")

    @property
    def params(self):
        return dict(self._p)

    def elaborate(self, platform):
        m = Module()
        p = self._p
        depth = p["prog_depth"]
        checks = self._predecoded_layout()
        m.submodules.prog = prog = Memory(shape=WORD + checks.size, depth=depth, init=[],
                                          attrs={"no_rw_check": 1})
        rd, wr = prog.read_port(), prog.write_port()
        m.submodules.pf = pf = PredicateFile(N_PRED)
        m.d.comb += self.preds.eq(pf.values)

        # program loading while idle (not in the cycle of a start); each word is stored with
        # the checks that do not depend on the machine's state (``_predecode``)
        m.d.comb += [self.pload.ready.eq(~self.busy & ~self.start),
                     wr.addr.eq(self.pload.payload.addr),
                     wr.data.eq(Cat(self.pload.payload.word, self._predecode(
                         m, self.pload.payload.word, self.pload.payload.addr))),
                     wr.en.eq(self.pload.valid & self.pload.ready)]
        # the read port shows word 0 while idle, except in the cycle after a write of word 0,
        # after a halt and after reset (``stale``): a start then waits a cycle more
        stale, prime = Signal(init=1), self.prime
        m.d.sync += stale.eq(wr.en & (wr.addr == 0))
        idle_start = Signal()
        m.d.comb += idle_start.eq(~self.busy & self.start)
        go = Signal()  # the execute stage takes the program's first instruction
        fill = Signal()  # (fetch_ports=2) the decode stage takes word 0 from the read port
        p_fill, p_go = Signal(), Signal()  # waits of a start, for the word and for the stage
        m.d.sync += [p_fill.eq(0), p_go.eq(0)]
        if self.fetch_ports == 2:
            m.d.comb += [fill.eq((idle_start & ~stale) | p_fill), go.eq(p_go),
                         prime.eq(p_fill | p_go)]
            with m.If(fill):
                m.d.sync += p_go.eq(1)
        else:
            m.d.comb += [go.eq((idle_start & ~stale) | p_go), prime.eq(p_go)]
        with m.If(idle_start):
            m.d.sync += (p_fill if self.fetch_ports == 2 else p_go).eq(stale)
        ev = Signal()  # the execute stage holds an instruction
        m.d.comb += ev.eq(self.busy & ~prime)
        adv = Signal()  # the fetch stage hands its word on

        # execute stage: the instruction register and what the fetch stage computed for it
        ir, epc = Signal(WORD), Signal(range(depth))
        e_static, e_dyn, e_at_end = Signal(), Signal(), Signal()
        exa, eoa, esa = Signal(19), Signal(19), Signal(19)
        f = _fields(m, ir, "e")
        in_loop, l_start, l_end = Signal(), Signal(range(depth)), Signal(range(depth))
        l_left = Signal(8)  # iterations left after the current one
        xstride, ostride = Signal(10), Signal(10)
        xoff, ooff = Signal(18), Signal(18)
        # the offsets of the next iteration, kept ready so that no adder sits between the
        # loop step and the next instruction's addresses
        xoff_next, ooff_next = Signal(18), Signal(18)
        probing = Signal()  # SETP: probe sent, waiting for the value
        compared = Signal()  # SETP: the value arrived and its comparison is in ``cmp_r``
        cmp_r = Signal()

        on, legal, done = self.on, self.legal, self.done
        # ``on`` is registered when the instruction is handed on (``e_on``), from the
        # predicates as the instruction before leaves them (forwarded), so that no predicate
        # selection sits before the handshakes it qualifies
        e_on = Signal()
        m.d.comb += [on.eq(e_on),
                     self.on_from_preds.eq(pf.values.bit_select(f["pred"], 1) ^ f["neg"])]
        op = f["op"]
        is_loop = op == OPC["LOOP"]
        illegal = Signal()
        m.d.comb += [illegal.eq(ev & (e_static | (is_loop & in_loop) | (on & e_dyn))),
                     legal.eq(~illegal)]
        commit = self._commit(m, ev & on & ~self.abort, legal)

        # completion of the current instruction (it leaves this cycle): done
        is_uop = Signal()
        m.d.comb += is_uop.eq((op == OPC["CLR"]) | (op == OPC["LDB"]) | (op == OPC["DOT"])
                              | (op == OPC["REQ"]))
        m.d.comb += [
            self.uop.valid.eq(commit & is_uop),
            self.uop.payload.kind.eq(op - OPS["CLR"]),  # spec.isa.UopKind
            self.uop.payload.acc.eq(f["acc"]), self.uop.payload.ch.eq(f["ch"]),
            self.uop.payload.xaddr.eq(exa), self.uop.payload.waddr.eq(f["waddr"]),
            self.uop.payload.beats.eq(Mux(op == OPC["DOT"], f["dbeats"], 0)),
            self.uop.payload.oaddr.eq(eoa), self.uop.payload.pc.eq(epc),
            self.probe.valid.eq(commit & (op == OPC["SETP"]) & ~probing),
            self.probe.payload.src.eq(f["src"]), self.probe.payload.addr.eq(esa),
            self.probe.payload.beats.eq(f["sbeats"]),
            self.value.ready.eq(commit & (op == OPC["SETP"]) & compared),
        ]
        with m.If(prime):
            m.d.comb += done.eq(1)
        with m.Elif(~self.busy | ~legal | ~on):
            m.d.comb += done.eq(self.busy & legal)
        with m.Elif(is_uop):
            m.d.comb += done.eq(self.uop.ready)
        with m.Elif(op == OPC["SETP"]):
            m.d.comb += done.eq(compared)
        with m.Else():
            m.d.comb += done.eq(1)

        m.d.comb += adv.eq(go | (ev & done))

        # predicate writes. A SETP's comparison is registered (``cmp_r``): the value is
        # compared in the cycle it arrives and written the cycle after (it stays valid until
        # taken), so that the comparison's carry chain feeds a flip-flop, not the next
        # program address
        with m.If(~compared):
            m.d.sync += cmp_r.eq(_compare(m, f["cmp"], self.value.payload, f["imm"]))
        with m.If(commit & (op == OPC["SETP"]) & probing & self.value.valid & ~compared):
            m.d.sync += compared.eq(1)  # (cleared when the SETP is done, the cycle after)
        writes_p = _writes_pred(op)
        pa, pb = pf.values.bit_select(f["pa"], 1), pf.values.bit_select(f["pb"], 1)
        m.d.comb += [pf.waddr.eq(f["pd"]), pf.we.eq(commit & done & writes_p),
                     self.pred_we.eq(pf.we)]
        with m.Switch(op):
            with m.Case(OPC["SETP"]):
                m.d.comb += pf.wdata.eq(cmp_r)
            with m.Case(OPC["PAND"]):
                m.d.comb += pf.wdata.eq(pa & pb)
            with m.Case(OPC["POR"]):
                m.d.comb += pf.wdata.eq(pa | pb)
            with m.Default():
                m.d.comb += pf.wdata.eq(~pa)
        with m.If(self.probe.valid & self.probe.ready):
            m.d.sync += probing.eq(1)
        with m.If(done):
            m.d.sync += [probing.eq(0), compared.eq(0)]

        # the state once the current instruction completes (the reset state when a program
        # starts), by case: a start, a LOOP that runs, the end of an iteration with more to
        # go, the end of a loop's last one, anything else. Which case holds depends on whether
        # the current instruction commits, known late in the cycle. ``n_*`` is that state;
        # ``after(fn)`` is ``fn`` of it, with fetch_ports=2 computed for every case and the
        # case chosen last (the decode stage's inputs are all registers then)
        loop_now, step = Signal(), Signal()
        m.d.comb += [loop_now.eq(commit & is_loop), step.eq(e_at_end & (l_left != 0))]
        loop_state = dict(in_loop=in_loop, l_start=l_start, l_end=l_end, l_left=l_left,
                          xstride=xstride, ostride=ostride, xoff=xoff, ooff=ooff,
                          xoff_next=xoff_next, ooff_next=ooff_next)
        no, yes = Const(0, 1), Const(1, 1)
        cases = [
            (go, dict(loop_state, in_loop=no)),
            (loop_now, dict(in_loop=yes, l_start=epc + 1, l_end=epc + f["body"],
                            l_left=f["count"] - 1, xstride=f["xstride"], ostride=f["ostride"],
                            xoff=Const(0, 18), ooff=Const(0, 18), xoff_next=f["xstride"],
                            ooff_next=f["ostride"])),
            (step, dict(loop_state, l_left=l_left - 1, xoff=xoff_next, ooff=ooff_next,
                        xoff_next=xoff_next + xstride, ooff_next=ooff_next + ostride)),
            (e_at_end, dict(loop_state, in_loop=no)),
            (None, loop_state)]

        def by_case(fn, shape, name):
            out = Signal(shape, name=name)
            values = [fn(st) for _, st in cases]  # (outside the conditions: fn may assign)
            for i, ((cond, _), value) in enumerate(zip(cases, values, strict=True)):
                with (m.If(cond) if i == 0 else m.Elif(cond) if cond is not None else m.Else()):
                    m.d.comb += out.eq(value)
            return out

        n = {k: by_case(lambda st, k=k: st[k], s.shape(), f"n_{k}")
             for k, s in loop_state.items()}
        n["preds"] = Signal(N_PRED, name="n_preds")
        p_base, p_we = Signal(N_PRED, name="p_base"), Signal(name="p_we")
        # (p0 is never written: an instruction writing it is illegal, and the file ignores it)
        m.d.comb += [p_base.eq(Mux(go, 1, pf.values)),
                     p_we.eq(~go & commit & writes_p & (f["pd"] != 0)),
                     n["preds"].eq(p_base)]
        with m.If(p_we):
            m.d.comb += n["preds"].bit_select(f["pd"], 1).eq(pf.wdata)
        # the same forwarding for one predicate, with the written value (a SETP's comparison,
        # late) chosen last: see ``_forwarded``
        n["p_fwd"] = (p_we, f["pd"], pf.wdata, p_base)

        def after(fn, shape, name):
            if self.fetch_ports == 2:
                return by_case(fn, shape, name)
            out = Signal(shape, name=name)
            m.d.comb += out.eq(fn(n))
            return out

        # the next instruction's word (``word``, at ``fpc``): the read port's, or with
        # fetch_ports=2 the decode stage's (``_decode_stage``)
        fpc = Signal(range(depth + 256))
        word = Signal(WORD + checks.size)
        w = _fields(m, word[:WORD], "f")
        w_checks = Signal(checks)
        m.d.comb += w_checks.eq(word[WORD:])
        if self.fetch_ports == 2:
            next_on = self._decode_stage(m, prog, rd, (word, w, w_checks), fpc, n, after,
                                         fill=fill, adv=adv)
        else:
            next_on = self._fetch_stage(m, rd, (word, w, w_checks), fpc, n, go=go, adv=adv)
        w_at_end = after(lambda st: st["in_loop"] & (fpc == st["l_end"]), 1, "w_at_end")

        def decoded(st):
            """The next instruction's effective addresses and legality in state ``st``: its
            loop offsets are the loop index times the strides (none outside a loop)."""
            xo = Mux(st["in_loop"], st["xoff"], 0)
            oo = Mux(st["in_loop"], st["ooff"], 0)
            uses_x = w["ai"] & (w["src"] != 0) & (w["src"] != 5)
            xa, oa, sa, bad = Signal(19), Signal(19), Signal(19), Signal()
            m.d.comb += [xa.eq(w["xaddr"] + Mux(w["xi"], xo, 0)),
                         oa.eq(w["oaddr"] + Mux(w["oi"], oo, 0)),
                         sa.eq(w["addr"] + Mux(uses_x, xo, 0)),
                         bad.eq(w_checks.dyn | self._x_range_bad(m, w_checks, xo, oo))]
            return Cat(xa, oa, sa, bad)

        dec = after(decoded, 3 * 19 + 1, "decoded")
        with m.If(adv):
            m.d.sync += [ir.eq(word), epc.eq(fpc), e_at_end.eq(w_at_end), e_on.eq(next_on),
                         Cat(exa, eoa, esa, e_dyn).eq(dec), e_static.eq(w_checks.static)]
        with m.If(ev & done):
            m.d.sync += [s.eq(n[k]) for k, s in loop_state.items()]

        # run control and counters
        halt_now = done & commit & (op == OPC["HALT"])
        with m.If(ev):
            m.d.sync += self.cycles.eq(self.cycles + 1)
            with m.If(done):
                m.d.sync += [self.executed.eq(self.executed + on),
                             self.predicated_off.eq(self.predicated_off + ~on)]
            # cycles beyond the model: a uop not taken, a probe not taken, a value not there
            stall = commit & Mux(is_uop, ~self.uop.ready, (op == OPC["SETP"]) & Mux(
                probing, ~self.value.valid, ~self.probe.ready))
            with m.If(stall):
                m.d.sync += self.stalls.eq(self.stalls + 1)
            with m.If(self.abort):  # the datapath's error: halt, issue nothing more
                m.d.sync += [self.busy.eq(0), self.halted.eq(1), stale.eq(1)]
            with m.Elif(illegal):
                m.d.sync += [self.busy.eq(0), self.error.eq(1), self.halted.eq(1),
                             self.error_pc.eq(epc), stale.eq(1)]
            with m.Elif(done & (fpc >= depth) & ~halt_now):  # ran off the program's end
                m.d.sync += [self.busy.eq(0), self.error.eq(1), self.halted.eq(1),
                             self.error_pc.eq(fpc), stale.eq(1)]
            with m.Elif(halt_now):
                m.d.sync += [self.busy.eq(0), self.halted.eq(1), stale.eq(1)]
        with m.Elif(idle_start):
            m.d.sync += [self.busy.eq(1), self.halted.eq(0), self.error.eq(0),
                         in_loop.eq(0), probing.eq(0), compared.eq(0), self.cycles.eq(0),
                         self.executed.eq(0), self.predicated_off.eq(0), self.stalls.eq(0)]
        m.d.comb += pf.clear.eq(idle_start)
        return m

    def _fetch_stage(self, m, rd, next_word, fpc, n, *, go, adv):
        """fetch_ports=1: the read port shows the next instruction (``word`` at ``fpc``). When
        the current instruction completes (``adv``) the next one's successor is read: the
        next word, the loop's start at the loop's end, or past the body of a LOOP that the
        forwarded predicates ``n["preds"]`` turn off. Returns whether the next instruction
        executes (its predicate, forwarded)."""
        depth = self._p["prog_depth"]
        fpc_reg = Signal(range(depth + 256))
        word, w, w_checks = next_word  # (the word and its fields)
        m.d.comb += [word.eq(rd.data), fpc.eq(Mux(self.busy, fpc_reg, 0))]
        back = Signal()
        m.d.comb += back.eq(n["in_loop"] & (fpc == n["l_end"]) & (n["l_left"] != 0))
        w_on = n["preds"].bit_select(w["pred"], 1) ^ w["neg"]
        succ = Signal(range(depth + 256))
        m.d.comb += succ.eq(Mux(back, n["l_start"],
                                Mux(w_checks.loop & ~w_on, w_checks.skip, fpc + 1)))
        m.d.comb += [rd.addr.eq(Mux(self.busy | go, succ, 0)), rd.en.eq(~self.busy | adv)]
        with m.If(adv):
            m.d.sync += fpc_reg.eq(succ)
        with m.Elif(~self.busy):
            m.d.sync += fpc_reg.eq(0)
        return w_on

    def _forwarded(self, m, n, sel):
        """``n["preds"][sel]`` (the predicates after the current instruction) computed as
        ``wdata if (written and pd == sel) else before[sel]``: the predicate write's value,
        which a SETP's comparison of the value just arrived makes late, drives only the last
        multiplexer instead of the write into the vector and the 8:1 selection after it."""
        we, pd, wdata, base = n["p_fwd"]
        hit = Signal(name="p_fwd_hit")
        m.d.comb += hit.eq(we & (pd == sel))
        return Mux(hit, wdata, base.bit_select(sel, 1))

    def _decode_stage(self, m, prog, rd, next_word, fpc, n, after, *, fill, adv):
        """fetch_ports=2: the next instruction's word waits in a register (``word`` at
        ``fpc``), so that the block RAM's slow output feeds only registers; port A
        (``rd``) shows the word after it in sequence (at ``apc``), port B its skip target.
        When the current instruction completes (``adv``), the register takes port B's word
        if it holds a LOOP that the forwarded predicates ``n["preds"]`` turn off, else port
        A's, and the ports read that word's successors with the state as it will be after
        the register's instruction (``after``). A start first takes word 0 (``fill``).
        Returns whether the register's instruction executes (its predicate, forwarded)."""
        depth = self._p["prog_depth"]
        rd_b = prog.read_port()
        dpc, apc = Signal(range(depth + 256)), Signal(range(depth + 256))
        m.d.comb += fpc.eq(dpc)
        word, d, d_checks = next_word  # (the word and its fields)
        d_on, take_b = Signal(), Signal()
        m.d.comb += [d_on.eq(self._forwarded(m, n, d["pred"]) ^ d["neg"]),
                     take_b.eq(d_checks.loop & ~d_on & ~fill)]
        # both ports' words are registered, with the choice between them (``d_sel``): the late
        # choice then drives a bit, not a word-wide multiplexer
        da, db, d_sel = Signal.like(word), Signal.like(word), Signal()
        m.d.comb += word.eq(Mux(d_sel, db, da))
        ca, cb = (Signal(self._predecoded_layout()) for _ in range(2))
        m.d.comb += [ca.eq(rd.data[WORD:]), cb.eq(rd_b.data[WORD:])]
        # port A's next address: the successor of the word the register takes (at ``apc``,
        # or past the body of an off LOOP), with the state after the register's instruction:
        # a LOOP that runs starts its loop (its body follows it: ``apc`` is the body's
        # first word); one that does not leaves the state alone (a LOOP inside a loop is
        # illegal, so a loop is not active); any other instruction may end a loop's body

        def seq_fn(st):
            at_end = st["in_loop"] & (dpc == st["l_end"])
            left = Mux(at_end, st["l_left"] > 1, st["l_left"] != 0)
            back = (st["in_loop"] & ~(at_end & (st["l_left"] == 0)) & left
                    & (apc == st["l_end"]))
            return Mux(back, st["l_start"], apc + 1)

        seq = after(seq_fn, range(depth + 257), "a_seq")
        tight = Signal()  # a loop of one instruction, run more than once
        m.d.comb += tight.eq((d["body"] == 1) & (d["count"] > 1))
        # the same for either fate of a LOOP in the register, which may depend on a
        # comparison made this cycle: that choice comes last
        a_on, a_off = (Signal(range(depth + 257), name=f"a_{k}") for k in ("on", "off"))
        with m.If(fill):
            m.d.comb += [a_on.eq(1), a_off.eq(1)]
        with m.Elif(~self.busy):  # idle: word 0 at the port
            m.d.comb += [a_on.eq(0), a_off.eq(0)]
        with m.Elif(d_checks.loop):
            m.d.comb += [a_on.eq(Mux(tight, apc, apc + 1)), a_off.eq(d_checks.skip + 1)]
        with m.Else():
            m.d.comb += [a_on.eq(seq), a_off.eq(seq)]
        a_next = Signal(range(depth + 257))
        m.d.comb += a_next.eq(Mux(d_on, a_on, a_off))
        load = Signal()
        m.d.comb += load.eq(fill | adv)
        m.d.comb += [rd.addr.eq(a_next), rd.en.eq((~self.busy & ~fill) | load),
                     rd_b.addr.eq(Mux(take_b, cb.skip, ca.skip)), rd_b.en.eq(load)]
        with m.If(load):
            m.d.sync += [da.eq(rd.data), db.eq(rd_b.data), d_sel.eq(take_b),
                         dpc.eq(Mux(fill, 0, Mux(take_b, d_checks.skip, apc))), apc.eq(a_next)]
        return d_on

    def _commit(self, m, on, legal):
        """The one qualifier of every state write of the current instruction."""
        commit = Signal()
        m.d.comb += commit.eq(self.busy & on & legal)
        return commit

    def _static_bad(self, f):
        """The word alone is illegal: unknown opcode, reserved bits set, p0 written, a SETP
        comparison or source out of range, a DOT, SETP or LOOP that does nothing."""
        op = f["op"]
        known = Cat(*[op == c for c in OPC.values()]).any()
        return (~known | (f["reserved"] != 0) | (_writes_pred(op) & (f["pd"] == 0))
                | ((op == OPC["SETP"]) & ((f["cmp"] > max(Cmp)) | (f["src"] > max(Src)) |
                                          (f["sbeats"] == 0)))
                | ((op == OPC["DOT"]) & (f["dbeats"] == 0))
                | ((op == OPC["LOOP"]) & ((f["count"] == 0) | (f["body"] == 0))))

    def _predecoded_layout(self):
        """What ``_predecode`` stores beside each word: ``loop`` (a LOOP) and ``skip`` (the
        address after its body), ``static`` (illegal in any case),
        ``dyn`` (illegal when executed, whatever the loop), and for an activation address
        that a loop may offset, its kind (``xkind`` 1: one activation, 2: an aligned block),
        its offset (``okind`` 1: the loop's x offset, 2: its output offset), ``xend`` (the
        end of what it reads or writes, at most ``x_depth + 1``) and ``blow`` (its lane)."""
        p = self._p
        return data.StructLayout({"loop": 1, "skip": range(p["prog_depth"] + 257),
                                  "static": 1, "dyn": 1, "xkind": 2, "okind": 2,
                                  "xend": range(p["x_depth"] + 2),
                                  "blow": max(1, (p["lanes"] - 1).bit_length())})

    def _predecode(self, m, word, addr):
        """The checks of ``word`` at program address ``addr`` that need no loop state
        (computed when the word is loaded)."""
        p = self._p
        lanes, low = p["lanes"], (p["lanes"] - 1).bit_length()
        f = _fields(m, word, "l")
        op = f["op"]
        c = Signal(self._predecoded_layout())
        m.d.comb += [c.loop.eq(op == OPC["LOOP"]), c.skip.eq(addr + 1 + f["body"])]
        m.d.comb += c.static.eq(self._static_bad(f) | (
            (op == OPC["LOOP"]) & (addr + f["body"] >= p["prog_depth"])))
        base, extent = Signal(14), Signal(11)  # the activation address's base and extent

        def w_block_bad(a, beats):  # not (a aligned and a + beats * lanes <= w_depth)
            aligned = (a[:low] == 0) if low else Const(1)
            return ~aligned | ((a >> low) + beats > p["w_depth"] // lanes)

        with m.Switch(op):
            with m.Case(OPC["LDB"]):
                m.d.comb += c.dyn.eq(f["ch"] >= p["channels"])
            with m.Case(OPC["REQ"]):
                m.d.comb += [c.dyn.eq(f["ch"] >= p["channels"]), c.xkind.eq(1),
                             c.okind.eq(Mux(f["oi"], 2, 0)), base.eq(f["oaddr"]),
                             extent.eq(1)]
            with m.Case(OPC["DOT"]):
                m.d.comb += [c.dyn.eq(w_block_bad(f["waddr"], f["dbeats"])), c.xkind.eq(2),
                             c.okind.eq(f["xi"]), base.eq(f["xaddr"]),
                             extent.eq(f["dbeats"] * lanes)]
            with m.Case(OPC["SETP"]):
                with m.Switch(f["src"]):
                    with m.Case(0):
                        m.d.comb += c.dyn.eq(f["addr"] >= p["w_depth"])
                    with m.Case(1):
                        m.d.comb += [c.xkind.eq(1), c.okind.eq(f["ai"]), base.eq(f["addr"]),
                                     extent.eq(1)]
                    with m.Case(2, 3, 4):
                        m.d.comb += [c.xkind.eq(2), c.okind.eq(f["ai"]), base.eq(f["addr"]),
                                     extent.eq(f["sbeats"] * lanes)]
                    with m.Case(5):
                        m.d.comb += c.dyn.eq(w_block_bad(f["addr"], f["sbeats"]))
        # a block ends at most at the last whole block, x_depth - slack
        slack = p["x_depth"] % lanes
        end = Signal(15)
        m.d.comb += end.eq(base + extent + Mux(c.xkind == 2, slack, 0))
        m.d.comb += [c.xend.eq(Mux(end > p["x_depth"], p["x_depth"] + 1, end)),
                     c.blow.eq(base[:low] if low else 0)]
        return c

    def _x_range_bad(self, m, c, xo, oo):
        """The loop-offset activation address of checks ``c`` is out of range (or a block's
        is not aligned), with the offsets ``xo``, ``oo`` it will execute with."""
        p = self._p
        low = (p["lanes"] - 1).bit_length()
        offs = (Const(0, 18), xo, oo)
        over = Signal(3)
        m.d.comb += over.eq(Cat(*[c.xend > p["x_depth"] - o for o in offs]))
        bad = over.bit_select(c.okind, 1)
        if low:
            mis = Signal(3)
            m.d.comb += mis.eq(Cat(*[c.blow != (-o)[:low] for o in offs]))
            bad = bad | ((c.xkind == 2) & mis.bit_select(c.okind, 1))
        return (c.xkind != 0) & bad


def _writes_pred(op):
    return (op == OPC["SETP"]) | (op == OPC["PAND"]) | (op == OPC["POR"]) | (op == OPC["PNOT"])


def _fields(m, word, prefix):
    """Every operand field of ``word`` as a named signal (golden.isa.FIELDS)."""
    f = {}
    for name, lsb, width in COMMON:
        sig = Signal(width, name=f"{prefix}_{name}")
        m.d.comb += sig.eq(word[lsb:lsb + width])
        f[name] = sig
    rename = {("DOT", "beats"): "dbeats", ("SETP", "beats"): "sbeats"}
    for op, fields in FIELDS.items():
        for name, lsb, width in fields:
            key = rename.get((op, name), name)
            if key not in f:
                sig = Signal(signed(width) if name == "imm" else width, name=f"{prefix}_{key}")
                m.d.comb += sig.eq(word[lsb:lsb + width])
                f[key] = sig
    reserved = Signal(WORD, name=f"{prefix}_reserved")
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
    """``a cmp imm`` for cmp 0..5 = EQ, NE, LT, LE, GT, GE (signed), from one less-than and
    one equality."""
    lt, eq, r = Signal(), Signal(), Signal()
    m.d.comb += [lt.eq(a < imm), eq.eq(a == imm)]
    with m.Switch(cmp):
        for code, expr in enumerate((eq, ~eq, lt, lt | eq, ~(lt | eq), ~lt)):
            with m.Case(code):
                m.d.comb += r.eq(expr)
    return r
