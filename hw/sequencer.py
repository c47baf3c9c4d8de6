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

Each word is stored with the checks that need no machine state (``seq_decode.Predecoder``, when
the word is loaded): what is left for the fetch stage is one comparison per activation address. The
read port shows word 0 while the Sequencer is idle; after a write of word 0 (or a halt) it
needs a cycle to show it, and a start then waits one cycle more. The waits of a start are
``prime`` (not counted): none with ``fetch_ports=1`` and one with ``fetch_ports=2`` when the
word is there, else one more. The program memory is written only while idle, so what a read
of a word being written returns does not matter (``no_rw_check``: no emulation logic).

Parts (each a ``wiring.Component`` with its ports and timing in its docstring, joined with
``wiring.connect``): ``seq_decode.Predecoder`` (the stored checks), ``seq_run.RunControl``
(start, its waits, halts, counters), ``seq_fetch.Fetch`` (the fetch, or fetch and decode,
stages), ``seq_execute.Execute`` (the execute stage, with ``seq_execute.Compare``, SETP's
comparison), ``seq_loop.LoopUnit`` (the loop registers and the state after the current
instruction, by case) and ``PredicateFile``. Encodings are ``hw.encodings``' enums; widths
come from ``spec.isa``'s field table.
"""

from amaranth.hdl import Cat, Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sparq.spec import params as spec_params

from .seq_decode import BODY_SPAN, N_PRED, WORD, Predecoder, predecoded_layout
from .seq_execute import VALUE_BITS, Execute, probe_layout, uop_layout
from .seq_fetch import Fetch
from .seq_loop import LoopUnit
from .seq_nest import LoopNest
from .seq_run import COUNTER_BITS, RunControl

__all__ = ["N_PRED", "WORD", "PredicateFile", "Sequencer", "probe_layout", "uop_layout"]


class PredicateFile(wiring.Component):
    """``n`` one-bit predicates; ``p0`` reads as 1 and is never written.

    ``values`` shows them all (bit k = p[k]). A write (``we``, ``waddr``, ``wdata``) lands at
    the next clock edge; ``clear`` (priority over a write) resets p1..p(n-1) to 0.
    """

    def __init__(self, *, n=N_PRED):
        self._p = dict(n=spec_params.int_in("n", n, 2, 64))
        super().__init__({"values": Out(n), "we": In(1), "waddr": In(range(n)),
                          "wdata": In(1), "clear": In(1)})

    @property
    def params(self):
        return dict(self._p)

    def elaborate(self, platform):
        m = Module()
        regs = Signal(self._p["n"])  # bit 0 unused: p0 reads as 1
        m.d.comb += self.values.eq(regs | 1)
        with m.If(self.clear):
            m.d.sync += regs.eq(0)
        with m.Elif(self.we & (self.waddr != 0)):
            m.d.sync += regs.bit_select(self.waddr, 1).eq(self.wdata)
        return m


class Sequencer(wiring.Component):
    """Fetch, predicate and issue (see the module docstring); ``params`` as
    ``spec.params.machine`` (the golden twin is ``golden.sequencer`` with the same values).

    ============== ===== =================================================================
    pload          In    stream of ``{addr, word}``: a program word, taken while idle
    start          In    start the program at word 0 (taken while idle)
    abort          In    the datapath's error: halt this cycle, nothing more issued
    hold           In    the datapath's uop buffer is full (``hw.uop_skid``): nothing
                         completes this cycle (a stall)
    uop            Out   stream of ``uop_layout(prog_depth)``
    probe          Out   stream of ``probe_layout()``
    value          In    stream of ``signed(VALUE_BITS)``: the probe's value
    busy           Out   a program runs
    halted, error  Out   the last run halted / halted on an illegal instruction
    error_pc       Out   the illegal instruction's address (``range(prog_depth + 256)``)
    preds          Out   the predicates (bit k = p[k])
    cycles, ...    Out   ``cycles``, ``executed``, ``predicated_off``, ``stalls`` (32 bits)
    ============== ===== =================================================================

    Parts (``wiring.connect``-ed in ``elaborate``): ``Predecoder`` (the checks stored with
    each word), ``RunControl`` (start, halts, counters), ``Fetch`` (the fetch, or fetch and
    decode, stage), ``Execute`` (the execute stage), ``LoopUnit`` (the loop registers) and
    ``PredicateFile``. The formal harness reads ``on``, ``legal``, ``done``, ``pred_we``,
    ``on_from_preds`` and ``prime`` (tests/test_formal.py).

    With the convolution extensions (``spec.params.machine(conv=True)``) the loop unit is
    ``seq_nest.LoopNest`` (three levels, shared ends, the w and ch strides of STRD), the
    uops carry what ``uop_layout(conv=True)`` adds (the lane banks,
    window DOTs with SETG's window and the loop indices, the REQ rounding of SETL) and the
    fetch stage checks the channel and weight addresses with their offsets. Without them, a
    word that uses them is illegal (``Predecoder``; ``golden.sequencer.check_machine``).
    """

    def __init__(self, *, fetch_ports=1, **params):
        self._p = spec_params.machine(**params)
        p = self._p
        self.fetch_ports = spec_params.check_fetch_ports(fetch_ports)
        super().__init__({
            "pload": In(stream.Signature(data.StructLayout(
                {"addr": range(p["prog_depth"]), "word": WORD}))),
            "start": In(1), "abort": In(1), "hold": In(1),
            "uop": Out(stream.Signature(uop_layout(p["prog_depth"], conv=p["conv"]))),
            "probe": Out(stream.Signature(probe_layout())),
            "value": In(stream.Signature(signed(VALUE_BITS))),
            "busy": Out(1), "halted": Out(1), "error": Out(1),
            "error_pc": Out(range(p["prog_depth"] + BODY_SPAN)), "preds": Out(N_PRED),
            **{k: Out(COUNTER_BITS) for k in ("cycles", "executed", "predicated_off", "stalls")},
        })
        self._parts = dict(
            predecode=Predecoder(**p), pf=PredicateFile(n=N_PRED),
            run=RunControl(fetch_ports=fetch_ports, **p),
            loop=LoopNest(**p) if p["conv"] else LoopUnit(**p),
            fetch=Fetch(fetch_ports=fetch_ports, **p), execute=Execute(**p))
        ex = self._parts["execute"]
        # named for the formal harness (tests/test_formal.py): the current instruction
        # executes / is legal / completes this cycle; the predicate file's write
        self.on, self.legal, self.done, self.pred_we = (
            ex.status.on, ex.legal, ex.status.done, ex.we)
        # the current instruction's predicate read from the predicate file: ``on`` is a
        # register, and equals this while an instruction executes (proved, test_formal)
        self.on_from_preds = ex.on_from_preds
        # a start waiting for the program's first word (not counted in ``cycles``)
        self.prime = self._parts["run"].ctl.prime

    @property
    def params(self):
        return dict(self._p)

    def elaborate(self, platform):
        m = Module()
        for name, part in self._parts.items():
            m.submodules[name] = part
        pre, pf, run, loop, fetch, ex = self._parts.values()
        checks = predecoded_layout(**self._p)
        m.submodules.prog = prog = Memory(shape=WORD + checks.size, depth=self._p["prog_depth"],
                                          init=[], attrs={"no_rw_check": 1})
        rd, wr = prog.read_port(), prog.write_port()
        wiring.connect(m, fetch.rd, rd)
        if self.fetch_ports == 2:
            wiring.connect(m, fetch.rd_b, prog.read_port())
        # program loading while idle (not in the cycle of a start); each word is stored with
        # the checks that do not depend on the machine's state
        ld = self.pload
        m.d.comb += [ld.ready.eq(~self.busy & ~self.start),
                     pre.word.eq(ld.payload.word), pre.addr.eq(ld.payload.addr),
                     wr.addr.eq(ld.payload.addr), wr.data.eq(Cat(ld.payload.word, pre.checks)),
                     wr.en.eq(ld.valid & ld.ready), run.wrote0.eq(wr.en & (wr.addr == 0))]
        wiring.connect(m, run.ctl, loop.ctl, fetch.ctl, ex.ctl)
        wiring.connect(m, ex.loop, loop.cmd)
        wiring.connect(m, loop.view if self._p["conv"] else loop.cases, fetch.loop)
        wiring.connect(m, ex.fwd, fetch.fwd)
        wiring.connect(m, fetch.next, ex.next)
        wiring.connect(m, ex.status, run.status)
        for port in ("uop", "probe", "value"):
            wiring.connect(m, wiring.flipped(getattr(self, port)), getattr(ex, port))
        m.d.comb += [run.start.eq(self.start), run.abort.eq(self.abort), ex.abort.eq(self.abort),
                     ex.hold.eq(self.hold),
                     run.fpc.eq(fetch.next.pc), ex.preds.eq(pf.values), self.preds.eq(pf.values),
                     pf.we.eq(ex.we), pf.waddr.eq(ex.waddr), pf.wdata.eq(ex.wdata),
                     pf.clear.eq(run.ctl.start), self.busy.eq(run.ctl.busy)]
        m.d.comb += [getattr(self, k).eq(getattr(run, k)) for k in (
            "halted", "error", "error_pc", "cycles", "executed", "predicated_off", "stalls")]
        return m
