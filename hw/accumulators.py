"""AccumulatorFile: the core's four int32 accumulators and the DOT results in flight to them.
"""

from amaranth.hdl import Cat, Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from sparq.spec import params as spec_params

from .arith import fits_signed
from .dot_feeder import N_ACC, tag_layout


class AccumulatorFile(wiring.Component):
    """``N_ACC`` int32 accumulators. A DOT counts as pending on its accumulator from the
    cycle it is issued (``issued``, for accumulator ``sel``) until the engine delivers its
    result (``result``), which is added to the accumulator named by the oldest ``tag``
    (a FIFO of ``tags`` entries: the DOTs between their last beat and their result).

    ============== ===== ==========================================================
    ``tag``        In    stream of ``dot_feeder.tag_layout``: a DOT's last beat entered
                         the engine (``ready``: the FIFO has room)
    ``result``     In    stream of int32: the engine's results, in order (always taken;
                         each at least 2 cycles after its tag, the FIFO's latency)
    ``issued``     In    a DOT for accumulator ``sel`` is issued now
    ``sel``        In    the accumulator the current uop names
    ``value``      Out   its value (comb)
    ``idle``       Out   it has no DOT pending (comb)
    ``write``      In    set it to ``write_value`` (CLR: 0; LDB: the bias) at the clock
    ``clear``      In    set all to 0 (a program starts)
    ``pending``    Out   some DOT is pending
    ``fault``      Out   a result arriving now takes its accumulator out of int32
                         (``golden.sequencer`` raises there; the sum is 33 bits);
                         ``fault_pc`` names its DOT
    ============== ===== ==========================================================

    One adder serves the four accumulators (results come one at a time). Writes at the same
    clock: ``write`` over a result over ``clear`` (the core never lets two meet on one
    accumulator: CLR and LDB wait for ``idle``; a start finds nothing pending).
    """

    def __init__(self, *, prog_depth=512, tags=7):
        self._p = dict(prog_depth=spec_params.int_in("prog_depth", prog_depth, 2, 1 << 12),
                       tags=spec_params.int_in("tags", tags, 1, 64))
        super().__init__({
            "tag": In(stream.Signature(tag_layout(prog_depth))),
            "result": In(stream.Signature(signed(32))),
            "issued": In(1), "sel": In(range(N_ACC)),
            "value": Out(signed(32)), "idle": Out(1),
            "write": In(1), "write_value": In(signed(32)), "clear": In(1),
            "pending": Out(1), "fault": Out(1), "fault_pc": Out(range(prog_depth)),
        })

    @property
    def params(self):
        return dict(self._p)

    @property
    def bound(self):
        """The most DOTs pending on one accumulator: the feeder's queue of two, its input
        register and the tag FIFO."""
        return 3 + self._p["tags"]

    def elaborate(self, platform):
        m = Module()
        m.submodules.tags = tags = SyncFIFOBuffered(width=len(self.tag.payload.as_value()),
                                                    depth=self._p["tags"])
        wiring.connect(m, wiring.flipped(self.tag), tags.w_stream)
        acc = [Signal(signed(32), name=f"acc{k}") for k in range(N_ACC)]
        pend = [Signal(range(self.bound + 1), name=f"pend_dot{k}") for k in range(N_ACC)]
        oldest = data.View(tag_layout(self._p["prog_depth"]), tags.r_data)
        hit = oldest.acc
        m.d.comb += [self.result.ready.eq(1), tags.r_en.eq(self.result.valid),
                     self.value.eq(Cat(*acc).word_select(self.sel, 32).as_signed()),
                     self.idle.eq(Cat(*pend).word_select(self.sel, len(pend[0])) == 0),
                     self.pending.eq(Cat(*[c != 0 for c in pend]).any())]
        with m.If(self.clear):
            m.d.sync += [a.eq(0) for a in acc]
        total = Signal(signed(33))  # one adder for the four accumulators
        m.d.comb += total.eq(Cat(*acc).word_select(hit, 32).as_signed() + self.result.payload)
        for k in range(N_ACC):
            with m.If(self.result.valid & (hit == k)):
                m.d.sync += acc[k].eq(total[:32])
            with m.If(self.write & (self.sel == k)):
                m.d.sync += acc[k].eq(self.write_value)
            down = self.result.valid & (hit == k)
            m.d.sync += pend[k].eq(pend[k] + (self.issued & (self.sel == k)) - down)
        m.d.comb += [self.fault.eq(self.result.valid & ~fits_signed(total, 32)),
                     self.fault_pc.eq(oldest.pc)]
        return m
