"""DotFeeder: the core's DOT queue, which streams each DOT's beats into the engine, and the
hazards between those reads and the activation writes of REQ results in flight.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from sparq.spec import isa
from sparq.spec import params as spec_params

from .encodings import ZP_BITS
from .sparse_dot import beat_layout

N_ACC = isa.N_ACC


def dot_layout(prog_depth):
    """A DOT to run: ``beats`` words of activations from element address ``xaddr`` (aligned)
    and of weights from ``waddr``, into accumulator ``acc``, with the activation zero point
    ``zp``; ``pc`` names its instruction."""
    return data.StructLayout({
        "xaddr": isa.field_width("xaddr", "DOT"), "waddr": isa.field_width("waddr", "DOT"),
        "beats": isa.field_width("beats", "DOT"), "acc": range(N_ACC), "zp": signed(ZP_BITS),
        "pc": range(prog_depth)})


def tag_layout(prog_depth):
    """What a DOT's result needs when the engine delivers it: its accumulator and pc."""
    return data.StructLayout({"acc": range(N_ACC), "pc": range(prog_depth)})


class DotFeeder(wiring.Component):
    """A queue of two DOTs, each taken from ``dot`` in one cycle, whose beats it streams
    into the engine (``o``): an address stage (``x_addr``, ``w_addr`` into the activation
    and weight memories' synchronous read ports), then the words read (``x_data``,
    ``w_data``) in the engine's input register with each weight's precision level
    (``level``). So the Sequencer goes on with other uops while a DOT runs.

    Ports:

    ============== ===== ==========================================================
    ``dot``        In    stream of ``dot_layout``: ready while the queue has room
    ``o``          Out   stream of ``sparse_dot.beat_layout(lanes)``, to the engine
    ``zp``         Out   the zero point of the DOT whose beat ``o`` shows (the engine's
                         ``x_zero_point``, which it samples with each beat)
    ``tag``        Out   pulse (``valid``) with a DOT's ``acc`` and ``pc`` when its last
                         beat is handed over; the receiver must have room (``ready`` is
                         not looked at: the core takes a DOT only while it has)
    ``x_addr``     Out   activation word to read (``x_data`` shows it the cycle after)
    ``w_addr``     Out   weight word to read (``w_data`` the cycle after)
    ``wr_issue``   In    a REQ is issued now that will write element ``wr_addr``
    ``wr_blocked`` Out   that REQ must wait: a queued DOT, or the beat in the engine's
                         input register, reads its region (comb from ``wr_addr``)
    ``wr_land``    In    a REQ result is written now, to element ``wr_land_addr``
    ``busy``       Out   a DOT queued or a beat in the input register
    ============== ===== ==========================================================

    Hazards, by region of ``hazard_words`` activation words: a DOT's first beat waits
    until no REQ result in flight (issued, not yet written; one written in this cycle
    still counts: the read port is not transparent) will write a region it reads (a
    counter per region, up to ``writes_in_flight``), and ``wr_blocked`` holds a REQ back
    while a DOT not yet fully read reads its region. So every beat reads the words program
    order says it reads (the proof: ``tests/test_dot_feeder.py``).

    Timing: a beat a cycle while the engine takes them. The first-beat hazard verdict is a
    flip-flop, computed the cycle before for each DOT that may head the queue next (the
    choice last: it waits for the engine's handshake); the read addresses depend on whether
    the input register moves on, not on the issue decision (words read but not issued are
    not used). Neither changes a cycle (``golden.core.predict_cycles``).
    """

    def __init__(self, **params):
        self._p = p = spec_params.dot_feeder(**params)
        lanes, pd = p["lanes"], p["prog_depth"]
        # hazard regions, and the shift from an element address to its region
        self._regions = p["x_depth"] // lanes // p["hazard_words"]
        self._rlow = (lanes - 1).bit_length() + p["hazard_words"].bit_length() - 1
        super().__init__({
            "dot": In(stream.Signature(dot_layout(pd))),
            "o": Out(stream.Signature(beat_layout(lanes))), "zp": Out(signed(ZP_BITS)),
            "tag": Out(stream.Signature(tag_layout(pd))),
            "x_addr": Out(range(p["x_depth"] // lanes)),
            "w_addr": Out(range(p["w_depth"] // lanes)),
            "x_data": In(unsigned(8 * lanes)),
            "w_data": In(data.ArrayLayout(signed(8), lanes)),
            "wr_issue": In(1), "wr_addr": In(isa.field_width("oaddr", "REQ")),
            "wr_blocked": Out(1),
            "wr_land": In(1), "wr_land_addr": In(range(p["x_depth"])),
            "busy": Out(1),
        })

    @property
    def params(self):
        return dict(self._p)

    def elaborate(self, platform):
        m = Module()
        p = self._p
        words, w_words = p["x_depth"] // p["lanes"], p["w_depth"] // p["lanes"]
        low = (p["lanes"] - 1).bit_length()
        desc = data.StructLayout({"xw": range(words), "ww": range(w_words),
                                  "beats": len(self.dot.payload.beats), "acc": range(N_ACC),
                                  "zp": signed(ZP_BITS), "pc": range(p["prog_depth"]),
                                  "reads": self._regions})  # bit k: the DOT reads region k
        qd = [Signal(desc, name=f"dotq{k}") for k in range(2)]
        qv = [Signal(name=f"dotq{k}_valid") for k in range(2)]  # qv[1] implies qv[0]
        b = Signal(data.StructLayout({"valid": 1, "last": 1, "acc": range(N_ACC),
                                      "zp": signed(ZP_BITS),
                                      "pc": range(p["prog_depth"]), "xw": range(words),
                                      "ww": range(w_words)}), name="beat")
        kept = self._pending_writes(m)
        ow = self.wr_addr >> self._rlow
        m.d.comb += self.wr_blocked.eq(
            ((Mux(qv[0], qd[0].reads, 0) | Mux(qv[1], qd[1].reads, 0)).bit_select(ow, 1))
            | (b.valid & ((b.xw >> (self._rlow - low)) == ow)))

        def waits_next(reads, *, queued=True):
            """A DOT reading ``reads`` meets a REQ result in flight next cycle; a DOT taken
            now (not ``queued``) cannot meet this cycle's REQ, which would be the same uop,
            so its verdict has no term for it (a shorter path)."""
            pushed = self.wr_issue & reads.bit_select(ow, 1) if queued else 0
            return (reads & kept).any() | pushed

        raw = Signal()  # a region dotq0 reads has a REQ result in flight (a flip-flop)
        pop = self._issue(m, qd[0], qv[0], b, raw)
        new = self._describe(m, desc)
        # ``raw`` follows dotq0: the verdict for each DOT that may be dotq0 next cycle is
        # computed before the late choice (pop waits for the engine's handshake)
        w0, w1 = waits_next(qd[0].reads), waits_next(qd[1].reads)
        wn = waits_next(new.reads, queued=False)
        take = self.dot.valid & self.dot.ready
        m.d.comb += [self.dot.ready.eq(~qv[1]), self.busy.eq(qv[0] | b.valid)]
        m.d.sync += raw.eq(w0)
        with m.If(pop):  # (a take needs dotq1 free)
            m.d.sync += [qd[0].eq(Mux(qv[1], qd[1], new)), qv[0].eq(qv[1] | take),
                         qv[1].eq(0), raw.eq(Mux(qv[1], w1, wn))]
        with m.Elif(take):
            with m.If(qv[0]):
                m.d.sync += [qd[1].eq(new), qv[1].eq(1)]
            with m.Else():
                m.d.sync += [qd[0].eq(new), qv[0].eq(1), raw.eq(wn)]
        return m

    def _pending_writes(self, m):
        """Per region, a counter of REQ results in flight; returns ``kept``: the regions
        that still have one in flight after this cycle's arrivals."""
        bound = self._p["writes_in_flight"]
        ow, lw = self.wr_addr >> self._rlow, self.wr_land_addr >> self._rlow
        kept = Signal(self._regions)
        for k in range(self._regions):
            pend = Signal(range(bound + 1), name=f"pend_region{k}")
            down = self.wr_land & (lw == k)
            m.d.sync += pend.eq(pend + (self.wr_issue & (ow == k)) - down)
            m.d.comb += kept[k].eq(Mux(down, pend > 1, pend != 0))
        return kept

    def _describe(self, m, desc):
        """The queue entry of the DOT offered on ``dot``. It reads words [x0, x0 + beats):
        region k (words [kg, (k+1)g)) when the two meet; compares with constants and one
        short sum (a shifted mask of ones was a carry chain and a barrel shifter on the ECP5
        critical path)."""
        u, g = self.dot.payload, self._p["hazard_words"]
        low = (self._p["lanes"] - 1).bit_length()
        new = Signal(desc)
        # (the first word as the read address takes it, ``range(words)``: a DOT in range,
        # every one the Sequencer issues, is read from words [x0, x0 + beats) of that range,
        # and the sum and its comparisons stay as narrow as the word index)
        x0 = Signal(desc["xw"].shape, name="dot_x0")
        end = Signal(len(x0) + 1, name="dot_xend")
        m.d.comb += [x0.eq(u.xaddr >> low), end.eq(x0 + u.beats)]
        m.d.comb += [new.xw.eq(x0), new.ww.eq(u.waddr >> low),
                     new.beats.eq(u.beats), new.acc.eq(u.acc), new.zp.eq(u.zp),
                     new.pc.eq(u.pc),
                     new.reads.eq(Cat(*[(u.beats != 0) & (x0 < (k + 1) * g) & (end > k * g)
                                        for k in range(self._regions)]))]
        return new

    def _issue(self, m, head, head_valid, b, raw):
        """The address stage and the engine's input register: beat ``j`` of the queue's
        head is read when the input register moves on (its first beat not while ``raw``);
        returns ``pop``, the head's last beat issued."""
        j = Signal(len(head.beats))  # the next beat of the head to address
        advance, issue, last, pop = Signal(), Signal(), Signal(), Signal()
        m.d.comb += [advance.eq(~b.valid | self.o.ready),
                     issue.eq(head_valid & advance & ((j != 0) | ~raw)),
                     last.eq(j == head.beats - 1), pop.eq(issue & last)]
        xw, ww = head.xw + j, head.ww + j
        # the next beat's words, or the held beat's again while the input register keeps it
        with m.If(advance):
            m.d.comb += [self.x_addr.eq(xw), self.w_addr.eq(ww)]
        with m.Else():
            m.d.comb += [self.x_addr.eq(b.xw), self.w_addr.eq(b.ww)]
        with m.If(issue):
            m.d.sync += [b.valid.eq(1), b.last.eq(last), b.acc.eq(head.acc), b.pc.eq(head.pc),
                         b.zp.eq(head.zp),
                         b.xw.eq(xw), b.ww.eq(ww), j.eq(Mux(last, 0, j + 1))]
        with m.Elif(advance):
            m.d.sync += b.valid.eq(0)
        # the engine's input: the beat read in the cycle before
        lanes = self._p["lanes"]
        m.d.comb += [self.o.valid.eq(b.valid), self.o.payload.last.eq(b.last),
                     self.zp.eq(b.zp)]
        for i in range(lanes):
            w = self.w_data[i]
            m.d.comb += [self.o.payload.w[i].eq(w),
                         self.o.payload.x[i].eq(self.x_data[8 * i:8 * i + 8].as_signed()),
                         self.o.payload.lvl[i].eq(level(w))]
        m.d.comb += [self.tag.payload.acc.eq(b.acc), self.tag.payload.pc.eq(b.pc),
                     self.tag.valid.eq(b.valid & b.last & self.o.ready)]
        return pop


def level(w):
    """The smallest precision level that holds int8 weight ``w`` (default widths 2, 4, 8)."""
    return Mux(w == 0, 0, Mux((w >= -2) & (w <= 1), 1, Mux((w >= -8) & (w <= 7), 2, 3)))
