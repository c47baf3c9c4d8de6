"""The Sequencer's run control: start, the waits of a start, halts and the counters.

``Control`` is what the other parts take from it; ``Status`` what it takes from the execute
stage about the current instruction.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from sparq.spec import params as spec_params

from .seq_decode import BODY_SPAN

COUNTER_BITS = 32


class Control(wiring.Signature):
    """From the run control (``Out``): ``busy`` (a program runs, a start's waits included),
    ``start`` (a start taken while idle, this cycle), ``prime`` (a start waits for the
    program's first word: nothing executes), ``go`` (the execute stage takes the first
    instruction this cycle) and ``fill`` (``fetch_ports=2``: the decode stage takes word 0
    from the read port this cycle); ``fill_busy``: ``fill`` while ``busy`` (a start that
    waited a cycle for the word: a register, where ``fill`` may follow ``start`` late)."""

    def __init__(self):
        super().__init__({k: Out(1) for k in ("busy", "start", "prime", "go", "fill",
                                               "fill_busy")})


class Status(wiring.Signature):
    """From the execute stage (``Out``), about the current instruction: ``done`` (it
    completes this cycle), ``on`` (it is predicated on), ``illegal``, ``halt`` (a HALT that
    completes), ``stall`` (a cycle beyond the model: a uop or probe not taken, a value not
    there) and ``pc`` (its address)."""

    def __init__(self, prog_depth):
        super().__init__({**{k: Out(1) for k in ("done", "on", "illegal", "halt", "stall")},
                          "pc": Out(range(prog_depth))})


class RunControl(wiring.Component):
    """Start, halt and count (``fetch_ports`` and the machine's ``prog_depth``).

    ============== ===== ======================================================================
    start          In    start the program (taken while not ``ctl.busy``)
    abort          In    the datapath's error: halt now (``error`` stays low)
    wrote0         In    word 0 of the program is written this cycle
    fpc            In    the next instruction's address (``range(prog_depth + BODY_SPAN)``)
    status         In    ``Status``: the current instruction
    ctl            Out   ``Control``; ``busy`` is a register
    halted, error  Out   registers; ``error``: an illegal instruction or the program's end
    error_pc       Out   the address of the illegal instruction (or the end)
    cycles         Out   cycles since the start, a start's waits (``prime``) not counted
    executed       Out   instructions completed predicated on / off (``predicated_off``)
    stalls         Out   cycles beyond the model (``golden.sequencer``'s ``cycles``)
    ============== ===== ======================================================================

    The read port shows word 0 while idle, except in the cycle after a write of word 0, after
    a halt and after reset (``stale``): a start then waits a cycle more. ``prime``: none with
    ``fetch_ports=1`` and one with ``fetch_ports=2`` when the word is there, else one more.
    Halts land at the clock edge after the instruction's cycle: ``abort`` first, then an
    illegal instruction, running off the program's end, a HALT.
    """

    def __init__(self, *, fetch_ports=1, **machine):
        self._p = dict(spec_params.machine(**machine),
                       fetch_ports=spec_params.check_fetch_ports(fetch_ports))
        depth = self._p["prog_depth"]
        super().__init__({
            "start": In(1), "abort": In(1), "wrote0": In(1),
            "fpc": In(range(depth + BODY_SPAN)), "status": In(Status(depth)),
            "ctl": Out(Control()), "halted": Out(1), "error": Out(1),
            "error_pc": Out(range(depth + BODY_SPAN)),
            **{k: Out(COUNTER_BITS) for k in ("cycles", "executed", "predicated_off", "stalls")},
        })

    @property
    def params(self):
        return dict(self._p)

    def elaborate(self, platform):
        m = Module()
        ctl, st = self.ctl, self.status
        stale = Signal(init=1)
        m.d.sync += stale.eq(self.wrote0)
        m.d.comb += ctl.start.eq(~ctl.busy & self.start)
        p_fill, p_go = Signal(), Signal()  # waits of a start, for the word and for the stage
        m.d.sync += [p_fill.eq(0), p_go.eq(0)]
        if self._p["fetch_ports"] == 2:
            m.d.comb += [ctl.fill.eq((ctl.start & ~stale) | p_fill), ctl.go.eq(p_go),
                         ctl.prime.eq(p_fill | p_go), ctl.fill_busy.eq(p_fill)]
            with m.If(ctl.fill):
                m.d.sync += p_go.eq(1)
        else:
            m.d.comb += [ctl.go.eq((ctl.start & ~stale) | p_go), ctl.prime.eq(p_go)]
        with m.If(ctl.start):
            m.d.sync += (p_fill if self._p["fetch_ports"] == 2 else p_go).eq(stale)
        ev = Signal()  # the execute stage holds an instruction
        m.d.comb += ev.eq(ctl.busy & ~ctl.prime)

        halt = [ctl.busy.eq(0), self.halted.eq(1), stale.eq(1)]
        with m.If(ev):
            m.d.sync += self.cycles.eq(self.cycles + 1)
            with m.If(st.done):
                m.d.sync += [self.executed.eq(self.executed + st.on),
                             self.predicated_off.eq(self.predicated_off + ~st.on)]
            with m.If(st.stall):
                m.d.sync += self.stalls.eq(self.stalls + 1)
            with m.If(self.abort):  # the datapath's error: halt, issue nothing more
                m.d.sync += halt
            with m.Elif(st.illegal):
                m.d.sync += [*halt, self.error.eq(1), self.error_pc.eq(st.pc)]
            with m.Elif(st.done & (self.fpc >= self._p["prog_depth"]) & ~st.halt):
                m.d.sync += [*halt, self.error.eq(1), self.error_pc.eq(self.fpc)]  # ran off
            with m.Elif(st.halt):
                m.d.sync += halt
        with m.Elif(ctl.start):
            m.d.sync += [ctl.busy.eq(1), self.halted.eq(0), self.error.eq(0),
                         self.cycles.eq(0), self.executed.eq(0), self.predicated_off.eq(0),
                         self.stalls.eq(0)]
        return m

