"""AccumulatorFile: the core's four int32 accumulators, a convolution machine's lane banks,
and the DOT results in flight to them.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from sparq.spec import isa
from sparq.spec import params as spec_params

from .arith import fits_signed
from .dot_feeder import N_ACC, tag_layout
from .sparse_dot import PRODUCT_BITS, bank_add_layout

# A bank lane holds an int32 plus a DOT's per-lane sum so far: at most 15 beats of products
# of at most 255 x 128, well inside 2**31, so 33 bits hold every partial sum of a DOT that
# starts from an int32, and whether its end is an int32 is read off the top two bits.
BANK_LANE_BITS = 33
_MAX_DOT_LANE_SUM = ((1 << isa.field_width("beats", "DOT")) - 1) * 255 * 128
assert _MAX_DOT_LANE_SUM < 1 << (BANK_LANE_BITS - 2), _MAX_DOT_LANE_SUM


def accs_tag_layout(prog_depth, accs):
    """The tags of ``accs`` accumulator numbers: the feeder's ``tag_layout`` when its
    ``acc`` field holds them, else the same fields with a wide enough ``acc``."""
    base = tag_layout(prog_depth)
    if base["acc"].width >= (accs - 1).bit_length():
        return base
    return data.StructLayout({"acc": range(accs), "pc": range(prog_depth)})


class AccumulatorFile(wiring.Component):
    """``N_ACC`` int32 accumulators and ``banks`` lane banks of ``lanes`` int32 (accumulator
    numbers ``N_ACC + b``; ``banks=0`` builds none of their logic). A DOT counts as pending
    on its accumulator from the cycle it is issued (``issued``, for accumulator ``sel``)
    until the engine delivers its result (``result``), which is added to the accumulator
    named by the oldest ``tag`` (a FIFO of ``tags`` entries: the DOTs between their last
    beat and their result). A bank DOT's products arrive per lane on ``bank_add`` (each
    step's, added to its bank's lanes in the cycle they arrive, all before its result: the
    engine's last the cycle before), and its ``result`` (whose value is not used) ends it:
    its bank's pending count drops then, as a scalar DOT's would, and the bank is checked.

    ================= ===== =======================================================
    ``tag``           In    stream of ``accs_tag_layout``: a DOT's last beat entered
                            the engine (``ready``: the FIFO has room)
    ``result``        In    stream of int32: the engine's results, in order (always
                            taken; each at least 2 cycles after its tag, the FIFO's
                            latency)
    ``issued``        In    a DOT for accumulator ``sel`` is issued now
    ``sel``           In    the accumulator the current uop names (``N_ACC + b``:
                            bank ``b``)
    ``value``         Out   its value (comb; 0 for a bank)
    ``idle``          Out   it has no DOT pending (comb)
    ``write``         In    set it to ``write_value`` (CLR: 0; LDB: the bias) at the
                            clock; a bank (CLR) is set to 0, every lane
    ``clear``         In    set all to 0, banks too (a program starts)
    ``pending``       Out   some DOT is pending
    ``fault``         Out   a result arriving now takes its accumulator out of int32
                            (``golden.sequencer`` raises there; the sum is 33 bits), or
                            ends a bank DOT that left a lane of its bank out of int32;
                            ``fault_pc`` names its DOT
    ``bank_add``      In    stream of ``sparse_dot.bank_add_layout(lanes)``: a bank
                            step's products per lane (always taken)
    ``bank_rd_sel``   In    the bank the read port shows, ``bank_rd_lane`` the lane
    ``bank_rd_value`` Out   that lane's value (comb; its low 32 bits: the value
                            whenever no DOT into the bank faulted)
    ``bank_rd_first`` Out   lane 0 of bank ``bank_rd_sel`` (comb, likewise: no lane
                            multiplexer on its way)
    ================= ===== =======================================================

    One adder serves the four accumulators (results come one at a time); each bank lane has
    its own (a step adds to every lane of one bank). A bank lane is ``BANK_LANE_BITS``
    wide, so a lane's sum is checked at its DOT's end only, not at each step: a lane whose
    partial sum leaves int32 and comes back within one DOT does not fault, as in
    ``golden.sequencer``. A CLR (or ``clear``) empties a bank by a flag (``bank_empty``):
    its lanes then read as 0 until its next step writes them all. Writes at the same
    clock: ``write`` over a result (a step) over ``clear`` (the core never lets two meet on
    one accumulator: CLR and LDB wait for ``idle``; a start finds nothing pending).

    Bit-exact reference: ``golden.sequencer`` (``_dot``, ``execute``'s CLR).
    """

    def __init__(self, *, prog_depth=512, tags=7, banks=0, lanes=16):
        self._p = dict(prog_depth=spec_params.int_in("prog_depth", prog_depth, 2, 1 << 12),
                       tags=spec_params.int_in("tags", tags, 1, 64),
                       banks=spec_params.int_in("banks", banks, 0, isa.N_BANKS),
                       lanes=spec_params.int_in("lanes", lanes, 1, 64))
        accs = N_ACC + banks
        ports = {
            "tag": In(stream.Signature(accs_tag_layout(prog_depth, accs))),
            "result": In(stream.Signature(signed(32))),
            "issued": In(1), "sel": In(range(accs)),
            "value": Out(signed(32)), "idle": Out(1),
            "write": In(1), "write_value": In(signed(32)), "clear": In(1),
            "pending": Out(1), "fault": Out(1), "fault_pc": Out(range(prog_depth)),
        }
        if banks:
            ports.update(bank_add=In(stream.Signature(bank_add_layout(lanes))),
                         bank_rd_sel=In(range(banks)), bank_rd_lane=In(range(lanes)),
                         bank_rd_value=Out(signed(32)), bank_rd_first=Out(signed(32)))
        super().__init__(ports)
        # the banks' registers, made here so that a test may preload a bank: its lanes, and
        # whether it is empty (CLR, ``clear``, reset: its lanes read as 0, whatever they hold)
        self.bank_lanes = [[Signal(signed(BANK_LANE_BITS), name=f"bank{b}_lane{i}",
                                   reset_less=True) for i in range(lanes)]
                           for b in range(banks)]
        self.bank_empty = [Signal(init=1, name=f"bank{b}_empty") for b in range(banks)]

    @property
    def params(self):
        p = dict(self._p)
        if not p["banks"]:  # (the parameters of a file without banks, as before them)
            del p["banks"], p["lanes"]
        return p

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
        banks = self._p["banks"]
        acc = [Signal(signed(32), name=f"acc{k}") for k in range(N_ACC)]
        pend = [Signal(range(self.bound + 1), name=f"pend_dot{k}")
                for k in range(N_ACC + banks)]
        oldest = data.View(self.tag.payload.shape(), tags.r_data)
        hit = oldest.acc
        # (a bank's value reads as 0: the words past the accumulators)
        words = Cat(*acc, Const(0, 32 * banks)) if banks else Cat(*acc)
        m.d.comb += [self.result.ready.eq(1), tags.r_en.eq(self.result.valid),
                     self.value.eq(words.word_select(self.sel, 32).as_signed()),
                     self.idle.eq(Cat(*pend).word_select(self.sel, len(pend[0])) == 0),
                     self.pending.eq(Cat(*[c != 0 for c in pend]).any())]
        with m.If(self.clear):
            m.d.sync += [a.eq(0) for a in acc]
        total = Signal(signed(33))  # one adder for the four accumulators
        m.d.comb += total.eq(Cat(*acc).word_select(hit, 32).as_signed() + self.result.payload)
        for k in range(N_ACC + banks):
            if k < N_ACC:
                with m.If(self.result.valid & (hit == k)):
                    m.d.sync += acc[k].eq(total[:32])
                with m.If(self.write & (self.sel == k)):
                    m.d.sync += acc[k].eq(self.write_value)
            down = self.result.valid & (hit == k)
            m.d.sync += pend[k].eq(pend[k] + (self.issued & (self.sel == k)) - down)
        fault = ~fits_signed(total, 32)
        if banks:
            fault = Mux(hit < N_ACC, fault, self._banks(m, hit - N_ACC))
        m.d.comb += [self.fault.eq(self.result.valid & fault), self.fault_pc.eq(oldest.pc)]
        return m

    def _banks(self, m, ended):
        """The lane banks: each step of ``bank_add`` added to its bank's lanes, CLR and
        ``clear``, the read port. Returns whether bank ``ended`` (whose DOT's result arrives
        now, its steps all added) has a lane out of int32.

        CLR and ``clear`` empty a bank by a flag, not by writing its lanes: the lanes of an
        empty bank read as 0 (at the adders and the read port), and its next step writes
        them all. So a lane register loads only a step's sum (its enable is the
        step's bank), with no multiplexer in front."""
        banks = self._p["banks"]
        add, empty = self.bank_add, self.bank_empty
        m.d.comb += add.ready.eq(1)
        sums = self._step_sums(m)  # one adder per lane, for the step's bank
        for b in range(banks):
            step = add.valid & (add.payload.bank == b)
            # (a lane loads on its bank's step alone, not gated by a CLR of the bank in the
            # same cycle, which a CLR's wait for the bank's DOTs rules out: and were it to
            # come, the bank is empty after it, its lanes unread; the uop's take stays off
            # the lanes' enables)
            with m.If(step):
                m.d.sync += [r.eq(v) for r, v in zip(self.bank_lanes[b], sums, strict=True)]
            with m.If(self.write & (self.sel == N_ACC + b)):
                m.d.sync += empty[b].eq(1)
            with m.Elif(step):
                m.d.sync += empty[b].eq(0)
            with m.Elif(self.clear):
                m.d.sync += empty[b].eq(1)
        # (a bank whose DOT ends is not empty: the DOT's steps wrote all its lanes)
        out = [Signal(name=f"bank{b}_out_of_int32") for b in range(banks)]
        m.d.comb += [o.eq(Cat(*[~fits_signed(r, 32) for r in self.bank_lanes[b]]).any())
                     for b, o in enumerate(out)]
        shown = [Cat(*[r[:32] for r in self.bank_lanes[b]]).word_select(self.bank_rd_lane, 32)
                 for b in range(banks)]
        first = [self.bank_lanes[b][0][:32] for b in range(banks)]
        sel = self.bank_rd_sel
        none = _pick(empty, sel)
        m.d.comb += [self.bank_rd_value.eq(Mux(none, 0, _pick(shown, sel).as_signed())),
                     self.bank_rd_first.eq(Mux(none, 0, _pick(first, sel).as_signed()))]
        return _pick(out, ended)

    def _step_sums(self, m):
        """Each lane of the step's bank (0 if it is empty) plus the step's product."""
        add = self.bank_add
        banks, lanes = self._p["banks"], self._p["lanes"]
        was_empty = Signal(name="bank_add_empty")
        m.d.comb += was_empty.eq(_pick(self.bank_empty, add.payload.bank))
        sums = []
        for i in range(lanes):
            cur = _pick([self.bank_lanes[b][i] for b in range(banks)], add.payload.bank)
            nxt = Signal(signed(BANK_LANE_BITS), name=f"bank_lane{i}_sum")
            m.d.comb += nxt.eq(Mux(was_empty, 0, cur) + add.payload.p[i])
            sums.append(nxt)
        assert PRODUCT_BITS < BANK_LANE_BITS
        return sums


def _pick(values, index):
    """``values[index]`` by a chain of multiplexers (``index`` in range)."""
    out = values[-1]
    for k in range(len(values) - 2, -1, -1):
        out = Mux(index == k, values[k], out)
    return out
