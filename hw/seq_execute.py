"""The Sequencer's execute stage: the instruction register, gating, issue and predicate writes.

``Compare`` is SETP's comparison; ``NextInsn`` is what the fetch stage hands on, ``Forward``
the predicates as the current instruction leaves them (for the fetch stage).
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from sparq.spec import isa
from sparq.spec import params as spec_params

from .encodings import ZP_BITS, Cmp, Op
from .seq_decode import BODY_SPAN, EADDR_BITS, N_PRED, WORD, instruction_layout, writes_pred
from .seq_loop import LoopCommand
from .seq_nest import NestCommand
from .seq_run import Control, Status

VALUE_BITS = 16  # a SETP's representative value, from the datapath
IMM_BITS = isa.field_width("imm", "SETP")


def window_layout():
    """SETG's window (``spec.isa.FIELDS["SETG"]``), as the Sequencer keeps it and passes it
    on with each uop of a convolution machine; all zero (``ih`` 0: every tap of a window DOT
    dropped) when a program starts."""
    return data.StructLayout({name: width for name, _, width in isa.FIELDS["SETG"]})


def uop_layout(prog_depth=512, conv=False):
    """A uop: its kind (``spec.isa.UopKind``), operands with effective addresses (as wide as
    their fields in ``spec.isa.FIELDS``), the activation zero point (``zp``, SETL's: what a
    DOT subtracts), and the pc of the instruction that issued it (for the datapath's
    errors). A convolution machine's (``conv``) also has the lane banks' accumulator numbers,
    ``win`` (a window DOT) with the loop indices of levels 0 and 1 (``i0``, ``i1``) and the
    window (``window_layout``), and the REQ's rounding (``round``, SETL's); its ``ch`` and
    ``waddr`` take the loop offsets (``ci``, ``wi``)."""
    w = isa.field_width
    extra = {"win": 1, "i0": w("count", "LOOP"), "i1": w("count", "LOOP"),
             "window": window_layout(), "round": 1} if conv else {}
    return data.StructLayout({
        "kind": (len(isa.UOP_OPS) - 1).bit_length(),
        "acc": range(isa.N_ACC + (isa.N_BANKS if conv else 0)),
        "ch": w("ch", "LDB"), "xaddr": w("xaddr", "DOT"), "waddr": w("waddr", "DOT"),
        "beats": w("beats", "DOT"), "oaddr": w("oaddr", "REQ"), "zp": signed(ZP_BITS),
        "pc": range(prog_depth), **extra})


def probe_layout():
    """A SETP's probe: its source (``spec.isa.Src``), effective address and beats, and the
    activation zero point (``zp``) its block sources compare with."""
    w = isa.field_width
    return data.StructLayout({"src": w("src", "SETP"), "addr": w("addr", "SETP"),
                              "beats": w("beats", "SETP"), "zp": signed(ZP_BITS)})


class NextInsn(wiring.Signature):
    """From the fetch stage (``Out``): the next instruction's ``word``, address (``pc``), its
    class (``uop``, ``setp``: stored beside the word, ``predecoded_layout``), whether
    it ends a loop's body (``at_end``) and executes (``on``), its effective addresses
    (``xaddr``, ``oaddr``, ``saddr``: DOT's or REQ's, REQ's output, SETP's) and legality
    (``dyn``: an address out of range; ``static``), all with the state as it will be after
    the current instruction. To it (``In``): ``take``, the execute stage takes them. On a
    convolution machine (``conv``) also the effective weight address and channel
    (``waddr``, ``ch``), the loop indices of levels 0 and 1 (``i0``, ``i1``) and
    ``nest_bad`` (a LOOP the nest refuses, executed or not), and for a LOOP its body's last
    address (``last``) and whether the innermost level's body ends there too (``shared``),
    which the loop nest takes when the LOOP begins (``seq_nest.NestCommand``)."""

    def __init__(self, prog_depth, conv=False):
        w = isa.field_width
        extra = {"waddr": Out(w("waddr", "DOT")), "ch": Out(w("ch", "LDB")),
                 "i0": Out(w("count", "LOOP")), "i1": Out(w("count", "LOOP")),
                 "nest_bad": Out(1), "last": Out(range(prog_depth)),
                 "shared": Out(1)} if conv else {}
        super().__init__({
            "word": Out(WORD), "pc": Out(range(prog_depth + BODY_SPAN)),
            **{k: Out(1) for k in ("uop", "setp", "at_end", "on", "dyn", "static")},
            **{k: Out(EADDR_BITS) for k in ("xaddr", "oaddr", "saddr")}, "take": In(1),
            **extra})


class Forward(wiring.Signature):
    """From the execute stage (``Out``): the predicates after the current instruction
    (``preds``; all zero but p0 when a program starts), and the same as ``base`` (before its
    write) with the write (``we``, ``addr``, ``data``), so that a reader of one predicate can
    choose the written value last (``seq_fetch``)."""

    def __init__(self):
        super().__init__({"preds": Out(N_PRED), "base": Out(N_PRED), "we": Out(1),
                          "addr": Out(range(N_PRED)), "data": Out(1)})


class Compare(wiring.Component):
    """``r = a cmp imm`` (signed) for ``cmp`` one of ``Cmp`` (EQ, NE, LT, LE, GT, GE), from
    one less-than and one equality; 0 for a code that is none (comb).

    Bit-exact reference: ``golden.sequencer._compare``.
    """

    def __init__(self, *, a_bits=VALUE_BITS, imm_bits=IMM_BITS):
        self._p = dict(a_bits=spec_params.int_in("a_bits", a_bits, 2, 64),
                       imm_bits=spec_params.int_in("imm_bits", imm_bits, 2, 64))
        super().__init__({"cmp": In(Cmp), "a": In(signed(a_bits)), "imm": In(signed(imm_bits)),
                          "r": Out(1)})

    @property
    def params(self):
        return dict(self._p)

    def elaborate(self, platform):
        m = Module()
        lt, eq = Signal(), Signal()
        m.d.comb += [lt.eq(self.a < self.imm), eq.eq(self.a == self.imm)]
        with m.Switch(self.cmp):
            for code, expr in ((Cmp.EQ, eq), (Cmp.NE, ~eq), (Cmp.LT, lt), (Cmp.LE, lt | eq),
                               (Cmp.GT, ~(lt | eq)), (Cmp.GE, ~lt)):
                with m.Case(code):
                    m.d.comb += self.r.eq(expr)
        return m


class Execute(wiring.Component):
    """The execute stage (the machine's ``prog_depth``): the instruction register and what the
    fetch stage computed for it, loaded when the fetch stage hands an instruction on
    (``next.take``: a start's ``go``, or the current instruction done).

    ============= ===== ===================================================================
    ctl           In    ``seq_run.Control``
    abort         In    the datapath's error: nothing more issued or written this cycle
    hold          In    the datapath's uop buffer is full: the current instruction waits
                        (it does not complete, writes nothing and raises no error; the
                        cycle is a stall), as if its uop, or the one before, were not taken
    next          In    ``NextInsn``: the instruction to take
    preds         In    the predicate file's values (bit k = p[k])
    uop, probe    Out   streams of ``uop_layout(prog_depth)``, ``probe_layout()``
    value         In    stream, ``signed(VALUE_BITS)``: a probe's value
    we, waddr,    Out   the predicate file's write (``we`` only when the instruction is done)
    wdata
    fwd           Out   ``Forward``: the predicates after the current instruction
    loop          Out   ``seq_loop.LoopCommand``
    status        Out   ``seq_run.Status``; ``status.on`` and ``status.done`` as below
    legal         Out   the current instruction is legal (``~status.illegal``)
    on_from_preds Out   its predicate read from ``preds`` (``on`` is a register and equals
                        this while an instruction executes: proved in tests/test_formal.py)
    ============= ===== ===================================================================

    Gating: the instruction executes when ``p[pred] != neg`` (``on``, registered when it is
    taken, from the forwarded predicates). Every state write (``we``, ``loop.begin``,
    ``uop.valid``, ``probe.valid``, ``value.ready``) is qualified by ``commit = busy & on &
    legal`` (``_commit``). A uop completes when taken; a SETP sends its probe, then compares
    the value in the cycle it arrives into a register, and writes the predicate the cycle
    after (three cycles with an always-ready datapath); anything else completes in its cycle.

    The activation zero point (``zp``, on every uop and probe) is a register here: SETL
    writes it (committed, in its one cycle), a start resets it to ``x_zero_point``.
    """

    def __init__(self, **machine):
        self._p = spec_params.machine(**machine)
        depth, conv = self._p["prog_depth"], self._p["conv"]
        super().__init__({
            "ctl": In(Control()), "abort": In(1), "hold": In(1),
            "next": In(NextInsn(depth, conv=conv)),
            "preds": In(N_PRED), "uop": Out(stream.Signature(uop_layout(depth, conv=conv))),
            "probe": Out(stream.Signature(probe_layout())),
            "value": In(stream.Signature(signed(VALUE_BITS))),
            "we": Out(1), "waddr": Out(range(N_PRED)), "wdata": Out(1), "fwd": Out(Forward()),
            "loop": Out(NestCommand(depth) if conv else LoopCommand(depth)),
            "status": Out(Status(depth)), "legal": Out(1),
            "on_from_preds": Out(1)})

    @property
    def params(self):
        return dict(self._p)

    def elaborate(self, platform):
        m = Module()
        ctl, nx, st = self.ctl, self.next, self.status
        ev = Signal()  # the execute stage holds an instruction
        m.d.comb += ev.eq(ctl.busy & ~ctl.prime)
        ir, epc = Signal(WORD), Signal(range(self._p["prog_depth"]))
        e_static, e_dyn, e_at_end, e_on = Signal(), Signal(), Signal(), Signal()
        is_uop, setp = Signal(name="e_uop"), Signal(name="e_setp")  # (op's class, with ir)
        exa, eoa, esa = (Signal(EADDR_BITS, name=f"e{k}addr") for k in "xos")
        with m.If(nx.take):
            m.d.sync += [ir.eq(nx.word), epc.eq(nx.pc), e_at_end.eq(nx.at_end), e_on.eq(nx.on),
                         Cat(exa, eoa, esa, e_dyn).eq(Cat(nx.xaddr, nx.oaddr, nx.saddr, nx.dyn)),
                         e_static.eq(nx.static), is_uop.eq(nx.uop), setp.eq(nx.setp)]
        f = data.View(instruction_layout(), ir)
        op = f.op
        # ``on`` is registered when the instruction is taken (``e_on``), from the predicates as
        # the instruction before leaves them (forwarded), so that no predicate selection sits
        # before the handshakes it qualifies
        on = st.on
        m.d.comb += [on.eq(e_on),
                     self.on_from_preds.eq(self.preds.bit_select(f.pred, 1) ^ f.neg)]
        is_loop = op == Op.LOOP
        conv = self._p["conv"]
        ext = self._conv_registers(m) if conv else None
        nest_bad = ext["nest_bad"] if conv else is_loop & self.loop.in_loop
        held = Signal()  # (the cycle waits for the datapath's uop buffer)
        m.d.comb += held.eq(ev & self.hold)
        bad = Signal(name="e_bad")  # illegal, when it may run
        m.d.comb += bad.eq(e_static | nest_bad | (on & e_dyn))
        m.d.comb += [st.illegal.eq(ev & ~self.hold & bad),
                     self.legal.eq(~st.illegal)]
        commit = self._commit(m, ev & on & ~self.abort & ~self.hold, self.legal)
        zp = Signal(signed(ZP_BITS), init=self._p["x_zero_point"], name="x_zp")
        with m.If(commit & (op == Op.SETL)):
            m.d.sync += zp.eq(f.in_zp)
        with m.Elif(self.ctl.start):
            m.d.sync += zp.eq(self._p["x_zero_point"])
        m.d.comb += [self.uop.payload.zp.eq(zp), self.probe.payload.zp.eq(zp)]
        probing, compared = self._issue(m, f, commit, (is_uop, setp), (exa, eoa, esa, epc),
                                        bad)
        if conv:
            self._conv_state(m, f, commit, ext)
        m.d.comb += nx.take.eq(ctl.go | (ev & st.done))
        self._predicates(m, f, commit, compared)
        lc = self.loop
        m.d.comb += [lc.begin.eq(commit & is_loop), lc.at_end.eq(e_at_end), lc.pc.eq(epc),
                     lc.body.eq(f.body), lc.count.eq(f.count), lc.xstride.eq(f.xstride),
                     lc.ostride.eq(f.ostride), lc.advance.eq(ev & st.done)]
        # cycles beyond the model: a uop not taken, a probe not taken, a value not there
        m.d.comb += [
            st.halt.eq(st.done & commit & (op == Op.HALT)), st.pc.eq(epc),
            st.stall.eq(held | commit & Mux(is_uop, ~self.uop.ready, setp & Mux(
                probing, ~self.value.valid, ~self.probe.ready)))]
        return m

    def _conv_registers(self, m):
        """A convolution machine's: what the fetch stage computed of the instruction beside
        its word (effective weight address and channel, loop indices, ``nest_bad``, a LOOP's
        ``last`` and ``shared``), taken with it, and for the loop nest ``loop_on`` (a LOOP
        predicated on: its view for the fetch stage does not wait for the legality; clear
        while idle, so that a start's view is the reset state) and ``more`` (its count is
        above 1, a register rather than a comparison on the way to the next address)."""
        nx = self.next
        regs = {k: Signal.like(getattr(nx, k), name=f"e_{k}")
                for k in ("waddr", "ch", "i0", "i1", "nest_bad", "last", "shared")}
        regs["loop_on"], regs["more"] = Signal(name="e_loop_on"), Signal(name="e_more")
        v = data.View(instruction_layout(), nx.word)
        with m.If(nx.take):
            m.d.sync += [r.eq(getattr(nx, k)) for k, r in regs.items()
                         if k not in ("loop_on", "more")]
            m.d.sync += [regs["loop_on"].eq(nx.on & (v.op == Op.LOOP)),
                         regs["more"].eq(v.count > 1)]
        with m.Elif(~self.ctl.busy):
            m.d.sync += regs["loop_on"].eq(0)
        return regs

    def _conv_state(self, m, f, commit, regs):
        """A convolution machine's uop fields (``uop_layout``), the window (SETG) and the
        rounding (SETL), both reset when a program starts, and STRD's command to the nest."""
        u, lc, op = self.uop.payload, self.loop, f.op
        window = Signal(window_layout(), name="window")
        rnd = Signal(name="x_round")
        with m.If(commit & (op == Op.SETG)):
            m.d.sync += [window[k].eq(getattr(f, k)) for k, _ in window.shape()]
        with m.Elif(self.ctl.start):
            m.d.sync += window.eq(0)
        with m.If(commit & (op == Op.SETL)):
            m.d.sync += rnd.eq(f.round)
        with m.Elif(self.ctl.start):
            m.d.sync += rnd.eq(0)
        m.d.comb += [u.waddr.eq(regs["waddr"]), u.ch.eq(regs["ch"]), u.i0.eq(regs["i0"]),
                     u.i1.eq(regs["i1"]), u.win.eq(f.win), u.window.eq(window),
                     u.round.eq(rnd),
                     lc.strd.eq(commit & (op == Op.STRD)), lc.level.eq(f.level),
                     lc.kind.eq(f.kind), lc.stride.eq(f.stride), lc.loop_on.eq(regs["loop_on"]),
                     lc.more.eq(regs["more"]), lc.last.eq(regs["last"]),
                     lc.shared.eq(regs["shared"])]

    def _commit(self, m, on, legal):
        """The one qualifier of every state write of the current instruction."""
        commit = Signal()
        m.d.comb += commit.eq(self.ctl.busy & on & legal)
        return commit

    def _issue(self, m, f, commit, classes, regs, bad):
        """The uop, probe and value handshakes and ``status.done``; returns ``probing`` (a
        SETP's probe was sent, its value is awaited) and ``compared`` (the value arrived and
        its comparison is registered). ``classes``: the instruction is a uop, a SETP
        (registers); ``bad``: it is illegal (when it may run: ``status.illegal``)."""
        exa, eoa, esa, epc = regs
        is_uop, setp = classes
        op, u, q, st = f.op, self.uop.payload, self.probe.payload, self.status
        probing = Signal()  # SETP: probe sent, waiting for the value
        compared = Signal()  # SETP: the value arrived and its comparison is registered
        m.d.comb += [
            self.uop.valid.eq(commit & is_uop),
            u.kind.eq(op.as_value() - Op.CLR.value),  # spec.isa.UopKind: the opcode less CLR's
            u.acc.eq(f.acc), u.xaddr.eq(exa),
            u.beats.eq(Mux(op == Op.DOT, f.dbeats, 0)), u.oaddr.eq(eoa), u.pc.eq(epc),
            self.probe.valid.eq(commit & setp & ~probing),
            q.src.eq(f.src), q.addr.eq(esa), q.beats.eq(f.sbeats),
            self.value.ready.eq(commit & setp & compared),
        ]
        if not self._p["conv"]:  # (a convolution machine's take the loop offsets)
            m.d.comb += [u.ch.eq(f.ch), u.waddr.eq(f.waddr)]
        # done: a start's first cycle (prime); else, not while the uop buffer holds the
        # cycle, a legal instruction that is off, or on and its handshake made (a uop taken,
        # a SETP's comparison registered), or neither; from registers and the two ready
        # signals, with no opcode decoding (its class comes registered)
        m.d.comb += st.done.eq(self.ctl.prime | (
            ~self.hold & self.ctl.busy & ~bad
            & (~st.on | Mux(is_uop, self.uop.ready, ~setp | compared))))
        with m.If(commit & setp & probing & self.value.valid & ~compared):
            m.d.sync += compared.eq(1)  # (cleared when the SETP is done, the cycle after)
        with m.If(self.probe.valid & self.probe.ready):
            m.d.sync += probing.eq(1)
        with m.If(st.done):
            m.d.sync += [probing.eq(0), compared.eq(0)]
        # a start clears them while nothing executes (``ev`` low: exclusive with a start),
        # written as the choice after ``ev`` so that it is the reset logic it always was
        with m.If(self.ctl.busy & ~self.ctl.prime):
            pass
        with m.Elif(self.ctl.start):
            m.d.sync += [probing.eq(0), compared.eq(0)]
        return probing, compared

    def _predicates(self, m, f, commit, compared):
        """The predicate write (a SETP's comparison is registered, ``cmp_r``: the value is
        compared in the cycle it arrives and written the cycle after, it stays valid until
        taken, so that the comparison's carry chain feeds a flip-flop, not the next program
        address) and the forwarded predicates (``fwd``)."""
        op, fwd, go = f.op, self.fwd, self.ctl.go
        m.submodules.compare = cmp = Compare()
        cmp_r = Signal()
        m.d.comb += [cmp.cmp.eq(f.cmp), cmp.a.eq(self.value.payload), cmp.imm.eq(f.imm)]
        with m.If(~compared):
            m.d.sync += cmp_r.eq(cmp.r)
        writes_p = writes_pred(op)
        pa, pb = self.preds.bit_select(f.pa, 1), self.preds.bit_select(f.pb, 1)
        m.d.comb += [self.waddr.eq(f.pd), self.we.eq(commit & self.status.done & writes_p)]
        with m.Switch(op):
            with m.Case(Op.SETP):
                m.d.comb += self.wdata.eq(cmp_r)
            with m.Case(Op.PAND):
                m.d.comb += self.wdata.eq(pa & pb)
            with m.Case(Op.POR):
                m.d.comb += self.wdata.eq(pa | pb)
            with m.Default():
                m.d.comb += self.wdata.eq(~pa)
        # the predicates once the current instruction completes (p0 alone set at a start); p0
        # is never written: an instruction writing it is illegal, and the file ignores it
        m.d.comb += [fwd.base.eq(Mux(go, 1, self.preds)),
                     fwd.we.eq(~go & commit & writes_p & (f.pd != 0)),
                     fwd.addr.eq(f.pd), fwd.data.eq(self.wdata), fwd.preds.eq(fwd.base)]
        with m.If(fwd.we):
            m.d.comb += fwd.preds.bit_select(f.pd, 1).eq(self.wdata)
